"""data.cache: decoded once, memory-mapped after; rebuilt only when the listing changes; one
builder at a time; a bad image or an interruption never leaves a readable partial cache."""
import hashlib
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from photo_crops import photo_crops
import data
from data import cache, folder, images, imagenet, pipeline
from data.base import DataError, shard_indices

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_folder(root, count, side=16, seed=0):
    """`count` real-photo PNGs of side x side in `root`; returns them in sorted-name order."""
    os.makedirs(root, exist_ok=True)
    crops = photo_crops(count, side, seed=seed)
    for index, crop in enumerate(crops):
        Image.fromarray(crop).save(os.path.join(root, f"{index:05d}.png"))
    return crops


def train_part(crops):
    """The folder set's train split: all but every 10th image."""
    return crops[[i for i in range(len(crops)) if i % 10 != 9]]


def cache_files(cache_dir):
    return sorted(name for _, _, names in os.walk(cache_dir) for name in names)


def test_first_load_builds_later_loads_map_the_same_pixels_without_decoding(tmp_path,
                                                                            monkeypatch):
    root, cache_dir = str(tmp_path / "photos"), str(tmp_path / "cache")
    crops = write_folder(root, 30)
    monkeypatch.setattr(cache, "CHUNK_BYTES", 5 * 16 * 16 * 3)  # 6 chunks: the parallel path
    built = folder.Folder(root, 16, cache_dir).arrays("train")
    np.testing.assert_array_equal(built.images, train_part(crops))
    assert isinstance(built.images, np.memmap) and not built.images.flags.writeable
    files = cache_files(cache_dir)
    assert len(files) == 2 and "train-16x16.json" in files  # and the pixels' .npy

    def no_decoding(path, size):
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(images, "square_rgb", no_decoding)
    reused = folder.Folder(root, 16, cache_dir).arrays("train")
    np.testing.assert_array_equal(reused.images, built.images)
    assert cache_files(cache_dir) == files
    # pixels whose manifest was never written (a builder stopped between them) are kept
    os.remove(os.path.join(cache.source_folder(cache_dir, "folder", root), "train-16x16.json"))
    np.testing.assert_array_equal(folder.Folder(root, 16, cache_dir).arrays("train").images,
                                  built.images)
    assert cache_files(cache_dir) == files
    assert sorted(os.listdir(root)) == [f"{i:05d}.png" for i in range(30)]


def test_a_changed_listing_rebuilds_and_says_so_in_one_line(tmp_path, capsys):
    root, cache_dir = str(tmp_path / "photos"), str(tmp_path / "cache")
    crops = write_folder(root, 20)
    old = folder.Folder(root, 16, cache_dir).arrays("train")
    old_files = cache_files(cache_dir)
    capsys.readouterr()
    extra = photo_crops(1, 16, seed=9)[0]
    Image.fromarray(extra).save(os.path.join(root, "00007b.png"))  # sorts after 00007.png
    os.remove(os.path.join(root, "00003.png"))
    new = folder.Folder(root, 16, cache_dir).arrays("train")
    lines = [line for line in capsys.readouterr().err.splitlines() if "rebuilding" in line]
    assert lines == [f"folder {root}: changed since its cache was built (1 added, 1 removed, "
                     f"0 modified); rebuilding its train cache in "
                     f"{cache.source_folder(cache_dir, 'folder', root)}"]
    listed = [crops[i] for i in range(8) if i != 3] + [extra] + list(crops[8:])
    np.testing.assert_array_equal(new.images, train_part(np.stack(listed)))
    np.testing.assert_array_equal(old.images, train_part(crops))  # a mapped old file stays valid
    new_files = cache_files(cache_dir)
    assert len(new_files) == 2 and not set(new_files) & (set(old_files) - {"train-16x16.json"})


def test_a_damaged_manifest_or_pixel_file_is_rebuilt_with_one_line(tmp_path, capsys):
    root, cache_dir = str(tmp_path / "photos"), str(tmp_path / "cache")
    crops = write_folder(root, 12)
    folder.Folder(root, 16, cache_dir).arrays("train")
    place = cache.source_folder(cache_dir, "folder", root)
    pixels = os.path.join(place, [f for f in os.listdir(place) if f.endswith(".npy")][0])
    with open(pixels, "r+b") as file:
        file.truncate(os.path.getsize(pixels) - 1)
    capsys.readouterr()
    np.testing.assert_array_equal(folder.Folder(root, 16, cache_dir).arrays("train").images,
                                  train_part(crops))
    [line] = [line for line in capsys.readouterr().err.splitlines() if "rebuilding" in line]
    assert line.startswith(f"folder {root}: cached pixels {pixels} are missing or unreadable")
    with open(os.path.join(place, "train-16x16.json"), "w") as file:
        file.write("{not json")
    np.testing.assert_array_equal(folder.Folder(root, 16, cache_dir).arrays("train").images,
                                  train_part(crops))
    assert "train-16x16.json is unreadable" in capsys.readouterr().err


@pytest.mark.parametrize("chunk_images", [1, 100])  # the parallel path, and one chunk in-process
def test_a_broken_image_is_named_and_leaves_no_cache(tmp_path, monkeypatch, chunk_images):
    root, cache_dir = str(tmp_path / "photos"), str(tmp_path / "cache")
    write_folder(root, 25)
    bad = os.path.join(root, "00017.png")
    with open(bad, "r+b") as file:
        file.truncate(100)
    monkeypatch.setattr(cache, "CHUNK_BYTES", chunk_images * 16 * 16 * 3)
    with pytest.raises(DataError, match=f"^{bad}: cannot decode image"):
        data.arrays("folder", root, "train", image_size=16, cache_dir=cache_dir)
    assert cache_files(cache_dir) == []


def test_imagenet_pngs_decode_in_parallel_into_a_memory_mapped_pixel_cnn_npz(tmp_path,
                                                                             monkeypatch):
    monkeypatch.setattr(cache, "CHUNK_BYTES", 2 * 32 * 32 * 3)
    expected = {}
    for split, prefix, count in (("train", "train", 9), ("test", "valid", 4)):
        expected[split] = write_folder(str(tmp_path / f"{prefix}_32x32"), count, 32, seed=count)
    source = imagenet.SmallImageNet(str(tmp_path))
    for split in ("train", "test"):
        got = source.arrays(split).images
        assert isinstance(got, np.memmap)
        np.testing.assert_array_equal(got, expected[split])
    npz = tmp_path / "small_imagenet" / "imgnet_32x32.npz"
    with zipfile.ZipFile(npz) as archive:
        assert {m.compress_type for m in archive.infolist()} == {zipfile.ZIP_STORED}
    with np.load(npz) as arrays:  # what openai/pixel-cnn reads
        np.testing.assert_array_equal(arrays["testx"], expected["test"])


def test_a_compressed_npz_of_theirs_is_read_into_memory(tmp_path):
    pixels = {"trainx": photo_crops(5, 32, seed=1), "testx": photo_crops(2, 32, seed=2)}
    (tmp_path / "small_imagenet").mkdir()
    np.savez_compressed(tmp_path / "small_imagenet" / "imgnet_32x32.npz", **pixels)
    got = imagenet.SmallImageNet(str(tmp_path)).arrays("train").images
    assert not isinstance(got, np.memmap)
    np.testing.assert_array_equal(got, pixels["trainx"])


def mapped_kilobytes(path):
    """Resident kB of this process's mappings of `path` (from /proc/self/smaps)."""
    total, current = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:
                current = len(fields) >= 6 and fields[5] == path
            elif current and fields[0] == "Rss:":
                total += int(fields[1])
    return total


def test_an_epoch_reads_the_cache_without_mapping_it_into_memory(tmp_path):
    root, cache_dir = str(tmp_path / "photos"), str(tmp_path / "cache")
    crops = write_folder(root, 400, side=32)
    pixels = data.arrays("folder", root, "train", image_size=32, cache_dir=cache_dir).images
    seen = []
    for batch_images, _ in data.load("folder", root, "train", image_size=32, batch_size=32,
                                     shuffle=True, seed=4, num_shards=2, shard_index=1,
                                     cache_dir=cache_dir):
        seen.append(batch_images.numpy())
    seen = np.concatenate(seen)
    own = shard_indices(len(pixels), 2, 1)
    expected = train_part(crops)[pipeline.epoch_order(own, 4, 0)]
    np.testing.assert_array_equal(seen, expected)
    assert mapped_kilobytes(pixels.filename) == 0  # the reads went through pread
    np.testing.assert_array_equal(pixels[own], train_part(crops)[own])
    assert mapped_kilobytes(pixels.filename) > 0  # reading through the mapping would count


CHILD = """
import hashlib, os, sys, time
sys.path.insert(0, {repo!r})
import numpy as np
import data
from data import cache, images

cache.CHUNK_BYTES = 16 * 16 * 3  # a chunk per image


def slow(path, size):  # slow enough for the test to act mid-build
    time.sleep({delay})
    return images.resize_square(images.read_image(path), size)


images.square_rgb = slow
open({ready!r}, "w").close()
while not os.path.exists({go!r}):
    time.sleep(0.01)
pixels = data.arrays("folder", {root!r}, "train", image_size=16, cache_dir={cache_dir!r}).images
print(hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest())
"""


def start_child(tmp_path, name, root, cache_dir, delay):
    ready, go = str(tmp_path / f"{name}.ready"), str(tmp_path / "go")
    code = CHILD.format(repo=REPO, delay=delay, ready=ready, go=go, root=root,
                        cache_dir=cache_dir)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    return child, ready


def wait_for(condition, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def digest(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def test_two_processes_at_once_build_once_and_read_the_same_pixels(tmp_path):
    root, cache_dir = str(tmp_path / "photos"), str(tmp_path / "cache")
    crops = write_folder(root, 80)
    children = [start_child(tmp_path, name, root, cache_dir, delay=0.02) for name in "ab"]
    wait_for(lambda: all(os.path.exists(ready) for _, ready in children))
    open(tmp_path / "go", "w").close()
    outputs = [child.communicate(timeout=300) for child, _ in children]
    assert [child.returncode for child, _ in children] == [0, 0], outputs
    assert [out.strip() for out, _ in outputs] == [digest(train_part(crops))] * 2
    builders = [err for _, err in outputs if "caching folder train 16x16" in err]
    waiters = [err for _, err in outputs if "waiting for another process that is caching" in err]
    assert len(builders) == 1 and len(waiters) == 1 and builders != waiters
    assert len(cache_files(cache_dir)) == 2


def test_a_killed_build_leaves_nothing_readable_and_the_next_load_resumes(tmp_path, capsys):
    root, cache_dir = str(tmp_path / "photos"), str(tmp_path / "cache")
    crops = write_folder(root, 200)
    child, ready = start_child(tmp_path, "killed", root, cache_dir, delay=0.05)
    wait_for(lambda: os.path.exists(ready))
    open(tmp_path / "go", "w").close()
    place = cache.source_folder(cache_dir, "folder", root)

    def finished_chunks():
        logs = [f for f in cache_files(cache_dir) if f.endswith(".done")]
        return len(open(os.path.join(place, logs[0])).readlines()) if logs else 0

    wait_for(lambda: finished_chunks() >= 10 or child.poll() is not None)
    os.killpg(child.pid, signal.SIGKILL)  # the builder and its decoding workers
    child.communicate()
    assert child.returncode == -signal.SIGKILL
    left = cache_files(cache_dir)
    assert left and all(name.endswith((".partial", ".partial.done")) for name in left)
    capsys.readouterr()
    pixels = data.arrays("folder", root, "train", image_size=16, cache_dir=cache_dir).images
    np.testing.assert_array_equal(pixels, train_part(crops))
    [line] = [line for line in capsys.readouterr().err.splitlines() if "resuming" in line]
    resumed = int(line.split("resuming an interrupted build, ")[1].split(" of ")[0])
    assert resumed >= 10 and line.endswith(f" of {len(train_part(crops))} images already decoded")
    assert len(cache_files(cache_dir)) == 2
