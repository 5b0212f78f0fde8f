"""train.py and sample.py end to end: evaluation-only mode, sampling determinism, and one-line
errors for impossible flags and bad checkpoints (exact resume after SIGKILL and signals:
test_trainer_resilience.py)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import sample
import train
from trainer import images
from cli_errors import error_line

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 40 train images / batch 4 = 10 steps per epoch; dropout stays on (its noise is seeded).
MODEL_FLAGS = ["--image_size", "8", "-q", "1", "-n", "8", "-m", "2", "-b", "4", "-g", "1",
               "-t", "1", "-ns", "0", "-s", "5"]
EPOCHS = 4


def command(script, *args):
    return [sys.executable, os.path.join(REPO_ROOT, script), *map(str, args)]


def run(script, *args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(command(script, *args), cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def folder_flags(folder):
    return ["-d", "folder", "-i", folder, *MODEL_FLAGS]


@pytest.fixture(scope="module")
def reference_run(tiny_image_folder, tmp_path_factory):
    """An uninterrupted run of EPOCHS epochs."""
    save_dir = tmp_path_factory.mktemp("reference")
    result = run("train.py", *folder_flags(tiny_image_folder), "-o", save_dir, "-x", EPOCHS)
    assert result.returncode == 0, result.stderr[-3000:]
    return save_dir


def test_log_starts_with_the_resolved_configuration(reference_run):
    with open(reference_run / "log.jsonl") as file:
        records = [json.loads(line) for line in file]
    config = records[0]["config"]
    assert config["nr_filters"] == 8 and config["max_epochs"] == EPOCHS
    assert config["polyak_decay"] == 0.99  # filled from the per-data-set table (folder)
    epochs = [record for record in records[1:] if "epoch" in record]
    assert [record["epoch"] for record in epochs] == list(range(EPOCHS))
    assert all(np.isfinite(record["test_bits_per_dim"]) for record in epochs)
    assert os.listdir(reference_run / "tensorboard")


def test_eval_only_reproduces_the_logged_test_bits_per_dim(reference_run, tiny_image_folder,
                                                           tmp_path):
    out = tmp_path / "nll.npy"
    result = run("train.py", *folder_flags(tiny_image_folder), "-o", reference_run,
                 "--eval_only", "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    nats = np.load(out)
    assert nats.shape == (4,) and np.all(np.isfinite(nats))  # every test image
    with open(reference_run / "log.jsonl") as file:
        logged = [json.loads(line) for line in file][-1]["test_bits_per_dim"]
    assert np.mean(nats) / (8 * 8 * 3 * np.log(2)) == pytest.approx(logged, rel=1e-5)


def test_sample_is_deterministic_by_seed(reference_run, tmp_path):
    for name in ("a", "b"):
        result = run("sample.py", "-o", reference_run, "--n", 4, "--seed", 3,
                     "--out", tmp_path / f"{name}.png")
        assert result.returncode == 0, result.stderr[-3000:]
    first, second = (np.load(tmp_path / f"{name}.npz")["images"] for name in ("a", "b"))
    assert first.shape == (4, 8, 8, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")),
                                  images.sheet_image(first, 2))  # 2 x 2, scaled to >= 512 px
    assert sample.main(["-o", str(reference_run), "--n", "4", "--seed", "4",
                        "--out", str(tmp_path / "c.png")]) == 0
    assert not np.array_equal(np.load(tmp_path / "c.npz")["images"], first)


def test_sample_outputs_are_named_by_content_and_never_overwritten(reference_run, tmp_path,
                                                                   capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    # a run directory (trailing slash or not) means its newest checkpoint
    assert sample.main(["--checkpoint", f"{run_dir}/", "--n", "2", "--seed", "7"]) == 0
    written = run_dir / "sample_fast_seed7.npz"
    before = written.read_bytes()
    assert error_line(sample.main, ["--checkpoint", str(run_dir), "--n", "2", "--seed", "7"],
                      capsys) == (f"error: {run_dir / 'sample_fast_seed7.png'} exists; pass "
                                  f"--force to overwrite it or --out to write elsewhere")
    assert written.read_bytes() == before
    assert sample.main(["-o", str(run_dir), "--n", "3", "--seed", "7", "--force"]) == 0
    assert np.load(written)["images"].shape == (3, 8, 8, 3)
    missing = error_line(sample.main, ["--checkpoint", str(run_dir / "ckpt-99")], capsys)
    assert missing.startswith(f"error: no checkpoint at {run_dir / 'ckpt-99'}; checkpoints in "
                              f"{run_dir}: ")
    assert f"{run_dir / f'ckpt-{EPOCHS - 1}'}" in missing


def test_sample_errors_are_one_line(reference_run, tmp_path, capsys):
    def error_of(argv):
        return error_line(sample.main, argv, capsys)

    assert "no checkpoint" in error_of(["-o", str(tmp_path / "missing")])
    corrupt = tmp_path / "corrupt"
    shutil.copytree(reference_run, corrupt)
    for data_file in corrupt.glob("ckpt-*.data-*"):
        data_file.write_bytes(b"not a checkpoint")
    assert "cannot" in error_of(["-o", str(corrupt)])
    foreign = tf.train.Checkpoint(weights=tf.Variable([1.0])).save(str(tmp_path / "f" / "ckpt"))
    assert "not written by this trainer" in error_of(["--checkpoint", foreign])
    other = tf.train.Checkpoint(run_config=tf.Variable(json.dumps({"model": "wavenet"})))
    other_path = other.save(str(tmp_path / "o" / "ckpt"))
    assert "'wavenet' model" in error_of(["--checkpoint", other_path])
    assert "not class-conditional" in error_of(["-o", str(reference_run), "--label", "1"])
    assert "offers fast, naive" in error_of(["-o", str(reference_run), "--sampler", "no_such"])


def test_train_errors_are_one_line(reference_run, tiny_image_folder, tmp_path, capsys):
    base = ["-d", "folder", "-i", tiny_image_folder, "-o", str(tmp_path / "run")]

    def error_of(argv):
        return error_line(train.main, argv, capsys)

    assert "positive integer" in error_of(base + ["--nr_gpu", "0"])
    assert "positive integer" in error_of(base + ["-b", "0"])
    assert "invalid choice" in error_of(base + ["-d", "no_such_set"])
    assert "multiples of 4" in error_of(base + ["--image_size", "6"])
    assert "has no labels" in error_of(base + ["--class_conditional"])
    assert "lower --nr_gpu" in error_of(base + ["--nr_gpu", "3"])  # 2 logical CPUs exist
    assert "no such image folder" in error_of(["-d", "folder", "-i", str(tmp_path / "none"),
                                               "-o", str(tmp_path / "run")])
    assert "no checkpoint" in error_of(base + ["--load_params"])
    before = {path.name: path.read_bytes() for path in reference_run.iterdir() if path.is_file()}
    message = error_of(["-d", "folder", "-i", tiny_image_folder, "-o", str(reference_run)])
    assert "--load_params" in message
    after = {path.name: path.read_bytes() for path in reference_run.iterdir() if path.is_file()}
    assert after == before


def test_default_command_path_on_the_embedded_set(tmp_path):
    # README command 1 (`python3 train.py`, real32 defaults) with a tiny model and one epoch.
    save_dir = tmp_path / "run"
    result = run("train.py", "-i", tmp_path / "datasets", "-o", save_dir, "-x", 1, "-n", 4,
                 "-q", 1, "-m", 1, "-b", 64, "--sample_batch_size", 4)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test bits_per_dim" in result.stdout
    with open(save_dir / "config.json") as file:
        stored = json.load(file)
    assert stored["model"] == "pixelcnn" and stored["data_set"] == "real32"
    assert stored["model_config"]["image_shape"] == [32, 32, 3]
    samples = np.load(save_dir / "real32_sample0.npz")["images"]
    assert samples.shape == (4, 32, 32, 3) and samples.dtype == np.uint8
    assert np.asarray(Image.open(save_dir / "real32_sample0.png")).shape == (518, 518, 3)
    assert (save_dir / "ckpt-0.index").exists()
