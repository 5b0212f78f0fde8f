"""Proves the PixelCNN++ likelihood and sampler (pixel_cnn_pp/nn.py): probability masses sum to one,
the loss matches an independent float64 NumPy evaluation, gradients stay finite at the edges,
samples follow the likelihood, and seeds make sampling reproducible."""
import numpy as np
import pytest
import scipy.special as sp
import tensorflow as tf

from pixel_cnn_pp import nn

VALUES = (np.arange(256) - 127.5) / 127.5  # the 256 sub-pixel values in [-1, 1]
# Bins with mass below 1e-5 are scored as density x bin width (the original's rule). When the
# logistic is much narrower than a bin this misses part of those few bins' mass, so totals may fall
# short of one by about 1e-5; wide logistics sum to one within float64 rounding.
MASS_TOLERANCE = 3e-5


def tv_distance(p, q):
    return 0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum()


# ----------------------------------------------------------------------------------------------
# Probability mass sums to one

def test_subpixel_mass_sums_to_one_over_256_values():
    means = np.array([-3.0, -1.2, -1.0, -0.999, -0.5, 0.0, 0.37, 1.0 - 2 / 255, 1.0, 1.3, 3.0])
    log_scales = np.array([-7.0, -6.0, -4.5, -3.0, -1.0, 0.0, 2.0, 5.0, 8.0])
    mean, log_scale = (a.ravel() for a in np.meshgrid(means, log_scales, indexing="ij"))
    x = tf.constant(VALUES[:, None])  # [256, 1] against [1, P] parameter pairs
    log_p = nn.discretized_logistic_log_prob(x, tf.constant(mean[None]), tf.constant(log_scale[None]))
    mass = np.exp(log_p.numpy()).sum(axis=0)
    np.testing.assert_allclose(mass, 1.0, atol=MASS_TOLERANCE)
    wide = log_scale >= 0.0
    np.testing.assert_allclose(mass[wide], 1.0, atol=1e-9)


def pack_rgb(logits, means, log_scales, coeffs):
    """The 10M-channel layout: [logits(M) | for R, G, B: means(M), log-scales(M), coeffs(M)]."""
    per_channel = np.concatenate([means, log_scales, coeffs], axis=-1)  # [..., 3, 3M]
    return np.concatenate([logits, per_channel.reshape(*per_channel.shape[:-2], -1)], axis=-1)


def pack_gray(logits, means, log_scales):
    return np.concatenate([logits, means, log_scales], axis=-1)


def extreme_rgb_params():
    """One pixel's 20 outputs (M = 2) with strongly coupled components: one very sharp (log-scales
    at and below the -7 floor) with means at the edges and inside, one very wide with means beyond
    the edges."""
    means = np.array([[1.0, -1.0, 0.3], [1.5, -2.0, 0.0]]).T  # [3 channels, M]
    log_scales = np.array([[-9.0, -7.0, -7.0], [4.0, 6.0, 9.0]]).T
    coeffs = np.array([[2.0, -1.0, 0.5], [-3.0, 0.2, 1.0]]).T
    return pack_rgb(np.array([0.3, -0.5]), means, log_scales, coeffs)


def exhaustive_rgb_mass(l, rows_per_chunk=16):
    """Probability of all 256^3 RGB values of one pixel under l [10M] (float64), via the per-pixel
    log-prob function; returns the (R, G, B) marginals, each [256]."""
    l = tf.constant(l, tf.float64)

    @tf.function
    def chunk_probs(x):
        params = tf.broadcast_to(l, [x.shape[0], 1, 1, l.shape[-1]])
        return tf.exp(nn.mix_logistic_log_prob(x, params))

    marginals = [np.zeros(256), np.zeros(256), np.zeros(256)]
    for start in range(0, 256, rows_per_chunk):
        reds = VALUES[start:start + rows_per_chunk]
        x = np.stack(np.meshgrid(reds, VALUES, VALUES, indexing="ij"), axis=-1).reshape(-1, 1, 1, 3)
        p = chunk_probs(tf.constant(x)).numpy().reshape(rows_per_chunk, 256, 256)
        marginals[0][start:start + rows_per_chunk] += p.sum(axis=(1, 2))
        marginals[1] += p.sum(axis=(0, 2))
        marginals[2] += p.sum(axis=(0, 1))
    return marginals


@pytest.fixture(scope="module")
def rgb_marginals():
    return exhaustive_rgb_mass(extreme_rgb_params())


def test_rgb_pixel_mass_sums_to_one_over_all_256_cubed_values(rgb_marginals):
    for marginal in rgb_marginals:
        assert abs(marginal.sum() - 1.0) < MASS_TOLERANCE


def extreme_gray_params():
    return pack_gray(logits=np.array([0.1, 1.0, -1.0, 0.5, 0.0, 2.0]),
                     means=np.array([-1.0, 1.0, -1.7, 2.5, 0.2, 0.0]),
                     log_scales=np.array([-11.0, -7.0, 3.0, 8.0, -2.0, -6.5]))


@pytest.mark.parametrize("seed", [0, 1])
def test_gray_pixel_mass_sums_to_one_over_256_values(seed):
    l = extreme_gray_params() if seed == 0 else np.random.default_rng(seed).normal(0, 3, 18)
    x = tf.constant(VALUES.reshape(256, 1, 1, 1))
    params = tf.broadcast_to(tf.constant(l), [256, 1, 1, l.size])
    mass = np.exp(nn.mix_logistic_log_prob_1d(x, params).numpy()).sum()
    assert abs(mass - 1.0) < MASS_TOLERANCE


# ----------------------------------------------------------------------------------------------
# The loss against an independent float64 NumPy evaluation

def numpy_log_prob_and_branches(x, mean, log_scale):
    """Discretised logistic log-mass computed from CDF differences with SciPy, float64."""
    upper = (x - mean + 1 / 255) / np.exp(log_scale)
    lower = (x - mean - 1 / 255) / np.exp(log_scale)
    middle = (x - mean) / np.exp(log_scale)
    mass = sp.expit(upper) - sp.expit(lower)
    left_edge = sp.log_expit(upper)
    right_edge = sp.log_expit(-lower)
    log_density = sp.log_expit(middle) + sp.log_expit(-middle) - log_scale
    with np.errstate(divide="ignore"):
        interior = np.where(mass > 1e-5, np.log(mass), log_density + np.log(2 / 255))
    branch = np.where(x < -0.999, 0, np.where(x > 0.999, 1, np.where(mass > 1e-5, 2, 3)))
    return np.choose(branch, [left_edge, right_edge, interior, interior]), branch


def numpy_rgb_nll(x, l):
    """Per-image NLL [B] of x [B,H,W,3] under l [B,H,W,10M]; also the branch taken per term."""
    nr_mix = l.shape[-1] // 10
    logits = l[..., :nr_mix]
    rest = l[..., nr_mix:].reshape(*l.shape[:-1], 3, 3 * nr_mix)
    mean, raw_scale, coeff = np.split(rest, 3, axis=-1)
    log_scale = np.maximum(raw_scale, -7.0)
    coeff = np.tanh(coeff)
    red, green = x[..., 0:1], x[..., 1:2]
    mean = mean.copy()
    mean[..., 1, :] += coeff[..., 0, :] * red
    mean[..., 2, :] += coeff[..., 1, :] * red + coeff[..., 2, :] * green
    log_p, branch = numpy_log_prob_and_branches(x[..., None], mean, log_scale)
    log_mix = log_p.sum(axis=-2) + logits - sp.logsumexp(logits, axis=-1, keepdims=True)
    return -sp.logsumexp(log_mix, axis=-1).sum(axis=(1, 2)), branch


def numpy_gray_nll(x, l):
    logits, mean, raw_scale = np.split(l, 3, axis=-1)
    log_p, branch = numpy_log_prob_and_branches(x, mean, np.maximum(raw_scale, -7.0))
    log_mix = log_p + logits - sp.logsumexp(logits, axis=-1, keepdims=True)
    return -sp.logsumexp(log_mix, axis=-1).sum(axis=(1, 2)), branch


def random_batch(channels, nr_mix, seed=0, shape=(4, 6, 5), log_scale_range=(-9.0, 1.0),
                 mean_spread=1.0):
    """8-bit images (with many 0s and 255s) and outputs whose means and log-scales (some below
    the -7 floor) make every branch of the likelihood occur."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(*shape, channels))
    pixels[rng.random(pixels.shape) < 0.15] = 0
    pixels[rng.random(pixels.shape) < 0.15] = 255
    x = (pixels - 127.5) / 127.5
    logits = rng.normal(0.0, 1.0, (*shape, nr_mix))
    if channels == 1:
        means = rng.normal(0.0, mean_spread, (*shape, nr_mix))
        return x, pack_gray(logits, means, rng.uniform(*log_scale_range, (*shape, nr_mix)))
    means = rng.normal(0.0, mean_spread, (*shape, 3, nr_mix))
    log_scales = rng.uniform(*log_scale_range, (*shape, 3, nr_mix))
    return x, pack_rgb(logits, means, log_scales, rng.normal(0.0, 1.0, (*shape, 3, nr_mix)))


@pytest.mark.parametrize("channels", [3, 1])
def test_loss_matches_float64_numpy(channels):
    nr_mix = 4
    x, l = random_batch(channels, nr_mix)
    if channels == 3:
        expected, branch = numpy_rgb_nll(x, l)
        loss_fn = nn.discretized_mix_logistic_loss
    else:
        expected, branch = numpy_gray_nll(x, l)
        loss_fn = nn.discretized_mix_logistic_loss_1d
    assert all((branch == k).any() for k in range(4)), "every branch of the likelihood is exercised"
    x32, l32 = tf.constant(x, tf.float32), tf.constant(l, tf.float32)
    per_image = loss_fn(x32, l32, sum_all=False).numpy()
    np.testing.assert_allclose(per_image, expected, rtol=2e-5)
    np.testing.assert_allclose(loss_fn(x32, l32).numpy(), expected.sum(), rtol=2e-5)
    np.testing.assert_allclose(loss_fn(tf.constant(x), tf.constant(l), sum_all=False).numpy(),
                               expected, rtol=1e-10)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("log_scale_range,mean_spread", [((-7.0, -7.0), 1.0), ((-40.0, -7.0), 30.0),
                                                         ((-9.0, 12.0), 3.0)])
def test_gradients_finite_at_edge_values_and_scale_floor(channels, log_scale_range, mean_spread):
    """Values 0 and 255 (the edge bins), log-scales at and far below the floor and means far from
    the data (bin masses underflow) still give finite losses and gradients."""
    x, l = random_batch(channels, 3, seed=1, log_scale_range=log_scale_range, mean_spread=mean_spread)
    x[:, :2] = -1.0  # value 0
    x[:, 2:4] = 1.0  # value 255
    l = tf.Variable(l, dtype=tf.float32)
    loss_fn = nn.discretized_mix_logistic_loss if channels == 3 else nn.discretized_mix_logistic_loss_1d
    with tf.GradientTape() as tape:
        loss = loss_fn(tf.constant(x, tf.float32), l)
    grad = tape.gradient(loss, l).numpy()
    assert np.isfinite(loss.numpy()) and np.all(np.isfinite(grad))
    assert np.abs(grad).sum() > 0


# ----------------------------------------------------------------------------------------------
# Sampling

def test_gray_samples_follow_the_likelihood():
    l = extreme_gray_params()
    n = 200_000
    params = tf.constant(np.broadcast_to(l, (n, 1, 1, l.size)), tf.float32)
    x = nn.sample_from_discretized_mix_logistic_1d(params, 6, seed=[4, 2]).numpy()
    assert x.shape == (n, 1, 1, 1) and x.min() >= -1.0 and x.max() <= 1.0
    counts = np.bincount(np.round((x.ravel() + 1) * 127.5).astype(int), minlength=256)
    mass = np.exp(nn.mix_logistic_log_prob_1d(tf.constant(VALUES.reshape(256, 1, 1, 1)),
                                              tf.constant(np.broadcast_to(l, (256, 1, 1, l.size))))
                  .numpy().ravel())
    assert tv_distance(counts / n, mass) < 0.01


def test_rgb_samples_follow_the_likelihood(rgb_marginals):
    l = extreme_rgb_params()
    n = 200_000
    params = tf.constant(np.broadcast_to(l, (n, 1, 1, l.size)), tf.float32)
    x = nn.sample_from_discretized_mix_logistic(params, 2, seed=[7, 7]).numpy().reshape(n, 3)
    assert x.min() >= -1.0 and x.max() <= 1.0
    bins = np.round((x + 1) * 127.5).astype(int)
    for channel, marginal in enumerate(rgb_marginals):
        empirical = np.bincount(bins[:, channel], minlength=256) / n
        # green and blue are coupled to the unrounded earlier sub-pixels (as in the original), the
        # likelihood to rounded ones; with a logistic narrower than a bin that moves some mass to
        # a neighbouring bin, so their tolerance is looser (a wrong coupling moves almost all)
        assert tv_distance(empirical, marginal) < (0.01 if channel == 0 else 0.06)


@pytest.mark.parametrize("sampler,per_pixel,channels", [
    (nn.sample_from_discretized_mix_logistic, 10, 3), (nn.sample_from_discretized_mix_logistic_1d, 3, 1)])
def test_sampling_is_a_function_of_the_seed(sampler, per_pixel, channels):
    l = tf.random.stateless_normal([3, 4, 4, per_pixel * 5], seed=[0, 1])
    first = sampler(l, 5, seed=[11, 12]).numpy()
    assert first.shape == (3, 4, 4, channels)
    np.testing.assert_array_equal(first, sampler(l, 5, seed=tf.constant([11, 12])).numpy())
    assert not np.array_equal(first, sampler(l, 5, seed=[11, 13]).numpy())


def test_pixel_seed_is_distinct_per_position_and_deterministic():
    seeds = {tuple(nn.pixel_seed([3, 4], i, j).numpy()) for i in range(6) for j in range(6)}
    assert len(seeds) == 36
    np.testing.assert_array_equal(nn.pixel_seed([3, 4], 2, 5).numpy(),
                                  nn.pixel_seed(tf.constant([3, 4]), tf.constant(2), tf.constant(5)).numpy())
    assert not np.array_equal(nn.pixel_seed([3, 4], 2, 5).numpy(), nn.pixel_seed([3, 5], 2, 5).numpy())


# ----------------------------------------------------------------------------------------------
# Energy distance and layers

def test_energy_distance_matches_numpy():
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (2, 3, 4, 3))
    samples = rng.uniform(-1, 1, (10, 2, 3, 4, 3))

    def norm(d):
        return (1e-10 + ((127.5 * d) ** 2).sum(-1)) ** 0.75

    data = np.mean([norm(x - s).sum(axis=(1, 2)) for s in samples], axis=0)
    pairs = np.mean([norm(samples[i] - samples[j]).sum(axis=(1, 2))
                     for i in range(10) for j in range(i + 1, 10)], axis=0)
    np.testing.assert_allclose(nn.energy_distance_loss(tf.constant(x), tf.constant(samples)).numpy(),
                               2 * data - pairs, rtol=1e-10)


@pytest.mark.parametrize("layer_class,stride", [
    (nn.DownShiftedConv2D, 1), (nn.DownRightShiftedConv2D, 2), (nn.DownShiftedDeconv2D, 2),
    (nn.DownRightShiftedDeconv2D, 2), (nn.NIN, None)])
def test_weights_are_weight_normalised_and_read_averages(layer_class, stride):
    layer = layer_class(5, 7) if stride is None else layer_class(5, 7, stride=(stride, stride))
    layer.g.assign(tf.range(1.0, 8.0))
    W, b = layer.weights()
    norm_axes = {nn.Deconv2D: (0, 1, 3), nn.Conv2D: (0, 1, 2), nn.Dense: (0,)}
    axes = next(a for cls, a in norm_axes.items() if isinstance(layer, cls))
    norms = np.sqrt((W.numpy() ** 2).sum(axis=axes))
    np.testing.assert_allclose(norms, np.arange(1.0, 8.0), rtol=1e-5)

    class ScaledShadows:  # an EMA stand-in whose averages differ from the raw variables
        def __init__(self):
            self.shadows = {v.ref(): tf.Variable(2.0 * v) for v in layer.trainable_variables}

        def average(self, variable):
            return self.shadows[variable.ref()]

    W_avg, b_avg = layer.weights(ScaledShadows())
    np.testing.assert_allclose(W_avg.numpy(), 2 * W.numpy(), rtol=1e-5)
    np.testing.assert_allclose(b_avg.numpy(), 2 * b.numpy())


def test_concat_elu_value_and_hand_written_gradient():
    """concat_elu = ELU([x, -x]) and its hand-written gradient equals finite differences, with
    inputs on both sides of 0 (ELU's derivative changes form there)."""
    x = np.random.default_rng(0).normal(size=[2, 3, 4]) * 2.0
    elu = lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0)))  # noqa: E731
    np.testing.assert_allclose(nn.concat_elu(tf.constant(x)).numpy(),
                               np.concatenate([elu(x), elu(-x)], axis=-1), rtol=1e-12)
    (analytic,), (finite_difference,) = tf.test.compute_gradient(nn.concat_elu, [tf.constant(x)])
    np.testing.assert_allclose(analytic, finite_difference, atol=1e-5)


@pytest.mark.parametrize("shape,axes", [([4, 3], [0]), ([2, 3, 4, 3], [0, 1, 2]), ([2, 2, 3, 4], [0, 1, 3])])
def test_weight_norm_value_and_hand_written_gradient(shape, axes):
    """W = g V/||V|| per output unit, and its hand-written gradient equals finite differences."""
    rng = np.random.default_rng(0)
    out_axis = next(i for i in range(len(shape)) if i not in axes)
    V = rng.normal(size=shape)
    g = rng.uniform(0.5, 2.0, size=shape[out_axis])
    g_shape = [1] * len(shape)
    g_shape[out_axis] = -1
    expected = g.reshape(g_shape) * V / np.sqrt((V ** 2).sum(axis=tuple(axes), keepdims=True))
    np.testing.assert_allclose(nn.weight_norm(tf.constant(V), tf.constant(g), axes).numpy(), expected,
                               rtol=1e-12)
    theoretical, numerical = tf.test.compute_gradient(lambda V, g: nn.weight_norm(V, g, axes),
                                                      [tf.constant(V), tf.constant(g)])
    for analytic, finite_difference in zip(theoretical, numerical):
        np.testing.assert_allclose(analytic, finite_difference, atol=1e-5)  # central differences, O(delta^2)


def test_shifted_convolutions_see_only_the_past():
    """A (2, 3) down-shifted conv at (r, c) sees rows r-1..r, columns c-1..c+1 (rows above only
    after down_shift); a (2, 2) down-right-shifted conv sees rows r-1..r, columns c-1..c."""
    x = tf.random.normal([1, 6, 6, 2])
    for layer, allowed in [(nn.DownShiftedConv2D(2, 3), lambda r, c, i, j: 0 <= r - i <= 1 and abs(j - c) <= 1),
                           (nn.DownRightShiftedConv2D(2, 3), lambda r, c, i, j: 0 <= r - i <= 1 and 0 <= c - j <= 1)]:
        for r, c in [(0, 0), (3, 2), (5, 5)]:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x)[0, r, c]
            grad = np.abs(tape.gradient(y, x).numpy()[0]).sum(-1)
            for i in range(6):
                for j in range(6):
                    assert (grad[i, j] > 0) == allowed(r, c, i, j), (type(layer).__name__, r, c, i, j)


@pytest.mark.parametrize("rate, channels", [(0.5, 320), (0.25, 12), (0.3, 12), (0.5, 6)])
def test_dropout_drops_each_unit_independently_with_probability_rate(rate, channels):
    """Byte-threshold dropout (rate k/256, channels % 4 == 0) and TF's fallback (other rates or
    channel counts) alike: drop fraction within 5 sigma of `rate`, kept units scaled by
    1/(1-rate), the four units that share one random word uncorrelated, gradient = mask/(1-rate),
    and the mask a function of the seed, also under a tf.function with an unknown batch size."""
    x = tf.random.stateless_uniform([64, 8, 8, channels], [3, 1], 1.0, 2.0)  # 5 sigma < 1/256 at 320
    run = tf.function(lambda x, seed: nn.dropout(x, rate, seed),
                      input_signature=[tf.TensorSpec([None, 8, 8, channels]), tf.TensorSpec([2], tf.int32)])
    y = run(x, tf.constant([7, 7])).numpy()
    kept = y != 0
    n = kept.size
    assert abs((1 - kept.mean()) - rate) < 5 * np.sqrt(rate * (1 - rate) / n)
    np.testing.assert_allclose(y[kept], x.numpy()[kept] / (1 - rate), rtol=1e-6)
    mask = kept.reshape(-1, channels).astype(np.float64)
    for lag in (1, 2, 3):  # neighbours within one uint32 word
        corr = np.corrcoef(mask[:, :-lag].ravel(), mask[:, lag:].ravel())[0, 1]
        assert abs(corr) < 5 / np.sqrt(mask[:, lag:].size)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y_again = nn.dropout(x, rate, tf.constant([7, 7]))
    np.testing.assert_array_equal(y_again.numpy(), y)
    np.testing.assert_allclose(tape.gradient(y_again, x).numpy(), kept / (1 - rate), rtol=1e-6)
    assert not np.array_equal(run(x, tf.constant([7, 8])).numpy() != 0, kept)
