"""folder: any directory of PNG/JPEG images, made square at `image_size` (default 32).

Layout rules, all decided from file names alone (so `info` never decodes a pixel):
  * Images are found recursively (hidden files and folders skipped) and kept in the order of
    their sorted relative paths.
  * Labels: when every image lies inside a sub-folder, the sorted names of the top-level
    sub-folders are the classes (the torchvision ImageFolder layout); otherwise the set is
    unlabelled and every label is 0.
  * Split: when `train/` and `test/` sub-folders both exist they are the splits (class folders
    go inside them); otherwise every 10th image in sorted order (the 10th, 20th, ...) is test.
Each image is converted to RGB (16-bit greyscale scaled to 8 bits), centre-cropped to a square
and area-resized (`data.images.square_rgb`; images smaller than the size are enlarged, said in
one line), once: the decoded splits are cached as uint8 arrays outside the folder and
memory-mapped by later loads, and rebuilt when the folder's listing changes (`data.cache`).
Nothing is ever written into the folder.
"""
import functools
import os

import numpy as np

from data import cache, images
from data.base import Arrays, DataError, DatasetInfo, Source, check_split, register

DEFAULT_IMAGE_SIZE = 32
TEST_EVERY = 10


def list_images(root):
    """Sorted relative paths ('/'-separated) of the PNG/JPEG files below `root`."""
    found = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        relative = os.path.relpath(directory, root)
        for name in files:
            if not name.startswith(".") and name.lower().endswith(images.IMAGE_EXTENSIONS):
                found.append(name if relative == "." else f"{relative}/{name}".replace(os.sep, "/"))
    return sorted(found)


def class_of(relative_path):
    """The top-level sub-folder an image lies in, or None for an image directly in the root."""
    head, _, rest = relative_path.partition("/")
    return head if rest else None


@register
class Folder(Source):
    name = "folder"

    def _size(self):
        size = DEFAULT_IMAGE_SIZE if self.image_size is None else self.image_size
        if size < 1:
            raise DataError(f"folder: image_size must be a positive number of pixels, got {size}")
        return size

    def _layout(self):
        """({split: [(absolute path, label)]}, class names)."""
        root = self.data_dir
        if root is None or not os.path.isdir(root):
            raise DataError(f"{root}: no such image folder; pass the directory holding the "
                            f"images as data_dir")
        split_roots = {split: os.path.join(root, split) for split in ("train", "test")}
        if not all(os.path.isdir(path) for path in split_roots.values()):
            paths = list_images(root)
            if not paths:
                raise DataError(f"{root}: no PNG or JPEG images found (searched recursively)")
            names = self._class_names(paths)
            labelled = [(os.path.join(root, p), self._label(p, names)) for p in paths]
            is_test = [i % TEST_EVERY == TEST_EVERY - 1 for i in range(len(labelled))]
            return {"train": [x for x, test in zip(labelled, is_test) if not test],
                    "test": [x for x, test in zip(labelled, is_test) if test]}, names
        listed = {split: list_images(path) for split, path in split_roots.items()}
        if not listed["train"]:
            raise DataError(f"{split_roots['train']}: no PNG or JPEG images found "
                            f"(searched recursively)")
        names = self._class_names(listed["train"])
        test_names = self._class_names(listed["test"]) if listed["test"] else names
        if not set(test_names) <= set(names) or bool(test_names) != bool(names):
            raise DataError(f"{root}: the class sub-folders of test/ ({', '.join(test_names)}) "
                            f"must be among those of train/ ({', '.join(names)})")
        return {split: [(os.path.join(split_roots[split], p), self._label(p, names))
                        for p in listed[split]] for split in listed}, names

    @staticmethod
    def _class_names(paths):
        classes = [class_of(path) for path in paths]
        return tuple(sorted(set(classes))) if None not in classes else ()

    @staticmethod
    def _label(path, names):
        return names.index(class_of(path)) if names else 0

    def info(self):
        size = self._size()
        splits, names = self._layout()
        return DatasetInfo(name=self.name, image_shape=(size, size, 3), num_classes=len(names),
                           split_sizes={split: len(items) for split, items in splits.items()},
                           class_names=names)

    def arrays(self, split):
        check_split(split)
        size = self._size()
        splits, _ = self._layout()
        items = splits[split]
        if not items:
            raise DataError(f"{self.data_dir}: the {split!r} split has no images (without train/ "
                            f"and test/ folders every {TEST_EVERY}th image is test)")
        pixels = cache.cached_images(
            self.name, self.data_dir, split,
            [os.path.relpath(path, self.data_dir) for path, _ in items], (size, size, 3),
            functools.partial(images.square_rgb, size=size), self.cache_dir,
            before_build=functools.partial(images.say_enlarged, f"folder {self.data_dir} {split}",
                                           size=size))
        return Arrays(images=pixels, labels=np.array([label for _, label in items], np.int32))
