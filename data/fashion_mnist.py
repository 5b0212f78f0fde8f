"""fashion_mnist: Zalando's Fashion-MNIST from its IDX files (Debian `dataset-fashion-mnist`).

60,000 train / 10,000 test 28x28 greyscale product photos, 10 classes. The files are looked for
in `data_dir` first and in /usr/share/datasets/fashion-mnist (where `apt-get install
dataset-fashion-mnist` puts them) when `data_dir` holds none; gzipped or not.

Images keep their single channel, image_shape (32, 32, 1): PixelCNN++ models one channel
directly (and a trainer can tile it to 3). The default image_size 32 pads 2 zero pixels on every
side. Glow's MNIST path pads with np.pad(..., 'minimum') instead, which for MNIST digits is zero,
but 64 % of Fashion-MNIST images fill a whole row or column (shirts, bags), so 'minimum' would
smear grey bars into their border; zeros keep the border black as the photos are.
image_size=28 gives the images unpadded.
"""
import gzip
import os
import struct

import numpy as np

from data.base import Arrays, DataError, DatasetInfo, Source, check_split, register

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
SIDE = 28
PADDED_SIDE = 32


def _open(path):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def read_header(path, magic):
    """The dimensions in an IDX file's big-endian header: (N, rows, cols) or (N,)."""
    num_dims = magic & 0xFF
    try:
        with _open(path) as file:
            header = file.read(4 + 4 * num_dims)
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: unreadable IDX file ({error}); reinstall "
                        f"dataset-fashion-mnist or replace the file") from None
    if len(header) < 4 + 4 * num_dims or struct.unpack(">I", header[:4])[0] != magic:
        raise DataError(f"{path}: not an IDX file with magic 0x{magic:08x}; is it the right "
                        f"file (images idx3, labels idx1)?")
    return struct.unpack(f">{num_dims}I", header[4:])


def read_idx(path, magic):
    """The uint8 array stored in an IDX file, after checking its header and length."""
    shape = read_header(path, magic)
    try:
        with _open(path) as file:
            payload = file.read()[4 + 4 * len(shape):]
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: unreadable IDX file ({error}); reinstall "
                        f"dataset-fashion-mnist or replace the file") from None
    expected = int(np.prod(shape))
    if len(payload) != expected:
        raise DataError(f"{path}: header says {shape} = {expected} bytes of data, the file holds "
                        f"{len(payload)}; the file is truncated or damaged, replace it")
    return np.frombuffer(payload, np.uint8).reshape(shape)


@register
class FashionMNIST(Source):
    name = "fashion_mnist"

    def _size(self):
        size = PADDED_SIDE if self.image_size is None else self.image_size
        if size not in (SIDE, PADDED_SIDE):
            raise DataError(f"fashion_mnist has image_size {PADDED_SIDE} (zero-padded) or {SIDE}, "
                            f"not {size}")
        return size

    def _paths(self, split):
        """(images path, labels path) of a split, from data_dir or else DEFAULT_DIR."""
        def found(directory, name):
            for candidate in (name + ".gz", name):
                if os.path.isfile(os.path.join(directory, candidate)):
                    return os.path.join(directory, candidate)
            return None

        every_name = [name for names in FILES.values() for name in names]
        for directory in ([self.data_dir] if self.data_dir else []) + [DEFAULT_DIR]:
            if any(found(directory, name) for name in every_name):
                break
        else:
            raise DataError(f"fashion_mnist: no IDX files in {self.data_dir} or {DEFAULT_DIR}; run "
                            f"`apt-get install dataset-fashion-mnist` or put "
                            f"{', '.join(n + '.gz' for n in every_name)} in data_dir")
        paths = []
        for name in FILES[split]:
            path = found(directory, name)
            if path is None:
                raise DataError(f"{os.path.join(directory, name)}.gz: missing; the Fashion-MNIST "
                                f"folder {directory} needs all four IDX files")
            paths.append(path)
        return paths

    def info(self):
        size = self._size()
        sizes = {}
        for split in FILES:
            images_path, labels_path = self._paths(split)
            count, rows, cols = read_header(images_path, IMAGES_MAGIC)
            (num_labels,) = read_header(labels_path, LABELS_MAGIC)
            if count != num_labels:
                raise DataError(f"{images_path}: {count} images but {labels_path} has "
                                f"{num_labels} labels; the two files do not belong together")
            sizes[split] = count
        return DatasetInfo(name=self.name, image_shape=(size, size, 1), num_classes=10,
                           split_sizes=sizes, class_names=CLASS_NAMES)

    def arrays(self, split):
        check_split(split)
        size = self._size()
        images_path, labels_path = self._paths(split)
        images = read_idx(images_path, IMAGES_MAGIC)
        labels = read_idx(labels_path, LABELS_MAGIC)
        if images.shape[1:] != (SIDE, SIDE):
            raise DataError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, "
                            f"Fashion-MNIST's are {SIDE}x{SIDE}")
        if len(images) != len(labels):
            raise DataError(f"{images_path}: {len(images)} images but {labels_path} has "
                            f"{len(labels)} labels; the two files do not belong together")
        if labels.size and labels.max() >= len(CLASS_NAMES):
            raise DataError(f"{labels_path}: label {labels.max()} outside 0..9")
        margin = (size - SIDE) // 2
        padded = np.pad(images, ((0, 0), (margin, margin), (margin, margin)))
        return Arrays(images=padded[..., None], labels=labels.astype(np.int32))
