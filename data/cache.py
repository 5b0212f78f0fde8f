"""Decode once, memory-map afterwards: the uint8 cache of the data sets that decode or resize.

`folder` and `celebahq_images` keep each split at each image size as one `.npy` file of uint8
[N, H, W, C], memory-mapped read-only by every later load, beside a manifest (`.json`) that holds
what it was made from: the source folder, the listing of its files (relative path, size, mtime),
the listing's sha256 and the image shape. Layout under the cache root:

    <root>/<set>/<folder name>-<sha1 of its absolute path>/
        <split>-<H>x<W>.json                   the manifest, written last
        <split>-<H>x<W>-<listing sha>.npy      the pixels, named by the listing they came from
        .<pixels>.partial, .partial.done       an interrupted build and its finished chunks

The root is `cache_dir` when given, else `$XDG_CACHE_HOME/pixelcnn-glow/data` (normally
`~/.cache/pixelcnn-glow/data`): never inside the image folder, which stays untouched.

How the rules of a shared cache are kept:
  * A reader only opens pixels named by a manifest, and a manifest names only a complete file
    (pixels are decoded into `.partial`, renamed into place, then the manifest is replaced), so no
    half-written cache is ever read, even while another process is rebuilding.
  * One builder per source folder: builders hold an exclusive flock on its cache directory; the
    others wait, then find the finished cache.
  * Pixels are decoded in chunks of about CHUNK_BYTES by a process per CPU, each writing its
    chunk straight into the `.partial` file; a finished chunk's rows are logged in
    `.partial.done`, so an interrupted build resumes where it stopped. An image that fails to
    decode stops the build, names the file, and its partial files are removed.
  * A cache whose listing no longer matches the folder is rebuilt, said in one line on stderr.
"""
import concurrent.futures
import fcntl
import hashlib
import json
import math
import multiprocessing
import os
import signal
import sys
import tempfile
import zipfile

import numpy as np

from data.base import DataError
from data.progress import progress

# Bump when the manifest, the pixel layout or the decoding changes (2: 16-bit greyscale was
# saturated at 255 before), so that older caches are rebuilt.
FORMAT = 2
CHUNK_BYTES = 4 << 20


def default_root():
    """The cache root used when no cache_dir is given."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pixelcnn-glow", "data")


def note(message):
    """One line for the user about what the cache is doing."""
    print(message, file=sys.stderr, flush=True)


def source_folder(cache_dir, set_name, root):
    """The cache directory of one source folder."""
    root = os.path.abspath(root)
    digest = hashlib.sha1(root.encode()).hexdigest()[:12]
    return os.path.join(cache_dir or default_root(), set_name,
                        f"{os.path.basename(root) or 'root'}-{digest}")


def listing_of(root, relative_paths):
    """[[relative path, bytes, mtime in ns]] of the files: what the cache is checked against."""
    listing = []
    for relative in relative_paths:
        path = os.path.join(root, relative)
        try:
            stat = os.stat(path)
        except OSError as error:
            raise DataError(f"{path}: cannot read ({error.strerror}); was the folder changed "
                            f"while loading?") from None
        listing.append([relative, stat.st_size, stat.st_mtime_ns])
    return listing


def listing_digest(listing):
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def listing_change(old, new):
    """'N added, M removed, K modified' between two listings."""
    before = {path: (size, mtime) for path, size, mtime in old}
    after = {path: (size, mtime) for path, size, mtime in new}
    modified = sum(path in before and before[path] != stat for path, stat in after.items())
    return (f"{len(after.keys() - before.keys())} added, {len(before.keys() - after.keys())} "
            f"removed, {modified} modified")


class Lock:
    """An exclusive flock on a directory, held by one builder at a time."""

    def __init__(self, folder, waiting_message):
        self.folder, self.waiting_message = folder, waiting_message

    def __enter__(self):
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as error:
            raise DataError(f"{self.folder}: cannot create the data cache here "
                            f"({error.strerror}); pass a writable cache_dir") from None
        self.fd = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            note(self.waiting_message)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # releases the lock


def write_atomically(path, write):
    """Call write(file) on a temporary file beside `path`, then rename it into place."""
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path),
                                         prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a cache is for every user
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


# ---------------------------------------------------------------------------------------------
# Building one array file: parallel, chunked, resumable, atomic

def _ignore_interrupts():
    # Ctrl-C reaches the whole process group: the builder stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decode_chunk(partial, offset, image_shape, paths, decode):
    """Decode `paths` into their rows of the partial file (the rows start at byte `offset`).
    Returns None, or the DataError message of the first image that fails."""
    rows = np.memmap(partial, np.uint8, "r+", offset=offset, shape=(len(paths),) + image_shape)
    try:
        for row, path in zip(rows, paths):
            row[...] = decode(path)
    except DataError as error:
        return str(error)
    finally:
        del rows  # unmapping leaves the pixels in the page cache, i.e. in the file
    return None


def _decode_all(tasks, workers, finished):
    """Run _decode_chunk(*args) for every (rows, args) in `tasks` on `workers` processes; call
    finished(rows, error) in the order they complete. An exception from `finished` (a bad
    image, Ctrl-C) cancels the chunks not yet started."""
    if workers == 1 or len(tasks) == 1:
        for rows, args in tasks:
            finished(rows, _decode_chunk(*args))
        return
    # fork: the workers need only PIL and numpy, and must not import TensorFlow again
    context = multiprocessing.get_context("fork")
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context,
                                                  initializer=_ignore_interrupts)
    try:
        futures = {pool.submit(_decode_chunk, *args): rows for rows, args in tasks}
        for future in concurrent.futures.as_completed(futures):
            finished(futures[future], future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def read_npy_header(file):
    """(shape, fortran order, dtype) from the .npy header at the file's position, which is left
    at the first byte of the array."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    version = np.lib.format.read_magic(file)
    if version not in readers:
        raise ValueError(f".npy format version {version}")
    return readers[version](file)


def _finished_rows(partial, done_log, shape):
    """Boolean [N]: the rows a previous build of the same file finished, or None when there is
    nothing to resume (no partial file, or one of another shape)."""
    finished = np.zeros(shape[0], bool)
    try:
        with open(partial, "rb") as file:
            if read_npy_header(file) != (shape, False, np.dtype(np.uint8)):
                return None
        with open(done_log) as log:
            for line in log.read().split("\n")[:-1]:  # complete once its newline is there
                start, stop = (int(n) for n in line.split())
                finished[start:stop] = True
    except (OSError, ValueError):
        return None
    return finished


def cpu_count():
    return len(os.sched_getaffinity(0))


def build_array(path, paths, image_shape, decode, description):
    """Write uint8 [len(paths), *image_shape] with row i = decode(paths[i]) to the .npy `path`.

    Resumes a build of the same file interrupted earlier; raises DataError naming the image when
    one fails to decode, leaving no partial files. The caller holds the directory's Lock.
    """
    shape = (len(paths),) + tuple(image_shape)
    row_bytes = math.prod(image_shape)
    folder, name = os.path.split(path)
    partial = os.path.join(folder, f".{name}.partial")
    done_log = partial + ".done"  # "start stop" of each finished range of rows
    finished = _finished_rows(partial, done_log, shape)
    if finished is not None and finished.any():
        note(f"{path}: resuming an interrupted build, {finished.sum()} of {len(paths)} images "
             f"already decoded")
    else:
        # off a terminal the progress lines start after 30 s; say at once what is being built
        note(f"{description}: {len(paths)} images into {path}")
        finished = np.zeros(len(paths), bool)
        for stale in (partial, done_log):
            if os.path.exists(stale):
                os.remove(stale)
        with open(partial, "wb") as file:
            np.lib.format.write_array_header_1_0(
                file, {"descr": "|u1", "fortran_order": False, "shape": shape})
            # reserve the space now: a full disk is an error here, not a crash mid-build
            os.posix_fallocate(file.fileno(), 0, file.tell() + math.prod(shape))
    with open(partial, "rb") as file:
        read_npy_header(file)
        offset = file.tell()
    per_chunk = max(1, CHUNK_BYTES // row_bytes)
    chunks = [(start, min(start + per_chunk, len(paths)))
              for start in range(0, len(paths), per_chunk)]
    tasks = [((start, stop), (partial, offset + start * row_bytes, tuple(image_shape),
                              paths[start:stop], decode))
             for start, stop in chunks if not finished[start:stop].all()]
    with open(done_log, "a") as log, progress(
            total=len(paths), desc=description, unit="img",
            initial=len(paths) - sum(b - a for (a, b), _ in tasks)) as bar:
        def chunk_finished(rows, error):
            if error is not None:
                raise DataError(error)
            log.write(f"{rows[0]} {rows[1]}\n")
            log.flush()
            bar.update(rows[1] - rows[0])

        try:
            _decode_all(tasks, min(cpu_count(), len(tasks)) or 1, chunk_finished)
        except DataError:
            os.remove(partial)
            os.remove(done_log)
            raise
    with open(partial, "rb+") as file:
        os.fsync(file.fileno())
    os.chmod(partial, 0o644)
    os.replace(partial, path)
    os.remove(done_log)


def open_array(path, shape):
    """The .npy at `path` memory-mapped read-only, or (None, why not) when it is missing or is
    not uint8 of `shape`."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        return None, f"cached pixels {path} are missing or unreadable ({error})"
    if array.dtype != np.uint8 or array.shape != tuple(shape):
        return None, f"cached pixels {path} hold {array.dtype} {array.shape}, not uint8 {shape}"
    return array, None


# ---------------------------------------------------------------------------------------------
# The cache of one split of a source folder

def cached_images(set_name, root, split, relative_paths, image_shape, decode, cache_dir=None,
                  before_build=None):
    """uint8 [N, *image_shape], read-only and memory-mapped: decode(root/path) for every path,
    decoded at most once per listing of the files (see the module docstring).
    before_build(paths), when given, is called with the files' paths just before they are
    decoded, i.e. once per listing (to tell the user about the images, say)."""
    image_shape = tuple(image_shape)
    folder = source_folder(cache_dir, set_name, root)
    listing = listing_of(root, relative_paths)
    digest = listing_digest(listing)
    stem = f"{split}-{image_shape[0]}x{image_shape[1]}"
    manifest_path = os.path.join(folder, stem + ".json")
    wanted = {"format": FORMAT, "set": set_name, "source": os.path.abspath(root), "split": split,
              "image_shape": list(image_shape), "count": len(listing), "listing_sha256": digest}
    shape = (len(listing),) + image_shape

    def current():
        """(memory-mapped pixels, None), or (None, why the cache cannot be used)."""
        try:
            with open(manifest_path) as file:
                manifest = json.load(file)
            old_listing = manifest["listing"]
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError, KeyError, TypeError) as error:
            return None, f"cache manifest {manifest_path} is unreadable ({error})"
        if manifest.get("listing_sha256") != digest:
            return None, (f"changed since its cache was built "
                          f"({listing_change(old_listing, listing)})")
        if any(manifest.get(key) != value for key, value in wanted.items()):
            return None, f"cache manifest {manifest_path} does not describe this cache"
        return open_array(os.path.join(folder, manifest["pixels"]), shape)

    pixels, _ = current()
    if pixels is not None:
        return pixels
    with Lock(folder, f"{set_name}: waiting for another process that is caching {root} in "
                      f"{folder}"):
        pixels, problem = current()  # that other process may have built it meanwhile
        if pixels is not None:
            return pixels
        if problem is not None:
            note(f"{set_name} {root}: {problem}; rebuilding its {split} cache in {folder}")
        pixels_name = f"{stem}-{digest[:16]}.npy"
        try:
            if open_array(os.path.join(folder, pixels_name), shape)[0] is None:
                # (present: a builder stopped between these pixels and their manifest)
                paths = [os.path.join(root, relative) for relative in relative_paths]
                if before_build is not None:
                    before_build(paths)
                build_array(os.path.join(folder, pixels_name), paths, image_shape, decode,
                            f"caching {set_name} {split} {image_shape[0]}x{image_shape[1]}")
            write_atomically(manifest_path, lambda file: file.write(json.dumps(
                dict(wanted, pixels=pixels_name, listing=listing)).encode()))
        except OSError as error:  # a full disk, say: what was decoded stays for a resume
            raise DataError(f"{folder}: cannot write the data cache ({error}); free space "
                            f"there or pass another cache_dir") from None
        for name in os.listdir(folder):  # pixels of older listings, at this split and size
            if name.startswith(stem + "-") and name.endswith(".npy") and name != pixels_name:
                os.remove(os.path.join(folder, name))
    pixels, problem = current()
    if pixels is None:
        raise DataError(f"{set_name}: the cache of {root} just built in {folder} cannot be "
                        f"read ({problem}); delete {folder} and retry")
    return pixels


# ---------------------------------------------------------------------------------------------
# .npz files whose arrays are stored uncompressed can be memory-mapped too

def npz_member(path, key):
    """Array `key` of the .npz at `path`: memory-mapped read-only when stored uncompressed (as
    np.savez writes it), else read into memory."""
    try:
        with zipfile.ZipFile(path) as archive:
            member = archive.getinfo(key + ".npy")
        if member.compress_type != zipfile.ZIP_STORED:
            with np.load(path, allow_pickle=False) as arrays:
                return arrays[key]
        with open(path, "rb") as file:
            file.seek(member.header_offset)
            local_header = file.read(30)  # then the name and an extra field, then the data
            if local_header[:4] != b"PK\x03\x04":
                raise ValueError(f"no local file header for {key}.npy")
            name_length, extra_length = np.frombuffer(local_header[26:30], "<u2")
            file.seek(member.header_offset + 30 + int(name_length) + int(extra_length))
            shape, fortran_order, dtype = read_npy_header(file)
            if fortran_order or dtype.hasobject:
                raise ValueError(f"{key}.npy is not a plain C-ordered array")
            offset = file.tell()
        return np.memmap(path, dtype, "r", offset=offset, shape=shape)
    except (KeyError, zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise DataError(f"{path}: cannot read '{key}' ({error}); delete the file to rebuild it "
                        f"or replace it with the original") from None
