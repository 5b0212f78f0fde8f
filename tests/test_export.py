"""sample.py --export: a hub-style SavedModel of each model family, loaded in a fresh Python that
cannot import any of this project's code (with tf.saved_model.load, and with tensorflow_hub's
hub.load and hub.KerasLayer), draws the same images as sample.py for the same inputs, up to float
rounding (tests/image_agreement.py): the SavedModel graph and sample.py's path compute the same
function in another order."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import hub_env
import image_agreement
from optional_env import fail_on_ci_else_skip
import sample
import train
from glow.model import as_seed
from trainer import checkpoint, families

# Runs in `python -I` (no PYTHONPATH, no user site, no script directory on sys.path) from a scratch
# directory, and first blocks this project's packages on the import path, so an editable install
# cannot make them importable either; then asserts that they are not.
LOADER = """
import importlib.abc, importlib.util, json, sys
import numpy as np

OURS = {"trainer", "biggan", "glow", "pixel_cnn_pp", "fast_generation", "data", "sample", "train"}

class BlockOurs(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in OURS:
            raise ImportError(f"{name} is blocked in the export test")
        return None

sys.meta_path.insert(0, BlockOurs())
hub_dir = sys.argv[3] if len(sys.argv) > 3 else None
if hub_dir:
    sys.path.insert(0, hub_dir)
import tensorflow as tf
for name in OURS:
    try:
        __import__(name)
    except ImportError:
        continue
    raise SystemExit(f"{name} is importable in the loader process")
assert not any(m.split(".")[0] in OURS for m in sys.modules), "project code was imported"

requests = json.load(open(sys.argv[1]))
results = {}
for name, request in requests.items():
    z = np.array(request["z"], dtype=request["z_dtype"])
    y = np.array(request["y"], np.float32).reshape(request["y_shape"])
    inputs = dict(z=z, y=y, truncation=np.float32(request["truncation"]))
    # __call__ and the serving signature are two traces of the same function: the same graph,
    # so the same bits.
    if hub_dir:
        import tensorflow_hub as hub
        module = hub.load(request["directory"])
        layer = hub.KerasLayer(request["directory"], signature="serving_default",
                               output_key="default")
        call = module(inputs).numpy()
        np.testing.assert_array_equal(layer({k: tf.constant(v) for k, v in inputs.items()}).numpy(),
                                      call)
    else:
        module = tf.saved_model.load(request["directory"])
        call = module(inputs).numpy()
        served = module.signatures["serving_default"](**{k: tf.constant(v)
                                                          for k, v in inputs.items()})
        np.testing.assert_array_equal(served["default"].numpy(), call)
    results[name] = call
    results[name + "_description"] = np.array(module.description.numpy().decode())
np.savez(sys.argv[2], **results)
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("export")


def trained(save_dir, argv):
    assert train.main(["-o", str(save_dir), "--num_samples", "0", *argv]) == 0
    return save_dir


@pytest.fixture(scope="module")
def checkpoints(workdir, tiny_image_folder):
    real32 = str(workdir / "datasets")
    return {
        "biggan": trained(workdir / "biggan", [
            "--model", "biggan", "-i", real32, "-x", "1", "-b", "512", "--G_ch", "8", "--D_ch",
            "8", "--dim_z", "20", "--shared_dim", "8", "--G_attn", "0", "--ema_start", "2"]),
        "pixelcnn": trained(workdir / "pixelcnn", [
            "--model", "pixelcnn", "-d", "folder", "-i", tiny_image_folder, "-x", "1", "-b", "8",
            "-q", "1", "-n", "8", "-m", "2", "--image_size", "8"]),
        "glow": trained(workdir / "glow", [
            "--model", "glow", "-d", "folder", "-i", tiny_image_folder, "-x", "1", "-b", "8",
            "--n_levels", "2", "--depth", "1", "--width", "8", "--image_size", "8"]),
    }


def sample_npz(save_dir, out, *flags):
    assert sample.main(["-o", str(save_dir), "--out", str(out), *flags]) == 0
    stored = np.load(str(out) + ".npz")
    return stored["images"]  # every family's layout (trainer/images.py)


def export(save_dir, directory, *flags):
    assert sample.main(["-o", str(save_dir), "--export", str(directory), *flags]) == 0
    return str(directory)


def restored(save_dir):
    path = checkpoint.find_checkpoint(str(save_dir))
    stored = checkpoint.read_run_config(path)
    return families.get(stored["model"]).build(stored["model_config"])


def load_in_clean_process(workdir, requests, hub_dir=None):
    """The loader's results; with `hub_dir` (tensorflow_hub installed there) through hub.load and
    hub.KerasLayer, else through tf.saved_model.load and the serving signature."""
    request_file, result_file = workdir / "requests.json", workdir / "results.npz"
    request_file.write_text(json.dumps(requests))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    process = subprocess.run([sys.executable, "-I", "-c", LOADER, str(request_file),
                              str(result_file), *([hub_dir] if hub_dir else [])], cwd=workdir,
                             env=env, capture_output=True, text=True)
    assert process.returncode == 0, process.stderr[-3000:]
    return np.load(result_file)


@pytest.fixture(scope="module")
def exports(checkpoints, workdir):
    """(requests for the loader, sample.py's images for them) for an export of every family."""
    requests, expected = {}, {}

    # BigGAN: at a truncation on the export's grid, the export computes what sample.py does.
    model = restored(checkpoints["biggan"])
    expected["biggan"] = sample_npz(checkpoints["biggan"], workdir / "biggan_sample", "--n", "3",
                                    "--seed", "4", "--label", "7", "--truncation", "0.5",
                                    "--num_standing_accumulations", "4")
    z = tf.random.stateless_truncated_normal([3, model.config.dim_z], [4, 0]) * 0.5
    requests["biggan"] = dict(
        directory=export(checkpoints["biggan"], workdir / "biggan_export", "--truncation_grid",
                         "3", "--num_standing_accumulations", "4"),
        z=z.numpy().tolist(), z_dtype="float32", truncation=0.5, y_shape=[3, 10],
        y=np.eye(10)[[7, 7, 7]].tolist())

    # PixelCNN++: z is sample.py's seed pair; the export runs the fast sampler.
    expected["pixelcnn"] = sample_npz(checkpoints["pixelcnn"], workdir / "pixelcnn_sample",
                                      "--n", "2", "--seed", "3")
    requests["pixelcnn"] = dict(
        directory=export(checkpoints["pixelcnn"], workdir / "pixelcnn_export", "--n", "2"),
        z=[3, 0], z_dtype="int32", truncation=1.0, y_shape=[2, 0], y=[])

    # Glow: z is the unit latent Glow.sample draws from the seed; truncation the temperature.
    model = restored(checkpoints["glow"])
    seeds = tf.random.experimental.stateless_split(as_seed([6, 0]), num=len(model.eps_shapes))
    z = model.flatten([tf.random.stateless_normal([2, *shape], seeds[i])
                       for i, shape in enumerate(model.eps_shapes)])
    expected["glow"] = sample_npz(checkpoints["glow"], workdir / "glow_sample", "--n", "2",
                                  "--seed", "6", "--temperature", "0.7")
    requests["glow"] = dict(directory=export(checkpoints["glow"], workdir / "glow_export"),
                            z=z.numpy().tolist(), z_dtype="float32", truncation=0.7,
                            y_shape=[2, 0], y=[])
    return requests, expected


def assert_same_images(results, requests, expected):
    """At most 1% of subpixels off by one; PixelCNN++ samples autoregressively, so only each
    image's first difference must be a flip."""
    for name in requests:
        images = results[name]
        assert images.dtype == np.float32 and images.min() >= -1.0 and images.max() <= 1.0
        assert "truncation" in str(results[name + "_description"])
        reference = expected[name].reshape(images.shape)
        if name == "pixelcnn":
            image_agreement.assert_samples_agree(images, reference, max_flip_fraction=0.01,
                                                 max_diverged_fraction=0.5, err_msg=name)
        else:
            image_agreement.assert_images_agree(images, reference, max_flip_fraction=0.01,
                                                err_msg=name)


def test_every_family_round_trips_through_a_clean_process(exports, workdir):
    requests, expected = exports
    assert_same_images(load_in_clean_process(workdir, requests), requests, expected)


@pytest.fixture(scope="module")
def hub_dir():
    """tensorflow_hub installed for the loader (tests/hub_env.py). On CI a failed install fails
    the test; elsewhere (offline) it skips with the reason."""
    try:
        return hub_env.ensure()
    except hub_env.InstallError as error:
        fail_on_ci_else_skip(f"could not install tensorflow_hub (or set PIXELCNN_HUB_DIR to a "
                             f"directory holding it): {error}")


def test_every_family_loads_with_tensorflow_hub(exports, workdir, hub_dir):
    requests, expected = exports
    assert_same_images(load_in_clean_process(workdir, requests, hub_dir), requests, expected)


def test_biggan_export_interpolates_standing_statistics(checkpoints, workdir):
    directory = export(checkpoints["biggan"], workdir / "biggan_grid", "--truncation_grid", "2",
                       "--num_standing_accumulations", "2")
    module = tf.saved_model.load(directory)
    model = restored(checkpoints["biggan"])
    z = tf.random.stateless_truncated_normal([2, model.config.dim_z], [1, 0]) * 0.5
    y = tf.one_hot([1, 2], 10)
    ends = [module(dict(z=z, y=y, truncation=tf.constant(t))) for t in (0.0, 0.5, 1.0)]
    assert not np.allclose(ends[0], ends[2])  # the statistics differ between the grid ends
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 1\]"):
        module(dict(z=z, y=y, truncation=tf.constant(1.5)))


def test_export_refuses_an_existing_directory(checkpoints, workdir, capsys):
    (workdir / "taken").mkdir()
    assert sample.main(["-o", str(checkpoints["glow"]), "--export", str(workdir / "taken")]) == 2
    assert "already exists" in capsys.readouterr().err
