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
    np.testing.assert_array_equal(np.load(tmp_path / "s.npz")["arr_0"], batch)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz", "s.png"]  # no temp files left
