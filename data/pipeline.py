"""The tf.data pipeline every source shares: shard, shuffle, repeat, batch, skip, prefetch.

Order is a pure function of the arguments. Sharding comes first and deals example i to shard
i % num_shards, so every example belongs to exactly one worker (streamed sources shard their own
records, by whole files where they can: `data.base.Source.records`). A shuffled epoch is a
permutation seeded by (seed, epoch) alone: a run resumed at `epoch` rebuilds the very same order
and skips the `skip_batches` batches it has already trained on. With `repeat`, epoch e+k follows
epoch e+k-1 in one stream, and batches run across the epoch boundary as in any repeated dataset.

Array sources never put their pixels into the graph (ImageNet 32x32 alone is 3.9 GB): the
pipeline moves example indices, and a numpy gather turns each batch of indices into pixels. A
memory-mapped array (a decoded cache) is gathered with pread instead of through the mapping, so
the pages a training process has read do not pile up in its resident memory: it stays bounded
whatever the data set's size, while all processes still share the one page-cache copy.
"""
import dataclasses
import mmap
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from data.base import Arrays, DataError, DatasetInfo, shard_indices

# Unbatched in-memory datasets still gather this many examples per numpy call, then unbatch.
GATHER_CHUNK = 256
# A streamed shuffle buffer holds at most this many bytes of images (and 10000 examples).
SHUFFLE_BUFFER_BYTES = 1 << 30
MAX_SHUFFLE_BUFFER = 10000


@dataclasses.dataclass(frozen=True)
class Options:
    batch_size: Optional[int] = None
    shuffle: bool = False
    seed: int = 0
    epoch: int = 0
    num_shards: int = 1
    shard_index: int = 0
    drop_remainder: bool = False
    repeat: bool = False
    skip_batches: int = 0
    with_attributes: bool = False
    prefetch: bool = True

    def check(self):
        if self.batch_size is not None and self.batch_size < 1:
            raise DataError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.num_shards < 1 or not 0 <= self.shard_index < self.num_shards:
            raise DataError(f"shard_index must lie in [0, num_shards): got shard_index="
                            f"{self.shard_index}, num_shards={self.num_shards}")
        for field in ("seed", "epoch", "skip_batches"):
            if getattr(self, field) < 0:
                raise DataError(f"{field} must be >= 0, got {getattr(self, field)}")


def epoch_order(indices, seed, epoch):
    """The order of `indices` in one shuffled epoch; depends on (seed, epoch) only."""
    return np.random.default_rng([seed, epoch]).permutation(indices)


def _epochs(options):
    """The epoch numbers the dataset walks through: one, or all from `epoch` on."""
    if options.repeat:
        return tf.data.Dataset.range(options.epoch, np.iinfo(np.int64).max)
    return tf.data.Dataset.from_tensors(tf.constant(options.epoch, tf.int64))


def _index_stream(num_examples, options):
    """Example indices in the order the dataset will yield them."""
    if not options.shuffle:
        indices = tf.data.Dataset.range(num_examples).shard(options.num_shards,
                                                            options.shard_index)
        return indices.repeat() if options.repeat else indices
    own = shard_indices(num_examples, options.num_shards, options.shard_index)

    def one_epoch(epoch):
        order = tf.numpy_function(lambda e: epoch_order(own, options.seed, int(e)), [epoch],
                                  tf.int64)
        order.set_shape([len(own)])
        return tf.data.Dataset.from_tensor_slices(order)

    return _epochs(options).flat_map(one_epoch)


def row_reader(array):
    """A function indices -> array[indices]. For an array memory-mapped whole from a file, the
    rows are read with pread into a fresh buffer rather than through the mapping."""
    if not (isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap)
            and array.flags.c_contiguous and len(array)):
        return lambda indices: array[indices]
    file = open(array.filename, "rb", buffering=0)
    row_bytes = array[0].nbytes

    def read_rows(indices):
        rows = np.empty((len(indices),) + array.shape[1:], array.dtype)
        for row, index in zip(rows, indices):
            if os.preadv(file.fileno(), [row], array.offset + int(index) * row_bytes) != row_bytes:
                raise DataError(f"{array.filename}: shorter than its header says; delete it to "
                                f"rebuild the cache")
        return rows

    return read_rows


def from_arrays(split_arrays: Arrays, options: Options) -> tf.data.Dataset:
    """Dataset over an array split; elements as described in `data.load`."""
    images = split_arrays.images
    labels = np.asarray(split_arrays.labels, np.int32)
    attributes = split_arrays.attributes
    if attributes is None:
        attributes = np.zeros([len(images), 0], np.int32)
    columns = [images, labels] + ([np.asarray(attributes, np.int32)] if options.with_attributes
                                  else [])
    readers = [row_reader(column) for column in columns]

    def gather(batch_indices):
        return [read(batch_indices) for read in readers]

    def gather_op(batch_indices):
        tensors = tf.numpy_function(gather, [batch_indices], [c.dtype for c in columns])
        batch = options.batch_size if options.drop_remainder else None
        for tensor, column in zip(tensors, columns):
            tensor.set_shape((batch,) + column.shape[1:])
        return tuple(tensors)

    indices = _index_stream(len(images), options)
    if options.batch_size is None:
        dataset = indices.skip(options.skip_batches).batch(GATHER_CHUNK)
        dataset = dataset.map(gather_op, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    else:
        dataset = indices.batch(options.batch_size, drop_remainder=options.drop_remainder)
        dataset = dataset.skip(options.skip_batches)
        dataset = dataset.map(gather_op, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE) if options.prefetch else dataset


def shuffle_buffer_size(image_shape):
    """Examples held by a streamed shuffle: as many as fit SHUFFLE_BUFFER_BYTES, 1..10000."""
    return int(np.clip(SHUFFLE_BUFFER_BYTES // int(np.prod(image_shape)), 1, MAX_SHUFFLE_BUFFER))


def epoch_shuffle_seed(seed, epoch):
    """One tf.data shuffle seed per (seed, epoch)."""
    return seed * 1_000_003 + epoch


def from_records(records: tf.data.Dataset, info: DatasetInfo, options: Options):
    """Dataset over one worker's shard of a streamed split of (image, label, attributes)
    records (the source has sharded them already; options.num_shards is not applied again).

    The shuffle is a buffer of `shuffle_buffer_size` examples seeded by (seed, epoch); it is
    reproducible run to run (tf.data also mixes in the global seed, so keep
    tf.random.set_seed the same when resuming).
    """
    if options.shuffle:
        buffer = shuffle_buffer_size(info.image_shape)
        dataset = _epochs(options).flat_map(
            lambda epoch: records.shuffle(buffer, seed=epoch_shuffle_seed(options.seed, epoch),
                                          reshuffle_each_iteration=False))
    else:
        dataset = records.repeat() if options.repeat else records
    if not options.with_attributes:
        dataset = dataset.map(lambda image, label, attributes: (image, label))
    if options.batch_size is None:
        dataset = dataset.skip(options.skip_batches)
    else:
        dataset = dataset.batch(options.batch_size, drop_remainder=options.drop_remainder)
        dataset = dataset.skip(options.skip_batches)
    return dataset.prefetch(tf.data.AUTOTUNE) if options.prefetch else dataset
