"""data/imagenet.py: van den Oord small ImageNet (PNG folders -> cached npz) and Chrabaszcz et al.
Imagenet32/64 npz batches, read pixel- and label-exact from files in the public formats."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from photo_crops import photo_crops
import data
from data import imagenet
from data.base import DataError

# ------------------------------------------------------------------------------------------------
# van den Oord small ImageNet: flat folders of R x R RGB PNGs

OORD_COUNTS = {"train": 7, "test": 3}


def write_png_folders(root, side, seed=0):
    """train_RxR/ and valid_RxR/ under `root`, file names written in an order unlike their sorted
    order. Returns {split: images in sorted-name order}."""
    expected = {}
    for split, prefix in (("train", "train"), ("test", "valid")):
        folder = os.path.join(root, f"{prefix}_{side}x{side}")
        os.makedirs(folder)
        images = photo_crops(OORD_COUNTS[split], side, seed=seed + len(prefix))
        names = [f"{(7 * i) % 11:08d}.png" for i in range(len(images))]
        for name, image in zip(names, images):
            Image.fromarray(image).save(os.path.join(folder, name))
        expected[split] = images[np.argsort(names)]
    return expected


@pytest.mark.parametrize("side, subdir", [(32, ""), (64, "small_imagenet")])
def test_png_folders_convert_to_a_pixel_exact_cache(tmp_path, side, subdir):
    expected = write_png_folders(str(tmp_path / subdir), side)
    source = imagenet.SmallImageNet(str(tmp_path), image_size=None if side == 32 else side)
    info = source.info()  # before conversion: counts files, writes nothing
    assert info.image_shape == (side, side, 3) and info.num_classes == 0
    assert info.split_sizes == {"train": 7, "test": 3}
    cache = tmp_path / "small_imagenet" / f"imgnet_{side}x{side}.npz"
    assert not cache.exists()
    for split in ("train", "test"):
        got = source.arrays(split)
        assert got.images.dtype == np.uint8 and got.labels.dtype == np.int32
        np.testing.assert_array_equal(got.images, expected[split])
        np.testing.assert_array_equal(got.labels, np.zeros(OORD_COUNTS[split]))
    with np.load(cache) as arrays:  # openai/pixel-cnn's keys
        assert sorted(arrays.files) == ["testx", "trainx"]
        np.testing.assert_array_equal(arrays["trainx"], expected["train"])
    assert source.info() == info


def test_cache_is_written_once_and_then_replaces_the_folders(tmp_path):
    expected = write_png_folders(str(tmp_path), 32)
    imagenet.SmallImageNet(str(tmp_path)).arrays("train")
    cache = tmp_path / "small_imagenet" / "imgnet_32x32.npz"
    mtime = cache.stat().st_mtime_ns
    shutil.rmtree(tmp_path / "train_32x32")
    shutil.rmtree(tmp_path / "valid_32x32")
    source = imagenet.SmallImageNet(str(tmp_path))
    np.testing.assert_array_equal(source.arrays("test").images, expected["test"])
    assert source.info().split_sizes == {"train": 7, "test": 3}
    assert cache.stat().st_mtime_ns == mtime
    assert os.listdir(tmp_path / "small_imagenet") == ["imgnet_32x32.npz"]  # no temporary left


def test_invalid_cache_is_reported_not_overwritten(tmp_path):
    write_png_folders(str(tmp_path), 32)
    cache = tmp_path / "small_imagenet" / "imgnet_32x32.npz"
    cache.parent.mkdir()
    np.savez(cache, trainx=np.zeros((2, 32, 32, 3), np.uint8))
    before = cache.read_bytes()
    with pytest.raises(DataError, match="testx.*delete the file"):
        imagenet.SmallImageNet(str(tmp_path)).arrays("train")
    assert cache.read_bytes() == before


def save_grayscale(path):
    Image.fromarray(photo_crops(1, 32)[0]).convert("L").save(path)


def save_rgba(path):
    Image.fromarray(photo_crops(1, 32)[0]).convert("RGBA").save(path)


def save_31_wide(path):
    Image.fromarray(photo_crops(1, 32)[0][:, :31]).save(path)


def save_truncated(path):
    Image.fromarray(photo_crops(1, 32)[0]).save(path)
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[:len(raw) // 2])


def save_jpeg(path):
    Image.fromarray(photo_crops(1, 32)[0]).save(path, format="JPEG")


@pytest.mark.parametrize("save_bad, problem", [
    (save_grayscale, "PNG L image of 32x32"),
    (save_rgba, "PNG RGBA image"),
    (save_31_wide, "of 31x32"),
    (save_truncated, "not a readable PNG"),
    (save_jpeg, "JPEG RGB image"),
])
def test_bad_png_is_named_and_no_cache_is_written(tmp_path, save_bad, problem):
    write_png_folders(str(tmp_path), 32)
    bad = str(tmp_path / "valid_32x32" / "00000005.png")
    save_bad(bad)
    with pytest.raises(DataError, match=problem) as error:
        imagenet.SmallImageNet(str(tmp_path)).arrays("train")
    assert bad in str(error.value)
    assert not os.path.exists(tmp_path / "small_imagenet" / "imgnet_32x32.npz")


def test_missing_or_empty_folders_and_bad_sizes_are_refused(tmp_path):
    with pytest.raises(DataError, match="untar train_32x32.tar"):
        imagenet.SmallImageNet(str(tmp_path)).info()
    write_png_folders(str(tmp_path), 32)
    for name in os.listdir(tmp_path / "valid_32x32"):
        os.remove(tmp_path / "valid_32x32" / name)
    with pytest.raises(DataError, match="valid_32x32 holds no .png files"):
        imagenet.SmallImageNet(str(tmp_path)).arrays("test")
    with pytest.raises(DataError, match="image_size=48"):
        imagenet.SmallImageNet(str(tmp_path), image_size=48).info()


# ------------------------------------------------------------------------------------------------
# Chrabaszcz et al. Imagenet32x32 / Imagenet64x64 npz batches

BATCH_SIZES = [2, 1, 2, 1, 1, 2, 1, 1, 2, 1]  # train_data_batch_1..10
NUM_VAL = 3


def npz_batch(images, labels_1based, with_mean):
    """One batch in the release's format: planar uint8 rows, 1-based integer labels, and the
    float64 mean image in train batches only."""
    data = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1)
    arrays = {"data": data, "labels": np.asarray(labels_1based)}
    if with_mean:
        arrays["mean"] = np.full(data.shape[1], 117.5)
    return arrays


def write_npz_release(root, side, seed=0):
    """The unzipped release under `root`; for 64x64 the train batches lie in two part folders.
    Returns {split: (images, 0-based labels)}."""
    rng = np.random.default_rng(seed)
    images = photo_crops(sum(BATCH_SIZES) + NUM_VAL, side, seed=seed)
    labels = rng.integers(1, 1001, size=len(images))
    labels[:2] = [1, 1000]  # both ends of the 1-based range
    train_folders = ([f"Imagenet{side}_train"] * 10 if side == 32 else
                     ["Imagenet64_train_part1"] * 5 + ["Imagenet64_train_part2"] * 5)
    start = 0
    for k, (count, folder) in enumerate(zip(BATCH_SIZES, train_folders), start=1):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        part = slice(start, start + count)
        np.savez(os.path.join(root, folder, f"train_data_batch_{k}.npz"),
                 **npz_batch(images[part], labels[part], with_mean=True))
        start += count
    os.makedirs(os.path.join(root, f"Imagenet{side}_val"))
    np.savez(os.path.join(root, f"Imagenet{side}_val", "val_data.npz"),
             **npz_batch(images[start:], labels[start:], with_mean=False))
    return {"train": (images[:start], labels[:start] - 1),
            "test": (images[start:], labels[start:] - 1)}


@pytest.mark.parametrize("side", [32, 64])
def test_npz_batches_are_pixel_and_label_exact(tmp_path, side):
    expected = write_npz_release(str(tmp_path), side)
    source = imagenet.ImageNetNpz(str(tmp_path))
    info = source.info()
    assert info.image_shape == (side, side, 3) and info.num_classes == 1000
    assert info.split_sizes == {"train": sum(BATCH_SIZES), "test": NUM_VAL}
    for split, (images, labels) in expected.items():
        got = source.arrays(split)
        assert got.images.dtype == np.uint8 and got.labels.dtype == np.int32
        np.testing.assert_array_equal(got.images, images)
        np.testing.assert_array_equal(got.labels, labels)
    assert source.arrays("train").labels[:2].tolist() == [0, 999]
    assert imagenet.ImageNetNpz(str(tmp_path), image_size=side).info() == info
    with pytest.raises(DataError, match=f"holds {side}x{side} batches but image_size"):
        imagenet.ImageNetNpz(str(tmp_path), image_size=96 - side).info()


def replace_batch(root, name, change):
    path = next(os.path.join(folder, name) for folder, _, files in os.walk(root) if name in files)
    with np.load(path) as batch:
        arrays = change(dict(batch))
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("damage, problem", [
    (lambda root: replace_batch(root, "train_data_batch_4.npz",
                                lambda b: {**b, "labels": b["labels"] * 0}), "labels must be"),
    (lambda root: replace_batch(root, "train_data_batch_4.npz",
                                lambda b: {**b, "labels": b["labels"] + 1000}), "labels must be"),
    (lambda root: replace_batch(root, "train_data_batch_4.npz",
                                lambda b: {**b, "data": b["data"][:, :3000]}), "rows of 3000"),
    (lambda root: replace_batch(root, "train_data_batch_4.npz",
                                lambda b: {**b, "data": np.zeros((1, 12288), np.uint8)}),
     "64x64 images among 32x32"),
    (lambda root: replace_batch(root, "train_data_batch_4.npz",
                                lambda b: {"data": b["data"]}), "'labels' has shape None"),
    (lambda root: open(os.path.join(root, "Imagenet32_train", "train_data_batch_4.npz"),
                       "wb").write(b"not a zip"), "not a readable .npz"),
], ids=["label_0", "label_1001", "short_rows", "mixed_resolution", "no_labels", "not_a_zip"])
def test_bad_batch_is_named(tmp_path, damage, problem):
    write_npz_release(str(tmp_path), 32)
    damage(str(tmp_path))
    with pytest.raises(DataError, match=problem) as error:
        imagenet.ImageNetNpz(str(tmp_path)).arrays("train")
    assert "train_data_batch_4.npz" in str(error.value)


@pytest.mark.parametrize("remove, problem", [
    ("Imagenet32_train/train_data_batch_7.npz", "train_data_batch_7.npz not found"),
    ("Imagenet32_val/val_data.npz", "val_data.npz not found"),
])
def test_missing_batch_is_named(tmp_path, remove, problem):
    write_npz_release(str(tmp_path), 32)
    os.remove(tmp_path / remove)
    with pytest.raises(DataError, match=problem):
        imagenet.ImageNetNpz(str(tmp_path)).info()


def test_duplicate_batches_and_missing_data_dir_are_refused(tmp_path):
    write_npz_release(str(tmp_path / "a"), 32)
    write_npz_release(str(tmp_path / "b"), 32)
    with pytest.raises(DataError, match="in several places"):
        imagenet.ImageNetNpz(str(tmp_path)).info()
    with pytest.raises(DataError, match="does not exist"):
        imagenet.ImageNetNpz(str(tmp_path / "absent")).info()


def test_data_load_serves_both_sets(tmp_path):
    pngs = write_png_folders(str(tmp_path / "oord"), 64)
    batches = list(data.load("imagenet", str(tmp_path / "oord"), "train", image_size=64,
                             batch_size=4).as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), pngs["train"])
    assert all((b[1] == 0).all() for b in batches)

    npz = write_npz_release(str(tmp_path / "npz"), 32)
    assert data.info("imagenet_npz", str(tmp_path / "npz")).num_classes == 1000
    batches = list(data.load("imagenet_npz", str(tmp_path / "npz"), "train",
                             batch_size=4).as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), npz["train"][0])
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), npz["train"][1])
