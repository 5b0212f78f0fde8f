"""train.py --model biggan and sample.py's BigGAN sheets: a tiny BigGAN trains on the real32 photo
crops with finite losses, resumes to the same state as an uninterrupted run, and its truncation,
interpolation and sweep sheets agree with direct samples image for image."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import data
import image_agreement
import sample
import train
from biggan import model as bg
from trainer import checkpoint, families

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A smaller, quicker model than the real32 defaults: 4 steps of 512 images per epoch.
TINY = ["--model", "biggan", "-b", "512", "--G_ch", "8", "--D_ch", "8", "--dim_z", "20",
        "--shared_dim", "8", "--G_attn", "0", "--ema_start", "5", "--sample_batch_size", "2",
        "--num_standing_accumulations", "2", "-t", "1"]


# train.py in a subprocess made reproducible bit for bit: one thread, no oneDNN, deterministic
# ops. Otherwise a CPU run is not (reductions run in any order), and the GAN amplifies the last-bit
# differences: the biases just before a batch norm get pure-rounding gradients, which Adam rescales
# to full steps.
DETERMINISTIC_TRAIN = """
import sys
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
import train
sys.exit(train.main(sys.argv[1:]))
"""


def train_command(data_dir, save_dir, *extra):
    env = {**os.environ, "TF_DETERMINISTIC_OPS": "1", "TF_ENABLE_ONEDNN_OPTS": "0",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-c", DETERMINISTIC_TRAIN, "-i", str(data_dir),
                             "-o", str(save_dir), *TINY, *extra], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(process):
    _, errors = process.communicate()
    assert process.returncode == 0, errors[-2000:]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory):
    """(two uninterrupted epochs, one epoch then resumed to two), trained side by side."""
    reference = tmp_path_factory.mktemp("biggan_reference")
    resumed = tmp_path_factory.mktemp("biggan_resumed")
    data.info("real32", str(data_dir))  # builds the set once, before two runs read it
    processes = [train_command(data_dir, reference, "-x", "2"),
                 train_command(data_dir, resumed, "-x", "1")]
    for process in processes:
        finish(process)
    finish(train_command(data_dir, resumed, "-x", "2", "-r"))
    return reference, resumed


@pytest.fixture(scope="module")
def reference_run(runs):
    return runs[0]


def stored_tensors(path):
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name != checkpoint.RUN_CONFIG_KEY and not name.startswith("_CHECKPOINTABLE")}


def run_sample(save_dir, out, *flags):
    assert sample.main(["-o", str(save_dir), "--out", str(out), *flags]) == 0
    stored = np.load(str(out).replace(".png", ".npz"))
    images = stored["images"]
    return images.reshape(-1, int(stored["columns"]), *images.shape[1:]) \
        if "--interpolate" in flags or "--truncation_sweep" in flags else images


def test_training_logs_finite_losses_and_class_sheets(reference_run):
    lines = [json.loads(line) for line in open(reference_run / "log.jsonl")]
    epochs = [line for line in lines if "epoch" in line]
    assert [line["epoch"] for line in epochs] == [0, 1]
    assert epochs[-1]["step"] == 2 * (2547 // 512)  # G steps
    for line in epochs:
        for name in ("D_loss", "D_loss_real", "D_loss_fake", "G_loss", "G_ortho"):
            assert np.isfinite(line[name])
        assert line["D_loss"] == pytest.approx(line["D_loss_real"] + line["D_loss_fake"])
    stored = np.load(reference_run / "real32_classes1.npz")
    assert stored["columns"] == 2
    sheet = stored["images"].reshape(-1, 2, 32, 32, 3)
    assert sheet.shape == (10, 2, 32, 32, 3) and sheet.dtype == np.uint8
    # every row has the same noise, so the rows differ only through the class
    assert all(np.abs(sheet[0].astype(int) - sheet[k]).mean() > 1.0 for k in range(1, 10))


def test_resume_equals_the_uninterrupted_run_bit_for_bit(runs):
    reference, resumed = runs
    assert "resumed from" in (resumed / "log.jsonl").read_text()
    after_resume = stored_tensors(str(resumed / "ckpt-1"))
    uninterrupted = stored_tensors(str(reference / "ckpt-1"))
    assert after_resume.keys() == uninterrupted.keys() and len(after_resume) > 100
    for name, value in uninterrupted.items():
        np.testing.assert_array_equal(after_resume[name], value, err_msg=name)


def test_sheets_agree_with_direct_samples(reference_run, tmp_path):
    psi = ["--truncation", "0.5"]
    a = run_sample(reference_run, tmp_path / "a.png", "--n", "3", "--seed", "5", "--label", "2",
                   *psi)
    b = run_sample(reference_run, tmp_path / "b.png", "--n", "3", "--seed", "7", "--label", "4",
                   *psi)
    assert a.shape == (3, 32, 32, 3)
    ab = run_sample(reference_run, tmp_path / "ab.png", "--interpolate", "--n", "3", "--seed",
                    "5", "--label", "2", "--seed_b", "7", "--label_b", "4", "--steps", "4", *psi)
    assert ab.shape == (3, 4, 32, 32, 3)
    # the sheet renders 12 images in one batch, a sample 3: the same function, other batch
    # shapes, so equal up to rare +-1 rounding flips
    image_agreement.assert_images_agree(ab[:, 0], a, max_flip_fraction=0.01)
    image_agreement.assert_images_agree(ab[:, -1], b, max_flip_fraction=0.01)
    sweep = run_sample(reference_run, tmp_path / "sweep.png", "--n", "3", "--seed", "5",
                       "--label", "2", "--truncation_sweep", "1.0", "0.5")
    assert sweep.shape == (2, 3, 32, 32, 3)
    np.testing.assert_array_equal(sweep[1], a)
    assert np.abs(sweep[0].astype(int) - sweep[1]).mean() > 1.0


def test_class_only_sheet_keeps_z_and_lerps_y(reference_run, tmp_path):
    sheet = run_sample(reference_run, tmp_path / "y.png", "--interpolate", "--n", "2", "--seed",
                       "5", "--label", "2", "--label_b", "4", "--steps", "3")
    # the middle column is G(z_a, (y_2 + y_4) / 2): the same z, a soft label half-way
    _, model, ema, _ = families.restore(checkpoint.find_checkpoint(str(reference_run)))
    model.accumulate_standing_stats(1.0, 16, bg.STANDING_BATCH, 0, ema)
    z = bg.truncated_z(2, model.config.dim_z, 1.0, 5)
    y = tf.fill([2, 10], 0.0) + 0.5 * (tf.one_hot([2, 2], 10) + tf.one_hot([4, 4], 10))
    middle = bg.generate(model, z, y, 1.0, ema).numpy()
    np.testing.assert_allclose(sheet[:, 1].astype(int),
                               np.clip(np.round((middle + 1) * 127.5), 0, 255), atol=1)
    assert np.abs(sheet[:, 0].astype(int) - sheet[:, 1]).mean() > 0.5


def test_errors_are_one_line(reference_run, data_dir, tmp_path, capsys):
    def error_of(main, argv):
        assert main(argv) == 2
        message = capsys.readouterr().err.strip()
        assert message.startswith("error: ") and "\n" not in message
        return message

    assert "no likelihood" in error_of(train.main, ["-i", str(data_dir), "-o", str(reference_run),
                                                    *TINY, "--eval_only"])
    assert "--nr_gpu" in error_of(train.main, ["-i", str(data_dir), "-o", str(tmp_path / "r"),
                                               *TINY, "-g", "2", "-b", "2000"])
    assert "divisible" in error_of(train.main, ["-i", str(data_dir), "-o", str(tmp_path / "r"),
                                                *TINY, "-b", "33"])
    base = ["-o", str(reference_run), "--out", str(tmp_path / "x.png")]
    assert "same" in error_of(sample.main, [*base, "--interpolate", "--label", "1"])
    assert "[0, 1]" in error_of(sample.main, [*base, "--truncation", "1.5"])
    assert "classes 0..9" in error_of(sample.main, [*base, "--label_b", "10", "--interpolate"])
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "r").exists()
