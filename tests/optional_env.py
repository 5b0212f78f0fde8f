"""Environments the tests build for themselves (Horovod, tensorflow_hub): on CI a failure to
build one fails the tests that need it; elsewhere (e.g. offline) they skip with the reason."""
import os

import pytest


def on_ci():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def fail_on_ci_else_skip(reason):
    if on_ci():
        pytest.fail(reason)
    pytest.skip(reason)
