"""The data layer: every data set behind one `load` call.

    ds = data.load("cifar", "/data/cifar", "train", batch_size=64, shuffle=True, seed=1, epoch=3)

A data set is a `data.base.Source` in its own module; this file only looks sources up by name,
keeps the array ones in a process-wide cache (training re-reads train and test every epoch)
and hands them to `data.pipeline`; `prepare` reads every split of an array set up front.
Sets that decode or resize images (folder, celebahq_images, imagenet's PNG folders) decode once
into a cache that later loads memory-map (`data.cache`); `cache_dir` says where (default
`data.cache.default_root()`).
"""
import os

from data.base import SOURCES, SPLITS, Arrays, DataError, DatasetInfo, check_split, shard_indices

DEFAULT_DATA_SET = "real32"

__all__ = ["load", "info", "prepare", "arrays", "shard_positions", "names", "DEFAULT_DATA_SET",
           "SPLITS", "DataError", "DatasetInfo", "Arrays"]

# (name, data_dir, image_size, cache_dir, split) -> Arrays, read-only so no caller can change what
# the next caller gets.
_ARRAYS_CACHE = {}


def names():
    """The registered data set names, sorted."""
    return sorted(SOURCES)


def _source(name, data_dir, image_size, cache_dir=None):
    if name not in SOURCES:
        raise DataError(f"unknown data set {name!r}: use one of {', '.join(names())}")
    return SOURCES[name](data_dir, image_size, cache_dir)


def _absolute(path):
    return None if path is None else os.path.abspath(path)


def info(name, data_dir, image_size=None, *, cache_dir=None) -> DatasetInfo:
    """Shape, classes and split sizes of a data set, without reading its pixels (real32 builds
    its cache on first use)."""
    return _source(name, data_dir, image_size, cache_dir).info()


def prepare(name, data_dir, image_size=None, *, cache_dir=None):
    """Decode (or map from the cache) every non-empty split of an array data set now, so that a
    broken image anywhere stops a run at its start, not at its first evaluation; the arrays
    stay for the process's later loads. Streamed sets are read as they are trained on."""
    source = _source(name, data_dir, image_size, cache_dir)
    if not source.streamed:
        for split, size in source.info().split_sizes.items():
            if size:
                arrays(name, data_dir, split, image_size, cache_dir=cache_dir)


def arrays(name, data_dir, split, image_size=None, *, cache_dir=None) -> Arrays:
    """A whole split of an array data set (memory-mapped where it is cached), kept for the life
    of the process."""
    check_split(split)
    source = _source(name, data_dir, image_size, cache_dir)
    if source.streamed:
        raise DataError(f"data set {name!r} is streamed from disk and has no in-memory arrays: "
                        f"use data.load({name!r}, ...)")
    key = (name, _absolute(data_dir), image_size, _absolute(cache_dir), split)
    if key not in _ARRAYS_CACHE:
        _ARRAYS_CACHE[key] = _read_only(source.arrays(split))
    return _ARRAYS_CACHE[key]


def shard_positions(name, data_dir, split, num_shards=1, shard_index=0, *, image_size=None,
                    cache_dir=None):
    """int64 positions, in the split's unsharded order, of the examples that
    `data.load(..., num_shards=num_shards, shard_index=shard_index)` yields unshuffled, in that
    order. Shards of array sets and record-sharded streams take every num_shards-th example;
    file-sharded streams (TFRecord sets with at least as many files as shards) take whole
    files, so their shards can differ in size by more than one example."""
    from data import pipeline  # here: importing `data` needs no TensorFlow (train.py --help)
    check_split(split)
    pipeline.Options(num_shards=num_shards, shard_index=shard_index).check()
    source = _source(name, data_dir, image_size, cache_dir)
    if source.streamed:
        return source.shard_positions(split, num_shards, shard_index)
    return shard_indices(source.info().split_sizes[split], num_shards, shard_index)


def _read_only(split_arrays):
    for array in (split_arrays.images, split_arrays.labels, split_arrays.attributes):
        if array is not None:
            array.flags.writeable = False
    return split_arrays


def load(name, data_dir, split, *, image_size=None, batch_size=None, shuffle=False, seed=0,
         epoch=0, num_shards=1, shard_index=0, drop_remainder=False, repeat=False,
         skip_batches=0, with_attributes=False, prefetch=True, cache_dir=None):
    """A tf.data.Dataset of (image uint8 [H,W,C], label int32 []) (+ attributes int32 [A] when
    `with_attributes`), batched ([B,...]) when `batch_size` is given.

    Shards are dealt before shuffling; a shuffled epoch depends on (seed, epoch) only; `repeat`
    continues with epoch+1, epoch+2, ...; `skip_batches` drops that many batches from the start
    of `epoch` (examples when batch_size is None) to resume mid-epoch; drop_remainder=False keeps
    the last partial batch. `shard_positions` says which examples a shard holds. The
    data.pipeline docstring has the details."""
    from data import pipeline  # here: importing `data` needs no TensorFlow (train.py --help)
    check_split(split)
    source = _source(name, data_dir, image_size, cache_dir)
    options = pipeline.Options(batch_size=batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                               num_shards=num_shards, shard_index=shard_index,
                               drop_remainder=drop_remainder, repeat=repeat,
                               skip_batches=skip_batches, with_attributes=with_attributes,
                               prefetch=prefetch)
    options.check()
    if source.streamed:
        return pipeline.from_records(
            source.records(split, num_shards, shard_index), source.info(), options)
    return pipeline.from_arrays(arrays(name, data_dir, split, image_size, cache_dir=cache_dir),
                                options)


# Each source module registers its data set(s) when imported.
from data import celebahq, cifar, fashion_mnist, folder, imagenet, real32  # noqa: E402,F401
