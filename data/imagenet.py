"""Two different downsampled ImageNets; bits/dim on one are not comparable with the other.

`imagenet` -- van den Oord et al. (2016) "small ImageNet", the set PixelCNN++ and Glow report on.
    Unlabelled. Four tar files untar to flat folders of RGB PNGs: `train_32x32/` (1,281,149 files),
    `valid_32x32/` (49,999 files), and `train_64x64/`, `valid_64x64/` for image_size=64. The
    folders are looked for in `data_dir` and `data_dir/small_imagenet/`. The first load decodes
    every PNG (sorted by file name; a process per CPU, resumable) into
    `<data_dir>/small_imagenet/imgnet_{R}x{R}.npz` with uint8 NHWC arrays `trainx` and `testx`,
    the file openai/pixel-cnn makes (an existing one of theirs is read as is); later loads
    memory-map its arrays (np.savez stores them uncompressed), so the PNG folders may then go.

`imagenet_npz` -- Chrabaszcz et al. (2017) "Imagenet32x32/64x64", box-resized and labelled.
    The npz release: `train_data_batch_1.npz` ... `train_data_batch_10.npz` and `val_data.npz`,
    found anywhere below `data_dir` (the zips unpack into a top folder; the 64x64 train batches
    come in two zips, part1 and part2). Each holds `data` uint8 [N, 3*R*R], planar like CIFAR
    (all red, then green, then blue, each plane row-major), and `labels` in 1..1000, made 0-based
    here; the training `mean` is ignored. 1,281,167 train / 50,000 val images.
"""
import functools
import os
import re
import shutil
import zipfile

import numpy as np
from PIL import Image

from data import cache
from data.base import Arrays, DataError, DatasetInfo, Source, check_split, register
from data.progress import progress

SIDES = (32, 64)


def side_from(image_size, default=None):
    """The requested resolution: 32 or 64 (None gives `default`)."""
    if image_size is None:
        return default
    if image_size not in SIDES:
        raise DataError(f"downsampled ImageNet comes in 32x32 and 64x64; "
                        f"image_size={image_size} is neither")
    return image_size


def npz_headers(path):
    """{array name: (shape, dtype)} of an .npz file from the .npy headers alone (no pixels read)."""
    headers = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for entry in archive.namelist():
                if not entry.endswith(".npy"):
                    continue
                with archive.open(entry) as f:
                    shape, _, dtype = cache.read_npy_header(f)
                headers[entry[:-len(".npy")]] = (shape, dtype)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e}); replace it with the "
                        f"original") from None
    return headers


# ---------------------------------------------------------------------------------------------
# van den Oord et al. small ImageNet: PNG folders -> one cached npz

OORD_FOLDERS = {"train": "train", "test": "valid"}  # split -> folder prefix
OORD_KEYS = {"train": "trainx", "test": "testx"}  # split -> array name in the cache
OORD_SUBDIR = "small_imagenet"


def png_names(folder):
    """The *.png files in `folder`, sorted by name."""
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(".png"))
    if not names:
        raise DataError(f"{folder} holds no .png files: untar {os.path.basename(folder)}.tar "
                        f"there again")
    return names


def read_png(path, side):
    """One file of the set, which must be an RGB PNG of exactly side x side, as uint8."""
    try:
        with Image.open(path) as image:
            if image.format != "PNG" or image.mode != "RGB" or image.size != (side, side):
                raise DataError(f"{path}: {image.format} {image.mode} image of "
                                f"{image.size[0]}x{image.size[1]}, expected an RGB PNG of "
                                f"{side}x{side}; remove it or untar the folder again")
            return np.asarray(image)
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable PNG ({e}); remove it or untar the folder "
                        f"again") from None


def write_stored_npz(file, parts):
    """An .npz of the .npy files {name: path}, stored uncompressed (as np.savez writes it, so
    its arrays can be memory-mapped), copied through a small buffer."""
    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, part in parts.items():
            with open(part, "rb") as source, \
                    archive.open(key + ".npy", "w", force_zip64=True) as target:
                shutil.copyfileobj(source, target, 16 << 20)


@register
class SmallImageNet(Source):
    """van den Oord et al. small ImageNet (see the module docstring); image_size 32 (default) or
    64. Unlabelled: every label is 0. `info()` reads the cache's array headers, or before the
    cache exists counts the PNG files."""

    name = "imagenet"

    @property
    def side(self):
        return side_from(self.image_size, default=SIDES[0])

    @property
    def cache_path(self):
        return os.path.join(self.data_dir, OORD_SUBDIR, f"imgnet_{self.side}x{self.side}.npz")

    def png_folder(self, split):
        folder = f"{OORD_FOLDERS[split]}_{self.side}x{self.side}"
        places = [os.path.join(self.data_dir, folder),
                  os.path.join(self.data_dir, OORD_SUBDIR, folder)]
        for place in places:
            if os.path.isdir(place):
                return place
        raise DataError(f"neither {self.cache_path} nor a folder {folder}/ in {self.data_dir} or "
                        f"{os.path.join(self.data_dir, OORD_SUBDIR)} exists: untar {folder}.tar "
                        f"(van den Oord et al.'s small ImageNet) into one of them")

    def cached_sizes(self):
        """{split: N} from the cache's headers, checking it holds what this class writes."""
        headers = npz_headers(self.cache_path)
        sizes = {}
        for split, key in OORD_KEYS.items():
            shape, dtype = headers.get(key, (None, None))
            if dtype != np.uint8 or shape is None or shape[1:] != (self.side, self.side, 3):
                raise DataError(f"{self.cache_path}: '{key}' is {dtype} {shape}, expected uint8 "
                                f"[N, {self.side}, {self.side}, 3]; delete the file to rebuild it "
                                f"from the PNG folders")
            sizes[split] = shape[0]
        return sizes

    def build_cache(self):
        """Decode both PNG folders (a process per CPU, resumable after an interruption) into
        hidden .npy parts beside the cache, then write the cache atomically from them. One
        process builds; others wait for it and then read its cache."""
        folder, cache_name = os.path.split(self.cache_path)
        sources = {key: (self.png_folder(split), png_names(self.png_folder(split)))
                   for split, key in OORD_KEYS.items()}
        with cache.Lock(folder, f"imagenet: waiting for another process that is writing "
                                f"{self.cache_path}"):
            if os.path.isfile(self.cache_path):
                return
            parts = {}
            for key, (png_folder, names) in sources.items():
                digest = cache.listing_digest(cache.listing_of(png_folder, names))
                parts[key] = os.path.join(folder, f".{cache_name}.{key}-{digest[:16]}.npy")
                if not os.path.exists(parts[key]):
                    cache.build_array(parts[key], [os.path.join(png_folder, n) for n in names],
                                      (self.side, self.side, 3),
                                      functools.partial(read_png, side=self.side),
                                      f"decoding {png_folder}")
            cache.write_atomically(self.cache_path, lambda file: write_stored_npz(file, parts))
            for name in os.listdir(folder):  # these parts, and those of older listings
                if name.startswith(f".{cache_name}."):
                    os.remove(os.path.join(folder, name))

    def info(self):
        if os.path.isfile(self.cache_path):
            sizes = self.cached_sizes()
        else:
            sizes = {split: sum(name.lower().endswith(".png")
                                for name in os.listdir(self.png_folder(split)))
                     for split in OORD_FOLDERS}
        return DatasetInfo(name=self.name, image_shape=(self.side, self.side, 3), num_classes=0,
                           split_sizes=sizes)

    def arrays(self, split):
        check_split(split)
        if not os.path.isfile(self.cache_path):
            self.build_cache()
        self.cached_sizes()
        images = cache.npz_member(self.cache_path, OORD_KEYS[split])
        return Arrays(images=images, labels=np.zeros(len(images), np.int32))


# ---------------------------------------------------------------------------------------------
# Chrabaszcz et al. Imagenet32x32 / Imagenet64x64: labelled npz batches

NUM_TRAIN_BATCHES = 10
NUM_CLASSES = 1000
TRAIN_BATCH = re.compile(r"train_data_batch_(\d+)\.npz")
VAL_FILE = "val_data.npz"


@register
class ImageNetNpz(Source):
    """Chrabaszcz et al. Imagenet32x32/64x64 npz batches (see the module docstring). The
    resolution comes from the row length of `data` and must match image_size when one is given.
    `info()` reads only the .npy headers inside the npz files."""

    name = "imagenet_npz"

    def split_files(self):
        """{'train': the 10 train batch paths in order, 'test': [val_data.npz]}."""
        if not os.path.isdir(self.data_dir):
            raise DataError(f"{self.data_dir} does not exist: unzip Imagenet32_train_npz.zip and "
                            f"Imagenet32_val_npz.zip (or the Imagenet64 ones) into it")
        found = {}  # file name -> paths
        for folder, subfolders, files in os.walk(self.data_dir):
            subfolders.sort()
            for name in files:
                if TRAIN_BATCH.fullmatch(name) or name == VAL_FILE:
                    found.setdefault(name, []).append(os.path.join(folder, name))
        for name, paths in found.items():
            if len(paths) > 1:
                raise DataError(f"{name} is in several places ({', '.join(paths)}): point "
                                f"data_dir at a folder that holds one resolution")
        expected = [f"train_data_batch_{k}.npz" for k in range(1, NUM_TRAIN_BATCHES + 1)]
        unexpected = sorted(set(found) - set(expected) - {VAL_FILE})
        if unexpected:
            raise DataError(f"{found[unexpected[0]][0]}: unexpected batch number, the release has "
                            f"train_data_batch_1..{NUM_TRAIN_BATCHES}.npz")
        missing = [name for name in expected + [VAL_FILE] if name not in found]
        if missing:
            raise DataError(f"{', '.join(missing)} not found below {self.data_dir}: unzip every "
                            f"zip of the npz release there (Imagenet64 train comes in two parts)")
        return {"train": [found[name][0] for name in expected], "test": found[VAL_FILE]}

    def batch_sizes(self):
        """(side, {split: [N per file]}) from the npz headers, checking shapes and resolutions."""
        side, sizes = None, {}
        for split, paths in self.split_files().items():
            sizes[split] = []
            for path in paths:
                headers = npz_headers(path)
                data_shape, data_dtype = headers.get("data", (None, None))
                labels_shape, _ = headers.get("labels", (None, None))
                if data_dtype != np.uint8 or len(data_shape) != 2:
                    raise DataError(f"{path}: 'data' is {data_dtype} {data_shape}, expected uint8 "
                                    f"[N, 3*R*R]")
                file_side = {3 * s * s: s for s in SIDES}.get(data_shape[1])
                if file_side is None:
                    raise DataError(f"{path}: rows of {data_shape[1]} values, expected "
                                    f"{' or '.join(str(3 * s * s) for s in SIDES)} (3*R*R)")
                if labels_shape != (data_shape[0],):
                    raise DataError(f"{path}: 'labels' has shape {labels_shape} for "
                                    f"{data_shape[0]} images")
                if side is not None and file_side != side:
                    raise DataError(f"{path}: {file_side}x{file_side} images among {side}x{side} "
                                    f"ones; keep one resolution per data_dir")
                side = file_side
                sizes[split].append(data_shape[0])
        wanted = side_from(self.image_size, default=side)
        if wanted != side:
            raise DataError(f"{self.data_dir} holds {side}x{side} batches but image_size="
                            f"{wanted}: point data_dir at the {wanted}x{wanted} release")
        return side, sizes

    def info(self):
        side, sizes = self.batch_sizes()
        return DatasetInfo(name=self.name, image_shape=(side, side, 3), num_classes=NUM_CLASSES,
                           split_sizes={split: sum(n) for split, n in sizes.items()})

    def arrays(self, split):
        check_split(split)
        side, sizes = self.batch_sizes()
        paths = self.split_files()[split]
        total = sum(sizes[split])
        images = np.empty((total, side, side, 3), np.uint8)
        labels = np.empty(total, np.int32)
        start = 0
        for path, count in zip(progress(paths, desc=f"reading imagenet_npz {split}", unit="files"),
                               sizes[split]):
            with np.load(path, allow_pickle=False) as batch:
                data, batch_labels = batch["data"], batch["labels"]
            if not np.issubdtype(batch_labels.dtype, np.integer) or (
                    count and (batch_labels.min() < 1 or batch_labels.max() > NUM_CLASSES)):
                raise DataError(f"{path}: labels must be integers in 1..{NUM_CLASSES}, found "
                                f"{batch_labels.dtype} in {batch_labels.min()}.."
                                f"{batch_labels.max()}")
            images[start:start + count] = data.reshape(count, 3, side, side).transpose(0, 2, 3, 1)
            labels[start:start + count] = batch_labels - 1  # the release counts classes from 1
            start += count
        return Arrays(images=images, labels=labels)
