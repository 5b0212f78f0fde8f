"""data.real32: the embedded set is deterministic, spatially split, pixel-exact and its cache is
guarded by a checksum."""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import data
from data import real32
from data.base import DataError


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """real32 built once through the public API; (data_dir, the cached arrays)."""
    data_dir = str(tmp_path_factory.mktemp("real32_a"))
    data.info("real32", data_dir)
    return data_dir, real32.read_cache(os.path.join(data_dir, "real32"))


def footprints(meta):
    """[N, 4] (y0, y1, x0, x1) in photo pixels of each patch's source window."""
    source, scale, y0, x0 = meta.T
    return np.stack([y0, y0 + 32 * scale, x0, x0 + 32 * scale], 1)


def test_build_is_deterministic(built, tmp_path, capfd):
    data_dir, first = built
    data.info("real32", str(tmp_path))
    assert "\r" not in capfd.readouterr().err  # off a terminal: no progress bar redraws
    second = real32.read_cache(str(tmp_path / "real32"))
    for key in real32.ARRAY_KEYS:
        np.testing.assert_array_equal(second[key], first[key])
    index = [json.loads((path / "real32" / "real32.json").read_text())
             for path in (tmp_path, type(tmp_path)(data_dir))]
    assert index[0]["sha256"] == index[1]["sha256"] == real32.checksum(first)


def test_sizes_and_classes_match_the_reference(built):
    data_dir, cached = built
    info = data.info("real32", data_dir)
    assert info.split_sizes == {"train": 2547, "test": 378}
    assert info.image_shape == (32, 32, 3) and info.num_classes == 10
    assert info.class_names[0] == "astronaut" and info.class_names[-1] == "flower"
    for split, per_scale in (("train", {1: 1977, 2: 465, 4: 105}), ("test", {1: 321, 2: 57})):
        scales, counts = np.unique(cached[split + "meta"][:, 1], return_counts=True)
        assert dict(zip(scales.tolist(), counts.tolist())) == per_scale
        np.testing.assert_array_equal(cached[split + "y"], cached[split + "meta"][:, 0])
        assert set(cached[split + "y"].tolist()) == set(range(10))


def test_no_train_pixel_is_in_a_test_patch(built):
    _, cached = built
    train, test = footprints(cached["trainmeta"]), footprints(cached["testmeta"])
    for source in range(10):
        a = train[cached["trainmeta"][:, 0] == source]
        b = test[cached["testmeta"][:, 0] == source]
        assert a[:, 3].max() < b[:, 2].min()
        overlap_y = (a[:, None, 0] < b[None, :, 1]) & (b[None, :, 0] < a[:, None, 1])
        overlap_x = (a[:, None, 2] < b[None, :, 3]) & (b[None, :, 2] < a[:, None, 3])
        assert not (overlap_y & overlap_x).any()


def test_patches_are_box_means_of_the_photo_windows(built):
    """Every patch equals the rounded mean of its footprint in the (reduced) photo, computed
    here from the raw file; patches are distinct and none is flat."""
    _, cached = built
    for source, (_, package, relative_path) in enumerate(real32.PHOTOS):
        with Image.open(real32.photo_path(package, relative_path)) as image:
            photo = np.asarray(image.convert("RGB")).astype(np.float64)
        if max(photo.shape[:2]) > 768:
            h, w = photo.shape[0] // 2 * 2, photo.shape[1] // 2 * 2
            photo = np.floor(photo[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean((1, 3)) + 0.5)
        for split in ("train", "test"):
            mine = cached[split + "meta"][:, 0] == source
            for patch, (_, scale, y0, x0) in zip(cached[split + "x"][mine],
                                                 cached[split + "meta"][mine]):
                window = photo[y0:y0 + 32 * scale, x0:x0 + 32 * scale]
                expected = np.floor(window.reshape(32, scale, 32, scale, 3).mean((1, 3)) + 0.5)
                np.testing.assert_array_equal(patch, expected)
    every = np.concatenate([cached["trainx"], cached["testx"]]).reshape(-1, 32 * 32 * 3)
    assert len(np.unique(every, axis=0)) == len(every)
    assert every.std(axis=1).min() >= 4


def test_public_api_serves_the_cache(built):
    data_dir, cached = built
    for split in ("train", "test"):
        split_arrays = data.arrays("real32", data_dir, split)
        np.testing.assert_array_equal(split_arrays.images, cached[split + "x"])
        np.testing.assert_array_equal(split_arrays.labels, cached[split + "y"])
    images, labels = zip(*data.load("real32", data_dir, "test", batch_size=100))
    np.testing.assert_array_equal(np.concatenate(images), cached["testx"])
    np.testing.assert_array_equal(np.concatenate(labels), cached["testy"])


def test_info_reads_only_the_index(built, monkeypatch):
    data_dir, _ = built

    def refuse(*args, **kwargs):
        raise AssertionError("info() read the pixels")

    monkeypatch.setattr(np, "load", refuse)
    monkeypatch.setattr(real32, "build", refuse)
    assert data.info("real32", data_dir).split_sizes["test"] == 378


@pytest.fixture
def cache_copy(built, tmp_path):
    data_dir, _ = built
    shutil.copytree(os.path.join(data_dir, "real32"), tmp_path / "real32")
    return tmp_path


def test_a_changed_array_fails_the_checksum_and_is_kept(cache_copy):
    path = cache_copy / "real32" / "real32.npz"
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["testx"][0, 0, 0, 0] ^= 1
    np.savez_compressed(path, **arrays)
    before = path.read_bytes()
    with pytest.raises(DataError, match=f"{path}.*sha256.*delete"):
        data.arrays("real32", str(cache_copy), "train")
    assert path.read_bytes() == before


def test_a_truncated_cache_is_reported_and_kept(cache_copy):
    path = cache_copy / "real32" / "real32.npz"
    path.write_bytes(path.read_bytes()[:100000])
    with pytest.raises(DataError, match=f"{path}: corrupt real32 cache.*delete"):
        data.arrays("real32", str(cache_copy), "test")
    assert path.stat().st_size == 100000


def test_a_missing_index_is_reported(cache_copy):
    os.remove(cache_copy / "real32" / "real32.json")
    with pytest.raises(DataError, match="real32.json.*delete"):
        data.info("real32", str(cache_copy))
    assert not (cache_copy / "real32" / "real32.json").exists()


def test_other_sizes_and_no_data_dir_are_refused(built):
    data_dir, _ = built
    with pytest.raises(DataError, match="image_size=64"):
        data.info("real32", data_dir, image_size=64)
    with pytest.raises(DataError, match="data_dir"):
        data.info("real32", None)
