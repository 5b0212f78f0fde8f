"""A normal (non-editable) install carries every package: a wheel built from the checkout,
installed into an empty directory, imports every package and runs `python3 -m train --help` and
`python3 -m sample --help` from a directory outside the checkout."""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ["data", "pixel_cnn_pp", "fast_generation", "glow", "biggan", "trainer",
            "trainer.families", "train", "sample"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The directory a wheel of the checkout was installed into (--target, no dependencies).
    The wheel is built from a copy, so the build leaves nothing in the checkout."""
    source = tmp_path_factory.mktemp("source") / "checkout"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", "datasets", "save"))
    wheels, target = tmp_path_factory.mktemp("wheels"), tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(source)], check=True, cwd=str(wheels), capture_output=True)
    (wheel,) = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert not any(name.startswith("tests/") for name in archive.namelist())
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    return target


def run_outside_checkout(installed, tmp_path, *argv):
    """Run python with only the installed copy importable, in an empty directory."""
    env = {**os.environ, "PYTHONPATH": str(installed), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, *argv], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)


def test_every_package_imports_from_the_installed_copy(installed, tmp_path):
    code = ("import importlib, os, sys\n"
            f"for name in {PACKAGES!r}:\n"
            "    module = importlib.import_module(name)\n"
            f"    assert module.__file__.startswith({str(installed)!r}), module.__file__\n"
            "from trainer import families\n"
            "print(' '.join(families.names()))\n")
    result = run_outside_checkout(installed, tmp_path, "-c", code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["biggan", "glow", "pixelcnn"]


@pytest.mark.parametrize("script", ["train", "sample"])
def test_scripts_run_as_modules_from_any_directory(installed, tmp_path, script):
    result = run_outside_checkout(installed, tmp_path, "-m", script, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--save_dir" in result.stdout
