"""data.folder and data.images: image folders read back pixel- and label-exact, layouts, errors."""
import numpy as np
import pytest
from PIL import Image

import data
from data import images
from data.base import DataError
from data.folder import Folder
from data.real32 import photo_path

PHOTOS = {"cat": "data/chelsea.png", "coffee": "data/coffee.png", "rocket": "data/rocket.jpg"}


def crops(name, count, size=32):
    """`count` size x size RGB crops of a bundled photo."""
    with Image.open(photo_path("skimage", PHOTOS[name])) as image:
        photo = np.asarray(image.convert("RGB"))
    return [photo[size * i:size * (i + 1), size * i:size * (i + 1)] for i in range(count)]


def save(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_class_folders_give_labels_and_every_tenth_image_is_test(tmp_path):
    written = []  # (relative path, pixels, label) in sorted path order
    for label, name in enumerate(sorted(PHOTOS)):
        for i, pixels in enumerate(crops(name, 7)):
            written.append((f"{name}/{i:02d}.png", pixels, label))
            save(tmp_path / name / f"{i:02d}.png", pixels)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    info = data.info("folder", str(tmp_path))
    assert info.class_names == ("cat", "coffee", "rocket") and info.num_classes == 3
    assert info.split_sizes == {"train": 19, "test": 2} and info.image_shape == (32, 32, 3)
    for split, expected in (("train", [w for i, w in enumerate(written) if i % 10 != 9]),
                            ("test", [written[9], written[19]])):
        split_arrays = data.arrays("folder", str(tmp_path), split)
        np.testing.assert_array_equal(split_arrays.images, np.stack([w[1] for w in expected]))
        np.testing.assert_array_equal(split_arrays.labels, [w[2] for w in expected])


def test_train_and_test_folders_are_the_splits(tmp_path):
    for split, count in (("train", 3), ("test", 2)):
        for name in ("cat", "rocket"):
            for i, pixels in enumerate(crops(name, count)):
                save(tmp_path / split / name / f"{i}.png", pixels)
    info = data.info("folder", str(tmp_path))
    assert info.split_sizes == {"train": 6, "test": 4} and info.class_names == ("cat", "rocket")
    test = data.arrays("folder", str(tmp_path), "test")
    np.testing.assert_array_equal(test.images, np.stack(crops("cat", 2) + crops("rocket", 2)))
    np.testing.assert_array_equal(test.labels, [0, 0, 1, 1])


def test_unlabelled_mixed_sizes_and_jpeg_are_made_square(tmp_path):
    with Image.open(photo_path("skimage", PHOTOS["coffee"])) as image:
        photo = np.asarray(image.convert("RGB"))
    save(tmp_path / "a.png", photo[:64, :96])  # centre 64x64, halved
    save(tmp_path / "b.jpg", photo[100:132, 200:232])  # already 32x32, but JPEG
    save(tmp_path / "nested" / "c.png", photo[:30, :40])  # enlarged
    info = data.info("folder", str(tmp_path))
    assert info.num_classes == 0 and info.split_sizes == {"train": 3, "test": 0}
    train = data.arrays("folder", str(tmp_path), "train")
    np.testing.assert_array_equal(train.labels, [0, 0, 0])
    halved = np.floor(photo[:64, 16:80].astype(float).reshape(32, 2, 32, 2, 3).mean((1, 3)) + .5)
    np.testing.assert_array_equal(train.images[0], halved)
    with Image.open(tmp_path / "b.jpg") as image:
        np.testing.assert_array_equal(train.images[1], np.asarray(image))
    assert train.images[2].shape == (32, 32, 3)
    with pytest.raises(DataError, match="'test' split has no images"):
        data.arrays("folder", str(tmp_path), "test")


def test_image_size_selects_the_resolution(tmp_path):
    pixels = crops("cat", 1, size=64)[0]
    save(tmp_path / "x.png", pixels)
    assert data.info("folder", str(tmp_path), image_size=16).image_shape == (16, 16, 3)
    small = data.arrays("folder", str(tmp_path), "train", image_size=16).images[0]
    expected = np.floor(pixels.astype(float).reshape(16, 4, 16, 4, 3).mean((1, 3)) + 0.5)
    np.testing.assert_array_equal(small, expected)


def test_grey_images_keep_one_channel_in_read_image(tmp_path):
    grey = crops("cat", 1)[0][:, :, 0]
    save(tmp_path / "g.png", grey)
    np.testing.assert_array_equal(images.read_image(tmp_path / "g.png", mode="L"), grey[:, :, None])
    np.testing.assert_array_equal(images.resize_square(grey[:, :, None], 16)[:, :, 0],
                                  np.asarray(Image.fromarray(grey).reduce(2)))


def test_missing_and_empty_folders_are_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"{missing}: no such image folder"):
        data.info("folder", str(missing))
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DataError, match="empty: no PNG or JPEG images"):
        data.info("folder", str(tmp_path / "empty"))


def test_a_corrupt_image_is_named(tmp_path):
    save(tmp_path / "good.png", crops("cat", 1)[0])
    save(tmp_path / "bad.png", crops("rocket", 1)[0])
    bad = tmp_path / "bad.png"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataError, match=f"{bad}: cannot decode image"):
        data.arrays("folder", str(tmp_path), "train")


def test_test_classes_must_exist_in_train(tmp_path):
    save(tmp_path / "train" / "cat" / "0.png", crops("cat", 1)[0])
    save(tmp_path / "test" / "dog" / "0.png", crops("cat", 1)[0])
    with pytest.raises(DataError, match=r"test/ \(dog\) must be among those of train/ \(cat\)"):
        data.info("folder", str(tmp_path))


def test_sixteen_bit_greyscale_keeps_the_high_byte(tmp_path):
    # v >> 8, as PIL reduces 16-bit RGB: 257 * k gives k back, 255 and 256 differ in that byte
    wide = np.array([0, 255, 256, 257, 32896, 65279, 65535, 1000], np.uint16)
    narrow = np.array([0, 0, 1, 1, 128, 254, 255, 3], np.uint8)
    path = tmp_path / "grey16.png"
    Image.fromarray(np.tile(wide, (8, 1))).save(path)
    with Image.open(path) as image:
        assert image.mode == "I;16"  # the mode whose convert("RGB") saturates at 255
    pixels = data.arrays("folder", str(tmp_path), "train", image_size=8).images
    np.testing.assert_array_equal(pixels, np.tile(narrow[None, None, :, None], (1, 8, 1, 3)))
    np.testing.assert_array_equal(images.read_image(path, mode="L")[:, :, 0],
                                  np.tile(narrow, (8, 1)))


def test_images_smaller_than_the_size_are_said_once_per_split(tmp_path, capsys):
    for split, sides in (("train", [(12, 20), (16, 16), (14, 30)]), ("test", [(16, 24)])):
        for i, (height, width) in enumerate(sides):
            save(tmp_path / split / f"{i}.png", crops("coffee", 1, size=30)[0][:height, :width])
    cache_dir = str(tmp_path / "cache")
    data.prepare("folder", str(tmp_path), 16, cache_dir=cache_dir)
    again = Folder(str(tmp_path), 16, cache_dir).arrays("train")  # from the cache: no new line
    assert again.images.shape == (3, 16, 16, 3)
    lines = [line for line in capsys.readouterr().err.splitlines() if "enlarged" in line]
    assert lines == [f"folder {tmp_path} train: 2 of 3 images are smaller than 16x16 and are "
                     f"enlarged (bicubic); the smallest is {tmp_path / 'train' / '0.png'} at "
                     f"20x12"]  # and none for the test split, whose one image is 16x24


def test_a_broken_test_image_stops_training_at_the_start(tmp_path, capsys):
    import train

    root = tmp_path / "images"
    for split, count in (("train", 16), ("test", 3)):
        for i, pixels in enumerate(crops("cat", count, size=8)):
            save(root / split / f"{i}.png", pixels)
    bad = root / "test" / "1.png"
    bad.write_bytes(bad.read_bytes()[:60])
    save_dir = tmp_path / "run"
    argv = ["-d", "folder", "-i", root, "-o", save_dir, "-q", "1", "-n", "8", "-m", "2",
            "-b", "8", "--image_size", "8", "-x", "1", "--cache_dir", tmp_path / "cache"]
    assert train.main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(f"error: {bad}: cannot decode image")
    assert not save_dir.exists()  # refused before the run directory, let alone a checkpoint
