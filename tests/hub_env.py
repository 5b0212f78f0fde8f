"""tensorflow_hub for the export tests, installed by the tests themselves into a directory of its own.

tensorflow_hub 0.16 needs tf-keras, whose wheel requires the `tensorflow` package (not
`tensorflow-cpu`), so installing it into the test environment would pull a second TensorFlow.
The three pure-Python packages it imports are installed instead with --no-deps into
$PIXELCNN_HUB_DIR (default ~/.cache/pixelcnn-glow-hub-tf<X.Y>), once, and the export test puts
that directory on the path of its clean loader process: tensorflow_hub, the tf-keras release of
the running TensorFlow, and setuptools < 81 for the pkg_resources tensorflow_hub imports.
"""
import os
import shutil
import subprocess
import sys

import tensorflow as tf

from optional_env import building

TF_MINOR = ".".join(tf.__version__.split(".")[:2])
PACKAGES = ["tensorflow-hub==0.16.1", f"tf-keras=={TF_MINOR}.*", "setuptools<81"]
MARKER = "pixelcnn-glow-hub.done"


class InstallError(Exception):
    """The packages could not be installed; the message ends with pip's output."""


def location():
    default = os.path.join(os.path.expanduser("~"), ".cache", f"pixelcnn-glow-hub-tf{TF_MINOR}")
    return os.environ.get("PIXELCNN_HUB_DIR", default)


def ensure(target=None):
    """The directory holding an importable tensorflow_hub, installed there unless complete."""
    target = target or location()
    with building(target):
        return _ensure(target)


def _ensure(target):
    if os.path.exists(os.path.join(target, MARKER)):
        return target
    shutil.rmtree(target, ignore_errors=True)  # an interrupted install
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
               target, *PACKAGES]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise InstallError(f"`{' '.join(command)}` exited with {result.returncode}:\n"
                           f"{(result.stdout + result.stderr)[-3000:]}")
    with open(os.path.join(target, MARKER), "w") as marker:
        marker.write(" ".join(PACKAGES) + "\n")
    return target
