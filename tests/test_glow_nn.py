"""Properties of Glow's layers (glow/nn.py): exact inverses, exact log-determinants, init statistics."""
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from glow import nn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def randn(*shape, seed=0, dtype=np.float64):
    return tf.constant(np.random.default_rng(seed).normal(size=shape).astype(dtype))


def brute_force_1x1_logdet(layer, z):
    """log|det| of the Jacobian of the whole [H,W,C] map of one example, in float64."""
    with tf.GradientTape() as tape:
        tape.watch(z)
        out = layer.forward(z)[0]
    d = int(np.prod(z.shape[1:]))
    jacobian = tf.reshape(tape.batch_jacobian(out, z), [-1, d, d])
    return tf.linalg.slogdet(jacobian)[1]


def test_squeeze_channel_order_and_inverse():
    x = tf.reshape(tf.range(2 * 4 * 4 * 3, dtype=tf.float32), [2, 4, 4, 3])
    s = nn.squeeze2d(x)
    assert s.shape == (2, 2, 2, 12)
    for i, j, c, fh, fw in [(0, 0, 0, 0, 0), (1, 0, 2, 1, 1), (0, 1, 1, 0, 1), (1, 1, 2, 1, 0)]:
        assert s[1, i, j, c * 4 + fh * 2 + fw] == x[1, 2 * i + fh, 2 * j + fw, c]
    np.testing.assert_array_equal(nn.unsqueeze2d(s), x)


def test_edge_padding_marks_only_the_border():
    x = tf.ones([2, 3, 3, 2])
    p = nn.add_edge_padding(x)
    assert p.shape == (2, 5, 5, 3)
    border = np.ones([5, 5])
    border[1:-1, 1:-1] = 0
    np.testing.assert_array_equal(p[1, :, :, 2], border)
    np.testing.assert_array_equal(p[1, :, :, 0], 1 - border)


def test_actnorm_init_gives_zero_mean_unit_variance_and_inverts():
    layer = nn.ActNorm(5, "float64")
    x = 3.0 + 2.5 * randn(16, 4, 4, 5)
    y, logdet = layer.forward(x, init=True)
    np.testing.assert_allclose(tf.reduce_mean(y, [0, 1, 2]), 0.0, atol=1e-10)
    np.testing.assert_allclose(tf.math.reduce_variance(y, [0, 1, 2]), 1.0, rtol=1e-5)
    np.testing.assert_allclose(layer.reverse(y), x, atol=1e-12)
    np.testing.assert_allclose(logdet, brute_force_1x1_logdet(layer, x[:, :2, :2]) * 4, rtol=1e-10)
    # The init is stored as logs_var = logs / 3 (openai/glow logscale_factor).
    np.testing.assert_allclose(layer.logs * 3, -np.log(np.std(x.numpy(), axis=(0, 1, 2)) + 1e-6), rtol=1e-6)
    # A constant channel stays finite thanks to the epsilon.
    flat = tf.concat([x[..., :4], tf.ones_like(x[..., :1])], axis=-1)
    assert np.all(np.isfinite(nn.ActNorm(5, "float64").forward(flat, init=True)[0]))


@pytest.mark.parametrize("kind", [0, 1])
def test_reverse_and_shuffle_have_zero_logdet_and_invert(kind):
    layer = nn.make_permutation(kind, 6, np.random.default_rng(3), "float64")
    z = randn(2, 3, 3, 6)
    out, logdet = layer.forward(z)
    np.testing.assert_array_equal(logdet, [0.0, 0.0])
    assert not np.allclose(out, z)
    np.testing.assert_array_equal(np.sort(out.numpy(), axis=-1), np.sort(z.numpy(), axis=-1))
    np.testing.assert_array_equal(layer.reverse(out), z)


def test_shuffle_is_reproducible_across_processes():
    code = ("import numpy as np; from glow import nn; "
            "print(nn.ShufflePermutation(16, np.random.default_rng([7, 1, 2])).indices.numpy().tolist())")
    env = dict(os.environ, PYTHONHASHSEED="random", PYTHONPATH=REPO)
    other = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    here = nn.ShufflePermutation(16, np.random.default_rng([7, 1, 2])).indices.numpy().tolist()
    assert other.stdout.strip().splitlines()[-1] == str(here)
    assert here != nn.ShufflePermutation(16, np.random.default_rng([8, 1, 2])).indices.numpy().tolist()


def test_lu_and_plain_1x1_conv_agree_and_invert():
    plain = nn.InvertibleConv1x1(6, np.random.default_rng(5), "float64")
    lu = nn.InvertibleConv1x1LU(6, np.random.default_rng(5), "float64")
    np.testing.assert_allclose(lu.weights(), plain.w, atol=1e-12)
    # Move W away from a rotation (log|det| != 0) through LU's own parameters, then copy it to the plain conv.
    rng = np.random.default_rng(6)
    for v in (lu.lower, lu.upper, lu.log_s):
        v.assign(v + 0.3 * rng.normal(size=v.shape))
    plain.w.assign(lu.weights())
    z = randn(2, 3, 3, 6)
    out_plain, logdet_plain = plain.forward(z)
    out_lu, logdet_lu = lu.forward(z)
    np.testing.assert_allclose(out_lu, out_plain, atol=1e-12)
    np.testing.assert_allclose(logdet_lu, logdet_plain, rtol=1e-10)
    assert abs(float(logdet_lu[0])) > 0.5
    np.testing.assert_allclose(logdet_lu, brute_force_1x1_logdet(lu, z), rtol=1e-10)
    np.testing.assert_allclose(lu.reverse(out_lu), z, atol=1e-12)
    np.testing.assert_allclose(plain.reverse(out_plain), z, atol=1e-12)


def test_1x1_conv_logdet_stays_finite_when_the_determinant_underflows():
    layer = nn.InvertibleConv1x1(8, np.random.default_rng(0), "float32")
    layer.w.assign(layer.w * 1e-6)  # det = 1e-48 underflows float32; log|det(W)| as in openai/glow gives -inf
    logdet = layer.forward(tf.zeros([1, 2, 2, 8]))[1]
    np.testing.assert_allclose(logdet, 4 * 8 * np.log(1e-6), rtol=1e-5)


@pytest.mark.parametrize("affine", [False, True])
def test_coupling_inverts_and_logdet_matches_jacobian(affine):
    layer = nn.Coupling(4, 8, affine, np.random.default_rng(0), "float64")
    z = randn(3, 3, 3, 4)
    out, logdet = layer.forward(z)
    # Zero-initialised last layer: identity (additive) or the fixed contraction sigmoid(2) (affine).
    expected = tf.concat([z[..., :2], z[..., 2:] * (1 / (1 + np.exp(-2.0)) if affine else 1.0)], -1)
    np.testing.assert_allclose(out, expected, atol=1e-12)
    np.testing.assert_allclose(logdet, (np.log(1 / (1 + np.exp(-2.0))) * 18) if affine else 0.0, rtol=1e-12)
    for v in layer.trainable_variables:
        v.assign(v + 0.2 * np.random.default_rng(1).normal(size=v.shape))
    out, logdet = layer.forward(z)
    assert not np.allclose(out[..., 2:], expected[..., 2:])
    np.testing.assert_allclose(out[..., :2], z[..., :2])
    np.testing.assert_allclose(layer.reverse(out), z, atol=1e-10)
    np.testing.assert_allclose(logdet, brute_force_1x1_logdet(layer, z), atol=1e-10)


def test_affine_log_scale_stays_finite_for_large_negative_inputs():
    shift, log_scale = nn.affine_coupling_params(tf.constant([[0.0, -500.0]]))
    assert np.isfinite(log_scale.numpy()).all() and float(log_scale[0, 0]) < -400


def test_zero_layers_start_at_zero():
    x = randn(2, 4, 4, 3, dtype=np.float32)
    np.testing.assert_array_equal(nn.Conv2DZeros(3, 5, "float32")(x), np.zeros([2, 4, 4, 5]))
    np.testing.assert_array_equal(nn.LinearZeros(3, 5, "float32")(x[:, 0, 0]), np.zeros([2, 5]))


def test_gaussian_log_prob_matches_closed_form_and_eps_inverts():
    x, mean, logsd = randn(2, 2, 2, 3, seed=1), randn(2, 2, 2, 3, seed=2), 0.3 * randn(2, 2, 2, 3, seed=3)
    sd = np.exp(logsd.numpy())
    expected = np.sum(-np.log(sd * np.sqrt(2 * np.pi)) - (x.numpy() - mean.numpy()) ** 2 / (2 * sd ** 2),
                      axis=(1, 2, 3))
    np.testing.assert_allclose(nn.gaussian_log_prob(x, mean, logsd), expected, rtol=1e-12)
    np.testing.assert_allclose(nn.gaussian_from_eps(nn.gaussian_eps(x, mean, logsd), mean, logsd), x, atol=1e-12)


def test_ema_weights_are_read_through_average():
    class Shadow:
        def __init__(self, variables):
            self.shadows = {v.ref(): tf.Variable(v * 0.0) for v in variables}

        def average(self, v):
            return self.shadows[v.ref()]

    layer = nn.FlowStep(4, 8, 3, True, np.random.default_rng(0), "float64")
    for v in layer.trainable_variables:
        v.assign(v + 0.1)
    z = randn(2, 2, 2, 4)
    ema = Shadow(layer.trainable_variables)
    for v in layer.trainable_variables:
        ema.shadows[v.ref()].assign(v)
    np.testing.assert_allclose(layer.forward(z, ema)[0], layer.forward(z)[0], atol=1e-12)
    ema.shadows[layer.actnorm.b.ref()].assign_add(tf.ones([4], tf.float64))
    assert not np.allclose(layer.forward(z, ema)[0], layer.forward(z)[0])
    np.testing.assert_allclose(layer.reverse(layer.forward(z, ema)[0], ema), z, atol=1e-10)
