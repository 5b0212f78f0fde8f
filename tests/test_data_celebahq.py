"""CelebA-HQ sources (data/celebahq.py): glow shards, PGGAN files and image folders.

Fixtures are written at run time in the exact public formats, from real photos (scikit-image),
and read back pixel- and attribute-exactly, in the documented order.
"""
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from skimage import data as skdata

import data
from data import celebahq
from data.base import DataError


def photos(count, size):
    """`count` different real-photo crops, each size x size RGB uint8."""
    sources = [skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket()]
    crops = []
    for i in range(count):
        photo = sources[i % len(sources)]
        side = min(photo.shape[:2]) // 2
        top, left = (i // len(sources)) * 17, (i // len(sources)) * 23
        crop = Image.fromarray(photo[top:top + side, left:left + side])
        crops.append(np.asarray(crop.resize((size, size), Image.BILINEAR)))
    return np.stack(crops)


def random_attributes(count, seed):
    return np.random.default_rng(seed).choice([-1, 1], size=(count, 40)).astype(np.int32)


def int64s(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def example(shape, data, attributes=None):
    """A record as glow's generate.py / PGGAN's dataset_tool.py write it."""
    feature = {"shape": int64s(shape),
               "data": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
               "label": int64s([0])}
    if attributes is not None:
        feature["attr"] = int64s(attributes)
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_records(path, records):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)


def shard_path(root, folder, log2_size, index, total):
    return os.path.join(root, folder, f"{folder}-r{log2_size:02d}-s-{index:04d}-of-{total:04d}"
                                      f".tfrecords")


def write_glow(root, shard_sizes, size, seed, with_attributes=True):
    """glow CelebA-HQ shards at one resolution -> {split: (images, attributes)} in shard order."""
    expected = {}
    for split, folder in (("train", "train"), ("test", "validation")):
        count = sum(shard_sizes[split])
        images = photos(count + seed, size)[seed:]
        attributes = random_attributes(count, seed)
        # Highest shard first, so that file creation order is not the reading order.
        for index in reversed(range(len(shard_sizes[split]))):
            start = sum(shard_sizes[split][:index])
            stop = start + shard_sizes[split][index]
            write_records(shard_path(root, folder, size.bit_length() - 1, index,
                                     len(shard_sizes[split])),
                          [example(img.shape, img.tobytes(), attr if with_attributes else None)
                           for img, attr in zip(images[start:stop], attributes[start:stop])])
        expected[split] = (images, attributes if with_attributes else np.zeros([count, 0]))
    return expected


def read_all(dataset):
    images, labels, attributes = zip(*[(i.numpy(), l.numpy(), a.numpy()) for i, l, a in dataset])
    return np.stack(images), np.array(labels), np.stack(attributes)


def read_arrays(source, split):
    """(images, labels, attributes) of a split of an array source (celebahq_images)."""
    split_arrays = source.arrays(split)
    return split_arrays.images, split_arrays.labels, split_arrays.attributes


SHARDS = {"train": [3, 2, 4], "test": [2, 1]}


@pytest.fixture(scope="module")
def glow_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("celeba-tfr"))
    expected16 = write_glow(root, SHARDS, 16, seed=0)
    expected8 = write_glow(root, {"train": [2, 2], "test": [1]}, 8, seed=5)
    return root, expected8, expected16


def test_glow_shards_read_back_exactly_in_shard_order(glow_dir):
    root, expected8, expected16 = glow_dir
    for size, expected in ((16, expected16), (8, expected8)):
        source = celebahq.CelebAHQ(root, image_size=size)
        info = source.info()
        assert info.image_shape == (size, size, 3) and info.num_classes == 0
        assert info.split_sizes == {s: len(expected[s][0]) for s in ("train", "test")}
        assert info.attribute_names == celebahq.CELEBA_ATTRIBUTES
        for split in ("train", "test"):
            images, labels, attributes = read_all(source.records(split))
            np.testing.assert_array_equal(images, expected[split][0])
            np.testing.assert_array_equal(attributes, expected[split][1])
            assert labels.dtype == np.int32 and not labels.any()


def test_attribute_names_are_the_celeba_columns():
    names = celebahq.CELEBA_ATTRIBUTES
    assert len(set(names)) == 40 and names[0] == "5_o_Clock_Shadow" and names[-1] == "Young"
    assert names.index("Smiling") == 31 and names.index("Male") == 20


def test_glow_shards_without_attr_give_empty_attributes(tmp_path):
    expected = write_glow(str(tmp_path), {"train": [2, 1], "test": [1]}, 8, seed=2,
                          with_attributes=False)
    source = celebahq.CelebAHQ(str(tmp_path), image_size=8)
    assert source.info().attribute_names == ()
    images, _, attributes = read_all(source.records("train"))
    np.testing.assert_array_equal(images, expected["train"][0])
    assert attributes.shape == (3, 0)


def test_missing_shard_is_named(tmp_path):
    root = str(tmp_path)
    write_glow(root, SHARDS, 8, seed=0)
    missing = shard_path(root, "train", 3, 1, 3)
    os.remove(missing)
    with pytest.raises(DataError, match=f"1 of 3 shards missing: {missing}"):
        celebahq.CelebAHQ(root, image_size=8).info()
    os.rename(shard_path(root, "train", 3, 2, 3), shard_path(root, "train", 3, 2, 4))
    with pytest.raises(DataError, match=r"disagree on the shard count \(of-\[3, 4\]\)"):
        celebahq.CelebAHQ(root, image_size=8).info()


def test_no_matching_files_lists_the_sizes_present(glow_dir, tmp_path):
    # openai/glow#69: glow's reader dies with an IndexError here.
    with pytest.raises(DataError, match=r"no files match .*train-r05-s-\*-of-\*\.tfrecords "
                                        r"\(image sizes present: 8, 16\)"):
        celebahq.CelebAHQ(glow_dir[0], image_size=32).info()
    with pytest.raises(DataError, match=r"image sizes present: none"):
        celebahq.CelebAHQ(str(tmp_path)).info()
    with pytest.raises(DataError, match="power of two"):
        celebahq.CelebAHQ(glow_dir[0], image_size=12).info()


def test_truncated_shard_is_named_before_reading(tmp_path):
    root = str(tmp_path)
    write_glow(root, SHARDS, 8, seed=0)
    path = shard_path(root, "validation", 3, 0, 2)
    with open(path, "rb") as f:
        content = f.read()
    with open(path, "wb") as f:
        f.write(content[:-40])
    with pytest.raises(DataError, match=f"{path}: truncated or corrupt TFRecord"):
        celebahq.CelebAHQ(root, image_size=8).records("train")


def test_corrupt_record_contents_fail_while_reading(tmp_path):
    root = str(tmp_path)
    write_glow(root, SHARDS, 8, seed=0)
    path = shard_path(root, "train", 3, 2, 3)
    with open(path, "rb") as f:
        content = bytearray(f.read())
    content[len(content) // 2] ^= 0xFF  # inside the second record's pixels: its CRC fails
    with open(path, "wb") as f:
        f.write(bytes(content))
    with pytest.raises(tf.errors.DataLossError):
        read_all(celebahq.CelebAHQ(root, image_size=8).records("train"))


def test_wrong_data_length_and_shape_name_the_file(tmp_path):
    root = str(tmp_path)
    write_glow(root, {"train": [1], "test": [1]}, 8, seed=0, with_attributes=False)
    good = photos(1, 8)[0]
    path = shard_path(root, "train", 3, 0, 1)
    write_records(path, [example(good.shape, good.tobytes()),
                         example(good.shape, good.tobytes()[:-3])])
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"bytes instead of 192 in.*{path}"):
        read_all(celebahq.CelebAHQ(root, image_size=8).records("train"))
    write_records(path, [example(good.shape, good.tobytes()),
                         example([4, 16, 3], good.tobytes())])
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"shape.*instead of.*{path}"):
        read_all(celebahq.CelebAHQ(root, image_size=8).records("train"))
    write_records(path, [example([4, 16, 3], good.tobytes())])
    with pytest.raises(DataError, match=f"{path}: records have shape \\[4, 16, 3\\]"):
        celebahq.CelebAHQ(root, image_size=8).info()


def write_pggan(root, count, size, seed, prefix="celebahq"):
    images = photos(count + seed, size)[seed:]
    write_records(os.path.join(root, f"{prefix}-r{size.bit_length() - 1:02d}.tfrecords"),
                  [example([3, size, size], np.transpose(img, [2, 0, 1]).tobytes())
                   for img in images])
    return images


@pytest.fixture(scope="module")
def pggan_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("pggan"))
    return root, write_pggan(root, 12, 16, seed=0), write_pggan(root, 10, 8, seed=3)


def test_pggan_chw_records_split_first_tenth_test(pggan_dir):
    root, images16, images8 = pggan_dir
    for size, images in ((16, images16), (8, images8)):
        source = celebahq.CelebAHQPGGAN(root, image_size=size)
        info = source.info()
        assert info.split_sizes == {"train": len(images) - 1, "test": 1}
        assert info.attribute_names == () and info.image_shape == (size, size, 3)
        test_images, _, attributes = read_all(source.records("test"))
        train_images, labels, _ = read_all(source.records("train"))
        np.testing.assert_array_equal(test_images, images[:1])
        np.testing.assert_array_equal(train_images, images[1:])
        assert attributes.shape == (1, 0) and not labels.any()


def test_pggan_bad_layouts(pggan_dir, tmp_path):
    with pytest.raises(DataError, match=r"no file matches .*-r05\.tfrecords \(image sizes "
                                        r"present: 8, 16\)"):
        celebahq.CelebAHQPGGAN(pggan_dir[0], image_size=32).info()
    root = str(tmp_path)
    write_pggan(root, 10, 8, seed=0, prefix="a")
    write_pggan(root, 10, 8, seed=0, prefix="b")
    with pytest.raises(DataError, match="2 files match"):
        celebahq.CelebAHQPGGAN(root, image_size=8).info()
    os.remove(os.path.join(root, "b-r03.tfrecords"))
    write_pggan(root, 9, 8, seed=0, prefix="a")  # 10% of 9 records is no record
    with pytest.raises(DataError, match="the 'test' split of .* is empty"):
        celebahq.CelebAHQPGGAN(root, image_size=8).records("test")
    write_records(os.path.join(root, "a-r03.tfrecords"), [
        example([8, 8, 3], photos(1, 8)[0].tobytes())])  # HWC shape: a glow file, not PGGAN
    with pytest.raises(DataError, match=r"records have shape \[8, 8, 3\], expected \[3, 8, 8\]"):
        celebahq.CelebAHQPGGAN(root, image_size=8).info()


def attribute_file_text(names, rows, count=None):
    lines = [str(len(rows) if count is None else count), " ".join(celebahq.CELEBA_ATTRIBUTES)]
    lines += [f"{name} " + " ".join(str(v) for v in values) for name, values in zip(names, rows)]
    return "\n".join(lines) + "\n"


def write_image_folder(root, count, size, extension=".png", attribute_file=None):
    """CelebAMask-HQ layout: CelebA-HQ-img/<i><ext> + attribute file with lines out of order."""
    images = photos(count, size)
    attributes = random_attributes(count, seed=7)
    folder = os.path.join(root, celebahq.IMAGE_FOLDER)
    os.makedirs(folder, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(os.path.join(folder, f"{i}{extension}"))
    order = np.random.default_rng(0).permutation(count)
    with open(os.path.join(root, attribute_file or celebahq.ATTRIBUTE_FILES[0]), "w") as f:
        f.write(attribute_file_text([f"{i}{extension}" for i in order], attributes[order]))
    return images, attributes


def test_image_folder_png_exact_with_numeric_order(tmp_path):
    root = str(tmp_path)
    images, attributes = write_image_folder(root, 11, 16)
    source = celebahq.CelebAHQImages(root, image_size=16)
    info = source.info()
    assert info.split_sizes == {"train": 10, "test": 1}
    assert info.attribute_names == celebahq.CELEBA_ATTRIBUTES
    # Numeric order 0, 1, ..., 10 (10.png sorts after 9.png): the last 10% is image 10.
    train_images, labels, train_attributes = read_arrays(source, "train")
    test_images, _, test_attributes = read_arrays(source, "test")
    np.testing.assert_array_equal(train_images, images[:10])
    np.testing.assert_array_equal(test_images, images[10:])
    np.testing.assert_array_equal(train_attributes, attributes[:10])
    np.testing.assert_array_equal(test_attributes, attributes[10:])
    assert not labels.any()


def test_image_folder_jpeg_resized_without_attributes(tmp_path):
    root = str(tmp_path)
    photo = skdata.chelsea()  # 300 x 451: centre-cropped to a square, then resized
    for i in range(3):
        Image.fromarray(photo).save(os.path.join(root, f"{i:05d}.jpg"), quality=95)
    source = celebahq.CelebAHQImages(root, image_size=32)
    assert source.info().attribute_names == ()
    images, _, attributes = read_arrays(source, "train")
    square = photo[:, (451 - 300) // 2:(451 - 300) // 2 + 300]
    reference = np.asarray(Image.fromarray(square).resize((32, 32), Image.BOX), np.float64)
    assert images.shape == (3, 32, 32, 3) and attributes.shape == (3, 0)
    assert np.abs(images[0].astype(np.float64) - reference).mean() < 6


def test_attribute_lines_find_images_by_number(tmp_path):
    # The attribute file names 0.jpg ...; the folder holds PNG conversions 0.png ...
    root = str(tmp_path)
    images, attributes = write_image_folder(root, 10, 8, attribute_file="list_attr_celeba.txt")
    text = open(os.path.join(root, "list_attr_celeba.txt")).read().replace(".png", ".jpg")
    with open(os.path.join(root, "list_attr_celeba.txt"), "w") as f:
        f.write(text)
    _, _, read_attributes = read_arrays(celebahq.CelebAHQImages(root, image_size=8), "train")
    np.testing.assert_array_equal(read_attributes, attributes[:9])


def rewrite_lines(path, edit):
    with open(path) as f:
        lines = f.read().splitlines()
    with open(path, "w") as f:
        f.write("\n".join(edit(lines)) + "\n")


@pytest.mark.parametrize("edit, message", [
    (lambda lines: lines[:-1], r"says 6 images but 5 lines follow"),
    (lambda lines: ["5"] + lines[1:-1], r"\.png has no line in .*anno\.txt"),
    (lambda lines: lines[:-1] + ["9.png" + lines[-1][5:]], r"anno\.txt:8: names 9\.png, which "
                                                           r"is not in"),
    (lambda lines: lines[:-1] + [lines[-1].rsplit(" ", 1)[0]], r"anno\.txt:8: expected an image "
                                                               r"file name and 40 values"),
    (lambda lines: lines[:-1] + [lines[-1][:-2] + " 0"], r"anno\.txt:8: expected .* 1 or -1"),
    (lambda lines: lines[:-1] + [lines[2]], r"anno\.txt:8: second line for image"),
    (lambda lines: lines[:1] + [lines[1].rsplit(" ", 1)[0]] + lines[2:], r"anno\.txt:2: expected "
                                                                         r"40 distinct"),
])
def test_mismatched_attribute_file_names_file_and_line(tmp_path, edit, message):
    root = str(tmp_path)
    write_image_folder(root, 6, 8)
    rewrite_lines(os.path.join(root, celebahq.ATTRIBUTE_FILES[0]), edit)
    with pytest.raises(DataError, match=message):
        celebahq.CelebAHQImages(root, image_size=8).info()


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(DataError, match="no .png/.jpg images in"):
        celebahq.CelebAHQImages(str(tmp_path)).info()
    with pytest.raises(DataError, match="is not a folder"):
        celebahq.CelebAHQImages(str(tmp_path / "nowhere")).info()


def test_undecodable_image_names_the_file(tmp_path):
    root = str(tmp_path)
    write_image_folder(root, 4, 8)
    bad = os.path.join(root, celebahq.IMAGE_FOLDER, "2.png")
    with open(bad, "wb") as f:
        f.write(b"not a png")
    with pytest.raises(DataError, match=f"{bad}: cannot decode image"):
        read_arrays(celebahq.CelebAHQImages(root, image_size=8, cache_dir=str(tmp_path / "c")),
                    "train")
    assert not [name for _, _, names in os.walk(tmp_path / "c") for name in names]


# Through the public API: registered names, batches with attributes, two workers.

@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("celebamask-hq"))
    return (root,) + write_image_folder(root, 11, 8)


@pytest.mark.parametrize("name", ["celebahq", "celebahq_pggan", "celebahq_images"])
def test_load_with_attributes_and_two_workers(name, glow_dir, pggan_dir, image_dir):
    if name == "celebahq":
        root, expected_images, expected_attributes = glow_dir[0], *glow_dir[1]["train"]
    elif name == "celebahq_pggan":
        root, expected_images = pggan_dir[0], pggan_dir[2][1:]
        expected_attributes = np.zeros([len(expected_images), 0])
    else:
        root, expected_images, expected_attributes = (image_dir[0], image_dir[1][:10],
                                                      image_dir[2][:10])
    assert name in data.names()
    assert data.info(name, root, image_size=8).split_sizes["train"] == len(expected_images)
    batches = list(data.load(name, root, "train", image_size=8, batch_size=3,
                             with_attributes=True))
    images = np.concatenate([b[0].numpy() for b in batches])
    attributes = np.concatenate([b[2].numpy() for b in batches])
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(attributes, expected_attributes)
    shards = [np.concatenate([b[0].numpy() for b in data.load(
        name, root, "train", image_size=8, batch_size=2, num_shards=2, shard_index=worker)])
        for worker in (0, 1)]
    together = np.concatenate(shards)
    assert len(together) == len(expected_images)
    # Every image exactly once: sorted byte strings of both workers match the whole split.
    assert sorted(i.tobytes() for i in together) == sorted(i.tobytes() for i in expected_images)


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 5])
def test_shards_hold_every_record_once_by_file_or_by_record(glow_dir, workers):
    root, images = glow_dir[0], glow_dir[2]["train"][0]  # 3 files of 3, 2 and 4 records
    starts = np.cumsum([0] + SHARDS["train"])
    shards = []
    for worker in range(workers):
        positions = data.shard_positions("celebahq", root, "train", workers, worker,
                                         image_size=16)
        got = np.concatenate([b[0].numpy() for b in data.load(
            "celebahq", root, "train", image_size=16, batch_size=2, num_shards=workers,
            shard_index=worker)])
        np.testing.assert_array_equal(got, images[positions])
        if workers <= len(SHARDS["train"]):  # whole files: file k goes to worker k % workers
            own = range(worker, len(SHARDS["train"]), workers)
            np.testing.assert_array_equal(positions, np.concatenate(
                [np.arange(starts[k], starts[k + 1]) for k in own]))
        else:  # fewer files than workers: every workers-th record
            np.testing.assert_array_equal(positions, np.arange(worker, len(images), workers))
        shards.append(positions)
    np.testing.assert_array_equal(np.sort(np.concatenate(shards)), np.arange(len(images)))


def test_a_worker_opens_only_its_own_files(tmp_path):
    root = str(tmp_path)
    images = write_glow(root, SHARDS, 8, seed=0)["train"][0]
    path = shard_path(root, "train", 3, 1, 3)
    with open(path, "rb") as f:
        content = bytearray(f.read())
    content[len(content) // 2] ^= 0xFF  # file 1 (worker 1's of 2) now fails its CRC
    with open(path, "wb") as f:
        f.write(bytes(content))
    source = celebahq.CelebAHQ(root, image_size=8)
    got, _, _ = read_all(source.records("train", num_shards=2, shard_index=0))
    np.testing.assert_array_equal(got, images[source.shard_positions("train", 2, 0)])
    with pytest.raises(tf.errors.DataLossError):
        read_all(source.records("train", num_shards=2, shard_index=1))


def test_pggan_and_image_folder_shards_take_every_other_record(pggan_dir, image_dir):
    for name, root, count in (("celebahq_pggan", pggan_dir[0], 9),
                              ("celebahq_images", image_dir[0], 10)):
        np.testing.assert_array_equal(
            data.shard_positions(name, root, "train", 2, 1, image_size=8),
            np.arange(1, count, 2))
