"""data.pipeline: sharding, seeded shuffling, resuming, batching, for in-memory and streamed data.

The examples are 32x32 crops of a real photo whose label is their index, so every check can say
exactly which example arrived, and that its pixels are the right ones.
"""
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import data
from data import pipeline
from data.base import Arrays, DataError, DatasetInfo
from data.real32 import photo_path

NUM_EXAMPLES = 37  # prime: no batch size or shard count below divides it


@pytest.fixture(scope="module")
def crops():
    with Image.open(photo_path("skimage", "data/astronaut.png")) as image:
        photo = np.asarray(image.convert("RGB"))
    windows = [photo[y:y + 32, x:x + 32] for y in range(0, 512, 32) for x in range(0, 512, 32)]
    images = np.stack(windows[:NUM_EXAMPLES])
    attributes = np.stack([np.arange(NUM_EXAMPLES), -np.arange(NUM_EXAMPLES)], 1)
    return Arrays(images=images, labels=np.arange(NUM_EXAMPLES, dtype=np.int32),
                  attributes=attributes.astype(np.int32))


def run(split_arrays, **kwargs):
    """Labels in the order the dataset yields them, per batch; checks every image's pixels."""
    options = pipeline.Options(**kwargs)
    options.check()
    batches = []
    for element in pipeline.from_arrays(split_arrays, options):
        images, labels = element[0].numpy(), element[1].numpy()
        np.testing.assert_array_equal(images, split_arrays.images[labels])
        batches.append(labels)
    return batches


def order(split_arrays, **kwargs):
    return np.concatenate([np.atleast_1d(b) for b in run(split_arrays, **kwargs)])


def test_unshuffled_order_is_stable_and_sharded_round_robin(crops):
    np.testing.assert_array_equal(order(crops), np.arange(NUM_EXAMPLES))
    np.testing.assert_array_equal(order(crops, batch_size=5), np.arange(NUM_EXAMPLES))
    np.testing.assert_array_equal(order(crops, num_shards=2, shard_index=1),
                                  np.arange(1, NUM_EXAMPLES, 2))


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("batch_size", [None, 4])
def test_shards_cover_every_example_exactly_once(crops, shuffle, batch_size):
    seen = np.concatenate([order(crops, shuffle=shuffle, seed=3, epoch=2, batch_size=batch_size,
                                 num_shards=2, shard_index=shard) for shard in (0, 1)])
    np.testing.assert_array_equal(np.sort(seen), np.arange(NUM_EXAMPLES))


def test_shuffle_depends_on_seed_and_epoch_only(crops):
    first = order(crops, shuffle=True, seed=7, epoch=0)
    np.testing.assert_array_equal(np.sort(first), np.arange(NUM_EXAMPLES))
    np.testing.assert_array_equal(order(crops, shuffle=True, seed=7, epoch=0, batch_size=6), first)
    assert not np.array_equal(first, np.arange(NUM_EXAMPLES))
    assert not np.array_equal(order(crops, shuffle=True, seed=7, epoch=1), first)
    assert not np.array_equal(order(crops, shuffle=True, seed=8, epoch=0), first)


def test_last_partial_batch_is_kept_unless_dropped(crops):
    batches = run(crops, batch_size=10)
    assert [len(b) for b in batches] == [10, 10, 10, 7]
    dropped = pipeline.from_arrays(crops, pipeline.Options(batch_size=10, drop_remainder=True))
    assert dropped.element_spec[0].shape.as_list() == [10, 32, 32, 3]
    assert [len(b) for b in run(crops, batch_size=10, drop_remainder=True)] == [10, 10, 10]


@pytest.mark.parametrize("batch_size", [None, 5])
def test_skip_batches_resumes_exactly(crops, batch_size):
    common = dict(shuffle=True, seed=11, epoch=4, batch_size=batch_size)
    full = run(crops, **common)
    resumed = run(crops, skip_batches=3, **common)
    assert len(resumed) == len(full) - 3
    for expected, got in zip(full[3:], resumed):
        np.testing.assert_array_equal(got, expected)


def test_repeat_walks_consecutive_epochs_and_resumes_across_them(crops):
    options = pipeline.Options(shuffle=True, seed=5, epoch=2, repeat=True, batch_size=8)
    stream = pipeline.from_arrays(crops, options).unbatch().map(lambda image, label: label)
    labels = np.array(list(stream.take(3 * NUM_EXAMPLES).as_numpy_iterator()))
    for k in range(3):
        np.testing.assert_array_equal(labels[k * NUM_EXAMPLES:(k + 1) * NUM_EXAMPLES],
                                      order(crops, shuffle=True, seed=5, epoch=2 + k))
    resumed = pipeline.from_arrays(crops, pipeline.Options(shuffle=True, seed=5, epoch=2,
                                                           repeat=True, batch_size=8,
                                                           skip_batches=6))
    resumed_labels = np.concatenate([b[1].numpy() for b in resumed.take(4)])
    np.testing.assert_array_equal(resumed_labels, labels[48:80])


def test_attributes_travel_with_their_example(crops):
    options = pipeline.Options(shuffle=True, seed=1, batch_size=6, with_attributes=True)
    for images, labels, attributes in pipeline.from_arrays(crops, options):
        np.testing.assert_array_equal(attributes.numpy(), crops.attributes[labels.numpy()])
    unlabelled = Arrays(images=crops.images, labels=crops.labels)
    element = next(iter(pipeline.from_arrays(unlabelled, options)))
    assert element[2].shape == (6, 0) and element[2].dtype == tf.int32


def records_of(crops):
    return tf.data.Dataset.from_tensor_slices((crops.images, crops.labels, crops.attributes))


def stream(crops, **kwargs):
    """Like `run` for a streamed source, which hands the pipeline one worker's records (dealt
    round-robin here, as a source without whole files per worker does)."""
    info = DatasetInfo("stream", (32, 32, 3), 0, {"train": NUM_EXAMPLES, "test": 0})
    own = records_of(crops).shard(kwargs.get("num_shards", 1), kwargs.get("shard_index", 0))
    dataset = pipeline.from_records(own, info, pipeline.Options(**kwargs))
    batches = []
    for element in dataset:
        images, labels = element[0].numpy(), element[1].numpy()
        np.testing.assert_array_equal(images, crops.images[labels])
        if kwargs.get("with_attributes"):
            np.testing.assert_array_equal(element[2].numpy(), crops.attributes[labels])
        batches.append(np.atleast_1d(labels))
    return batches


def test_streamed_sharding_shuffle_and_resume(crops):
    np.testing.assert_array_equal(np.concatenate(stream(crops)), np.arange(NUM_EXAMPLES))
    for shuffle in (False, True):
        seen = np.concatenate([np.concatenate(stream(crops, shuffle=shuffle, batch_size=4,
                                                     num_shards=2, shard_index=shard))
                               for shard in (0, 1)])
        np.testing.assert_array_equal(np.sort(seen), np.arange(NUM_EXAMPLES))
    common = dict(shuffle=True, seed=2, epoch=1, batch_size=5, with_attributes=True)
    full = stream(crops, **common)
    assert [len(b) for b in full] == [5] * 7 + [2]
    assert not np.array_equal(np.concatenate(full), np.arange(NUM_EXAMPLES))
    np.testing.assert_array_equal(np.concatenate(stream(crops, **common)), np.concatenate(full))
    other_epoch = np.concatenate(stream(crops, shuffle=True, seed=2, epoch=2, batch_size=5))
    assert not np.array_equal(other_epoch, np.concatenate(full))
    resumed = stream(crops, skip_batches=2, **common)
    np.testing.assert_array_equal(np.concatenate(resumed), np.concatenate(full[2:]))


@pytest.mark.parametrize("bad, message", [
    (dict(batch_size=0), "batch_size"), (dict(num_shards=2, shard_index=2), "shard_index"),
    (dict(seed=-1), "seed"), (dict(skip_batches=-1), "skip_batches")])
def test_impossible_options_are_refused(bad, message):
    with pytest.raises(DataError, match=message):
        data.load("real32", "/nonexistent", "train", **bad)


def test_unknown_names_and_splits_are_refused():
    with pytest.raises(DataError, match="unknown data set 'nope'.*real32"):
        data.info("nope", "/tmp")
    with pytest.raises(DataError, match="unknown split 'valid'"):
        data.load("real32", "/tmp", "valid")
    assert data.DEFAULT_DATA_SET in data.names() and data.names() == sorted(data.names())


def test_arrays_are_read_once_and_cannot_be_changed(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    with Image.open(photo_path("skimage", "data/chelsea.png")) as image:
        image.crop((0, 0, 64, 64)).save(folder / "cat.png")
    first = data.arrays("folder", str(folder), "train")
    os.remove(folder / "cat.png")  # a second read from disk would now fail
    assert data.arrays("folder", str(folder), "train") is first
    with pytest.raises(ValueError):
        first.images[0, 0, 0, 0] = 1
