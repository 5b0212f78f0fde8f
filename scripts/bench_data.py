"""Data loading benchmark (not a test): images/s that `data.load` delivers to one process, for
every loader, on data sets this script writes in each loader's exact on-disk format from real
photographs (the ten bundled with scikit-image and scikit-learn, as real32 uses).

  python3 scripts/bench_data.py                          # 20,000 images at 32x32, 2,000 at 256x256
  python3 scripts/bench_data.py --only folder --count32 100000 --count256 20000   # bounded memory

For each loader and size, two fresh processes each read one shuffled epoch of the train split
in batches of 64: the first with an empty cache (so it includes decoding the images into the
cache, for the sets that decode: folder, celebahq_images, imagenet; real32 builds its patches),
the second from that cache. Reported: for the first run, images/s from the data.load call to
the last batch and the CPU cores it used on average (the process and its decoding workers: CPU
seconds / wall seconds); for the later run, the seconds to its first batch (opening the cache,
building the tf.data pipeline) and images/s from then to the last batch; peak RSS (VmHWM) of
both. Sets that do not decode
(cifar, fashion_mnist, imagenet_npz, the TFRecord sets) have no cache: both runs read the files,
which are in the page cache by then.
"""
import argparse
import functools
import gzip
import json
import multiprocessing
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))  # cifar_fixtures: CIFAR's py2 pickles

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from data import real32  # noqa: E402

SETS_32 = ("real32", "cifar", "fashion_mnist", "imagenet", "imagenet_npz", "folder",
           "celebahq", "celebahq_pggan", "celebahq_images")
SETS_256 = ("folder", "celebahq", "celebahq_pggan", "celebahq_images")
CACHED = ("folder", "celebahq_images")  # their cache lives in --cache_dir


# ---------------------------------------------------------------------------------------------
# Writing the data sets

@functools.lru_cache(maxsize=None)
def photos():
    return [real32.read_photo(real32.photo_path(package, path))
            for _, package, path in real32.PHOTOS]


def crop(all_photos, index, side, seed):
    """Crop `index` of a stream of side x side crops at seeded places of the photos."""
    rng = np.random.default_rng([seed, index])
    photo = all_photos[index % len(all_photos)]
    top = rng.integers(0, photo.shape[0] - side + 1)
    left = rng.integers(0, photo.shape[1] - side + 1)
    return photo[top:top + side, left:left + side]


def crops(count, side, seed=0):
    all_photos = photos()
    return np.stack([crop(all_photos, i, side, seed) for i in range(count)])


def _write_files(job):
    folder, names, side, seed, first, extension = job
    all_photos = photos()
    for offset, name in enumerate(names):
        image = Image.fromarray(crop(all_photos, first + offset, side, seed))
        image.save(os.path.join(folder, name + extension), quality=95)


def write_images(folder, names, side, seed=0, extension=".png"):
    """One image file per name, crop i of the stream for name i, written by a process per CPU."""
    os.makedirs(folder, exist_ok=True)
    step = 500
    jobs = [(folder, names[i:i + step], side, seed, i, extension)
            for i in range(0, len(names), step)]
    with multiprocessing.get_context("fork").Pool(len(os.sched_getaffinity(0))) as pool:
        pool.map(_write_files, jobs)


def write_tfrecords(path, images, channels_first=False):
    """Records as glow's generate.py (HWC) or PGGAN's dataset_tool.py (CHW) write them."""
    import tensorflow as tf
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for image in images:
            pixels = np.ascontiguousarray(np.transpose(image, [2, 0, 1]) if channels_first
                                          else image)
            feature = {
                "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=pixels.shape)),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[0])),
                "data": tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[pixels.tobytes()]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                         .SerializeToString())


def write_set(name, root, side, count):
    """Write `name` at `side` with `count` train images (and about a tenth as many test) under
    root; returns (data_dir, image_size)."""
    tests = max(1, count // 10)
    data_dir = os.path.join(root, f"{name}_{side}")
    if name == "real32":
        return data_dir, None
    if name == "cifar":
        from cifar_fixtures import write_batches
        images = crops(count + tests, 32)
        labels = np.arange(count + tests) % 10
        os.makedirs(data_dir)
        write_batches(data_dir, images[:count], labels[:count], images[count:], labels[count:])
        return data_dir, 32
    if name == "fashion_mnist":
        images = crops(count + tests, 28)[..., 1]
        os.makedirs(data_dir)
        for split, part in (("train", images[:count]), ("t10k", images[count:])):
            with gzip.open(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz"), "wb") as f:
                f.write(struct.pack(">IIII", 0x803, len(part), 28, 28) + part.tobytes())
            with gzip.open(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz"), "wb") as f:
                f.write(struct.pack(">II", 0x801, len(part)) +
                        (np.arange(len(part)) % 10).astype(np.uint8).tobytes())
        return data_dir, 32
    if name == "imagenet":
        for prefix, number in (("train", count), ("valid", tests)):
            write_images(os.path.join(data_dir, f"{prefix}_32x32"),
                         [f"{i:08d}" for i in range(number)], 32, seed=len(prefix))
        return data_dir, 32
    if name == "imagenet_npz":
        images = crops(count + tests, 32)
        planar = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
        labels = np.arange(len(images)) % 1000 + 1
        os.makedirs(data_dir)
        for k, part in enumerate(np.array_split(np.arange(count), 10), start=1):
            np.savez(os.path.join(data_dir, f"train_data_batch_{k}.npz"), data=planar[part],
                     labels=labels[part], mean=planar[:count].mean(0))
        np.savez(os.path.join(data_dir, "val_data.npz"), data=planar[count:],
                 labels=labels[count:])
        return data_dir, 32
    if name == "folder":
        write_images(data_dir, [f"{i:06d}" for i in range(count + tests)], side)
        return data_dir, side
    if name == "celebahq_images":  # JPEGs, as the resized CelebA-HQ copies come
        write_images(os.path.join(data_dir, "CelebA-HQ-img"),
                     [str(i) for i in range(count + tests)], side, extension=".jpg")
        return data_dir, side
    log2 = side.bit_length() - 1
    if name == "celebahq":  # glow's layout: 120 train and 40 validation shards for the full set
        for folder, number, shards in (("train", count, 120), ("validation", tests, 40)):
            shards = min(shards, number)
            for index, part in enumerate(np.array_split(np.arange(number), shards)):
                path = os.path.join(data_dir, folder,
                                    f"{folder}-r{log2:02d}-s-{index:04d}-of-{shards:04d}.tfrecords")
                write_tfrecords(path, (crop(photos(), int(i), side, len(folder))
                                       for i in part))
        return data_dir, side
    if name == "celebahq_pggan":  # one CHW file; its first tenth is the test split
        write_tfrecords(os.path.join(data_dir, f"celebahq-r{log2:02d}.tfrecords"),
                        (crop(photos(), i, side, 3) for i in range(count + tests + 1)),
                        channels_first=True)
        return data_dir, side
    raise ValueError(name)


# ---------------------------------------------------------------------------------------------
# Measuring, each run in its own process

def peak_rss_mib():
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not carried over from the
    process that started it)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(name, data_dir, image_size, cache_dir, batch_size):
    """One shuffled epoch of the train split through data.load; prints a json line."""
    import data
    started, cpu_started = time.perf_counter(), os.times()
    count, first_batch_at, first_batch = 0, None, 0
    for images, _ in data.load(name, data_dir, "train", image_size=image_size,
                               batch_size=batch_size, shuffle=True, seed=0, cache_dir=cache_dir):
        count += int(images.shape[0])
        if first_batch_at is None:
            first_batch_at, first_batch = time.perf_counter(), count
    ended, cpu = time.perf_counter(), os.times()
    cpu_seconds = sum(getattr(cpu, f) - getattr(cpu_started, f)
                      for f in ("user", "system", "children_user", "children_system"))
    print(json.dumps({
        "images": count, "images_per_s": count / (ended - started),
        "steady_images_per_s": (count - first_batch) / (ended - first_batch_at),
        "first_batch_s": first_batch_at - started, "cores": cpu_seconds / (ended - started),
        "rss_mib": peak_rss_mib()}))


def run_measure(name, data_dir, image_size, cache_dir, batch_size):
    command = [sys.executable, os.path.abspath(__file__), "--measure", name, data_dir,
               str(image_size or 0), cache_dir, "--batch_size", str(batch_size)]
    result = subprocess.run(command, capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if result.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def clear_caches(name, data_dir, cache_dir):
    shutil.rmtree(cache_dir, ignore_errors=True)
    for built in ("real32", "small_imagenet"):  # caches these sets keep under data_dir
        shutil.rmtree(os.path.join(data_dir, built), ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count32", type=int, default=20000, help="train images at 32x32")
    parser.add_argument("--count256", type=int, default=2000, help="train images at 256x256")
    parser.add_argument("--sizes", default="32,256")
    parser.add_argument("--only", default=None, help="comma-separated loaders (default all)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--work_dir", default=None,
                        help="where to write the data sets (default a temporary folder, removed)")
    parser.add_argument("--measure", nargs=4, metavar=("NAME", "DATA_DIR", "SIZE", "CACHE_DIR"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        name, data_dir, size, cache_dir = args.measure
        measure(name, data_dir, int(size) or None, cache_dir, args.batch_size)
        return
    only = set(args.only.split(",")) if args.only else None
    work = args.work_dir or tempfile.mkdtemp(prefix="bench_data_")
    print(f"{len(os.sched_getaffinity(0))} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"data in {work}", flush=True)
    print("| loader | size | train images | first run: img/s incl. cache build (cores used) | "
          "later run: s to first batch | later run: img/s after it | peak RSS MiB first, later |")
    print("|---|---|---|---|---|---|---|")
    try:
        for side in [int(s) for s in args.sizes.split(",")]:
            count = args.count32 if side == 32 else args.count256
            for name in SETS_32 if side == 32 else SETS_256:
                if only and name not in only:
                    continue
                data_dir, image_size = write_set(name, work, side, count)
                cache_dir = os.path.join(work, "cache")
                clear_caches(name, data_dir, cache_dir)
                first = run_measure(name, data_dir, image_size, cache_dir, args.batch_size)
                later = run_measure(name, data_dir, image_size, cache_dir, args.batch_size)
                print(f"| {name} | {side} | {first['images']} | {first['images_per_s']:,.0f} "
                      f"({first['cores']:.2f}) | {later['first_batch_s']:.2f} | "
                      f"{later['steady_images_per_s']:,.0f} | {first['rss_mib']:,.0f}, "
                      f"{later['rss_mib']:,.0f} |", flush=True)
                shutil.rmtree(data_dir, ignore_errors=True)
                shutil.rmtree(cache_dir, ignore_errors=True)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
