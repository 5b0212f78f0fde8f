"""data.fashion_mnist: IDX files read back pixel- and label-exact, bad files named."""
import gzip
import os
import struct

import numpy as np
import pytest
from PIL import Image

import data
from data import fashion_mnist
from data.base import DataError
from data.real32 import photo_path


def grey_crops(count):
    """`count` 28x28 greyscale crops of a real photo."""
    with Image.open(photo_path("skimage", "data/astronaut.png")) as image:
        photo = np.asarray(image.convert("L"))
    return np.stack([photo[28 * (i // 16):28 * (i // 16 + 1), 28 * (i % 16):28 * (i % 16 + 1)]
                     for i in range(count)])


def idx_bytes(array, magic):
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()


def write_set(directory, compress=True, sizes=(("train", 12), ("test", 5))):
    """Fashion-MNIST files of real crops in `directory`; {split: (images, labels)}."""
    written = {}
    offset = 0
    for split, count in sizes:
        images = grey_crops(offset + count)[offset:]
        labels = (np.arange(count, dtype=np.uint8) * 7 + offset) % 10
        offset += count
        images_name, labels_name = fashion_mnist.FILES[split]
        for name, array, magic in ((images_name, images, 0x803), (labels_name, labels, 0x801)):
            payload = idx_bytes(array, magic)
            if compress:
                with gzip.open(os.path.join(directory, name + ".gz"), "wb") as file:
                    file.write(payload)
            else:
                with open(os.path.join(directory, name), "wb") as file:
                    file.write(payload)
        written[split] = (images, labels)
    return written


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_read_back_exactly_and_zero_padded(tmp_path, compress):
    written = write_set(str(tmp_path), compress)
    info = data.info("fashion_mnist", str(tmp_path))
    assert info.split_sizes == {"train": 12, "test": 5} and info.image_shape == (32, 32, 1)
    assert info.num_classes == 10 and info.class_names[9] == "Ankle boot"
    for split, (images, labels) in written.items():
        loaded = data.arrays("fashion_mnist", str(tmp_path), split)
        assert loaded.images.shape == (len(images), 32, 32, 1)
        np.testing.assert_array_equal(loaded.images[:, 2:30, 2:30, 0], images)
        border = loaded.images.copy()
        border[:, 2:30, 2:30] = 0
        assert not border.any()
        np.testing.assert_array_equal(loaded.labels, labels)
        assert loaded.labels.dtype == np.int32
    unpadded = data.arrays("fashion_mnist", str(tmp_path), "test", image_size=28)
    np.testing.assert_array_equal(unpadded.images[..., 0], written["test"][0])
    batches = list(data.load("fashion_mnist", str(tmp_path), "train", batch_size=5))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), written["train"][1])


def rewrite(path, change):
    with gzip.open(path, "rb") as file:
        payload = file.read()
    with gzip.open(path, "wb") as file:
        file.write(change(payload))


def test_truncated_file_is_named(tmp_path):
    write_set(str(tmp_path))
    path = str(tmp_path / "train-images-idx3-ubyte.gz")
    rewrite(path, lambda payload: payload[:-30])
    with pytest.raises(DataError, match=f"{path}: header says .*truncated"):
        data.arrays("fashion_mnist", str(tmp_path), "train")


def test_cut_gzip_stream_is_named(tmp_path):
    write_set(str(tmp_path))
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match=f"{path}: unreadable IDX file"):
        data.arrays("fashion_mnist", str(tmp_path), "test")


def test_wrong_magic_is_named(tmp_path):
    write_set(str(tmp_path))
    path = str(tmp_path / "t10k-labels-idx1-ubyte.gz")
    rewrite(path, lambda payload: struct.pack(">I", 0x803) + payload[4:])
    with pytest.raises(DataError, match=f"{path}: not an IDX file with magic 0x00000801"):
        data.info("fashion_mnist", str(tmp_path))


def test_mismatched_counts_and_labels_are_named(tmp_path):
    write_set(str(tmp_path))
    labels = str(tmp_path / "train-labels-idx1-ubyte.gz")
    rewrite(labels, lambda payload: idx_bytes(np.full(11, 3, np.uint8), 0x801))
    with pytest.raises(DataError, match="12 images but .* has 11 labels"):
        data.arrays("fashion_mnist", str(tmp_path), "train")
    rewrite(labels, lambda payload: idx_bytes(np.full(12, 10, np.uint8), 0x801))
    with pytest.raises(DataError, match=f"{labels}: label 10 outside 0..9"):
        data.arrays("fashion_mnist", str(tmp_path), "train")


def test_missing_files_are_named(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "DEFAULT_DIR", str(tmp_path / "nothing_here"))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        data.info("fashion_mnist", str(tmp_path))
    write_set(str(tmp_path))
    os.remove(tmp_path / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: missing"):
        data.info("fashion_mnist", str(tmp_path))
    with pytest.raises(DataError, match="image_size 32 .* or 28, not 64"):
        data.info("fashion_mnist", str(tmp_path), image_size=64)


@pytest.mark.skipif(not os.path.isdir(fashion_mnist.DEFAULT_DIR),
                    reason="apt-get install dataset-fashion-mnist")
def test_the_installed_set(tmp_path):
    """Debian's files, found when data_dir holds none: the published sizes, 1000 test images
    per class."""
    info = data.info("fashion_mnist", str(tmp_path))
    assert info.split_sizes == {"train": 60000, "test": 10000}
    test = data.arrays("fashion_mnist", str(tmp_path), "test")
    np.testing.assert_array_equal(np.bincount(test.labels), [1000] * 10)
