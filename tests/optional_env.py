"""Environments the tests build for themselves (Horovod, tensorflow_hub): on CI a failure to
build one fails the tests that need it; elsewhere (e.g. offline) they skip with the reason."""
import contextlib
import fcntl
import os

import pytest


def on_ci():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def fail_on_ci_else_skip(reason):
    if on_ci():
        pytest.fail(reason)
    pytest.skip(reason)


@contextlib.contextmanager
def building(location):
    """Holds `<location>.lock` while a test process checks or builds the environment at
    `location`: test processes running side by side (pytest -n) take turns, so one builds and
    the others reuse what it built."""
    os.makedirs(os.path.dirname(os.path.abspath(location)), exist_ok=True)
    with open(os.path.abspath(location) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
