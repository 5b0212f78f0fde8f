"""data/cifar.py: CIFAR-10 python batches, read pixel- and label-exact from files written in the
official format."""
import hashlib
import io
import os
import pickle
import pickletools

import numpy as np
import pytest

from cifar_fixtures import py2_pickle, write_archive, write_batches, LABEL_NAMES
from photo_crops import photo_crops
import data
from data import cifar
from data.base import DataError

NUM_TRAIN, NUM_TEST = 17, 5  # over 5 train batch files of 4 or 3 images


@pytest.fixture(scope="module")
def photos():
    images = photo_crops(NUM_TRAIN + NUM_TEST, 32, seed=1)
    labels = np.random.default_rng(2).integers(0, 10, size=NUM_TRAIN + NUM_TEST)
    return {"train": (images[:NUM_TRAIN], labels[:NUM_TRAIN]),
            "test": (images[NUM_TRAIN:], labels[NUM_TRAIN:])}


@pytest.fixture
def batch_dir(tmp_path, photos):
    return write_batches(str(tmp_path), *photos["train"], *photos["test"])


@pytest.fixture
def no_network(monkeypatch):
    """Every download attempt fails at once, as on a machine without internet."""
    calls = []

    def refuse(url, timeout=None):
        calls.append(url)
        raise OSError("network is unreachable")

    monkeypatch.setattr(cifar, "urlopen", refuse)
    return calls


def assert_split_equal(source, split, photos):
    images, labels = photos[split]
    got = source.arrays(split)
    assert got.images.dtype == np.uint8 and got.images.shape == (len(images), 32, 32, 3)
    assert got.labels.dtype == np.int32
    np.testing.assert_array_equal(got.images, images)
    np.testing.assert_array_equal(got.labels, labels)


def test_fixture_is_a_python2_pickle_like_the_official_files(batch_dir, photos):
    with open(os.path.join(batch_dir, "data_batch_1"), "rb") as f:
        raw = f.read()
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(raw)]
    assert ("SHORT_BINSTRING", "data") in ops and ("SHORT_BINSTRING", "labels") in ops
    assert ("GLOBAL", "numpy.core.multiarray _reconstruct") in ops
    assert not any(name in ("BINUNICODE", "SHORT_BINBYTES", "BINBYTES") for name, _ in ops)
    assert not any(name == "GLOBAL" and arg.startswith("_codecs") for name, arg in ops)
    # encoding='bytes' gives bytes keys, as keras gets from the real files
    batch = pickle.loads(raw, encoding="bytes")
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
    # the planar layout: the first 32 values are the top row of red, value 1024 starts green
    first = photos["train"][0][0]
    np.testing.assert_array_equal(batch[b"data"][0, :32], first[0, :, 0])
    np.testing.assert_array_equal(batch[b"data"][0, 1024:1056], first[0, :, 1])


def test_arrays_are_pixel_and_label_exact(batch_dir, photos):
    source = cifar.Cifar10(os.path.dirname(batch_dir))
    assert_split_equal(source, "train", photos)
    assert_split_equal(source, "test", photos)


def test_info_reports_shape_classes_sizes_and_meta_names(batch_dir):
    info = cifar.Cifar10(os.path.dirname(batch_dir)).info()
    assert info.name == "cifar" and info.image_shape == (32, 32, 3) and info.num_classes == 10
    assert info.split_sizes == {"train": NUM_TRAIN, "test": NUM_TEST}
    assert info.class_names == tuple(LABEL_NAMES)
    meta = os.path.join(batch_dir, "batches.meta")
    rewrite(meta, lambda m: {**m, "label_names": [n.upper() for n in m["label_names"]]})
    names = cifar.Cifar10(os.path.dirname(batch_dir)).info().class_names
    assert names == tuple(n.upper() for n in LABEL_NAMES)
    os.remove(meta)  # optional: the standard names stand in
    assert cifar.Cifar10(os.path.dirname(batch_dir)).info().class_names == tuple(LABEL_NAMES)


def test_reads_the_pixel_cnn_folder_layout(tmp_path, photos):
    write_batches(str(tmp_path / "cifar-10-python"), *photos["train"], *photos["test"])
    assert_split_equal(cifar.Cifar10(str(tmp_path)), "test", photos)


def test_archive_is_extracted_once_next_to_itself(tmp_path, photos, no_network):
    batches = write_batches(str(tmp_path / "build"), *photos["train"], *photos["test"])
    archive = write_archive(batches, str(tmp_path / "cifar-10-python.tar.gz"))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    os.replace(archive, data_dir / "cifar-10-python.tar.gz")
    assert_split_equal(cifar.Cifar10(str(data_dir)), "train", photos)
    assert sorted(os.listdir(data_dir)) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    extracted = data_dir / "cifar-10-batches-py" / "test_batch"
    mtime = extracted.stat().st_mtime_ns
    assert_split_equal(cifar.Cifar10(str(data_dir)), "test", photos)
    assert extracted.stat().st_mtime_ns == mtime and no_network == []


def test_truncated_archive_is_named_and_leaves_no_folder(tmp_path, photos, no_network):
    batches = write_batches(str(tmp_path / "build"), *photos["train"], *photos["test"])
    archive = write_archive(batches, str(tmp_path / "build" / "whole.tar.gz"))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    raw = open(archive, "rb").read()
    (data_dir / "cifar-10-python.tar.gz").write_bytes(raw[:len(raw) * 2 // 3])
    with pytest.raises(DataError, match="could not extract") as error:
        cifar.Cifar10(str(data_dir)).arrays("test")
    assert str(data_dir / "cifar-10-python.tar.gz") in str(error.value)
    assert os.listdir(data_dir) == ["cifar-10-python.tar.gz"] and no_network == []


class FakeResponse(io.BytesIO):
    def __init__(self, payload):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def test_download_checks_sha256_then_extracts(tmp_path, photos, monkeypatch):
    archive = write_archive(write_batches(str(tmp_path / "build"), *photos["train"],
                                          *photos["test"]), str(tmp_path / "served.tar.gz"))
    payload = open(archive, "rb").read()
    requested = []

    def serve(url, timeout=None):
        requested.append(url)
        return FakeResponse(payload)

    monkeypatch.setattr(cifar, "urlopen", serve)
    data_dir = tmp_path / "fresh"
    with pytest.raises(DataError, match="sha256"):  # the official hash cannot match the fixture
        cifar.Cifar10(str(data_dir)).arrays("test")
    assert os.listdir(data_dir) == []  # no archive, no partial file

    monkeypatch.setattr(cifar, "ARCHIVE_SHA256", hashlib.sha256(payload).hexdigest())
    assert_split_equal(cifar.Cifar10(str(data_dir)), "test", photos)
    assert requested == [cifar.URL, cifar.URL]
    assert sorted(os.listdir(data_dir)) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_missing_data_and_failed_download_say_where_to_get_and_put_the_file(tmp_path, no_network):
    data_dir = tmp_path / "nothing_here"
    with pytest.raises(DataError) as error:
        cifar.Cifar10(str(data_dir)).info()
    message = str(error.value)
    assert cifar.URL in message and str(data_dir / "cifar-10-python.tar.gz") in message
    assert no_network == [cifar.URL] and not data_dir.exists()


def rewrite(path, change):
    batch = pickle.load(open(path, "rb"), encoding="latin1")
    with open(path, "wb") as f:
        f.write(py2_pickle(change(batch)))


def truncate(path):
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[:len(raw) // 2])


def short_rows(path):
    rewrite(path, lambda b: {**b, "data": np.ascontiguousarray(b["data"][:, :3000])})


def float_data(path):
    rewrite(path, lambda b: {**b, "data": b["data"].astype(np.float32)})


def cifar100_keys(path):
    rewrite(path, lambda b: {"data": b["data"], "fine_labels": b["labels"]})


def label_ten(path):
    rewrite(path, lambda b: {**b, "labels": [10] + b["labels"][1:]})


def one_label_short(path):
    rewrite(path, lambda b: {**b, "labels": b["labels"][:-1]})


class RunsShell:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def code_execution(path):
    open(path, "wb").write(pickle.dumps({"data": RunsShell()}, protocol=2))


@pytest.mark.parametrize("damage, problem", [
    (truncate, "not a readable pickle"),
    (short_rows, r"shape \(3, 3000\)"),
    (float_data, "float32"),
    (cifar100_keys, "lack"),
    (label_ten, "labels span"),
    (one_label_short, "labels"),
    (code_execution, "refusing to load global"),
])
def test_damaged_batch_is_a_data_error_naming_the_file(batch_dir, damage, problem, no_network):
    path = os.path.join(batch_dir, "data_batch_3")
    damage(path)
    with pytest.raises(DataError, match=problem) as error:
        cifar.Cifar10(os.path.dirname(batch_dir)).arrays("train")
    assert path in str(error.value)


def test_missing_test_batch_is_named(batch_dir, no_network):
    os.remove(os.path.join(batch_dir, "test_batch"))
    with pytest.raises(DataError, match="test_batch is missing"):
        cifar.Cifar10(os.path.dirname(batch_dir)).info()
    assert no_network == []


def test_other_image_size_is_refused(batch_dir):
    with pytest.raises(DataError, match="32x32"):
        cifar.Cifar10(os.path.dirname(batch_dir), image_size=64).info()


def test_data_load_serves_cifar_in_file_order(batch_dir, photos):
    data_dir = os.path.dirname(batch_dir)
    assert data.info("cifar", data_dir).split_sizes == {"train": NUM_TRAIN, "test": NUM_TEST}
    batches = list(data.load("cifar", data_dir, "test", batch_size=3).as_numpy_iterator())
    assert [len(labels) for _, labels in batches] == [3, 2]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), photos["test"][0])
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), photos["test"][1])
