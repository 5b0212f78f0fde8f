"""CelebA-HQ in the three forms it is found on disk (30,000 images of 256² or 1024²).

  celebahq         glow's sharded TFRecords (`celeba-tfr.tar`, written by openai/glow
                   `data_loaders/generate_tfr/generate.py`):
                   <data_dir>/train/train-rXX-s-SSSS-of-NNNN.tfrecords and
                   <data_dir>/validation/validation-rXX-s-SSSS-of-NNNN.tfrecords, XX = log2(size);
                   each record holds `shape` [R,R,3], `data` (HWC uint8 bytes), `label` [1] and,
                   in some copies, `attr` [40]. 'validation' on disk is our 'test' split
                   (27,000/3,000).
  celebahq_pggan   progressive_growing_of_gans `dataset_tool.py create_celebahq`: one unsharded
                   <data_dir>/<name>-rXX.tfrecords per resolution, `shape` [3,R,R], `data` CHW
                   bytes.
                   The file has no split and its order is already a seeded shuffle, so the FIRST
                   10% of records are 'test' and the rest 'train' (3,000/27,000): the test split
                   then reads only its own records, and 'train' skips past 10% of the file instead
                   of 'test' reading through 90% of it at every evaluation.
  celebahq_images  a folder of PNG/JPEG images (<data_dir>/CelebA-HQ-img/ or <data_dir> itself),
                   optionally with the CelebAMask-HQ attribute file; images are centre-cropped and
                   resized to image_size once, into a memory-mapped cache (data.cache). Sorted by
                   numeric file stem, the LAST 10% are 'test' (CelebA-HQ-to-CelebA-mapping.txt is
                   not read).

The two TFRecord sets are streamed. A worker of several reads only its own files (file i goes to
worker i % workers) when the split is whole files and there are at least as many as workers;
otherwise every worker reads all files and keeps every workers-th record (PGGAN's single file,
or fewer files than workers). `shard_positions` says which records a worker gets.

Labels: CelebA-HQ has none; every label is 0 (glow writes 0 into `label`; it is not read).
Attributes: the 40 CelebA attributes (+-1) when the files carry them, else an empty vector.

Checks that cost no pixel reads run before any data flows: all shards present, every TFRecord
file walked header to header (12 bytes per record) for its record count and to catch truncated
files, the first record's shape and features. Problems only visible in a record's contents (a bad
CRC, a wrong `data` length or `shape`, attributes other than +-1) can only show while iterating:
they raise a tf.errors.OpError (DataLossError for a bad CRC, else InvalidArgumentError whose
message names the file), which the loop that iterates turns into a one-line DataError. Checking
every CRC up front would mean reading all pixels (5 GB at 256², 80 GB at 1024²) before each run.
An undecodable image of celebahq_images stops its cache build with a DataError naming the file.
"""
import functools
import glob
import os
import re
import struct

import numpy as np

from data import cache, images
from data.base import (SPLITS, Arrays, DataError, DatasetInfo, Source, check_split, register,
                       shard_indices)

DEFAULT_IMAGE_SIZE = 256

# The 40 attributes in the column order of CelebA's list_attr_celeba.txt (and CelebAMask-HQ's
# attribute file); glow's `attr` feature stores them in this order.
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup",
    "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns",
    "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young")
NUM_ATTRIBUTES = len(CELEBA_ATTRIBUTES)


def held_out_size(num_examples):
    """Examples held out for 'test' where the files define no split: 10% (3,000 of 30,000)."""
    return num_examples // 10


def power_of_two_size(name, image_size):
    """The requested side (default 256) and its log2, which names glow/PGGAN file sets."""
    size = DEFAULT_IMAGE_SIZE if image_size is None else image_size
    if not isinstance(size, int) or size < 4 or size & (size - 1):
        raise DataError(f"{name}: image_size must be a power of two >= 4 (4 ... 1024), got "
                        f"{image_size!r}")
    return size, size.bit_length() - 1


def count_tfrecords(path):
    """Number of records in a TFRecord file, found by hopping from one record header to the next.

    A record is [uint64 length][uint32 crc][length bytes][uint32 crc], so only 12 bytes are read
    per record; a file that ends inside a record (an interrupted copy) is reported here, before
    any training starts. The CRCs themselves are checked by TensorFlow while reading.
    """
    file_size = os.path.getsize(path)
    count, offset = 0, 0
    with open(path, "rb") as f:
        while offset < file_size:
            f.seek(offset)
            header = f.read(12)
            end = offset + 16 + (struct.unpack("<Q", header[:8])[0] if len(header) == 12 else 0)
            if end > file_size:
                raise DataError(f"{path}: truncated or corrupt TFRecord file (record {count} at "
                                f"byte {offset} runs past the end, {file_size} bytes); copy or "
                                f"download this file again")
            count, offset = count + 1, end
    return count


def first_example(path):
    """The first record of a TFRecord file as a dict feature name -> list of values."""
    import tensorflow as tf  # here: the data set names are read without TensorFlow
    try:
        serialized = next(iter(tf.data.TFRecordDataset(path).take(1))).numpy()
        example = tf.train.Example.FromString(serialized)
    except StopIteration:
        raise DataError(f"{path}: TFRecord file holds no records; copy or download it again")
    except (tf.errors.OpError, ValueError) as error:  # ValueError covers protobuf DecodeError
        raise DataError(f"{path}: first record is not a readable tf.train.Example "
                        f"({type(error).__name__}); copy or download this file again")
    features = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        features[key] = list(getattr(feature, kind).value) if kind else []
    return features


class _TFRecordSource(Source):
    """CelebA-HQ TFRecords: `shape` int64[3] + raw uint8 `data` (+ optional `attr` int64[40])."""

    streamed = True
    channels_first = False  # layout of `data`: HWC (glow) or CHW (PGGAN)

    def __init__(self, data_dir, image_size=None, cache_dir=None):
        super().__init__(data_dir, image_size, cache_dir)
        self._plans = {}  # split -> _find_plan(split); walking the files once per source is enough

    def _plan(self, split):
        """(files in reading order, records in each file, records to skip, records to take) for
        one split."""
        if split not in self._plans:
            self._plans[split] = self._find_plan(split)
        return self._plans[split]

    def _find_plan(self, split):
        raise NotImplementedError

    def _stored_shape(self, size):
        return [3, size, size] if self.channels_first else [size, size, 3]

    def _has_attributes(self, size):
        """Whether records carry `attr`, judged from each split's first record, whose stored shape
        is checked on the way (a file set of the wrong resolution fails here, not mid-run)."""
        found = {}
        for split in SPLITS:
            paths, counts = self._plan(split)[:2]
            path = next((p for p, count in zip(paths, counts) if count), paths[0])
            features = first_example(path)
            if features.get("shape") != self._stored_shape(size):
                raise DataError(f"{path}: records have shape {features.get('shape')}, expected "
                                f"{self._stored_shape(size)} for image_size {size}; the file is "
                                f"not a {self.name} file of this resolution")
            attributes = features.get("attr", [])
            if len(attributes) not in (0, NUM_ATTRIBUTES):
                raise DataError(f"{path}: `attr` holds {len(attributes)} values, expected "
                                f"{NUM_ATTRIBUTES} CelebA attributes (or none)")
            found[path] = bool(attributes)
        if len(set(found.values())) > 1:
            raise DataError(f"{self.name}: only some files carry `attr` "
                            f"({', '.join(f'{p}: {v}' for p, v in found.items())}); use files "
                            f"written by one tool")
        return any(found.values())

    def info(self):
        size, _ = power_of_two_size(self.name, self.image_size)
        attributes = CELEBA_ATTRIBUTES if self._has_attributes(size) else ()
        return DatasetInfo(name=self.name, image_shape=(size, size, 3), num_classes=0,
                           split_sizes={split: self._plan(split)[3] for split in SPLITS},
                           attribute_names=attributes)

    def _own_files(self, split, num_shards, shard_index):
        """The indices of the files one worker reads alone, or None when the workers share the
        files and take every num_shards-th record: whole files go to workers round-robin when
        the split is every record of at least num_shards files."""
        paths, counts, skip, take = self._plan(split)
        if len(paths) < num_shards or skip or take != sum(counts):
            return None
        return list(range(shard_index, len(paths), num_shards))

    def shard_positions(self, split, num_shards=1, shard_index=0):
        check_split(split)
        _, counts, _, take = self._plan(split)
        own = self._own_files(split, num_shards, shard_index)
        if own is None:
            return shard_indices(take, num_shards, shard_index)
        starts = np.cumsum([0] + counts)
        return np.concatenate([np.arange(starts[k], starts[k + 1]) for k in own] +
                              [np.zeros([0], np.int64)]).astype(np.int64)

    def records(self, split, num_shards=1, shard_index=0):
        import tensorflow as tf  # here: the data set names are read without TensorFlow
        check_split(split)
        size, _ = power_of_two_size(self.name, self.image_size)
        has_attributes = self._has_attributes(size)
        paths, counts, skip, take = self._plan(split)
        if take == 0:
            raise DataError(f"{self.name}: the {split!r} split of {self.data_dir} is empty "
                            f"(10% of the records are 'test'; the files hold too few)")
        own = self._own_files(split, num_shards, shard_index)
        if own is not None:
            paths, counts = [paths[k] for k in own], [counts[k] for k in own]
        # Each record travels with its file's name so that a bad record can be traced to it.
        serialized = tf.data.Dataset.zip((
            tf.data.Dataset.from_tensor_slices(np.repeat(np.array(paths, str), counts)),
            tf.data.TFRecordDataset(paths))).skip(skip).take(take)
        if own is None:
            serialized = serialized.shard(num_shards, shard_index)
        return serialized.map(lambda path, record: self._parse(path, record, size, has_attributes),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def _parse(self, path, record, size, has_attributes):
        """One record -> (image uint8 [R,R,3], label 0, attributes int32 [40] or [0]).

        Missing features parse to defaults that fail the checks below, so every malformed record
        raises InvalidArgumentError naming its file instead of a message without one.
        """
        import tensorflow as tf  # here: the data set names are read without TensorFlow
        spec = {"shape": tf.io.FixedLenFeature([3], tf.int64, default_value=[0, 0, 0]),
                "data": tf.io.FixedLenFeature([], tf.string, default_value="")}
        if has_attributes:
            spec["attr"] = tf.io.FixedLenFeature([NUM_ATTRIBUTES], tf.int64,
                                                 default_value=[0] * NUM_ATTRIBUTES)
        features = tf.io.parse_single_example(record, spec)
        stored_shape = self._stored_shape(size)
        pixels = tf.io.decode_raw(features["data"], tf.uint8)
        checks = [
            tf.debugging.Assert(tf.reduce_all(features["shape"] == stored_shape),
                                [f"{self.name}: a record has shape", features["shape"],
                                 f"instead of {stored_shape} in", path]),
            tf.debugging.Assert(tf.size(pixels) == size * size * 3,
                                [f"{self.name}: a record's data has", tf.size(pixels),
                                 f"bytes instead of {size * size * 3} in", path])]
        attributes = tf.zeros([0], tf.int32)
        if has_attributes:
            attributes = tf.cast(features["attr"], tf.int32)
            checks.append(tf.debugging.Assert(
                tf.reduce_all(tf.abs(attributes) == 1),
                [f"{self.name}: a record's attr is not all +-1 (or missing) in", path]))
        with tf.control_dependencies(checks):
            image = tf.reshape(pixels, stored_shape)
        if self.channels_first:
            image = tf.transpose(image, [1, 2, 0])
        return image, tf.constant(0, tf.int32), attributes


@register
class CelebAHQ(_TFRecordSource):
    """glow's sharded CelebA-HQ TFRecords (train/ and validation/ folders)."""

    name = "celebahq"
    ON_DISK = {"train": "train", "test": "validation"}
    SHARD_PATTERN = re.compile(r"-s-(\d+)-of-(\d+)\.tfrecords$")

    def _shards(self, split):
        """The split's shard files in shard order, after checking that every shard is there."""
        _, log2_size = power_of_two_size(self.name, self.image_size)
        folder_name = self.ON_DISK[split]
        folder = os.path.join(self.data_dir, folder_name)
        pattern = os.path.join(folder, f"{folder_name}-r{log2_size:02d}-s-*-of-*.tfrecords")
        paths = glob.glob(pattern)
        if not paths:
            present = sorted({int(m.group(1)) for p in glob.glob(os.path.join(
                folder, f"{folder_name}-r*-s-*-of-*.tfrecords"))
                for m in [re.search(r"-r(\d+)-s-", os.path.basename(p))] if m})
            sizes = ", ".join(str(2 ** lg) for lg in present) or "none"
            raise DataError(f"{self.name}: no files match {pattern} (image sizes present: "
                            f"{sizes}); untar glow's celeba-tfr.tar so that {folder} holds the "
                            f"shards, or pick an image_size that is present")
        by_index, totals = {}, set()
        for path in paths:
            match = self.SHARD_PATTERN.search(path)
            if match is None:
                raise DataError(f"{path}: shard name does not end in -s-SSSS-of-NNNN.tfrecords")
            by_index[int(match.group(1))] = path
            totals.add(int(match.group(2)))
        if len(totals) > 1:
            raise DataError(f"{self.name}: shards in {folder} disagree on the shard count "
                            f"(of-{sorted(totals)}); remove the files of the other export")
        total = totals.pop()
        stray = sorted(by_index[i] for i in by_index if i >= total)
        if stray:
            raise DataError(f"{stray[0]}: shard index beyond the shard count {total}; remove "
                            f"the files of the other export")
        missing = [i for i in range(total) if i not in by_index]
        if missing:
            names = [pattern.replace("s-*-of-*", f"s-{i:04d}-of-{total:04d}") for i in missing]
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            raise DataError(f"{self.name}: {len(missing)} of {total} shards missing: "
                            f"{', '.join(names[:3])}{more}; copy or download them again")
        return [by_index[i] for i in range(total)]

    def _find_plan(self, split):
        paths = self._shards(split)
        counts = [count_tfrecords(path) for path in paths]
        return paths, counts, 0, sum(counts)


@register
class CelebAHQPGGAN(_TFRecordSource):
    """progressive_growing_of_gans' `create_celebahq` TFRecords: one CHW file per resolution.
    The optional `<name>-rxx.labels` file is not read (CelebA-HQ has no classes)."""

    name = "celebahq_pggan"
    channels_first = True

    def _file(self):
        _, log2_size = power_of_two_size(self.name, self.image_size)
        pattern = os.path.join(self.data_dir, f"*-r{log2_size:02d}.tfrecords")
        paths = sorted(glob.glob(pattern))
        if len(paths) == 1:
            return paths[0]
        if paths:
            raise DataError(f"{self.name}: {len(paths)} files match {pattern} "
                            f"({', '.join(paths)}); keep one data set per folder")
        present = sorted({int(m.group(1)) for p in glob.glob(os.path.join(
            self.data_dir, "*-r*.tfrecords")) for m in [re.search(r"-r(\d+)\.tfrecords$", p)] if m})
        sizes = ", ".join(str(2 ** lg) for lg in present) or "none"
        raise DataError(f"{self.name}: no file matches {pattern} (image sizes present: {sizes}); "
                        f"run dataset_tool.py create_celebahq into {self.data_dir} or pick an "
                        f"image_size that is present")

    def _find_plan(self, split):
        path = self._file()
        total = count_tfrecords(path)
        held_out = held_out_size(total)
        if split == "test":
            return [path], [total], 0, held_out
        return [path], [total], held_out, total - held_out


ATTRIBUTE_FILES = ("CelebAMask-HQ-attribute-anno.txt", "list_attr_celeba.txt")
IMAGE_FOLDER = "CelebA-HQ-img"


def image_key(file_name):
    """What ties an image to its attribute line: the file stem, as a number when it is one, so
    that `0.jpg` in the attribute file also finds `0.png` or `00000.jpg`."""
    stem = os.path.splitext(file_name)[0]
    return int(stem) if stem.isdigit() else stem


def sort_key(file_name):
    """Numeric stems in numeric order (2.jpg before 10.jpg), then other names alphabetically."""
    key = image_key(file_name)
    return (0, key, file_name) if isinstance(key, int) else (1, 0, file_name)


def read_attribute_file(path):
    """CelebA attribute text file -> (40 names, {image key: (line number, file name, 40 values)}).

    Layout (list_attr_celeba.txt, CelebAMask-HQ-attribute-anno.txt): line 1 the number of images,
    line 2 the attribute names, then one line per image: file name and one value per attribute.
    """
    with open(path) as f:
        lines = [line.split() for line in f.read().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if len(lines) < 2 or len(lines[0]) != 1 or not lines[0][0].isdigit():
        raise DataError(f"{path}:1: expected the number of images on line 1 and the attribute "
                        f"names on line 2; is this a CelebA attribute file?")
    names = tuple(lines[1])
    if len(names) != NUM_ATTRIBUTES or len(set(names)) != NUM_ATTRIBUTES:
        raise DataError(f"{path}:2: expected {NUM_ATTRIBUTES} distinct attribute names, got "
                        f"{len(names)}")
    if int(lines[0][0]) != len(lines) - 2:
        raise DataError(f"{path}:1: says {lines[0][0]} images but {len(lines) - 2} lines follow "
                        f"the header; the file is truncated or edited")
    entries = {}
    for number, fields in enumerate(lines[2:], start=3):
        if len(fields) != NUM_ATTRIBUTES + 1 or any(v not in ("1", "-1") for v in fields[1:]):
            raise DataError(f"{path}:{number}: expected an image file name and {NUM_ATTRIBUTES} "
                            f"values of 1 or -1, got {len(fields) - 1} values")
        key = image_key(fields[0])
        if key in entries:
            raise DataError(f"{path}:{number}: second line for image {fields[0]} (first on line "
                            f"{entries[key][0]})")
        entries[key] = (number, fields[0], [int(v) for v in fields[1:]])
    return names, entries


@register
class CelebAHQImages(Source):
    """A folder of CelebA-HQ images (CelebAMask-HQ's CelebA-HQ-img/ or any resized copy),
    decoded and resized once into a memory-mapped cache (`data.cache`)."""

    name = "celebahq_images"

    def _size(self):
        size = DEFAULT_IMAGE_SIZE if self.image_size is None else self.image_size
        if not isinstance(size, int) or size < 1:
            raise DataError(f"{self.name}: image_size must be a positive integer, got "
                            f"{self.image_size!r}")
        return size

    def _index(self):
        """(image paths in sorted order, int32 attributes [N, 40 or 0], attribute names)."""
        folder = os.path.join(self.data_dir, IMAGE_FOLDER)
        if not os.path.isdir(folder):
            folder = self.data_dir
        if not os.path.isdir(folder):
            raise DataError(f"{self.name}: {self.data_dir} is not a folder; point data_dir at "
                            f"the CelebAMask-HQ folder or a folder of images")
        files = sorted((f for f in os.listdir(folder)
                        if f.lower().endswith(images.IMAGE_EXTENSIONS)), key=sort_key)
        if not files:
            raise DataError(f"{self.name}: no .png/.jpg images in {folder}; point data_dir at "
                            f"the CelebAMask-HQ folder or a folder of images")
        keys = {}
        for file_name in files:
            key = image_key(file_name)
            if key in keys:
                raise DataError(f"{self.name}: {keys[key]} and {file_name} in {folder} are the "
                                f"same image number; keep one of them")
            keys[key] = file_name
        paths = [os.path.join(folder, f) for f in files]
        attribute_path = next((os.path.join(self.data_dir, f) for f in ATTRIBUTE_FILES
                               if os.path.isfile(os.path.join(self.data_dir, f))), None)
        if attribute_path is None:
            return paths, np.zeros([len(files), 0], np.int32), ()
        names, entries = read_attribute_file(attribute_path)
        for key, (number, file_name, _) in entries.items():
            if key not in keys:
                raise DataError(f"{attribute_path}:{number}: names {file_name}, which is not in "
                                f"{folder}; use the attribute file that belongs to these images")
        for file_name in files:
            if image_key(file_name) not in entries:
                raise DataError(f"{os.path.join(folder, file_name)} has no line in "
                                f"{attribute_path}; use the attribute file that belongs to "
                                f"these images")
        attributes = np.array([entries[image_key(f)][2] for f in files], np.int32)
        return paths, attributes, names

    def info(self):
        size = self._size()
        paths, _, names = self._index()
        held_out = held_out_size(len(paths))
        return DatasetInfo(name=self.name, image_shape=(size, size, 3), num_classes=0,
                           split_sizes={"train": len(paths) - held_out, "test": held_out},
                           attribute_names=names)

    def arrays(self, split):
        check_split(split)
        size = self._size()
        paths, attributes, _ = self._index()
        first_test = len(paths) - held_out_size(len(paths))
        part = slice(0, first_test) if split == "train" else slice(first_test, None)
        paths, attributes = paths[part], attributes[part]
        if not paths:
            raise DataError(f"{self.name}: the {split!r} split of {self.data_dir} is empty "
                            f"(the last 10% of the images are 'test'; the folder holds too few)")
        folder = os.path.dirname(paths[0])
        pixels = cache.cached_images(
            self.name, folder, split, [os.path.basename(path) for path in paths], (size, size, 3),
            functools.partial(images.square_rgb, size=size), self.cache_dir,
            before_build=functools.partial(images.say_enlarged, f"{self.name} {folder} {split}",
                                           size=size))
        return Arrays(images=pixels, labels=np.zeros(len(paths), np.int32), attributes=attributes)
