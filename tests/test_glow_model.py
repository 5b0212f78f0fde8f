"""Properties of the multi-scale Glow (glow/model.py): exact log-dets, inverses, reconstruction, sampling,
gradient checkpointing, and that a tiny model learns real photo patches."""
import dataclasses
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import skimage.data
import tensorflow as tf

from glow import nn
from glow.model import Glow, GlowConfig, attribute_vectors, interpolate, manipulate, postprocess, preprocess

TINY = dict(image_shape=(8, 8, 3), n_levels=2, depth=2, width=8)


def perturb(variables, scale, seed=0):
    """Move every variable off its init so zero-initialised layers do something (call before the actnorm
    init: perturbing the convs after it would throw the activations far off the scale actnorm was fitted to)."""
    rng = np.random.default_rng(seed)
    for v in variables:
        v.assign(v + scale * rng.normal(size=v.shape).astype(v.dtype.as_numpy_dtype))


def random_images(n, shape=(8, 8, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, [n, *shape]).astype(np.uint8)


def photo_patches(n, size, rows, seed):
    """n random size x size crops of skimage's astronaut photo (half resolution) with top-left row in `rows`."""
    image = skimage.data.astronaut()[::2, ::2]
    rng = np.random.default_rng(seed)
    top = rng.integers(rows[0], rows[1] - size, n)
    left = rng.integers(0, image.shape[1] - size, n)
    return np.stack([image[t:t + size, l:l + size] for t, l in zip(top, left)])


# ------------------------------------------------------------------------------------------------ config

@pytest.mark.parametrize("changes, message", [
    (dict(image_shape=(12, 12, 3)), "power of two"),
    (dict(image_shape=(8, 8, 3), n_levels=4), "2\\*\\*n_levels"),
    (dict(flow_permutation=4), "flow_permutation"),
    (dict(flow_coupling=2), "flow_coupling"),
    (dict(n_bits_x=9), "n_bits_x"),
    (dict(ycond=True), "num_classes"),
    (dict(weight_y=0.1), "ycond"),
    (dict(dtype="float16"), "dtype"),
])
def test_config_rejects_impossible_settings(changes, message):
    with pytest.raises(ValueError, match=message):
        GlowConfig(**{**TINY, **changes})


def test_config_round_trips_through_dict():
    config = GlowConfig(**TINY, learntop=True, ycond=True, num_classes=3, weight_y=0.5, flow_permutation=3)
    assert GlowConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown GlowConfig keys"):
        GlowConfig.from_dict({**config.to_dict(), "n_level": 3})


def test_latent_shapes_match_openai_glow():
    model = Glow(GlowConfig(image_shape=(32, 32, 3), n_levels=3, depth=1, width=4))
    assert model.eps_shapes == [(16, 16, 6), (8, 8, 12), (4, 4, 48)]


# ------------------------------------------------------------------------------------------------ exact math

@pytest.mark.parametrize("priors", [False, True])
@pytest.mark.parametrize("coupling", [0, 1])
@pytest.mark.parametrize("permutation", [0, 1, 2, 3])
def test_logdet_equals_brute_force_jacobian(permutation, coupling, priors):
    """float64: log p(x) from the flow equals the change of variables through the full Jacobian x -> eps."""
    config = GlowConfig(image_shape=(4, 4, 3), n_levels=2, depth=2, width=8, flow_permutation=permutation,
                        flow_coupling=coupling, learntop=priors, ycond=priors, num_classes=3 if priors else 0,
                        dtype="float64")
    model = Glow(config)
    prior_variables = [v for m in [model.top_prior, *model.split_priors] for v in m.trainable_variables]
    prior_refs = {v.ref() for v in prior_variables}
    perturb([v for v in model.trainable_variables if v.ref() not in prior_refs], 0.1, seed=permutation)
    if priors:  # learned split and top priors: eps is no longer the raw latent
        perturb(prior_variables, 0.1, seed=10 + permutation)
    x = tf.constant(np.random.default_rng(1).uniform(-0.5, 0.5, [3, 4, 4, 3]))
    y = tf.constant([0, 1, 2])
    with tf.GradientTape() as tape:
        tape.watch(x)
        eps_list, logdet, logp = model.flow(x, y)
        eps = model.flatten(eps_list)
    jacobian = tf.reshape(tape.batch_jacobian(eps, x), [3, 48, 48])
    log_abs_det = tf.linalg.slogdet(jacobian)[1]
    standard_normal = tf.reduce_sum(-0.5 * math.log(2 * math.pi) - 0.5 * tf.square(eps), axis=1)
    np.testing.assert_allclose(logdet + logp, standard_normal + log_abs_det, atol=1e-9)
    if not priors:  # split priors at their zero init: eps is the raw latent, so the flow logdet is the Jacobian's
        np.testing.assert_allclose(logdet, log_abs_det, atol=1e-9)
        np.testing.assert_allclose(logp, standard_normal, atol=1e-9)
    perturb(prior_variables, 0.1, seed=20)  # the priors change log p and eps, never the flow's logdet
    _, logdet_again, logp_again = model.flow(x, y)
    np.testing.assert_allclose(logdet_again, logdet, rtol=1e-12)
    assert not np.allclose(logp_again, logp)
    assert np.all(np.abs(log_abs_det) > 1e-3)  # a non-trivial map


@pytest.mark.parametrize("permutation, coupling", [(0, 0), (1, 1), (2, 1), (3, 0)])
def test_reverse_inverts_flow_in_float32(permutation, coupling):
    config = GlowConfig(**TINY, flow_permutation=permutation, flow_coupling=coupling, learntop=True)
    model = Glow(config)
    perturb(model.trainable_variables, 0.05)
    model.initialize(random_images(16), seed=0)
    z = tf.random.stateless_uniform([4, 8, 8, 3], [1, 2], -0.5, 0.5)
    eps_list, _, _ = model.flow(z)
    np.testing.assert_allclose(model.reverse(eps_list), z, atol=1e-5)


def test_flow_and_reverse_compile_with_xla():
    """The 1x1 conv's float64 log-det (via QR: XLA has no slogdet kernel) and inverse compile; results agree."""
    model = Glow(GlowConfig(**{**TINY, "depth": 1}, flow_permutation=2, flow_coupling=1))
    perturb(model.trainable_variables, 0.05)
    model.initialize(random_images(8), seed=0)
    z = tf.random.stateless_uniform([2, 8, 8, 3], [3, 4], -0.5, 0.5)
    eps, logdet, logp = tf.function(model.flow, jit_compile=True)(z)
    _, logdet_eager, logp_eager = model.flow(z)
    np.testing.assert_allclose(logdet, logdet_eager, rtol=1e-5)
    np.testing.assert_allclose(logp, logp_eager, rtol=1e-5)
    np.testing.assert_allclose(tf.function(model.reverse, jit_compile=True)(eps), z, atol=1e-5)


@pytest.mark.parametrize("n_bits_x", [8, 5])
def test_decode_of_encode_reproduces_the_quantised_images(n_bits_x):
    model = Glow(GlowConfig(**TINY, flow_coupling=1, flow_permutation=2, n_bits_x=n_bits_x, learntop=True))
    x = photo_patches(8, 8, (0, 256), seed=0)
    perturb(model.trainable_variables, 0.05)
    model.initialize(x, seed=0)
    quantised = (x // 2 ** (8 - n_bits_x)) * 2 ** (8 - n_bits_x)
    np.testing.assert_array_equal(model.decode(model.encode(x)), quantised)  # bin-centre encoding
    np.testing.assert_array_equal(model.decode(model.encode(x, seed=3)), quantised)  # with dequantisation noise
    eps = model.encode(x)
    np.testing.assert_array_equal(model.decode(model.unflatten(model.flatten(eps))), quantised)
    np.testing.assert_array_equal(postprocess(preprocess(x, n_bits_x), n_bits_x), quantised)


def test_objective_bookkeeping():
    """bits_x = -(log p) / (D ln 2) with the -D log(n_bins) term; zero-logit classifier costs log2(n_y) bits."""
    config = GlowConfig(**TINY, n_bits_x=5, ycond=True, num_classes=4, weight_y=0.5)
    model = Glow(config)
    x, y = random_images(4), np.array([0, 1, 2, 3])
    model.initialize(x, y, seed=0)
    loss, stats = model.loss(x, y, seed=7)
    z = preprocess(x, 5) + tf.random.stateless_uniform(x.shape, [7, 0], 0.0, 1.0 / 32)
    _, logdet, logp = model.flow(z, y)
    log_px = -192 * math.log(32) + logdet + logp
    np.testing.assert_allclose(model.log_prob(x, y, seed=7), log_px, rtol=1e-6)
    np.testing.assert_allclose(stats["bits_x"], -log_px / (192 * math.log(2)), rtol=1e-6)
    np.testing.assert_allclose(model.bits_per_dim(x, y, seed=7), stats["bits_x"], rtol=1e-6)
    np.testing.assert_allclose(stats["bits_y"], 2.0, rtol=1e-6)
    np.testing.assert_allclose(loss, stats["bits_x"] + 0.5 * stats["bits_y"], rtol=1e-6)
    with pytest.raises(ValueError, match="pass the labels"):
        model.loss(x, seed=7)
    with pytest.raises(ValueError, match="pass seed"):
        model.loss(x, y, seed=None)


def test_actnorm_init_normalises_every_step_input():
    model = Glow(GlowConfig(**TINY, flow_permutation=3))
    x = photo_patches(32, 8, (0, 256), seed=1)
    model.initialize(x, seed=0)
    z = nn.squeeze2d(preprocess(x, 8) + tf.random.stateless_uniform(x.shape, [0, 0], 0.0, 1.0 / 256))
    out = model.levels[0][0].actnorm(z)
    np.testing.assert_allclose(tf.reduce_mean(out, [0, 1, 2]), 0.0, atol=1e-4)
    np.testing.assert_allclose(tf.math.reduce_std(out, [0, 1, 2]), 1.0, rtol=1e-3)


def test_gradient_checkpointing_recomputes_steps_with_equal_gradients():
    x = photo_patches(4, 8, (0, 256), seed=2)
    config = GlowConfig(**TINY, flow_permutation=3, flow_coupling=1, learntop=True)
    gradients, calls = [], []
    for checkpointing in (False, True):
        model = Glow(dataclasses.replace(config, gradient_checkpointing=checkpointing))
        perturb(model.trainable_variables, 0.05)
        model.initialize(x, seed=0)
        count = [0]
        step = model.levels[0][0]
        original = step.forward

        def counting_forward(*args, **kwargs):
            count[0] += 1
            return original(*args, **kwargs)

        step.forward = counting_forward
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss(x, seed=1, training=True)[0])
        gradients.append(tape.gradient(loss, model.trainable_variables))
        calls.append(count[0])
    assert calls == [1, 2]  # the checkpointed step ran again in the backward pass
    for a, b in zip(*gradients):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


def test_every_layer_reads_ema_weights():
    """Evaluating with an EMA equals evaluating a model whose raw weights are the averages."""
    class ShadowEMA:
        def __init__(self, variables, seed):
            rng = np.random.default_rng(seed)
            self.shadows = {v.ref(): tf.Variable(v + 0.02 * rng.normal(size=v.shape).astype(np.float32))
                            for v in variables}

        def average(self, v):
            return self.shadows[v.ref()]

    config = GlowConfig(**TINY, flow_permutation=3, flow_coupling=1, learntop=True, ycond=True, num_classes=2,
                        weight_y=1.0)
    model = Glow(config)
    x, y = random_images(4), np.array([0, 1, 1, 0])
    model.initialize(x, y, seed=0)
    ema = ShadowEMA(model.trainable_variables, seed=1)
    raw_loss, raw_stats = model.loss(x, y, seed=2)
    ema_loss, ema_stats = model.loss(x, y, ema=ema, seed=2)
    ema_samples = model.sample(4, y, temperature=0.5, seed=3, ema=ema)
    assert not np.allclose(ema_loss, raw_loss)
    for v in model.trainable_variables:
        v.assign(ema.average(v))
    loss, stats = model.loss(x, y, seed=2)
    np.testing.assert_allclose(loss, ema_loss, rtol=1e-6)
    np.testing.assert_allclose(stats["bits_y"], ema_stats["bits_y"], rtol=1e-6)
    np.testing.assert_array_equal(model.sample(4, y, temperature=0.5, seed=3), ema_samples)


def test_checkpoint_restores_a_fresh_model_without_a_forward_pass(tmp_path):
    config = GlowConfig(**TINY, flow_permutation=1, learntop=True)
    x = random_images(4)
    model = Glow(config)
    perturb(model.trainable_variables, 0.05)
    model.initialize(x, seed=0)
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "glow"))
    fresh = Glow(dataclasses.replace(config, seed=1))  # different init and shuffle permutations
    assert fresh.num_parameters() == model.num_parameters() > 0
    tf.train.Checkpoint(model=fresh).read(path).assert_consumed()
    np.testing.assert_allclose(fresh.loss(x, seed=2)[0], model.loss(x, seed=2)[0], rtol=1e-6)


# ------------------------------------------------------------------------------------------------ sampling

def test_sampling_temperature_seeds_and_labels():
    model = Glow(GlowConfig(**TINY, flow_coupling=1, learntop=True, ycond=True, num_classes=3))
    perturb(model.trainable_variables, 0.05)
    model.initialize(random_images(16), np.arange(16) % 3, seed=0)
    y = np.array([0, 1, 2, 0])
    a = model.sample(4, y, temperature=0.0, seed=1)
    b = model.sample(4, y, temperature=0.0, seed=2)
    assert a.dtype == tf.uint8 and a.shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(a, b)  # T = 0: the chain of conditional means, no noise
    np.testing.assert_array_equal(a[0], a[3])  # same label, same mode
    assert not np.array_equal(a[0], a[1])  # the label changes the top prior
    c = model.sample(4, y, temperature=1.0, seed=1)
    np.testing.assert_array_equal(c, model.sample(4, y, temperature=1.0, seed=1))
    assert not np.array_equal(c, model.sample(4, y, temperature=1.0, seed=2))
    mixed = model.sample(4, y, temperature=[0.0, 1.0, 0.0, 1.0], seed=1)
    np.testing.assert_array_equal(mixed[0], a[0])
    np.testing.assert_array_equal(mixed[2], a[2])
    np.testing.assert_array_equal(mixed[1], c[1])
    assert not np.array_equal(mixed[1], a[1])


def test_attribute_vectors_manipulate_and_interpolate():
    rng = np.random.default_rng(0)
    attributes = np.tile([[-1, -1], [-1, 1], [1, -1], [1, 1]], [50, 1])  # balanced: effects separate exactly
    direction = rng.normal(size=[2, 5])
    z = rng.normal(size=[200, 5]) * 0.01 + (attributes > 0) @ direction
    np.testing.assert_allclose(attribute_vectors(z, attributes), direction, atol=0.01)
    np.testing.assert_allclose(attribute_vectors(z, (attributes > 0).astype(int)), direction, atol=0.01)
    with pytest.raises(ValueError, match="positive and negative"):
        attribute_vectors(z, np.ones([200, 2]))
    np.testing.assert_allclose(manipulate(z[0], direction[1], 0.5), z[0] + 0.5 * direction[1])
    path = interpolate(z[0], z[1], 5)
    assert path.shape == (5, 5)
    np.testing.assert_allclose(path[[0, 2, 4]], [z[0], (z[0] + z[1]) / 2, z[1]])


# ------------------------------------------------------------------------------------------------ learning

def test_tiny_glow_learns_photo_patches():
    train = photo_patches(2048, 8, (0, 192), seed=0)
    test = photo_patches(256, 8, (192, 256), seed=1)
    model = Glow(GlowConfig(**{**TINY, "width": 16}, flow_permutation=3, flow_coupling=1, learntop=True))
    model.initialize(train[:256], seed=0)
    variables = model.trainable_variables
    moments = [(tf.Variable(tf.zeros_like(v)), tf.Variable(tf.zeros_like(v))) for v in variables]

    @tf.function
    def train_step(x, step):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss(x, seed=tf.stack([step, 1]), training=True)[0])
        t = tf.cast(step + 1, tf.float32)
        for v, g, (m, s) in zip(variables, tape.gradient(loss, variables), moments):  # Adam, lr 1e-3
            m.assign(0.9 * m + 0.1 * g)
            s.assign(0.999 * s + 0.001 * tf.square(g))
            v.assign_sub(1e-3 * (m / (1 - 0.9 ** t)) / (tf.sqrt(s / (1 - 0.999 ** t)) + 1e-8))
        return loss

    test_bits = lambda: float(tf.reduce_mean(model.bits_per_dim(test, seed=5)))
    before = test_bits()
    for step in range(300):
        batch = train[(step * 64) % 2048:][:64]
        assert np.isfinite(float(train_step(batch, tf.constant(step))))
    after = test_bits()
    assert after < before - 1.0, (before, after)
    samples = model.sample(16, temperature=0.7, seed=3)
    assert samples.shape == (16, 8, 8, 3)
    assert np.all(np.isfinite(model.reverse([e * 0.7 for e in model.encode(test[:16])])))
    assert samples.numpy().std() > 1.0  # not collapsed to one colour
