"""CIFAR-10, python version (Krizhevsky 2009): 50,000 train / 10,000 test 32x32 RGB images,
10 classes.

On disk (the official `cifar-10-python.tar.gz`) it is one folder `cifar-10-batches-py/` holding
`data_batch_1` ... `data_batch_5`, `test_batch` and `batches.meta`: each a Python-2 pickle
(protocol 2) of a dict with `data` (uint8 [N, 3072]: the 1024 red values of a row-major 32x32
plane, then green, then blue) and `labels` (a list of N ints in 0..9); `batches.meta` holds
`label_names`.

The folder is looked for in `data_dir`, then in `data_dir/cifar-10-python/` (where openai/pixel-cnn
puts it). Failing that, `cifar-10-python.tar.gz` in either place is extracted once next to itself;
failing that, the archive is downloaded into `data_dir` and checked against its sha256.
"""
import hashlib
import http.client
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from urllib.request import urlopen

import numpy as np

from data.base import Arrays, DataError, DatasetInfo, Source, check_split, register
from data.progress import progress

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
BATCH_DIR = "cifar-10-batches-py"
PIXEL_CNN_DIR = "cifar-10-python"  # openai/pixel-cnn's download folder inside data_dir
DOWNLOAD_TIMEOUT_S = 10
CHUNK = 1 << 20  # bytes per read of a download (progress counts MiB)
SIDE = 32
NUM_CLASSES = 10
SPLIT_FILES = {
    "train": tuple(f"data_batch_{k}" for k in range(1, 6)),
    "test": ("test_batch",),
}
META_FILE = "batches.meta"
DEFAULT_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
                       "dog", "frog", "horse", "ship", "truck")


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts of numpy arrays and plain values, and refuses every other global, so a
    malicious file cannot run code. The CIFAR files name `numpy.core.multiarray._reconstruct`
    (NumPy 1) and Python-3 re-pickles may name `numpy._core` (NumPy 2) or `_codecs.encode` (how
    protocol 2 stores Python-3 bytes); all map to today's functions."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
        ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): lambda text, encoding: text.encode(encoding),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return self._ALLOWED[(module, name)]


def load_pickle(path):
    """A pickled dict with `str` keys, read with py2 `str` values as bytes (encoding='bytes', as the
    CIFAR files need); a truncated or foreign file is a DataError naming it."""
    try:
        with open(path, "rb") as f:
            obj = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError) as e:
        raise DataError(f"{path}: not a readable pickle ({type(e).__name__}: {e}); "
                        f"replace it with the original file") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_batch(path):
    """One CIFAR-10 batch file -> (images uint8 [N,32,32,3], labels int32 [N])."""
    batch = load_pickle(path)
    missing = {"data", "labels"} - set(batch)
    if missing:
        raise DataError(f"{path}: not a CIFAR-10 batch, keys {sorted(batch)} lack "
                        f"{sorted(missing)} (CIFAR-100 files are not read here)")
    data = batch["data"]
    row_length = 3 * SIDE * SIDE
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == row_length):
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise DataError(f"{path}: 'data' is {dtype} of shape {shape}, expected uint8 "
                        f"[N, {row_length}] (planar RGB {SIDE}x{SIDE})")
    labels = np.asarray(batch["labels"])
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {labels.shape} labels of type {labels.dtype} for "
                        f"{data.shape[0]} images, expected one integer per image")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{path}: labels span {labels.min()}..{labels.max()}, "
                        f"expected 0..{NUM_CLASSES - 1}")
    images = np.ascontiguousarray(data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1))
    return images, labels.astype(np.int32)


def download(url, destination, sha256, timeout=DOWNLOAD_TIMEOUT_S):
    """Fetch `url` into `destination` through a temporary file that is renamed only once the
    sha256 matches, so an interrupted or wrong download never leaves a file at `destination`.
    Any failure is a DataError saying where to get the file and where to put it."""
    how_to_fix = f"download {url} yourself and put it at {destination}"
    try:
        response = urlopen(url, timeout=timeout)
    except (OSError, ValueError, http.client.HTTPException) as e:
        raise DataError(f"could not download {url} ({e}): {how_to_fix}") from None
    folder = os.path.dirname(os.path.abspath(destination))
    os.makedirs(folder, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(destination)}.",
                                   suffix=".part")
    try:
        digest = hashlib.sha256()
        size = int(response.headers.get("Content-Length") or 0)
        with response, os.fdopen(fd, "wb") as out, progress(
                total=-(-size // CHUNK) or None, unit="MiB",
                desc=os.path.basename(destination)) as bar:
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                bar.update(1)
        if digest.hexdigest() != sha256:
            raise DataError(f"{url}: downloaded sha256 {digest.hexdigest()} differs from the "
                            f"expected {sha256}: {how_to_fix}")
        os.replace(partial, destination)
    except (OSError, http.client.HTTPException) as e:
        raise DataError(f"could not download {url} ({e}): {how_to_fix}") from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def extract_batches(archive):
    """Unpack `cifar-10-batches-py/` from `archive` next to the archive. Files are written into a
    fresh temporary folder that is renamed into place at the end, so nothing existing is touched
    and an interruption leaves no half-filled folder."""
    target = os.path.dirname(os.path.abspath(archive))
    staging = tempfile.mkdtemp(dir=target, prefix=".cifar-10-extract-")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers()
                       if m.isfile() and os.path.dirname(m.name) == BATCH_DIR]
            found = {os.path.basename(m.name) for m in members}
            needed = SPLIT_FILES["train"] + SPLIT_FILES["test"]
            if not set(needed) <= found:
                raise DataError(f"{archive}: lacks {BATCH_DIR}/"
                                f"{', '.join(n for n in needed if n not in found)}; replace it "
                                f"with the original {ARCHIVE_NAME} from {URL}")
            os.mkdir(os.path.join(staging, BATCH_DIR))
            for member in progress(members, desc=f"extracting {ARCHIVE_NAME}", unit="files"):
                out_path = os.path.join(staging, BATCH_DIR, os.path.basename(member.name))
                with tar.extractfile(member) as src, open(out_path, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        os.rename(os.path.join(staging, BATCH_DIR), os.path.join(target, BATCH_DIR))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DataError(f"{archive}: could not extract {BATCH_DIR}/ ({e}); replace it with the "
                        f"original {ARCHIVE_NAME} from {URL}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return os.path.join(target, BATCH_DIR)


@register
class Cifar10(Source):
    """CIFAR-10 from `data_dir` (see the module docstring for the layout and lookup order).

    `info()` reads `batches.meta` and the split sizes from the batch files; those sizes are
    cached per process (keyed by path, size and mtime) after the first read, which is also
    filled by `arrays()`. The full set is 50,000 train / 10,000 test images.
    """

    name = "cifar"
    _split_sizes = {}  # (path, size, mtime_ns) -> number of images, shared by all instances

    def batch_dir(self):
        """The folder holding the batch files, extracting or downloading it when it is absent."""
        places = [self.data_dir, os.path.join(self.data_dir, PIXEL_CNN_DIR)]
        for place in places:
            if os.path.isdir(os.path.join(place, BATCH_DIR)):
                return os.path.join(place, BATCH_DIR)
        for place in places:
            if os.path.isfile(os.path.join(place, ARCHIVE_NAME)):
                return extract_batches(os.path.join(place, ARCHIVE_NAME))
        archive = os.path.join(self.data_dir, ARCHIVE_NAME)
        download(URL, archive, ARCHIVE_SHA256)
        return extract_batches(archive)

    def _check_image_size(self):
        if self.image_size not in (None, SIDE):
            raise DataError(f"CIFAR-10 images are {SIDE}x{SIDE}; drop image_size={self.image_size}")

    def _split_paths(self, split):
        check_split(split)
        self._check_image_size()
        folder = self.batch_dir()
        paths = [os.path.join(folder, f) for f in SPLIT_FILES[split]]
        for path in paths:
            if not os.path.isfile(path):
                raise DataError(f"{path} is missing: {folder} must hold "
                                f"{', '.join(SPLIT_FILES['train'] + SPLIT_FILES['test'])}; "
                                f"extract {ARCHIVE_NAME} again")
        return paths

    @staticmethod
    def _cache_key(path):
        stat = os.stat(path)
        return (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)

    def _read_split(self, split):
        images, labels = [], []
        for path in self._split_paths(split):
            batch_images, batch_labels = read_batch(path)
            self._split_sizes[self._cache_key(path)] = len(batch_labels)
            images.append(batch_images)
            labels.append(batch_labels)
        return np.concatenate(images), np.concatenate(labels)

    def _class_names(self):
        path = os.path.join(self.batch_dir(), META_FILE)
        if not os.path.isfile(path):
            return DEFAULT_CLASS_NAMES
        names = load_pickle(path).get("label_names")
        if not isinstance(names, list) or len(names) != NUM_CLASSES:
            raise DataError(f"{path}: 'label_names' should be a list of {NUM_CLASSES} names; "
                            f"replace it with the original {META_FILE}")
        return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)

    def info(self):
        sizes = {}
        for split in SPLIT_FILES:
            keys = [self._cache_key(p) for p in self._split_paths(split)]
            if not all(k in self._split_sizes for k in keys):
                self._read_split(split)
            sizes[split] = sum(self._split_sizes[k] for k in keys)
        return DatasetInfo(name=self.name, image_shape=(SIDE, SIDE, 3), num_classes=NUM_CLASSES,
                           split_sizes=sizes, class_names=self._class_names())

    def arrays(self, split):
        images, labels = self._read_split(split)
        return Arrays(images=images, labels=labels)
