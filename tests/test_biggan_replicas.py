"""BigGAN on several devices (--nr_gpu N, a MirroredStrategy over logical CPU devices here): one
step on 2 replicas with B images each equals one step on one device with 2B, cross-replica batch
norm normalises with the global batch's moments (gradients included), and a 2-device run writes
checkpoints that sample.py reads without a strategy and that resume on one device."""
import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import sample
from biggan import layers
from biggan import model as bg
from biggan_steps import BigGANRun
from photo_crops import photo_crops
from trainer import dist, families
from trainer.dist import replica_slice

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# train.py's strategy over the two logical CPU devices of tests/conftest.py (one per process).
STRATEGY = dist.mirrored_strategy(2)[0]

# Two D steps (each one slicing its share of the batch), hierarchical z and attention on. Adam's
# epsilon is raised from 1e-12 so that the biases just before a batch norm, whose gradients are
# pure rounding (the norm removes any shift), take steps of rounding size rather than full Adam
# steps whose sign is that of the rounding error.
CONFIG = dict(num_classes=3, G_ch=4, D_ch=4, dim_z=20, shared_dim=16, attn_res=(16,), hier=True,
              num_D_steps=2, ema_start=0, adam_eps=1e-8)

# train.py flags for a 2-class folder of 18 train images: 2 steps of 4 images x 2 devices, the
# smallest graph (one D step, no attention; the step's math is the first test's).
TINY_RUN = ["--model", "biggan", "-d", "folder", "-b", "4", "--G_ch", "4", "--D_ch", "4",
            "--dim_z", "20", "--shared_dim", "8", "--G_attn", "0", "--num_D_steps", "1",
            "--ema_start", "1", "--sample_batch_size", "1", "--num_standing_accumulations", "1",
            "-t", "1"]


def local_copies(variable):
    return [value.numpy() for value in STRATEGY.experimental_local_results(variable)]


def test_two_replicas_of_b_images_take_the_step_of_one_device_on_2b():
    one = BigGANRun(bg.BigGANConfig(**CONFIG), global_batch=8)
    two = BigGANRun(bg.BigGANConfig(**CONFIG), global_batch=8, strategy=STRATEGY)
    assert two.model.strategy is STRATEGY and one.model.strategy.num_replicas_in_sync == 1
    assert one.model.strategy is not STRATEGY
    images = tf.constant(photo_crops(8, 32, seed=4))
    labels = tf.constant(np.arange(8) % 3, tf.int32)
    seed = tf.constant([3, 0], tf.int64)
    losses_one = one.step(images, labels, seed)
    losses_two = two.step(images, labels, seed)
    for name, value in losses_one.items():
        assert float(losses_two[name]) == pytest.approx(float(value), rel=1e-5, abs=1e-6), name
    names = [variable.name for variable in one.variables]
    assert names == [variable.name for variable in two.variables]
    for kind in ("/u:", "running_mean", "running_var", "G_ema", "G_adam/m1", "D_adam/m2",
                 "attention"):  # every kind of state is compared
        assert any(kind in name for name in names), kind
    for a, b in zip(one.variables, two.variables):
        expected = a.numpy()
        for copy in local_copies(b):
            np.testing.assert_allclose(copy, expected, rtol=1e-4, atol=1e-5, err_msg=a.name)
    assert int(two.optimizers["G_optimizer"].iterations.numpy()) == 1
    assert int(two.optimizers["D_optimizer"].iterations.numpy()) == 2


def test_cross_replica_batch_norm_uses_the_global_batch():
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(3.0, 2.0, size=(4, 3, 3, 5)).astype(np.float32))
    x = x + tf.constant([[[[0.0]]], [[[0.0]]], [[[4.0]]], [[[4.0]]]])  # replicas see different data
    probe = tf.constant(rng.normal(size=(4, 3, 3, 5)).astype(np.float32))
    with STRATEGY.scope():
        bn = layers.BatchNorm(5, 1e-5)

    def replica_step(x, probe):
        x, probe = replica_slice(x, 2), replica_slice(probe, 2)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(bn(x, layers.TRAIN) * probe)
        return layers.batch_moments(x), tf.nn.moments(x, axes=[0, 1, 2]), tape.gradient(loss, x)

    moments, local, grads = tf.function(lambda: STRATEGY.run(replica_step, args=(x, probe)))()
    global_mean, global_var = np.mean(x, axis=(0, 1, 2)), np.var(x, axis=(0, 1, 2))
    for replica in range(2):
        mean, var = (value.values[replica].numpy() for value in moments)
        np.testing.assert_allclose(mean, global_mean, rtol=1e-5)
        np.testing.assert_allclose(var, global_var, rtol=1e-5)
        assert np.abs(local[0].values[replica].numpy() - global_mean).min() > 1.0  # not local
    for copy in local_copies(bn.running_mean):
        np.testing.assert_allclose(copy, layers.BN_MOMENTUM * global_mean, rtol=1e-5)
    # the gradient through the global moments: what one device computes on the whole batch
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layers.BatchNorm(5, 1e-5)(x, layers.TRAIN) * probe)
    expected = tape.gradient(loss, x).numpy()
    np.testing.assert_allclose(np.concatenate([g.numpy() for g in grads.values]), expected,
                               rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory):
    """Two class sub-folders of 10 real-photo 32x32 PNGs each: 18 train and 2 test images."""
    root = tmp_path_factory.mktemp("two_classes")
    for index, image in enumerate(photo_crops(20, 32, seed=5)):
        folder = root / f"class{index % 2}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:03d}.png")
    return root


@pytest.fixture(scope="module", autouse=True)
def two_device_run(labelled_folder, tmp_path_factory):
    """`train.py -g 2` for one epoch, then `train.py -g 1 -r` to a second, in a subprocess (with
    its own devices) started before the in-process tests so that it runs beside them; yields
    (process, save_dir)."""
    save_dir = tmp_path_factory.mktemp("biggan_two_devices")
    command = [sys.executable, "train.py", "-i", str(labelled_folder), "-o", str(save_dir),
               *TINY_RUN]
    script = " && ".join([shlex.join([*command, "-g", "2", "-x", "1"]),
                          shlex.join([*command, "-b", "8", "-g", "1", "-x", "2", "-r",
                                      "-ns", "0"])])
    process = subprocess.Popen(["bash", "-c", script], cwd=REPO_ROOT,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    yield process, save_dir
    process.kill()


def test_two_device_checkpoint_samples_without_a_strategy_and_resumes_on_one(two_device_run,
                                                                             tmp_path):
    process, save_dir = two_device_run
    _, errors = process.communicate()
    assert process.returncode == 0, errors[-2000:]
    lines = [json.loads(line) for line in (save_dir / "log.jsonl").read_text().splitlines()]
    two_devices, one_device = lines[0]["config"], lines[2]["config"]  # config, epoch 0, config, epoch 1
    assert (two_devices["global_batch"], two_devices["steps_per_epoch"]) == (8, 2)
    assert one_device["start"].startswith("resumed from") and one_device["nr_gpu"] == 1
    epochs = [line for line in lines if "epoch" in line]
    assert [(line["epoch"], line["step"]) for line in epochs] == [(0, 2), (1, 4)]
    assert all(np.isfinite(line[name]) for line in epochs
               for name in ("D_loss_real", "D_loss_fake", "G_loss", "G_ortho"))
    # the class sheet the 2-device run drew equals its checkpoint's, restored on no strategy
    two_device_checkpoint = str(save_dir / "ckpt-0")
    _, model, ema, _ = families.restore(two_device_checkpoint)
    sheet = bg.class_sheet(model, 1, [1, 0], ema, num_standing_batches=1)
    stored = np.load(save_dir / "folder_classes0.npz")
    np.testing.assert_allclose(sheet, stored["images"].reshape(sheet.shape), atol=1)
    assert stored["columns"] == sheet.shape[1]
    assert sample.main(["--checkpoint", two_device_checkpoint, "--out",
                        str(tmp_path / "samples.png"), "--n", "2",
                        "--num_standing_accumulations", "1"]) == 0
    assert np.load(tmp_path / "samples.npz")["images"].shape == (2, 32, 32, 3)
