"""A Python environment with Horovod for the multi-process tests, built by the tests themselves.

Horovod 0.28.1 (the newest release) does not build against the newest TensorFlow, so the tests
run Horovod in a separate virtualenv with tensorflow-cpu 2.13.1 (the oldest TensorFlow this
project supports) and Horovod built with Gloo (no MPI needed). It is built once (about 4-5
minutes) under $PIXELCNN_HOROVOD_VENV (default ~/.cache/pixelcnn-glow-horovod-venv) and reused
while its marker file says it is complete. Pointing PIXELCNN_HOROVOD_VENV at any existing
environment where `import horovod.tensorflow` works uses that one as it is.
"""
import os
import shutil
import subprocess
import sys

from optional_env import building

TENSORFLOW = "tensorflow-cpu==2.13.1"
HOROVOD = "horovod==0.28.1"
# what the project needs at run time besides TensorFlow (setup.py install_requires, minus the
# real32 photo wheels, which the tests' image folders do not use)
RUNTIME = ["numpy<2", "pillow", "tqdm", "scipy"]
BUILD_ENV = {"HOROVOD_WITH_TENSORFLOW": "1", "HOROVOD_WITH_GLOO": "1",
             "HOROVOD_WITHOUT_MPI": "1", "HOROVOD_WITHOUT_PYTORCH": "1",
             "HOROVOD_WITHOUT_MXNET": "1"}
MARKER = "pixelcnn-glow-horovod.done"
DEFAULT_LOCATION = os.path.join(os.path.expanduser("~"), ".cache", "pixelcnn-glow-horovod-venv")


class BuildError(Exception):
    """The environment could not be built; the message ends with the failing command's output."""


def location():
    return os.environ.get("PIXELCNN_HOROVOD_VENV", DEFAULT_LOCATION)


def python_of(venv):
    return os.path.join(venv, "bin", "python")


def works(venv):
    """True when `venv`'s Python imports TensorFlow and Horovod's TensorFlow binding."""
    if not os.path.exists(python_of(venv)):
        return False
    check = subprocess.run([python_of(venv), "-c", "import tensorflow, horovod.tensorflow"],
                           capture_output=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    return check.returncode == 0


def _run(command, log, env=None):
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise BuildError(f"`{' '.join(command)}` exited with {result.returncode}")


def ensure(venv=None):
    """The path of a working Horovod environment: reused when complete, else (re)built."""
    venv = venv or location()
    with building(venv):
        return _ensure(venv)


def _ensure(venv):
    explicit = "PIXELCNN_HOROVOD_VENV" in os.environ
    if os.path.exists(os.path.join(venv, MARKER)) or explicit:
        if works(venv):
            return venv
        if explicit and not os.path.exists(os.path.join(venv, MARKER)):
            raise BuildError(f"PIXELCNN_HOROVOD_VENV={venv} has no working `import "
                             f"horovod.tensorflow`; unset it to let the tests build one")
    shutil.rmtree(venv, ignore_errors=True)  # an interrupted or broken build
    log_path = venv.rstrip("/") + ".build.log"
    with open(log_path, "w") as log:
        try:
            _run([sys.executable, "-m", "venv", venv], log)
            pip = [python_of(venv), "-m", "pip", "install", "--quiet"]
            _run(pip + ["--upgrade", "pip", "setuptools<70", "wheel", "packaging", "cmake"], log)
            _run(pip + [TENSORFLOW, *RUNTIME, "pytest"], log)
            _run(pip + ["--no-build-isolation", "--no-cache-dir", HOROVOD], log, env=BUILD_ENV)
        except BuildError as error:
            log.flush()
            with open(log_path) as written:
                tail = written.read()[-3000:]
            raise BuildError(f"{error}; log {log_path}:\n{tail}") from None
    if not works(venv):
        raise BuildError(f"built {venv} but `import horovod.tensorflow` fails there; see "
                         f"{log_path}")
    with open(os.path.join(venv, MARKER), "w") as marker:
        marker.write(f"{TENSORFLOW} {HOROVOD}\n")
    return venv
