"""The Family interface is the whole seam: a fourth model family defined in this file (every
sub-pixel an independent 256-way categorical) trains, checkpoints, resumes exactly, evaluates,
samples and exports through train.py and sample.py with one registry call and no other edit."""
import json
import types

import numpy as np
import pytest
import tensorflow as tf

import data
import sample
import train
from data.pixels import to_model_input
from saved_state import checkpoint_values
from trainer import export, families, optim
from trainer.families.base import Family


class PixelCategorical(tf.Module):
    """p(x) = prod over sub-pixels of softmax(logits[h, w, c])[x[h, w, c]]."""

    def __init__(self, config):
        super().__init__(name="pixel_categorical")
        self.config = types.SimpleNamespace(**config)
        with self.name_scope:
            self.logits = tf.Variable(tf.zeros([*self.config.image_shape, 256]), name="logits")

    def read_logits(self, ema=None):
        return self.logits if ema is None else ema.average(self.logits)


def draw(model, num_images, seed, ema=None):
    """uint8 [N, H, W, C]: every sub-pixel drawn from its categorical."""
    logits = tf.reshape(model.read_logits(ema), [-1, 256])
    draws = tf.random.stateless_categorical(logits, num_images, tf.cast(seed, tf.int32))
    return tf.cast(tf.reshape(tf.transpose(draws), [num_images, *model.config.image_shape]),
                   tf.uint8)


class CategoricalModule(export.HubModule):
    def __init__(self, model, ema, batch_size):
        super().__init__("independent categoricals; z: int32 [2] seed",
                         tf.TensorSpec([2], tf.int32, "z"), 0, batch_size)
        self.model, self.ema, self.batch_size = model, ema, batch_size

    def generate(self, z, y, truncation):
        return to_model_input(draw(self.model, self.batch_size, z, self.ema))


class CategoricalFamily(Family):
    name = "categorical"
    profiles = {kind: dict(batch_size=8, nr_gpu=1, max_epochs=2, save_interval=1,
                           sample_batch_size=4) for kind in ("cpu", "paper")}
    samplers = {"independent": lambda model, num_images, seed, labels=None, ema=None:
                draw(model, num_images, seed, ema).numpy()}
    default_sampler = "independent"

    def add_arguments(self, parser):
        parser.add_argument("--learning_rate", type=float, default=0.05)

    def model_config(self, args, info):
        return {"image_shape": list(info.image_shape)}

    def build(self, config):
        return PixelCategorical(config)

    def nats(self, model, images, labels, training=False, ema=None, seed=None, step_seed=None):
        log_probs = tf.nn.log_softmax(model.read_logits(ema))
        picked = tf.one_hot(tf.cast(images, tf.int32), 256) * log_probs  # [B, H, W, C, 256]
        return -tf.reduce_sum(picked, axis=[1, 2, 3, 4])

    def ema_decay(self, args, steps_per_epoch):
        return 0.9

    def make_optimizers(self, args, model, steps_per_epoch):
        return {"optimizer": optim.Adam(model.trainable_variables, args.learning_rate)}

    def export_module(self, model, ema, args):
        return CategoricalModule(model, ema, args.n)


@pytest.fixture(scope="module")
def family():
    registered = families.register(CategoricalFamily())
    yield registered
    families.FLAGS.pop(registered.name)
    families.FAMILIES.pop(registered.name)


def train_run(folder, save_dir, *flags):
    return train.main(["--model", "categorical", "-d", "folder", "-i", folder, "--image_size",
                       "8", "-o", str(save_dir), *flags])


@pytest.fixture(scope="module")
def run(family, tiny_image_folder, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("categorical")
    assert train_run(tiny_image_folder, save_dir, "-x", "2") == 0
    return save_dir


def test_trains_and_logs_test_bits_per_dim_below_uniform(run):
    epochs = [line for line in map(json.loads, open(run / "log.jsonl")) if "epoch" in line]
    assert [line["step"] for line in epochs] == [5, 10]  # 40 train images / 8
    for line in epochs:
        assert 0 < line["test_bits_per_dim"] < 8.0  # 8 bits/dim is the uniform model
    assert epochs[1]["train_bits_per_dim"] < epochs[0]["train_bits_per_dim"]
    assert np.load(run / "folder_sample1.npz")["images"].shape == (4, 8, 8, 3)


def test_resume_equals_the_uninterrupted_run(run, tiny_image_folder, tmp_path):
    assert train_run(tiny_image_folder, tmp_path, "-x", "1") == 0
    assert train_run(tiny_image_folder, tmp_path, "-x", "2", "-r") == 0
    resumed, uninterrupted = checkpoint_values(tmp_path / "ckpt-1"), checkpoint_values(
        run / "ckpt-1")
    assert resumed.keys() == uninterrupted.keys() and len(resumed) >= 5
    for name, value in uninterrupted.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)


def test_eval_only_scores_every_test_image_with_the_averages(run, tiny_image_folder, tmp_path):
    out = tmp_path / "nll.npy"
    assert train_run(tiny_image_folder, run, "--eval_only", "--out", str(out)) == 0
    nats = np.load(out)
    assert nats.shape == (4,) and np.all(nats > 0)
    _, model, ema, _ = families.restore(str(run / "ckpt-1"))
    log_probs = tf.nn.log_softmax(ema.average(model.logits)).numpy()
    images = np.stack([x for x, _ in data.load("folder", tiny_image_folder, "test",
                                                image_size=8).as_numpy_iterator()])
    expected = -np.take_along_axis(log_probs[None], images[..., None].astype(int),
                                   axis=-1).sum(axis=(1, 2, 3, 4))
    np.testing.assert_allclose(nats, expected, rtol=1e-5)


def test_samples_and_export_draw_the_same_images(run, tmp_path):
    assert sample.main(["-o", str(run), "--n", "4", "--seed", "3",
                        "--out", str(tmp_path / "s.png")]) == 0
    images = np.load(tmp_path / "s.npz")["images"]
    assert images.shape == (4, 8, 8, 3) and images.dtype == np.uint8
    assert sample.main(["-o", str(run), "--n", "4", "--export", str(tmp_path / "hub")]) == 0
    module = tf.saved_model.load(str(tmp_path / "hub"))
    exported = module(dict(z=tf.constant([3, 0]), y=tf.zeros([4, 0]), truncation=1.0))
    np.testing.assert_array_equal(np.round((exported.numpy() + 1) * 127.5).astype(np.uint8),
                                  images)
