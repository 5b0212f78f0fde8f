"""The cached sampler (fast_generation) computes what the full PixelCNN++ computes, up to float
rounding.

* teacher-forced parity: the cached layers fed a fixed image pixel by pixel give the full
  network's mixture parameters at every pixel (1e-5), and the vertical stream's rows equal the full
  network's u stream (1e-6), over configurations covering class conditioning, 1 channel, a
  non-square image, every nonlinearity, R = 1 and 2, raw and Polyak-averaged weights;
* sample parity: with the same seeds, sample_fast and sample_naive give the same 8-bit images up to
  float rounding (image_agreement.assert_samples_agree: each image's first difference is a +-1
  rounding flip, few images and subpixels differ, the floats agree to 1e-4 before it), for models
  trained a little on real photo patches (unconditional and class-conditional) and fresh models of
  the parity configurations; an energy-distance model's float samples agree to 1e-4;
* caches start afresh every call: the same seed twice gives the same images; the batch size (also
  one that does not divide the number of images) does not change them.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf
from skimage import data as skimage_data

import image_agreement
from fast_generation import CachedPixelCNN, sample_fast, teacher_forced_params
from pixel_cnn_pp import nn
from pixel_cnn_pp.model import (PixelCNNConfig, PixelCNNPP, sample_naive, to_model_input,
                                to_uint8)
from trainer.optim import Adam


class PerturbedAverages:
    """Stand-in for the trainer's EMA: every variable's "average" is another variable holding
    different values, so reading raw weights by mistake changes the output."""

    def __init__(self, variables, seed=0):
        rng = np.random.default_rng(seed)
        self._shadows = {v.ref(): tf.Variable(v.numpy() * (1.0 + 0.2 * rng.standard_normal(v.shape))
                                              .astype(np.float32)) for v in variables}

    def average(self, variable):
        return self._shadows[variable.ref()]


def random_images(count, shape, seed):
    return tf.constant(np.random.default_rng(seed).uniform(-1, 1, (count, *shape)), tf.float32)


def one_hot_labels(count, num_classes):
    return tf.one_hot(np.arange(count) % num_classes, num_classes)


def build_model(image_shape, seed=0, **config):
    """A small model after data-dependent init on a random batch (g and b are non-trivial)."""
    tf.random.set_seed(seed)
    model = PixelCNNPP(PixelCNNConfig(image_shape=image_shape, **config))
    h = one_hot_labels(4, model.config.num_classes) if model.config.num_classes else None
    model.initialize(random_images(4, image_shape, seed + 100), h, seed=[seed, 1])
    return model


def full_u_stream(model, x, h, ema):
    """Reference: the full network's vertical stream, by level: the up-pass outputs (after each
    block) and the down-pass outputs (after each block), [B, H_l, W_l, F] each."""
    x_pad = tf.concat([x, tf.ones_like(x[..., :1])], axis=-1)
    u_list = [nn.down_shift(model.u_init(x_pad, ema=ema))]
    up = []
    for stage in range(3):
        up.append([])
        for block in model.up_u[stage]:
            u_list.append(block(u_list[-1], h=h, ema=ema))
            up[-1].append(u_list[-1])
        if stage < 2:
            u_list.append(model.down_u_stride[stage](u_list[-1], ema=ema))
    down = []
    u = u_list.pop()
    for stage in range(3):
        down.append([])
        for block in model.down_u[stage]:
            u = block(u, a=u_list.pop(), h=h, ema=ema)
            down[-1].append(u)
        if stage < 2:
            u = model.up_u_deconv[stage](u, ema=ema)
    return up, down[::-1]  # down indexed by level (0 = full resolution) like up


PARITY_CONFIGS = {
    "conditional_nonsquare_concat_elu_R2_ema": dict(
        image_shape=(8, 12, 3), nr_resnet=2, nr_filters=8, nr_logistic_mix=2,
        resnet_nonlinearity="concat_elu", num_classes=3, ema=True),
    "one_channel_elu_R1": dict(image_shape=(8, 8, 1), nr_resnet=1, nr_filters=6, nr_logistic_mix=3,
                               resnet_nonlinearity="elu", ema=False),
    "relu_R1_ema_tall": dict(image_shape=(12, 4, 3), nr_resnet=1, nr_filters=4, nr_logistic_mix=1,
                             resnet_nonlinearity="relu", ema=True),
}


def parity_case(name):
    """(model, Polyak averages or None, 3 images, their labels or None) of PARITY_CONFIGS[name]."""
    config = dict(PARITY_CONFIGS[name])
    use_ema = config.pop("ema")
    model = build_model(seed=len(name), **config)
    ema = PerturbedAverages(model.trainable_variables) if use_ema else None
    x = random_images(3, config["image_shape"], seed=7)
    h = one_hot_labels(3, config["num_classes"]) if config.get("num_classes") else None
    return model, ema, x, h


@pytest.mark.parametrize("name", sorted(PARITY_CONFIGS))
def test_teacher_forced_parity(name):
    config = PARITY_CONFIGS[name]
    model, ema, x, h = parity_case(name)

    expected = model(x, h, ema=ema).numpy()
    cached = teacher_forced_params(model, x, h, ema=ema).numpy()
    assert cached.shape == expected.shape
    np.testing.assert_allclose(cached, expected, rtol=0, atol=1e-5)
    if ema is not None:  # the averages matter: the raw weights give other parameters
        assert np.abs(model(x, h).numpy() - expected).max() > 1e-2

    # the vertical stream, row by row, against the full network's u stream at every level
    up, down = full_u_stream(model, x, h, ema)
    net = CachedPixelCNN(model, batch=3, ema=ema, h=h)
    vertical = net.initial_vertical()
    x_pad = tf.concat([x, tf.ones_like(x[..., :1])], axis=-1)
    for row in range(config["image_shape"][0]):
        previous_row = x_pad[:, row - 1] if row else tf.zeros_like(x_pad[:, 0])
        vertical, rows = net.vertical_row(vertical, tf.constant(row), previous_row)
        for level in range(3):
            if row % 2 ** level:
                continue
            for stream, reference in (("up", up), ("down", down)):
                for got, want in zip(rows[level][stream], reference[level]):
                    np.testing.assert_allclose(got.numpy(), want[:, row // 2 ** level].numpy(),
                                               rtol=0, atol=1e-6)


def photo_patches(count, side, seed=0):
    """uint8 [count, side, side, 3] crops of skimage's astronaut photograph."""
    photo = skimage_data.astronaut()
    rng = np.random.default_rng(seed)
    tops = rng.integers(0, photo.shape[0] - side, count)
    lefts = rng.integers(0, photo.shape[1] - side, count)
    return np.stack([photo[t:t + side, l:l + side] for t, l in zip(tops, lefts)])


def trained_model(num_classes, steps=30):
    """A tiny model fit for a few Adam steps to real 8x8 photo patches, so its distributions are
    peaked the way a trained model's are (the samples are not uniform noise)."""
    model = build_model((8, 8, 3), seed=3, nr_resnet=1, nr_filters=8, nr_logistic_mix=3,
                        dropout_p=0.0, num_classes=num_classes)
    x = to_model_input(photo_patches(16, 8))
    h = one_hot_labels(16, num_classes) if num_classes else None
    optimizer = Adam(model.trainable_variables, 2e-3)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss(x, h))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    first = step()
    for _ in range(steps - 1):
        last = step()
    assert last < first  # it learned something
    return model


SAMPLE_SEEDS = ([11, 12], [13, 12], [14, 5])


def assert_same_samples(model, count, h=None, ema=None, batch_size=None):
    """sample_fast and sample_naive agree for every seed of SAMPLE_SEEDS, up to float rounding:
    both feed back the unrounded float sample, so the floats agree to 1e-4 until an 8-bit value
    lands on the other side of a rounding edge. The bounds leave a wide margin over the measured
    rates (README, Tests). Returns the naive images."""
    naive = np.concatenate([sample_naive(model, count, seed=seed, h=h, ema=ema).numpy()
                            for seed in SAMPLE_SEEDS])
    fast = np.concatenate([sample_fast(model, count, seed=seed, h=h, ema=ema,
                                       batch_size=batch_size).numpy() for seed in SAMPLE_SEEDS])
    image_agreement.assert_samples_agree(fast, naive, max_flip_fraction=0.01,
                                         max_diverged_fraction=0.5, float_atol=1e-4)
    return naive


@pytest.mark.parametrize("num_classes, batch_size", [(0, 3), (4, None)])
def test_same_images_as_naive_sampler(num_classes, batch_size):
    """Also in batches of 3 for 4 images: the batch size (dividing the count or not) does not
    change the images."""
    model = trained_model(num_classes)
    h = one_hot_labels(4, num_classes) if num_classes else None
    naive = assert_same_samples(model, 4, h=h, batch_size=batch_size)
    assert len(np.unique(to_uint8(naive))) > 20  # real samples, not a constant image


@pytest.mark.parametrize("name", sorted(PARITY_CONFIGS))
def test_same_images_as_naive_sampler_on_fresh_models(name):
    config = dict(PARITY_CONFIGS[name])
    use_ema = config.pop("ema")
    model = build_model(seed=len(name), **config)
    ema = PerturbedAverages(model.trainable_variables) if use_ema else None
    h = one_hot_labels(4, config["num_classes"]) if config.get("num_classes") else None
    assert_same_samples(model, 4, h=h, ema=ema)


def test_caches_start_afresh_every_call():
    """A second call with the same seed gives the same images (nothing left over in the caches),
    another seed other images."""
    model = build_model((8, 8, 3), seed=5, nr_resnet=1, nr_filters=4, nr_logistic_mix=2)
    first = sample_fast(model, 3, seed=[1, 2]).numpy()
    again = sample_fast(model, 3, seed=[1, 2]).numpy()
    np.testing.assert_array_equal(first, again)
    other = sample_fast(model, 3, seed=[1, 3]).numpy()
    assert np.abs(other - first).max() > 0.1


def test_energy_distance_model_matches_naive_sampler():
    model = build_model((4, 8, 3), seed=9, nr_resnet=1, nr_filters=4, energy_distance=True)
    naive = sample_naive(model, 2, seed=[5, 6]).numpy()
    fast = sample_fast(model, 2, seed=[5, 6], batch_size=1).numpy()
    np.testing.assert_allclose(fast, naive, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="energy-distance"):
        teacher_forced_params(model, random_images(1, (4, 8, 3), 0))


def test_bad_inputs_raise_clear_errors():
    model = build_model((4, 4, 3), seed=1, nr_resnet=1, nr_filters=4, num_classes=2)
    with pytest.raises(ValueError, match="needs a one-hot h"):
        sample_fast(model, 2, seed=[0, 0])
    with pytest.raises(ValueError, match="one one-hot row per image"):
        sample_fast(model, 2, seed=[0, 0], h=one_hot_labels(3, 2))
    with pytest.raises(ValueError, match="batch_size"):
        sample_fast(model, 2, seed=[0, 0], h=one_hot_labels(2, 2), batch_size=0)
