"""What every data source provides, and the one error type for bad input.

A source is one data set on disk (CIFAR-10, CelebA-HQ TFRecords, a folder, ...). Sources that
hold their pixels in arrays (in memory, or memory-mapped from a cache: `data.cache`) implement
`arrays`; sources streamed from record files implement `records`, which hands each worker only
its own records. Everything after that (shuffling, batching, repeat, prefetch) is
`data.pipeline`'s job and is shared by every source.

This module, and every source module at import, needs no TensorFlow: the data set names (train.py
--help) are known without it.
"""
import dataclasses
from typing import Optional

import numpy as np

SPLITS = ("train", "test")


class DataError(Exception):
    """Missing or malformed data. The message is one line: the file, the problem and the fix."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    image_shape: tuple  # (H, W, C)
    num_classes: int  # 0 when the set carries no labels (every label is then 0)
    split_sizes: dict  # {"train": N, "test": M}
    class_names: tuple = ()
    attribute_names: tuple = ()  # e.g. the 40 CelebA attributes; () when there are none


@dataclasses.dataclass
class Arrays:
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray  # int32 [N]
    attributes: Optional[np.ndarray] = None  # int32 [N, A] (values +-1 for CelebA), or None


class Source:
    """One data set under `data_dir`.

    `image_size` is the requested square side for sources that offer several resolutions or
    resize (folders, CelebA-HQ, ImageNet 32/64); fixed-size sources reject any other value.
    `info()` must be cheap: it may read headers, file lists or a small cached index, never all
    the pixels. `cache_dir` is where sources that decode images keep their decoded cache (None:
    `data.cache.default_root()`). Constructors check nothing; errors surface from
    `info`/`arrays`/`records`.
    """

    name = None
    streamed = False  # True: implements `records`; False: implements `arrays`

    def __init__(self, data_dir, image_size=None, cache_dir=None):
        self.data_dir = data_dir
        self.image_size = image_size
        self.cache_dir = cache_dir

    def info(self) -> DatasetInfo:
        raise NotImplementedError

    def arrays(self, split) -> Arrays:
        """The whole split, in memory or memory-mapped, in a stable order."""
        raise NotImplementedError

    def records(self, split, num_shards=1, shard_index=0):
        """A tf.data.Dataset of the (image uint8 [H,W,C], label int32 [], attributes int32 [A])
        records of one worker's shard (A = 0 when the set has no attributes), in a stable order.
        Together the shards hold every record of the split exactly once."""
        raise NotImplementedError

    def shard_positions(self, split, num_shards=1, shard_index=0):
        """int64 positions in the split's unsharded order of the records `records` yields, in
        the order it yields them."""
        raise NotImplementedError


SOURCES = {}


def register(cls):
    """Class decorator: make a Source available to `data.load(cls.name, ...)`."""
    SOURCES[cls.name] = cls
    return cls


def shard_indices(num_examples, num_shards, shard_index):
    """The examples one shard owns: every num_shards-th, starting at shard_index."""
    return np.arange(shard_index, num_examples, num_shards, dtype=np.int64)


def check_split(split):
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
