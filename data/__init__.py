"""The data layer: every data set behind one `load` call.

    ds = data.load("cifar", "/data/cifar", "train", batch_size=64, shuffle=True, seed=1, epoch=3)

A data set is a `data.base.Source` in its own module; this file only looks sources up by name,
keeps the in-memory ones in a process-wide cache (training re-reads train and test every epoch)
and hands them to `data.pipeline`.
"""
import os

from data import pipeline
from data.base import SOURCES, SPLITS, Arrays, DataError, DatasetInfo, check_split

DEFAULT_DATA_SET = "real32"

__all__ = ["load", "info", "arrays", "names", "DEFAULT_DATA_SET", "SPLITS", "DataError",
           "DatasetInfo", "Arrays"]

# (name, data_dir, image_size, split) -> Arrays, read-only so no caller can change what the next
# caller gets.
_ARRAYS_CACHE = {}


def names():
    """The registered data set names, sorted."""
    return sorted(SOURCES)


def _source(name, data_dir, image_size):
    if name not in SOURCES:
        raise DataError(f"unknown data set {name!r}: use one of {', '.join(names())}")
    return SOURCES[name](data_dir, image_size)


def info(name, data_dir, image_size=None) -> DatasetInfo:
    """Shape, classes and split sizes of a data set, without reading its pixels (real32 builds
    its cache on first use)."""
    return _source(name, data_dir, image_size).info()


def arrays(name, data_dir, split, image_size=None) -> Arrays:
    """A whole split of an in-memory data set, cached for the life of the process."""
    check_split(split)
    source = _source(name, data_dir, image_size)
    if source.streamed:
        raise DataError(f"data set {name!r} is streamed from disk and has no in-memory arrays: "
                        f"use data.load({name!r}, ...)")
    key = (name, None if data_dir is None else os.path.abspath(data_dir), image_size, split)
    if key not in _ARRAYS_CACHE:
        _ARRAYS_CACHE[key] = _read_only(source.arrays(split))
    return _ARRAYS_CACHE[key]


def _read_only(split_arrays):
    for array in (split_arrays.images, split_arrays.labels, split_arrays.attributes):
        if array is not None:
            array.flags.writeable = False
    return split_arrays


def load(name, data_dir, split, *, image_size=None, batch_size=None, shuffle=False, seed=0,
         epoch=0, num_shards=1, shard_index=0, drop_remainder=False, repeat=False,
         skip_batches=0, with_attributes=False, prefetch=True):
    """A tf.data.Dataset of (image uint8 [H,W,C], label int32 []) (+ attributes int32 [A] when
    `with_attributes`), batched ([B,...]) when `batch_size` is given.

    Shards are dealt before shuffling; a shuffled epoch depends on (seed, epoch) only; `repeat`
    continues with epoch+1, epoch+2, ...; `skip_batches` drops that many batches from the start
    of `epoch` (examples when batch_size is None) to resume mid-epoch; drop_remainder=False keeps
    the last partial batch. The data.pipeline docstring has the details."""
    check_split(split)
    source = _source(name, data_dir, image_size)
    options = pipeline.Options(batch_size=batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                               num_shards=num_shards, shard_index=shard_index,
                               drop_remainder=drop_remainder, repeat=repeat,
                               skip_batches=skip_batches, with_attributes=with_attributes,
                               prefetch=prefetch)
    options.check()
    if source.streamed:
        return pipeline.from_records(source.records(split), source.info(), options)
    return pipeline.from_arrays(arrays(name, data_dir, split, image_size), options)


# Each source module registers its data set(s) when imported.
from data import celebahq, cifar, fashion_mnist, folder, imagenet, real32  # noqa: E402,F401
