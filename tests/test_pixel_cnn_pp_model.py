"""Proves the PixelCNN++ network (pixel_cnn_pp/model.py): the original's parameter counts,
causality by gradients, data-dependent init statistics, learning (overfitting real photo patches),
the naive sampler's determinism, conditioning and consistency, dropout seeding and EMA reading."""
import numpy as np
import pytest
import skimage.data
import tensorflow as tf

from pixel_cnn_pp import nn
from pixel_cnn_pp.model import (PixelCNNConfig, PixelCNNPP, bits_per_dim, sample_naive,
                                to_model_input, to_uint8)


def tiny_config(**overrides):
    """A small model; 8x8 images keep the lowest resolution at 2x2 (at 1x1 the data-dependent init
    divides by near-zero variances, as the original would)."""
    config = dict(image_shape=(8, 8, 3), nr_resnet=1, nr_filters=8, nr_logistic_mix=3, dropout_p=0.0)
    config.update(overrides)
    return PixelCNNConfig(**config)


def initialized_model(config, batch=4, seed=0):
    tf.random.set_seed(seed)
    model = PixelCNNPP(config)
    x = tf.random.stateless_uniform([batch, *config.image_shape], [seed, 1], -1.0, 1.0)
    h = tf.one_hot(np.arange(batch) % config.num_classes, config.num_classes) if config.num_classes else None
    model.initialize(x, h, seed=[seed, 2])
    return model


# ----------------------------------------------------------------------------------------------
# Configuration and parameter counts

@pytest.mark.parametrize("overrides,expected", [
    ({}, 53_659_080), ({"num_classes": 10}, 53_863_880), ({"image_shape": (32, 32, 1)}, 53_644_220)])
def test_default_architecture_has_the_original_parameter_count(overrides, expected):
    model = PixelCNNPP(PixelCNNConfig(**overrides))
    assert model.num_parameters() == expected
    assert len(model.trainable_variables) == 567 + (64 if overrides.get("num_classes") else 0)


def test_layer_structure_follows_the_contract():
    config = tiny_config(nr_resnet=2, num_classes=3)
    model = PixelCNNPP(config)
    assert [len(stage) for stage in model.up_u] == [2, 2, 2]
    assert [len(stage) for stage in model.down_ul] == [2, 3, 3]
    assert isinstance(model.down_u[0][0].conv1, nn.DownShiftedConv2D)
    assert isinstance(model.down_ul[0][0].conv2, nn.DownRightShiftedConv2D)
    assert model.up_u[0][0].nin_aux is None and model.up_ul[0][0].nin_aux is not None
    assert model.down_ul[1][0].nin_aux.V.shape == (2 * 2 * 8, 8)  # concat_elu of concat(u, ul skip)
    assert model.up_u[1][1].hw.shape == (3, 16)
    assert model.up_ul_deconv[1].filter_size == (2, 2) and model.up_u_deconv[0].stride == (2, 2)
    assert model.out_nin.V.shape == (8, 30)
    assert PixelCNNConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("overrides,message", [
    ({"image_shape": (30, 32, 3)}, "(30, 32, 3)"), ({"image_shape": (32, 18, 1)}, "multiples of 4"),
    ({"image_shape": (32, 32, 2)}, "1 or 3 channels"), ({"resnet_nonlinearity": "tanh"}, "tanh"),
    ({"dropout_p": 1.0}, "dropout_p")])
def test_bad_configurations_are_rejected_with_a_clear_message(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PixelCNNConfig(**overrides)


def test_wrong_input_shape_is_rejected():
    model = PixelCNNPP(tiny_config())
    with pytest.raises(ValueError, match="expects"):
        model(tf.zeros([2, 16, 16, 3]))
    with pytest.raises(ValueError, match="unconditional"):
        model(tf.zeros([2, 8, 8, 3]), h=tf.zeros([2, 3]))


def test_conversions_and_bits_per_dim():
    values = np.arange(256, dtype=np.uint8)
    x = to_model_input(values).numpy()
    np.testing.assert_allclose(x, (values - 127.5) / 127.5, rtol=1e-6)
    np.testing.assert_array_equal(to_uint8(x).numpy(), values)
    np.testing.assert_array_equal(to_uint8(np.array([-3.0, -1.0, 1.0, 7.0])).numpy(), [0, 0, 255, 255])
    assert bits_per_dim(3072 * np.log(2) * 2.5, (32, 32, 3)) == pytest.approx(2.5)


# ----------------------------------------------------------------------------------------------
# Causality

@pytest.mark.parametrize("overrides", [{}, {"image_shape": (8, 12, 1), "resnet_nonlinearity": "elu"}])
def test_output_depends_only_on_earlier_pixels(overrides):
    """For every output pixel p and every output channel, the gradient with respect to every
    input pixel at or after p in raster order is exactly zero, and it is non-zero for the pixel
    just before p (and for some earlier pixel whenever p is not the first)."""
    config = tiny_config(**overrides)
    model = initialized_model(config)
    height, width, channels = config.image_shape
    num_pixels = height * width
    out_channels = model.out_nin.num_units
    # one batch element per (output pixel, output channel): batch elements are independent
    pixel = np.repeat(np.arange(num_pixels), out_channels)
    channel = np.tile(np.arange(out_channels), num_pixels)
    selector = np.zeros([pixel.size, height, width, out_channels], np.float32)
    selector[np.arange(pixel.size), pixel // width, pixel % width, channel] = 1.0
    x = tf.random.stateless_uniform([pixel.size, height, width, channels], [5, 5], -1.0, 1.0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.reduce_sum(model(x) * selector)
    grad = np.abs(tape.gradient(out, x).numpy()).sum(-1).reshape(pixel.size, num_pixels)
    for k in range(pixel.size):
        p = pixel[k]
        assert np.all(grad[k, p:] == 0.0), (p, channel[k], np.nonzero(grad[k, p:]))
        if p > 0:
            assert grad[k, :p].max() > 0, (p, channel[k])
        if p % width > 0:
            assert grad[k, p - 1] > 0, (p, channel[k])


# ----------------------------------------------------------------------------------------------
# Data-dependent initialisation

def test_data_dependent_init_normalises_each_layer_on_the_init_batch(monkeypatch):
    """After initialize(x), running the same batch with the same dropout seed gives every
    weight-normalised layer pre-activations with per-channel mean 0 and std init_scale. This holds
    for later layers only if the init recomputed each layer's output after setting its g and b."""
    config = tiny_config(num_classes=2, dropout_p=0.3, nr_filters=12)
    model = PixelCNNPP(config)
    x = tf.random.stateless_uniform([6, 8, 8, 3], [1, 1], -1.0, 1.0)
    h = tf.one_hot([0, 1, 0, 1, 1, 0], 2)
    model.initialize(x, h, seed=[3, 4])

    recorded = {}
    for layer_class in (nn.Conv2D, nn.Deconv2D, nn.Dense):
        def recording_linear(self, inputs, W, b, _original=layer_class._linear):
            output = _original(self, inputs, W, b)
            recorded[id(self)] = output.numpy()
            return output
        monkeypatch.setattr(layer_class, "_linear", recording_linear)
    model(x, h, training=True, seed=[3, 4])
    monkeypatch.undo()

    layers = {"u_init": model.u_init, "ul_init_right": model.ul_init_right,
              "up_u conv1": model.up_u[0][0].conv1, "up_ul gate conv": model.up_ul[1][0].conv2,
              "up_ul nin_aux": model.up_ul[2][0].nin_aux, "stride-2 conv": model.down_ul_stride[1],
              "deconv": model.up_u_deconv[0], "down_ul gate conv": model.down_ul[2][1].conv2,
              "down_ul nin_aux": model.down_ul[2][1].nin_aux, "out_nin": model.out_nin}
    for name, layer in layers.items():
        pre = recorded[id(layer)].reshape(-1, layer.num_units)
        np.testing.assert_allclose(pre.mean(0), 0.0, atol=1e-4 * layer.init_scale, err_msg=name)
        np.testing.assert_allclose(pre.std(0), layer.init_scale, rtol=1e-3, err_msg=name)
    assert model.up_ul[1][0].conv2.init_scale == 0.1 and model.u_init.init_scale == 1.0
    # g and b moved away from the pre-init values (g = 1, b = 0)
    assert not np.allclose(model.out_nin.g.numpy(), 1.0)


# ----------------------------------------------------------------------------------------------
# Learning

def photo_patches(size=16, count=16):
    """Real photo crops (astronaut, chelsea), 2x2-averaged to keep natural detail at this size."""
    patches = []
    for image in (skimage.data.astronaut(), skimage.data.chelsea()):
        small = image[:image.shape[0] // 2 * 2, :image.shape[1] // 2 * 2].astype(np.float64)
        small = small.reshape(small.shape[0] // 2, 2, small.shape[1] // 2, 2, 3).mean((1, 3))
        rows = np.linspace(0, small.shape[0] - size, 4).astype(int)
        cols = np.linspace(0, small.shape[1] - size, 2).astype(int)
        patches += [small[r:r + size, c:c + size] for r in rows for c in cols]
    return np.round(np.stack(patches[:count])).astype(np.uint8)


def test_tiny_model_overfits_real_photo_patches():
    tf.random.set_seed(0)
    images = photo_patches()
    config = PixelCNNConfig(image_shape=images.shape[1:], nr_resnet=1, nr_filters=16, nr_logistic_mix=5,
                            dropout_p=0.0)
    model = PixelCNNPP(config)
    x = to_model_input(images)
    model.initialize(x)
    variables = model.trainable_variables
    first = [tf.Variable(tf.zeros_like(v)) for v in variables]
    second = [tf.Variable(tf.zeros_like(v)) for v in variables]
    step = tf.Variable(0.0)

    @tf.function
    def train_step(learning_rate=4e-3, beta1=0.9, beta2=0.999):  # plain Adam
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss(x))
        step.assign_add(1.0)
        for v, m, s, g in zip(variables, first, second, tape.gradient(loss, variables)):
            m.assign(beta1 * m + (1 - beta1) * g)
            s.assign(beta2 * s + (1 - beta2) * tf.square(g))
            m_hat, s_hat = m / (1 - beta1 ** step), s / (1 - beta2 ** step)
            v.assign_sub(learning_rate * m_hat / (tf.sqrt(s_hat) + 1e-8))
        return loss

    start = bits_per_dim(float(tf.reduce_mean(model.loss(x))), config.image_shape)
    for _ in range(100):
        train_step()
    end = bits_per_dim(float(tf.reduce_mean(model.loss(x))), config.image_shape)
    assert start > 7.0  # about 8 bits/dim (uniform) or worse before training
    assert end < 5.5, (start, end)


# ----------------------------------------------------------------------------------------------
# Naive sampler

def test_samples_are_in_range_reproducible_and_consistent_with_the_network():
    """Each sampled pixel equals a draw from the network's output at that pixel on the final image
    with seed pixel_seed(seed, i, j): raster order, unrounded feedback and the seed scheme."""
    config = tiny_config(image_shape=(8, 4, 3))
    model = initialized_model(config)
    images = sample_naive(model, 3, seed=[9, 9]).numpy()
    assert images.shape == (3, 8, 4, 3) and images.min() >= -1.0 and images.max() <= 1.0
    np.testing.assert_array_equal(images, sample_naive(model, 3, seed=[9, 9]).numpy())
    assert not np.array_equal(images, sample_naive(model, 3, seed=[9, 10]).numpy())
    assert not np.allclose(images * 127.5, np.round(images * 127.5))  # not rounded to 8 bits
    l = model(images)
    for i in range(8):
        for j in range(4):
            expected = model.sample_from_output(l[:, i:i + 1, j:j + 1, :], nn.pixel_seed([9, 9], i, j))
            np.testing.assert_allclose(images[:, i, j], expected.numpy()[:, 0, 0], atol=5e-4)


def test_class_conditional_samples_depend_on_the_label():
    config = tiny_config(image_shape=(8, 8, 3), num_classes=3)
    model = initialized_model(config)
    for block in [b for stage in model.up_u + model.up_ul for b in stage]:
        block.hw.assign(block.hw * 40.0)  # make the class bias matter after a random init
    first = sample_naive(model, 2, seed=[1, 2], h=tf.one_hot([0, 0], 3)).numpy()
    np.testing.assert_array_equal(first, sample_naive(model, 2, seed=[1, 2], h=tf.one_hot([0, 0], 3)).numpy())
    other = sample_naive(model, 2, seed=[1, 2], h=tf.one_hot([2, 1], 3)).numpy()
    assert np.abs(first - other).max() > 0.05
    with pytest.raises(ValueError, match="one-hot h"):
        sample_naive(model, 2, seed=[1, 2])


def test_one_channel_model_end_to_end():
    config = tiny_config(image_shape=(8, 4, 1), nr_logistic_mix=4)
    model = initialized_model(config)
    x = tf.random.stateless_uniform([2, 8, 4, 1], [0, 3], -1.0, 1.0)
    assert model(x).shape == (2, 8, 4, 12)
    np.testing.assert_allclose(model.loss(x).numpy(),
                               nn.discretized_mix_logistic_loss_1d(x, model(x), sum_all=False).numpy())
    images = sample_naive(model, 2, seed=[3, 3]).numpy()
    assert images.shape == (2, 8, 4, 1) and images.min() >= -1.0 and images.max() <= 1.0


def test_energy_distance_model_trains_and_samples():
    config = tiny_config(energy_distance=True)
    model = initialized_model(config)
    x = tf.random.stateless_uniform([2, 8, 8, 3], [0, 3], -1.0, 1.0)
    with tf.GradientTape() as tape:
        loss = model.loss(x, training=True, seed=[1, 1])
    assert loss.shape == (2,) and np.all(np.isfinite(loss.numpy()))
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)
    assert model(x).shape == (2, 8, 8, 3)
    images = sample_naive(model, 2, seed=[4, 4]).numpy()
    assert images.min() > -1.0 and images.max() < 1.0
    np.testing.assert_array_equal(images, sample_naive(model, 2, seed=[4, 4]).numpy())


# ----------------------------------------------------------------------------------------------
# Dropout seeding and Polyak averages

def test_dropout_is_a_function_of_the_seed():
    model = initialized_model(tiny_config(dropout_p=0.5))
    x = tf.random.stateless_uniform([2, 8, 8, 3], [0, 4], -1.0, 1.0)
    train = model.loss(x, training=True, seed=[1, 2]).numpy()
    np.testing.assert_array_equal(train, model.loss(x, training=True, seed=[1, 2]).numpy())
    assert not np.allclose(train, model.loss(x, training=True, seed=[1, 3]).numpy())
    assert not np.allclose(train, model.loss(x).numpy())
    np.testing.assert_array_equal(model.loss(x).numpy(), model.loss(x).numpy())
    with pytest.raises(ValueError, match="seed"):
        model.loss(x, training=True)


def test_ema_argument_makes_every_layer_read_the_averages():
    config = tiny_config(num_classes=2)
    model = initialized_model(config)
    x = tf.random.stateless_uniform([2, 8, 8, 3], [0, 5], -1.0, 1.0)
    h = tf.one_hot([0, 1], 2)

    class Shadows:
        def __init__(self, variables):
            self.shadow = {v.ref(): tf.Variable(v) for v in variables}

        def average(self, variable):
            return self.shadow[variable.ref()]

    ema = Shadows(model.trainable_variables)
    np.testing.assert_allclose(model(x, h, ema=ema).numpy(), model(x, h).numpy(), rtol=1e-6, atol=1e-6)
    for variable in model.trainable_variables:  # perturb the raw weights only
        variable.assign(variable * 1.5)
    with_ema = model(x, h, ema=ema).numpy()
    for variable in model.trainable_variables:
        variable.assign(variable / 1.5)
    np.testing.assert_allclose(with_ema, model(x, h).numpy(), rtol=1e-5, atol=1e-5)
