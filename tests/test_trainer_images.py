"""Sample grids and raw sample files."""
import numpy as np
from PIL import Image

from trainer import images


def test_grid_places_image_i_at_row_i_div_columns():
    batch = np.arange(5 * 2 * 3 * 3, dtype=np.uint8).reshape(5, 2, 3, 3)
    grid = images.image_grid(batch)  # 3 columns, 2 rows
    assert grid.shape == (4, 9, 3)
    for i, image in enumerate(batch):
        row, column = divmod(i, 3)
        np.testing.assert_array_equal(grid[2 * row:2 * row + 2, 3 * column:3 * column + 3], image)
    assert not grid[2:, 6:].any()  # the unused cell stays black


def test_png_and_npz_hold_the_exact_pixels(tmp_path):
    batch = np.random.default_rng(0).integers(0, 256, (4, 5, 5, 1), dtype=np.uint8)
    grid = images.save_samples(str(tmp_path / "s"), batch)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "s.png")), grid[..., 0])
    stored = np.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(stored["images"], batch)
    assert stored["columns"] == 2 and sorted(stored.files) == ["columns", "images"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz", "s.png"]  # no temp files left


def test_sheet_pictures_are_padded_and_scaled_by_a_whole_factor_to_the_width():
    batch = np.random.default_rng(1).integers(0, 256, (6, 4, 5, 3), dtype=np.uint8)
    picture = images.sheet_image(batch, columns=3, min_width=100)
    scale = 7  # the least whole factor with 3 * 5 * scale + 4 gaps of 2 px >= 100
    assert picture.shape == (2 * 4 * scale + 3 * 2, 3 * 5 * scale + 4 * 2, 3)
    for index, image in enumerate(batch):
        row, column = divmod(index, 3)
        top, left = 2 + row * (4 * scale + 2), 2 + column * (5 * scale + 2)
        cell = picture[top:top + 4 * scale, left:left + 5 * scale]
        np.testing.assert_array_equal(cell, image.repeat(scale, 0).repeat(scale, 1))
    assert (picture[:2] == images.BACKGROUND).all() and (picture[:, :2] == images.BACKGROUND).all()
    assert images.sheet_image(batch, columns=3, min_width=1).shape == (2 * 4 + 6, 3 * 5 + 8, 3)


def test_row_labels_add_a_strip_on_the_left_and_keep_the_images():
    batch = np.zeros((4, 8, 8, 1), np.uint8)
    plain = images.sheet_image(batch, columns=2, min_width=64)
    labelled = images.sheet_image(batch, columns=2, row_labels=["T = 0", "T = 0.7"],
                                  min_width=64)
    strip = labelled.shape[1] - plain.shape[1]
    assert labelled.shape[0] == plain.shape[0] and strip > 0
    np.testing.assert_array_equal(labelled[:, strip:], plain)
    assert (labelled[:, :strip] < images.BACKGROUND).any()  # some text was drawn


def test_a_sheet_is_stored_flat_with_its_columns_and_per_image_metadata(tmp_path):
    sheet = np.random.default_rng(2).integers(0, 256, (2, 3, 4, 4, 3), dtype=np.uint8)
    temperatures = np.float32([[0.5] * 3, [1.0] * 3])
    images.save_samples(str(tmp_path / "t"), sheet, row_labels=["T = 0.5", "T = 1"],
                        temperatures=temperatures)
    stored = np.load(tmp_path / "t.npz")
    assert stored["columns"] == 3
    np.testing.assert_array_equal(stored["images"], sheet.reshape(6, 4, 4, 3))
    np.testing.assert_array_equal(stored["temperatures"], temperatures.reshape(6))
    np.testing.assert_array_equal(stored["images"].reshape(-1, 3, 4, 4, 3), sheet)
