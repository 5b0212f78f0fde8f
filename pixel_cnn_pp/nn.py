"""PixelCNN++ building blocks: weight-normalised layers, shifted convolutions, the gated ResNet
block, and the discretised logistic mixture likelihood and sampler (Salimans et al. 2017).

Layers are small `tf.Module`s working on NHWC tensors. Their variables are float32; a layer
computes in the dtype of its input (bfloat16 or float16 under mixed precision, see
PixelCNNPP.compute_dtype), its weights cast to it after weight normalisation, which stays float32.
Every variable is created in `__init__`, so a model's parameters exist (and can be counted or
restored) before any forward pass.

Weight normalisation (Salimans & Kingma 2016): each layer holds `V`, `g`, `b` and uses
W = g * V / ||V|| (norm per output unit). `weights(ema)` returns the effective (W, b), reading the
Polyak averages instead of the raw variables when an `ema` object (anything with
`.average(variable)`) is given. `layer(x, init=True)` performs data-dependent initialisation on the
batch x: it sets g and b so that the layer's pre-activations have per-channel mean 0 and standard
deviation `init_scale`, then returns the output recomputed with the new g and b (the fixed version
of openai/pixel-cnn, PR #37; the original returned the stale output).

Likelihood layout for 3 channels (openai/pixel-cnn): the 10*M network outputs per pixel are
[logits(M) | for c in R,G,B: mean_c(M), log_scale_c(M), raw_coeff_c(M)]. For 1 channel
(pclucas14/pixel-cnn-pp): [logits(M) | mean(M), log_scale(M)]. Pixel values live in [-1, 1] with
bins of width 2/255.

All randomness is stateless: functions take an int [2] `seed`, and the same seed always gives the
same numbers.
"""
import numpy as np
import tensorflow as tf

from data.pixels import as_seed

LOG_SCALE_MIN = -7.0  # floor on the logistic log-scale, in the loss and the sampler alike


# ----------------------------------------------------------------------------------------------
# Nonlinearities and shifts

@tf.custom_gradient
def concat_elu(x):
    """ELU of [x, -x] (a concatenated ELU); doubles the channel count.

    Gradient by hand: one EluGrad over both halves, then (upper - lower), instead of autodiff's
    two slices of the incoming gradient, two half-size ELU gradients, a negation and a sum."""
    y = tf.nn.elu(tf.concat([x, -x], axis=-1))

    def grad(dy):
        d_positive, d_negative = tf.split(tf.raw_ops.EluGrad(gradients=dy, outputs=y), 2, axis=-1)
        return d_positive - d_negative

    return y, grad


NONLINEARITIES = {"concat_elu": concat_elu, "elu": tf.nn.elu, "relu": tf.nn.relu}
_CHANNEL_FACTOR = {"concat_elu": 2, "elu": 1, "relu": 1}


def get_nonlinearity(name):
    """Returns (function, factor by which it multiplies the channel count) for a nonlinearity name."""
    if name not in NONLINEARITIES:
        raise ValueError(f"unknown resnet nonlinearity {name!r}; choose one of {sorted(NONLINEARITIES)}")
    return NONLINEARITIES[name], _CHANNEL_FACTOR[name]


def down_shift(x):
    """Moves the image one row down: drops the last row and puts a row of zeros on top."""
    return tf.pad(x[:, :-1, :, :], [[0, 0], [1, 0], [0, 0], [0, 0]])


def right_shift(x):
    """Moves the image one column right: drops the last column and puts zeros on the left."""
    return tf.pad(x[:, :, :-1, :], [[0, 0], [0, 0], [1, 0], [0, 0]])


# ----------------------------------------------------------------------------------------------
# Seeds

def fold_seed(seed, data):
    """A new stateless seed derived from `seed` and an integer `data` (independent streams)."""
    return tf.random.experimental.stateless_fold_in(as_seed(seed), data)


def pixel_seed(seed, row, col):
    """The seed of all noise drawn for pixel (row, col) when sampling. The naive and the cached
    sampler both use it, so the same seed gives the same images whichever sampler runs."""
    return fold_seed(fold_seed(seed, row), col)


def dropout(x, rate, seed):
    """Element-wise dropout (kept units scaled by 1/(1-rate)) with a stateless seed.

    When rate is a multiple of 1/256 (the default 0.5 is) and the channel count a multiple of 4,
    one random byte per unit decides exactly: keep iff byte >= 256 * rate, probability 1 - rate.
    Each uint32 drawn then serves 4 units instead of 1 (drawing the random numbers is most of
    dropout's cost; README, Benchmarks). Other rates take TF's stateless_dropout.
    """
    threshold = 256.0 * rate
    if threshold != int(threshold) or x.shape[-1] is None or x.shape[-1] % 4:
        return tf.nn.experimental.stateless_dropout(x, rate=rate, seed=seed)
    word_shape = tf.concat([tf.shape(x)[:-1], [x.shape[-1] // 4]], axis=0)
    words = tf.random.stateless_uniform(word_shape, seed, minval=None, maxval=None, dtype=tf.uint32)
    random_bytes = tf.reshape(tf.bitcast(words, tf.uint8), tf.shape(x))
    keep = random_bytes >= tf.constant(int(threshold), tf.uint8)
    return x * tf.cast(keep, x.dtype) * (1.0 / (1.0 - rate))


def averaged(variable, ema):
    """The variable itself, or its Polyak average when an EMA object is given (openai/pixel-cnn's
    get_var_maybe_avg); every layer, cached or not, reads its weights through this."""
    return variable if ema is None else ema.average(variable)


def gated_residual(x, c2):
    """The gate of the gated ResNet block: x + c2[..., :F] * sigmoid(c2[..., F:])."""
    value, gate = tf.split(c2, 2, axis=-1)
    return x + value * tf.sigmoid(gate)


# ----------------------------------------------------------------------------------------------
# Weight-normalised layers

def weight_norm(V, g, axes):
    """W = g * V / ||V||, the norm taken over `axes` (each output unit's fan-in); g has one entry
    per output unit. The gradient is written out, because autodiff through l2_normalize makes
    more passes over V than needed (README, Benchmarks):
        t = sum_axes(dW * V),  dg = t / ||V||,  dV = g / ||V|| * (dW - V * t / ||V||^2).
    """
    V = tf.convert_to_tensor(V)
    g = tf.convert_to_tensor(g)

    @tf.custom_gradient
    def normalised(V, g):
        inv_norm = tf.math.rsqrt(tf.maximum(tf.reduce_sum(tf.square(V), axes, keepdims=True), 1e-12))
        scale = tf.reshape(g, inv_norm.shape) * inv_norm

        def grad(dW):
            t = tf.reduce_sum(dW * V, axes, keepdims=True)
            dV = (dW - V * (t * tf.square(inv_norm))) * scale
            return dV, tf.reshape(t * inv_norm, tf.shape(g))

        return V * scale, grad

    return normalised(V, g)


class _WeightNormLayer(tf.Module):
    """Shared part of the weight-normalised layers: the variables, the effective weights and the
    data-dependent initialisation. Subclasses define `_normalised_direction`, `_linear` and
    optionally `_pad_input` / `_crop_output` (the shifts of the shifted convolutions)."""

    def __init__(self, v_shape, num_units, init_scale, name):
        super().__init__(name=name)
        self.num_units = num_units
        self.init_scale = init_scale
        with self.name_scope:
            self.V = tf.Variable(tf.random.normal(v_shape, 0.0, 0.05), name="V")
            self.g = tf.Variable(tf.ones([num_units]), name="g")
            self.b = tf.Variable(tf.zeros([num_units]), name="b")

    def weights(self, ema=None, dtype=tf.float32):
        """The effective kernel W = g * V/||V|| and the bias b (Polyak averages when `ema`),
        computed in float32 and cast to `dtype`."""
        V, g, b = (averaged(v, ema) for v in (self.V, self.g, self.b))
        W = self._normalised_direction(V, g)
        if dtype == tf.float32:
            return W, b
        return tf.cast(W, dtype), tf.cast(b, dtype)

    def _pad_input(self, x):
        return x

    def _crop_output(self, y):
        return y

    def __call__(self, x, ema=None, init=False):
        """The layer's output on x; init=True first runs the data-dependent initialisation."""
        if init and ema is not None:
            raise ValueError("data-dependent init sets the raw variables; call it without ema")
        x = self._pad_input(x)
        if init:
            self._data_dependent_init(x)
        return self._crop_output(self._linear(x, *self.weights(ema, x.dtype)))

    def _data_dependent_init(self, x):
        """Sets g, b so the output on x has per-unit mean 0 and std init_scale (moments over all
        axes but the last, taken before any crop, as in openai/pixel-cnn)."""
        y = self._linear(x, *self.weights())
        axes = list(range(len(y.shape) - 1))
        mean, variance = tf.nn.moments(y, axes)
        scale = self.init_scale / tf.sqrt(variance + 1e-10)
        self.g.assign(self.g * scale)
        self.b.assign((self.b - mean) * scale)


class Dense(_WeightNormLayer):
    """Weight-normalised dense layer over the last axis; W [Cin, Cout], normalised over Cin."""

    def __init__(self, in_channels, num_units, init_scale=1.0, name=None):
        super().__init__([in_channels, num_units], num_units, init_scale, name)

    def _normalised_direction(self, V, g):
        return weight_norm(V, g, [0])

    def _linear(self, x, W, b):
        return tf.tensordot(x, W, axes=1) + b


class NIN(Dense):
    """Network-in-network: a 1x1 convolution on NHWC, i.e. a dense layer at every pixel."""


class Conv2D(_WeightNormLayer):
    """Weight-normalised convolution; W [kh, kw, Cin, Cout], normalised per output filter."""

    def __init__(self, in_channels, num_filters, filter_size=(3, 3), stride=(1, 1), padding="SAME",
                 init_scale=1.0, name=None):
        self.filter_size = tuple(filter_size)
        self.stride = tuple(stride)
        self.padding = padding
        super().__init__([*self.filter_size, in_channels, num_filters], num_filters, init_scale, name)

    def _normalised_direction(self, V, g):
        return weight_norm(V, g, [0, 1, 2])

    def _linear(self, x, W, b):
        return tf.nn.bias_add(tf.nn.conv2d(x, W, [1, *self.stride, 1], self.padding), b)


class Deconv2D(_WeightNormLayer):
    """Weight-normalised transposed convolution with VALID padding; W [kh, kw, Cout, Cin],
    normalised per output filter. Output size: (H*s + kh - 1, W*s + kw - 1)."""

    def __init__(self, in_channels, num_filters, filter_size=(3, 3), stride=(1, 1), init_scale=1.0,
                 name=None):
        self.filter_size = tuple(filter_size)
        self.stride = tuple(stride)
        super().__init__([*self.filter_size, num_filters, in_channels], num_filters, init_scale, name)

    def _normalised_direction(self, V, g):
        return weight_norm(V, g, [0, 1, 3])

    def _linear(self, x, W, b):
        (kh, kw), (sh, sw) = self.filter_size, self.stride
        output_shape = [tf.shape(x)[0], x.shape[1] * sh + kh - 1, x.shape[2] * sw + kw - 1,
                        self.num_units]
        y = tf.nn.conv2d_transpose(x, W, output_shape, [1, sh, sw, 1], padding="VALID")
        return tf.nn.bias_add(y, b)


class DownShiftedConv2D(Conv2D):
    """Convolution that sees only rows above (and the current row when kh=1): pad top kh-1 and
    (kw-1)//2 on each side, then a VALID convolution."""

    def __init__(self, in_channels, num_filters, filter_size=(2, 3), stride=(1, 1), init_scale=1.0,
                 name=None):
        super().__init__(in_channels, num_filters, filter_size, stride, "VALID", init_scale, name)

    def _pad_input(self, x):
        kh, kw = self.filter_size
        return tf.pad(x, [[0, 0], [kh - 1, 0], [(kw - 1) // 2, (kw - 1) // 2], [0, 0]])


class DownRightShiftedConv2D(Conv2D):
    """Convolution that sees only rows above and columns to the left (and the current pixel):
    pad top kh-1 and left kw-1, then a VALID convolution."""

    def __init__(self, in_channels, num_filters, filter_size=(2, 2), stride=(1, 1), init_scale=1.0,
                 name=None):
        super().__init__(in_channels, num_filters, filter_size, stride, "VALID", init_scale, name)

    def _pad_input(self, x):
        kh, kw = self.filter_size
        return tf.pad(x, [[0, 0], [kh - 1, 0], [kw - 1, 0], [0, 0]])


class DownShiftedDeconv2D(Deconv2D):
    """Transposed convolution cropped so output (r, c) depends only on inputs mapping to rows <= r:
    keep [:H'-kh+1, (kw-1)//2 : W'-(kw-1)//2]."""

    def __init__(self, in_channels, num_filters, filter_size=(2, 3), stride=(1, 1), init_scale=1.0,
                 name=None):
        super().__init__(in_channels, num_filters, filter_size, stride, init_scale, name)

    def _crop_output(self, y):
        kh, kw = self.filter_size
        side = (kw - 1) // 2
        return y[:, :y.shape[1] - kh + 1, side:y.shape[2] - side, :]


class DownRightShiftedDeconv2D(Deconv2D):
    """Transposed convolution cropped to keep [:H'-kh+1, :W'-kw+1] (down and right shifted)."""

    def __init__(self, in_channels, num_filters, filter_size=(2, 2), stride=(1, 1), init_scale=1.0,
                 name=None):
        super().__init__(in_channels, num_filters, filter_size, stride, init_scale, name)

    def _crop_output(self, y):
        kh, kw = self.filter_size
        return y[:, :y.shape[1] - kh + 1, :y.shape[2] - kw + 1, :]


class GatedResnet(tf.Module):
    """The gated ResNet block of PixelCNN++:

        c1 = nonlin(conv1(nonlin(x)) [+ nin_aux(nonlin(a))])
        c1 = dropout(c1)                                     (training only)
        c2 = conv2(c1) [+ h @ hw]                            (2F channels, init_scale 0.1)
        out = x + c2[..., :F] * sigmoid(c2[..., F:])

    `conv_class` is DownShiftedConv2D (vertical stream) or DownRightShiftedConv2D (horizontal
    stream). `aux_channels` is the channel count of the skip input `a` (0: no skip). `hw` is the
    class-conditional bias [K, 2F] (plain variable, no weight norm; None when num_classes == 0).
    """

    def __init__(self, num_filters, conv_class, nonlinearity="concat_elu", aux_channels=0,
                 num_classes=0, dropout_p=0.0, name=None):
        super().__init__(name=name)
        self.num_filters = num_filters
        self.dropout_p = dropout_p
        self.nonlinearity, factor = get_nonlinearity(nonlinearity)
        with self.name_scope:
            self.conv1 = conv_class(factor * num_filters, num_filters, name="conv1")
            self.nin_aux = (NIN(factor * aux_channels, num_filters, name="nin_aux")
                            if aux_channels else None)
            self.conv2 = conv_class(factor * num_filters, 2 * num_filters, init_scale=0.1, name="conv2")
            self.hw = (tf.Variable(tf.random.normal([num_classes, 2 * num_filters], 0.0, 0.05), name="hw")
                       if num_classes else None)

    def __call__(self, x, a=None, h=None, ema=None, init=False, dropout_seed=None):
        """`dropout_seed` (int [2]) turns dropout on; None (evaluation, sampling) turns it off."""
        if (a is None) != (self.nin_aux is None):
            raise ValueError(f"{self.name}: skip input `a` must be given iff the block was built "
                             f"with aux_channels > 0")
        if (h is None) != (self.hw is None):
            raise ValueError(f"{self.name}: class input `h` must be given iff the block was built "
                             f"with num_classes > 0")
        c1 = self.conv1(self.nonlinearity(x), ema=ema, init=init)
        if a is not None:
            c1 += self.nin_aux(self.nonlinearity(a), ema=ema, init=init)
        c1 = self.nonlinearity(c1)
        if dropout_seed is not None and self.dropout_p > 0:
            c1 = dropout(c1, self.dropout_p, dropout_seed)
        c2 = self.conv2(c1, ema=ema, init=init)
        if h is not None:
            hw = tf.cast(averaged(self.hw, ema), c2.dtype)
            c2 += tf.matmul(tf.cast(h, c2.dtype), hw)[:, None, None, :]
        return gated_residual(x, c2)


# ----------------------------------------------------------------------------------------------
# Discretised logistic mixture likelihood

def discretized_logistic_log_prob(x, mean, log_scale):
    """log P(x) for a logistic(mean, exp(log_scale)) discretised to the 256 bins of width 2/255
    centred on x in [-1, 1]; the edge bins at -1 and 1 absorb the tails. Element-wise.

    Branches (openai/pixel-cnn): x < -0.999 -> log CDF(x + 1/255); x > 0.999 -> log(1 - CDF(x -
    1/255)); bin mass > 1e-5 -> log mass; otherwise the log density at the bin centre plus the log
    bin width log(2/255) = -log(127.5). tf.where back-propagates into every branch (times zero), so
    the log of the mass is guarded with max(mass, 1e-12) to keep gradients finite.
    """
    centered = x - mean
    inv_scale = tf.exp(-log_scale)
    plus_in = inv_scale * (centered + 1.0 / 255.0)
    min_in = inv_scale * (centered - 1.0 / 255.0)
    log_cdf_plus = plus_in - tf.nn.softplus(plus_in)  # log sigmoid(plus_in): bin of value 0
    log_one_minus_cdf_min = -tf.nn.softplus(min_in)  # log(1 - sigmoid(min_in)): bin of value 255
    cdf_delta = tf.sigmoid(plus_in) - tf.sigmoid(min_in)
    mid_in = inv_scale * centered
    log_pdf_mid = mid_in - log_scale - 2.0 * tf.nn.softplus(mid_in)
    return tf.where(x < -0.999, log_cdf_plus,
                    tf.where(x > 0.999, log_one_minus_cdf_min,
                             tf.where(cdf_delta > 1e-5, tf.math.log(tf.maximum(cdf_delta, 1e-12)),
                                      log_pdf_mid - np.log(127.5))))


def unpack_mix_params(l, nr_mix):
    """Splits 3-channel mixture outputs [..., 10M] into logits [..., M] and per channel
    means, log-scales (floored at -7) and tanh coefficients, each [..., 3, M]."""
    logit_probs = l[..., :nr_mix]
    rest = tf.reshape(l[..., nr_mix:], tf.concat([tf.shape(l)[:-1], [3, 3 * nr_mix]], axis=0))
    means = rest[..., :nr_mix]
    log_scales = tf.maximum(rest[..., nr_mix:2 * nr_mix], LOG_SCALE_MIN)
    coeffs = tf.tanh(rest[..., 2 * nr_mix:3 * nr_mix])
    return logit_probs, means, log_scales, coeffs


def unpack_mix_params_1d(l, nr_mix):
    """Splits 1-channel mixture outputs [..., 3M] into logits, means, log-scales (floored), [..., M]."""
    return (l[..., :nr_mix], l[..., nr_mix:2 * nr_mix],
            tf.maximum(l[..., 2 * nr_mix:3 * nr_mix], LOG_SCALE_MIN))


def mix_logistic_log_prob(x, l):
    """log P(pixel) [B, H, W] of RGB pixels x [B, H, W, 3] in [-1, 1] under the mixture l
    [B, H, W, 10M]. The green mean moves by coeff * red and the blue by coeffs * (red, green),
    using the true (teacher-forced) sub-pixels; one mixture component is shared by R, G, B."""
    nr_mix = l.shape[-1] // 10
    logit_probs, means, log_scales, coeffs = unpack_mix_params(l, nr_mix)
    red, green = x[..., 0:1], x[..., 1:2]
    means = tf.stack([means[..., 0, :],
                      means[..., 1, :] + coeffs[..., 0, :] * red,
                      means[..., 2, :] + coeffs[..., 1, :] * red + coeffs[..., 2, :] * green], axis=-2)
    log_probs = discretized_logistic_log_prob(x[..., None], means, log_scales)
    log_probs = tf.reduce_sum(log_probs, axis=-2) + tf.nn.log_softmax(logit_probs)
    return tf.reduce_logsumexp(log_probs, axis=-1)


def mix_logistic_log_prob_1d(x, l):
    """log P(pixel) [B, H, W] of 1-channel pixels x [B, H, W, 1] under the mixture l [B, H, W, 3M]."""
    nr_mix = l.shape[-1] // 3
    logit_probs, means, log_scales = unpack_mix_params_1d(l, nr_mix)
    log_probs = discretized_logistic_log_prob(x, means, log_scales) + tf.nn.log_softmax(logit_probs)
    return tf.reduce_logsumexp(log_probs, axis=-1)


def _negative_sum(log_prob, sum_all):
    return -tf.reduce_sum(log_prob) if sum_all else -tf.reduce_sum(log_prob, axis=[1, 2])


def discretized_mix_logistic_loss(x, l, sum_all=True):
    """NLL in nats of RGB images x [B, H, W, 3] in [-1, 1] under l [B, H, W, 10M]: a scalar summed
    over everything, or per image [B] when sum_all=False."""
    return _negative_sum(mix_logistic_log_prob(x, l), sum_all)


def discretized_mix_logistic_loss_1d(x, l, sum_all=True):
    """NLL in nats of 1-channel images x [B, H, W, 1] under l [B, H, W, 3M] (see the 3-channel one)."""
    return _negative_sum(mix_logistic_log_prob_1d(x, l), sum_all)


def _choose_component(logit_probs, seed):
    """One-hot mixture component per pixel by Gumbel-max, u ~ U(1e-5, 1 - 1e-5)."""
    u = tf.random.stateless_uniform(tf.shape(logit_probs), seed, minval=1e-5, maxval=1.0 - 1e-5)
    choice = tf.argmax(logit_probs - tf.math.log(-tf.math.log(u)), axis=-1)
    return tf.one_hot(choice, logit_probs.shape[-1], dtype=logit_probs.dtype)


def _logistic_noise(shape, seed):
    """Standard logistic noise by the inverse CDF log(u) - log(1-u), u ~ U(1e-5, 1 - 1e-5)."""
    u = tf.random.stateless_uniform(shape, seed, minval=1e-5, maxval=1.0 - 1e-5)
    return tf.math.log(u) - tf.math.log(1.0 - u)


def sample_from_discretized_mix_logistic(l, nr_mix, seed):
    """RGB samples [B, H, W, 3] in [-1, 1] from mixture outputs l [B, H, W, 10M]. One component is
    chosen per pixel; each channel is drawn from its logistic, then coupled to the clipped earlier
    channels and clipped to [-1, 1]. Values are not rounded to 8 bits (they are fed back as is)."""
    logit_probs, means, log_scales, coeffs = unpack_mix_params(l, nr_mix)
    selected = _choose_component(logit_probs, fold_seed(seed, 0))[..., None, :]
    means = tf.reduce_sum(means * selected, axis=-1)
    log_scales = tf.reduce_sum(log_scales * selected, axis=-1)
    coeffs = tf.reduce_sum(coeffs * selected, axis=-1)
    x = means + tf.exp(log_scales) * _logistic_noise(tf.shape(means), fold_seed(seed, 1))
    red = tf.clip_by_value(x[..., 0], -1.0, 1.0)
    green = tf.clip_by_value(x[..., 1] + coeffs[..., 0] * red, -1.0, 1.0)
    blue = tf.clip_by_value(x[..., 2] + coeffs[..., 1] * red + coeffs[..., 2] * green, -1.0, 1.0)
    return tf.stack([red, green, blue], axis=-1)


def sample_from_discretized_mix_logistic_1d(l, nr_mix, seed):
    """1-channel samples [B, H, W, 1] in [-1, 1] from mixture outputs l [B, H, W, 3M]."""
    logit_probs, means, log_scales = unpack_mix_params_1d(l, nr_mix)
    selected = _choose_component(logit_probs, fold_seed(seed, 0))
    means = tf.reduce_sum(means * selected, axis=-1, keepdims=True)
    log_scales = tf.reduce_sum(log_scales * selected, axis=-1, keepdims=True)
    x = means + tf.exp(log_scales) * _logistic_noise(tf.shape(means), fold_seed(seed, 1))
    return tf.clip_by_value(x, -1.0, 1.0)


# ----------------------------------------------------------------------------------------------
# Energy distance (openai/pixel-cnn `-ed`)

def _norm_pow_1p5(diff):
    """||d||^1.5 over the channel axis, written (1e-10 + sum_c d^2)^0.75 to keep gradients finite."""
    return tf.pow(1e-10 + tf.reduce_sum(tf.square(diff), axis=-1), 0.75)


def energy_distance_loss(x, samples):
    """Per-image energy distance [B] between images x [B, H, W, C] and S model samples
    [S, B, H, W, C] (all in [-1, 1], differences measured in 0..255 units):
    2 * mean_i sum ||x - x_i||^1.5 - mean_{i<j} sum ||x_i - x_j||^1.5 (sums over pixels)."""
    num_samples = samples.shape[0]
    data_term = tf.reduce_mean(tf.reduce_sum(_norm_pow_1p5(127.5 * (x[None] - samples)), axis=[2, 3]),
                               axis=0)
    first, second = np.triu_indices(num_samples, k=1)
    pair_diff = tf.gather(samples, first) - tf.gather(samples, second)
    pair_term = tf.reduce_mean(tf.reduce_sum(_norm_pow_1p5(127.5 * pair_diff), axis=[2, 3]), axis=0)
    return 2.0 * data_term - pair_term
