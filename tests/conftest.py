"""Shared pytest set-up, imported before any test module and so before TensorFlow initialises."""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from trainer import dist  # noqa: E402

# Two logical CPU devices for the whole session, so multi-device code (MirroredStrategy over two
# replicas) runs in-process; they can only be configured before TensorFlow initialises.
dist.logical_cpus(2)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_image_folder(tmp_path_factory):
    """An unlabelled `folder` data set of 44 real-photo 8x8 PNGs: 40 train, 4 test images."""
    from PIL import Image
    from photo_crops import photo_crops

    root = tmp_path_factory.mktemp("tiny_images")
    for index, image in enumerate(photo_crops(44, 8, seed=3)):
        Image.fromarray(image).save(root / f"{index:03d}.png")
    return str(root)


@pytest.fixture(scope="session", autouse=True)
def data_cache_in_tmp(tmp_path_factory):
    """Decoded-image caches (data.cache) go to this session's temporary directory, not the
    user's ~/.cache; test subprocesses inherit the variable."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg_cache"))
