"""real32: the embedded default data set, 32x32 RGB patches of ten real colour photographs.

The photographs ship inside the scikit-image and scikit-learn wheels, so the set builds offline
in seconds at first use and lands in `<data_dir>/real32/real32.npz`. The label of a patch is the
photograph it was cut from (10 classes). Licences are in each package's data README; china.jpg
and flower.jpg (scikit-learn) are CC-BY 2.0 by danielbuechele and vultilion on Flickr.

How the patches are cut:
  1. A photo whose long side exceeds 768 px is box-averaged by an integer factor first, so the
     two large ones (retina, Hubble) do not dominate.
  2. For each scale s in (1, 2, 4) the photo is box-averaged by s and cut into non-overlapping
     32x32 windows; a window covers a 32s x 32s footprint of the photo.
  3. The split is spatial: the right 20 % of each photo's width is test, the rest train, with a
     32 px guard band centred on the border. A window is kept only when its footprint lies
     wholly in one region, so no train pixel ever appears in a test patch.
  4. Flat windows (pixel std < 4, e.g. black sky) and exact repeats of an earlier window go.
This gives 2547 train and 378 test patches with Pillow 13.0 (five sources are JPEG, so another
libjpeg may shift a pixel value here and there). The arrays' sha256 is stored in
`real32.json` beside the cache and checked on every read.
"""
import hashlib
import importlib.util
import json
import os
import zipfile

import numpy as np
from PIL import Image

from data import cache
from data.base import Arrays, DataError, DatasetInfo, Source, check_split, register
from data.progress import progress

# (class name, package whose wheel holds the photo, path inside that package)
PHOTOS = (
    ("astronaut", "skimage", "data/astronaut.png"),
    ("chelsea", "skimage", "data/chelsea.png"),
    ("coffee", "skimage", "data/coffee.png"),
    ("hubble_deep_field", "skimage", "data/hubble_deep_field.jpg"),
    ("immunohistochemistry", "skimage", "data/ihc.png"),
    ("retina", "skimage", "data/retina.jpg"),
    ("rocket", "skimage", "data/rocket.jpg"),
    ("motorcycle_left", "skimage", "data/motorcycle_left.png"),
    ("china", "sklearn", "datasets/images/china.jpg"),
    ("flower", "sklearn", "datasets/images/flower.jpg"),
)
PATCH = 32
SCALES = (1, 2, 4)
MAX_SIDE = 768
TEST_FRACTION = 0.2
GUARD = 32
MIN_STD = 4.0

ARRAY_KEYS = ("trainx", "trainy", "trainmeta", "testx", "testy", "testmeta", "sources")


def photo_path(package, relative_path):
    """Where an installed package keeps a bundled file; found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"real32 needs the photographs bundled with {package}: "
                        f"pip install {'scikit-image' if package == 'skimage' else 'scikit-learn'}")
    return os.path.join(spec.submodule_search_locations[0], relative_path)


def box_downsample(image, factor):
    """Mean over factor x factor blocks, rounded half up; edge rows/columns that do not fill a
    block are dropped."""
    if factor == 1:
        return image
    height, width = image.shape[0] // factor * factor, image.shape[1] // factor * factor
    blocks = image[:height, :width].astype(np.int64).reshape(
        height // factor, factor, width // factor, factor, image.shape[2])
    area = factor * factor
    return ((blocks.sum(axis=(1, 3)) + area // 2) // area).astype(np.uint8)


def read_photo(path):
    """A bundled photo as RGB uint8, reduced by an integer factor if its long side > MAX_SIDE."""
    with Image.open(path) as image:
        photo = np.asarray(image.convert("RGB"))
    return box_downsample(photo, -(-max(photo.shape[:2]) // MAX_SIDE))


def split_columns(width):
    """(train_end, test_start): train footprints end at or before train_end, test footprints
    start at or after test_start; the guard band lies between."""
    border = width - int(TEST_FRACTION * width)
    return border - GUARD // 2, border + GUARD // 2


def photo_windows(photo):
    """Yield (split, patch, scale, y0, x0) for every window of one photo that lies in one split,
    in scale then raster order; (y0, x0) is the footprint's corner in photo pixels."""
    train_end, test_start = split_columns(photo.shape[1])
    for scale in SCALES:
        scaled = box_downsample(photo, scale)
        for top in range(0, scaled.shape[0] - PATCH + 1, PATCH):
            for left in range(0, scaled.shape[1] - PATCH + 1, PATCH):
                x0, x1 = left * scale, (left + PATCH) * scale
                if x1 <= train_end:
                    split = "train"
                elif x0 >= test_start:
                    split = "test"
                else:
                    continue
                yield split, scaled[top:top + PATCH, left:left + PATCH], scale, top * scale, x0


def build():
    """All real32 arrays (the keys of ARRAY_KEYS), computed from the bundled photos."""
    patches = {"train": [], "test": []}
    labels = {"train": [], "test": []}
    metadata = {"train": [], "test": []}
    seen = set()
    for source, (name, package, relative_path) in enumerate(progress(PHOTOS, desc="building real32",
                                                                      unit="photos")):
        photo = read_photo(photo_path(package, relative_path))
        for split, patch, scale, y0, x0 in photo_windows(photo):
            if patch.std() < MIN_STD or patch.tobytes() in seen:
                continue
            seen.add(patch.tobytes())
            patches[split].append(patch)
            labels[split].append(source)
            metadata[split].append((source, scale, y0, x0))
    built = {"sources": np.array([name for name, _, _ in PHOTOS])}
    for split in ("train", "test"):
        built[split + "x"] = np.stack(patches[split]).astype(np.uint8)
        built[split + "y"] = np.array(labels[split], np.int32)
        built[split + "meta"] = np.array(metadata[split], np.int32).reshape(-1, 4)
    return built


def checksum(arrays):
    """sha256 over each array's name, dtype, shape and bytes, in ARRAY_KEYS order."""
    digest = hashlib.sha256()
    for key in ARRAY_KEYS:
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def write_cache(cache_dir, arrays):
    """Write real32.json (checksum, sizes, class names) and then real32.npz, each atomically.
    The npz appears last, so its presence means the pair is complete."""
    os.makedirs(cache_dir, exist_ok=True)
    index = {
        "sha256": checksum(arrays),
        "image_shape": list(arrays["trainx"].shape[1:]),
        "split_sizes": {"train": len(arrays["trainx"]), "test": len(arrays["testx"])},
        "class_names": [str(name) for name in arrays["sources"]],
    }
    cache.write_atomically(os.path.join(cache_dir, "real32.json"),
                      lambda file: file.write(json.dumps(index, indent=1).encode()))
    cache.write_atomically(os.path.join(cache_dir, "real32.npz"),
                      lambda file: np.savez_compressed(file, **arrays))


def read_index(cache_dir):
    """The small json written beside the cache."""
    path = os.path.join(cache_dir, "real32.json")
    try:
        with open(path) as file:
            index = json.load(file)
        index["sha256"], index["split_sizes"]["train"], index["split_sizes"]["test"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: unreadable real32 index ({error}); delete {cache_dir} to "
                        f"rebuild real32") from None
    return index


def read_cache(cache_dir):
    """The cached arrays, checked against the checksum in real32.json."""
    index = read_index(cache_dir)
    path = os.path.join(cache_dir, "real32.npz")
    try:
        with np.load(path) as archive:
            arrays = {key: archive[key] for key in ARRAY_KEYS}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: corrupt real32 cache ({error}); delete {cache_dir} to "
                        f"rebuild real32") from None
    if checksum(arrays) != index["sha256"]:
        raise DataError(f"{path}: real32 cache does not match the sha256 in real32.json; "
                        f"delete {cache_dir} to rebuild real32")
    return arrays


@register
class Real32(Source):
    name = "real32"

    def _cache_dir(self):
        if self.data_dir is None:
            raise DataError("real32 needs a data_dir to keep its cache in")
        if self.image_size not in (None, PATCH):
            raise DataError(f"real32 images are {PATCH}x{PATCH}; image_size={self.image_size} "
                            f"is not available")
        cache_dir = os.path.join(self.data_dir, "real32")
        if not os.path.exists(os.path.join(cache_dir, "real32.npz")):
            write_cache(cache_dir, build())
        return cache_dir

    def info(self):
        index = read_index(self._cache_dir())
        return DatasetInfo(name=self.name, image_shape=tuple(index["image_shape"]),
                           num_classes=len(index["class_names"]),
                           split_sizes=dict(index["split_sizes"]),
                           class_names=tuple(index["class_names"]))

    def arrays(self, split):
        check_split(split)
        cached = read_cache(self._cache_dir())
        return Arrays(images=cached[split + "x"], labels=cached[split + "y"])
