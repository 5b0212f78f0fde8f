"""Glow's layers (Kingma & Dhariwal 2018), one short piece of math each, following openai/glow.

Layout is NHWC. Every invertible layer has `forward(z, ema) -> (z, logdet)` with a per-image log-determinant
of the map image -> latent, and `reverse(z, ema) -> z`, its exact inverse. Every layer reads its variables
through `averaged(v, ema)`, so passing an EMA object evaluates the Polyak-averaged weights without copying them.
Layers that have a data-dependent initialisation take `init=True` on their first (initialisation) call.
The plain layers (Conv2D, Conv2DZeros, ActNorm) compute in the dtype of their input, their weights cast to
it, so that a CouplingNetwork runs in bfloat16 or float16 when its `compute_dtype` says so (mixed precision,
trainer.precision); the bijection around it stays in the model's dtype.

Numerics, where openai/glow and its ports are fragile:
  * 1x1-conv log-determinants and inverses are computed in float64 (log|det| from a QR decomposition, never
    the determinant itself; the inverse too, which openai/glow takes in float32);
  * the LU-decomposed 1x1 conv (dead code in openai/glow) is live: logdet = sum(log|s|) and the inverse is two
    triangular solves, so det W can never reach 0 exactly;
  * the affine coupling's log-scale is log_sigmoid(h + 2), never log(sigmoid(.)) which underflows to -inf.
"""
import math

import numpy as np
import tensorflow as tf

LOGSCALE_FACTOR = 3.0  # actnorm / *_zeros layers store log-scale / 3 (openai/glow tfops.py logscale_factor)
CONV_INIT_STD = 0.05  # plain convolutions start N(0, 0.05) (openai/glow tfops.py default_initializer)
ACTNORM_EPS = 1e-6  # keeps the actnorm init finite on a constant channel


def averaged(variable, ema=None):
    """The variable itself, or its Polyak average when an EMA object is given (openai/glow get_var_maybe_avg)."""
    return variable if ema is None else ema.average(variable)


def cast_like(value, x):
    """`value` in x's dtype (a no-op when they agree)."""
    return value if value.dtype == x.dtype else tf.cast(value, x.dtype)


# ------------------------------------------------------------------------------------------------ reshaping

def squeeze2d(x):
    """[B,H,W,C] -> [B,H/2,W/2,4C]; output channel c*4 + fh*2 + fw (each channel's 2x2 block contiguous)."""
    h, w, c = x.shape[1:]
    x = tf.reshape(x, [-1, h // 2, 2, w // 2, 2, c])
    x = tf.transpose(x, [0, 1, 3, 5, 2, 4])
    return tf.reshape(x, [-1, h // 2, w // 2, 4 * c])


def unsqueeze2d(x):
    """Exact inverse of squeeze2d: [B,H,W,4C] -> [B,2H,2W,C]."""
    h, w, c = x.shape[1:]
    x = tf.reshape(x, [-1, h, w, c // 4, 2, 2])
    x = tf.transpose(x, [0, 1, 4, 2, 5, 3])
    return tf.reshape(x, [-1, 2 * h, 2 * w, c // 4])


def split_channels(z):
    """First half of the channels (kept / conditioning) and second half (factored out / transformed)."""
    c = z.shape[-1]
    return z[..., : c // 2], z[..., c // 2:]


def add_edge_padding(x):
    """Zero-pad by one pixel for a VALID 3x3 conv and append a channel that is 1 on the padded border.

    The extra channel lets the conv tell padding apart from a zero-valued input (openai/glow edge_bias).
    """
    h, w = x.shape[1], x.shape[2]
    paddings = [[0, 0], [1, 1], [1, 1], [0, 0]]
    border = tf.pad(tf.zeros([1, h, w, 1], x.dtype), paddings, constant_values=1)
    border = tf.tile(border, [tf.shape(x)[0], 1, 1, 1])
    return tf.concat([tf.pad(x, paddings), border], axis=-1)


# ------------------------------------------------------------------------------------------------ plain layers

class Conv2D(tf.Module):
    """Convolution without bias (an actnorm follows it), weights N(0, 0.05); a 3x3 one uses edge padding."""

    def __init__(self, in_channels, out_channels, kernel_size, rng, dtype, name=None):
        super().__init__(name=name)
        self.kernel_size = kernel_size
        edge = 1 if kernel_size == 3 else 0
        shape = [kernel_size, kernel_size, in_channels + edge, out_channels]
        self.w = tf.Variable(rng.normal(0.0, CONV_INIT_STD, shape).astype(dtype), name="w")

    def __call__(self, x, ema=None):
        if self.kernel_size == 3:
            x = add_edge_padding(x)
        return tf.nn.conv2d(x, cast_like(averaged(self.w, ema), x), 1, "VALID")


class Conv2DZeros(tf.Module):
    """3x3 edge-padded conv starting at exactly zero: (conv(x) + b) * exp(3*logs), W = b = logs = 0 at init.

    Used as the last layer of every coupling network and for the learned priors, so each flow step starts
    as the identity (additive) or a fixed contraction (affine) and every prior starts as N(0, 1).
    """

    def __init__(self, in_channels, out_channels, dtype, name=None):
        super().__init__(name=name)
        self.w = tf.Variable(tf.zeros([3, 3, in_channels + 1, out_channels], dtype), name="w")
        self.b = tf.Variable(tf.zeros([out_channels], dtype), name="b")
        self.logs = tf.Variable(tf.zeros([out_channels], dtype), name="logs")

    def __call__(self, x, ema=None):
        w, b, logs = (cast_like(averaged(v, ema), x) for v in (self.w, self.b, self.logs))
        h = tf.nn.conv2d(add_edge_padding(x), w, 1, "VALID") + b
        return h * tf.exp(logs * LOGSCALE_FACTOR)


class LinearZeros(tf.Module):
    """Dense layer starting at exactly zero: (x W + b) * exp(3*logs) (y embedding and classifier)."""

    def __init__(self, in_features, out_features, dtype, name=None):
        super().__init__(name=name)
        self.w = tf.Variable(tf.zeros([in_features, out_features], dtype), name="w")
        self.b = tf.Variable(tf.zeros([out_features], dtype), name="b")
        self.logs = tf.Variable(tf.zeros([out_features], dtype), name="logs")

    def __call__(self, x, ema=None):
        h = tf.matmul(x, averaged(self.w, ema)) + averaged(self.b, ema)
        return h * tf.exp(averaged(self.logs, ema) * LOGSCALE_FACTOR)


# ------------------------------------------------------------------------------------------------ actnorm

def actnorm_init_values(x):
    """Data-dependent init: b = -mean, logs = log(1/(std + 1e-6))/3 per channel over (batch, H, W).

    Returns the stored (b, logs_var); the outputs on x then have zero mean and unit (biased) variance.
    """
    mean = tf.reduce_mean(x, axis=[0, 1, 2])
    std = tf.sqrt(tf.reduce_mean(tf.square(x - mean), axis=[0, 1, 2]))
    return -mean, tf.math.log(1.0 / (std + ACTNORM_EPS)) / LOGSCALE_FACTOR


class ActNorm(tf.Module):
    """y = (x + b) * exp(logs), logs = 3 * logs_var; logdet = H*W*sum(logs)."""

    def __init__(self, channels, dtype, name=None):
        super().__init__(name=name)
        self.b = tf.Variable(tf.zeros([channels], dtype), name="b")
        self.logs = tf.Variable(tf.zeros([channels], dtype), name="logs")

    def log_scale(self, ema=None):
        return averaged(self.logs, ema) * LOGSCALE_FACTOR

    def __call__(self, x, ema=None, init=False):
        """The normalised activations (no logdet: used inside the coupling network)."""
        if init:
            b, logs = actnorm_init_values(x)
            self.b.assign(b)
            self.logs.assign(logs)
        b, log_scale = cast_like(averaged(self.b, ema), x), cast_like(self.log_scale(ema), x)
        return (x + b) * tf.exp(log_scale)

    def forward(self, x, ema=None, init=False):
        y = self(x, ema, init)
        logdet = x.shape[1] * x.shape[2] * tf.reduce_sum(self.log_scale(ema))
        return y, tf.fill([tf.shape(x)[0]], logdet)

    def reverse(self, y, ema=None):
        return y * tf.exp(-self.log_scale(ema)) - averaged(self.b, ema)


# ------------------------------------------------------------------------------------------------ permutations

def random_rotation(rng, channels):
    """Q of the QR decomposition of a Gaussian matrix: the 1x1-conv init (|det| = 1, log-det 0)."""
    return np.linalg.qr(rng.normal(size=[channels, channels]))[0]


def log_abs_determinant(w):
    """log|det W| in float64 as sum(log|diag R|) of W = QR.

    Householder QR is backward stable, differentiable (the gradient is W^-T) and compiles under XLA, which has
    no kernel for slogdet/det; the product det W itself is never formed, so it cannot under/overflow.
    """
    r = tf.linalg.qr(tf.cast(w, tf.float64))[1]
    return tf.reduce_sum(tf.math.log(tf.abs(tf.linalg.diag_part(r))))


def apply_1x1(z, w):
    """Per-pixel z @ W (the row-vector convention of openai/glow's conv2d with filter [1,1,in,out])."""
    return tf.einsum("bhwc,cd->bhwd", z, w)


def zero_logdet(z):
    return tf.zeros([tf.shape(z)[0]], z.dtype)


class ReversePermutation(tf.Module):
    """flow_permutation=0: reverse the channel order (its own inverse)."""

    def forward(self, z, ema=None):
        return z[..., ::-1], zero_logdet(z)

    def reverse(self, z, ema=None):
        return z[..., ::-1]


class ShufflePermutation(tf.Module):
    """flow_permutation=1: a fixed random channel permutation drawn from `rng`.

    openai/glow seeds it with Python's salted hash of the scope name, so it changes from process to process;
    here it comes from the config seed and the layer index. Stored as non-trainable variables (checkpointed).
    """

    def __init__(self, channels, rng, name=None):
        super().__init__(name=name)
        indices = rng.permutation(channels)
        self.indices = tf.Variable(indices.astype(np.int32), trainable=False, name="indices")
        self.indices_inverse = tf.Variable(np.argsort(indices).astype(np.int32), trainable=False,
                                           name="indices_inverse")

    def forward(self, z, ema=None):
        return tf.gather(z, self.indices, axis=-1), zero_logdet(z)

    def reverse(self, z, ema=None):
        return tf.gather(z, self.indices_inverse, axis=-1)


class InvertibleConv1x1(tf.Module):
    """flow_permutation=2: y = z W per pixel; logdet = H*W*log|det W|, log|det| and inverse in float64."""

    def __init__(self, channels, rng, dtype, name=None):
        super().__init__(name=name)
        self.w = tf.Variable(random_rotation(rng, channels).astype(dtype), name="w")

    def forward(self, z, ema=None):
        w = averaged(self.w, ema)
        logdet = tf.cast(log_abs_determinant(w), z.dtype) * (z.shape[1] * z.shape[2])
        return apply_1x1(z, w), tf.fill([tf.shape(z)[0]], logdet)

    def reverse(self, z, ema=None):
        w_inverse = tf.linalg.inv(tf.cast(averaged(self.w, ema), tf.float64))
        return apply_1x1(z, tf.cast(w_inverse, z.dtype))


class InvertibleConv1x1LU(tf.Module):
    """flow_permutation=3: W = P L U with P fixed, L unit lower, U = strict upper + diag(sign(s) exp(log|s|)).

    Initialised from the same random rotation as InvertibleConv1x1 (same rng -> same W). logdet =
    H*W*sum(log|s|): no determinant is ever computed, and |det W| can approach but never reach zero.
    W and its inverse (two triangular solves) are built in float64.
    """

    def __init__(self, channels, rng, dtype, name=None):
        super().__init__(name=name)
        w = tf.constant(random_rotation(rng, channels), tf.float64)
        lu, p = tf.linalg.lu(w)  # rows p of w = L U, i.e. w = P L U with P = eye[p]^T
        lu = lu.numpy()
        s = np.diag(lu)
        self.permutation = tf.Variable(np.eye(channels)[p.numpy()].T, trainable=False, name="permutation")
        self.sign_s = tf.Variable(np.sign(s), trainable=False, name="sign_s")
        self.lower = tf.Variable(np.tril(lu, -1).astype(dtype), name="lower")
        self.upper = tf.Variable(np.triu(lu, 1).astype(dtype), name="upper")
        self.log_s = tf.Variable(np.log(np.abs(s)).astype(dtype), name="log_s")
        self._lower_mask = tf.constant(np.tril(np.ones([channels, channels]), -1))
        self._upper_mask = tf.constant(np.triu(np.ones([channels, channels]), 1))

    def factors(self, ema=None):
        """(P, L, U) in float64."""
        eye = tf.eye(self._lower_mask.shape[0], dtype=tf.float64)
        lower = tf.cast(averaged(self.lower, ema), tf.float64) * self._lower_mask + eye
        diagonal = self.sign_s * tf.exp(tf.cast(averaged(self.log_s, ema), tf.float64))
        upper = tf.cast(averaged(self.upper, ema), tf.float64) * self._upper_mask + tf.linalg.diag(diagonal)
        return self.permutation, lower, upper

    def weights(self, ema=None):
        """The effective W = P L U (float64)."""
        p, lower, upper = self.factors(ema)
        return p @ lower @ upper

    def forward(self, z, ema=None):
        w = tf.cast(self.weights(ema), z.dtype)
        logdet = tf.reduce_sum(averaged(self.log_s, ema)) * (z.shape[1] * z.shape[2])
        return apply_1x1(z, w), tf.fill([tf.shape(z)[0]], logdet)

    def reverse(self, z, ema=None):
        p, lower, upper = self.factors(ema)
        eye = tf.eye(p.shape[0], dtype=tf.float64)
        lower_inverse = tf.linalg.triangular_solve(lower, eye, lower=True)
        upper_inverse = tf.linalg.triangular_solve(upper, eye, lower=False)
        w_inverse = upper_inverse @ lower_inverse @ tf.transpose(p)
        return apply_1x1(z, tf.cast(w_inverse, z.dtype))


def make_permutation(kind, channels, rng, dtype):
    if kind == 0:
        return ReversePermutation()
    if kind == 1:
        return ShufflePermutation(channels, rng)
    if kind == 2:
        return InvertibleConv1x1(channels, rng, dtype)
    if kind == 3:
        return InvertibleConv1x1LU(channels, rng, dtype)
    raise ValueError(f"flow_permutation must be 0 (reverse), 1 (shuffle), 2 (1x1 conv) or 3 (LU 1x1 conv), "
                     f"got {kind}")


# ------------------------------------------------------------------------------------------------ coupling

class CouplingNetwork(tf.Module):
    """f(z1): conv3x3 - actnorm - relu - conv1x1 - actnorm - relu - conv2d_zeros 3x3 (openai/glow f_).

    Computes in `compute_dtype` (set by trainer.precision) when that is a low-precision dtype, its
    output cast back to z1's dtype; the data-dependent init always runs in z1's dtype.
    """

    compute_dtype = tf.float32

    def __init__(self, in_channels, width, out_channels, rng, dtype, name=None):
        super().__init__(name=name)
        self.conv1 = Conv2D(in_channels, width, 3, rng, dtype)
        self.actnorm1 = ActNorm(width, dtype)
        self.conv2 = Conv2D(width, width, 1, rng, dtype)
        self.actnorm2 = ActNorm(width, dtype)
        self.conv_out = Conv2DZeros(width, out_channels, dtype)

    def __call__(self, x, ema=None, init=False):
        h = x if init or self.compute_dtype == tf.float32 else tf.cast(x, self.compute_dtype)
        h = tf.nn.relu(self.actnorm1(self.conv1(h, ema), ema, init))
        h = tf.nn.relu(self.actnorm2(self.conv2(h, ema), ema, init))
        return cast_like(self.conv_out(h, ema), x)


def affine_coupling_params(h):
    """openai/glow's affine coupling: interleaved shift = h[...,0::2], scale = sigmoid(h[...,1::2] + 2).

    Returns (shift, log_scale) with log_scale = log_sigmoid(h + 2) computed stably.
    scale is in (0, 1) and starts at sigmoid(2) = 0.881 (zero-initialised network).
    """
    return h[..., 0::2], tf.math.log_sigmoid(h[..., 1::2] + 2.0)


class Coupling(tf.Module):
    """z2 += f(z1) (additive) or z2 = (z2 + shift(z1)) * scale(z1) (affine); z1 passes unchanged."""

    def __init__(self, channels, width, affine, rng, dtype, name=None):
        super().__init__(name=name)
        self.affine = affine
        out_channels = channels if affine else channels // 2
        self.nn = CouplingNetwork(channels // 2, width, out_channels, rng, dtype)

    def forward(self, z, ema=None, init=False):
        z1, z2 = split_channels(z)
        h = self.nn(z1, ema, init)
        if self.affine:
            shift, log_scale = affine_coupling_params(h)
            z2 = (z2 + shift) * tf.exp(log_scale)
            logdet = tf.reduce_sum(log_scale, axis=[1, 2, 3])
        else:
            z2 = z2 + h
            logdet = zero_logdet(z)
        return tf.concat([z1, z2], axis=-1), logdet

    def reverse(self, z, ema=None):
        z1, z2 = split_channels(z)
        h = self.nn(z1, ema)
        if self.affine:
            shift, log_scale = affine_coupling_params(h)
            z2 = z2 * tf.exp(-log_scale) - shift
        else:
            z2 = z2 - h
        return tf.concat([z1, z2], axis=-1)


class FlowStep(tf.Module):
    """One step of flow: actnorm -> permutation -> coupling (reverse: the inverses in the opposite order)."""

    def __init__(self, channels, width, permutation, affine, rng, dtype, name=None):
        super().__init__(name=name)
        if channels % 2:
            raise ValueError(f"a flow step needs an even channel count, got {channels}")
        self.actnorm = ActNorm(channels, dtype)
        self.permutation = make_permutation(permutation, channels, rng, dtype)
        self.coupling = Coupling(channels, width, affine, rng, dtype)

    def forward(self, z, ema=None, init=False):
        z, logdet_actnorm = self.actnorm.forward(z, ema, init)
        z, logdet_permutation = self.permutation.forward(z, ema)
        z, logdet_coupling = self.coupling.forward(z, ema, init)
        return z, logdet_actnorm + logdet_permutation + logdet_coupling

    def reverse(self, z, ema=None):
        z = self.coupling.reverse(z, ema)
        z = self.permutation.reverse(z, ema)
        return self.actnorm.reverse(z, ema)


# ------------------------------------------------------------------------------------------------ priors

def gaussian_log_prob(x, mean, logsd):
    """log N(x; mean, exp(logsd)^2) summed over all but the batch axis -> [B]."""
    logp = -0.5 * (math.log(2.0 * math.pi) + 2.0 * logsd + tf.square(x - mean) * tf.exp(-2.0 * logsd))
    return tf.reduce_sum(logp, axis=list(range(1, len(x.shape))))


def gaussian_eps(x, mean, logsd):
    """The standardised noise of x under N(mean, exp(logsd)^2)."""
    return (x - mean) * tf.exp(-logsd)


def gaussian_from_eps(eps, mean, logsd):
    """Inverse of gaussian_eps: mean + exp(logsd) * eps (eps scaled by a temperature gives T-sampling)."""
    return mean + tf.exp(logsd) * eps


class SplitPrior(tf.Module):
    """p(z2 | z1) = N(mean, exp(logs)^2), h = conv2d_zeros(z1), interleaved mean = h[...,0::2], logs = h[...,1::2]."""

    def __init__(self, channels, dtype, name=None):
        super().__init__(name=name)
        self.conv = Conv2DZeros(channels // 2, channels, dtype)

    def __call__(self, z1, ema=None):
        h = self.conv(z1, ema)
        return h[..., 0::2], h[..., 1::2]


class TopPrior(tf.Module):
    """Prior of the top latent [Ht,Wt,n_z]: N(0,1), plus `learntop` (conv2d_zeros on zeros: bias + edge
    channel) and/or `ycond` (linear_zeros(y_onehot) broadcast over space). Halves: mean = h[..., :n_z]."""

    def __init__(self, shape, learntop, num_classes, dtype, name=None):
        super().__init__(name=name)
        self.shape = tuple(shape)
        self.dtype = dtype
        n_z = shape[-1]
        self.learned = Conv2DZeros(2 * n_z, 2 * n_z, dtype) if learntop else None
        self.y_embedding = LinearZeros(num_classes, 2 * n_z, dtype) if num_classes else None

    def __call__(self, batch_size, y_onehot=None, ema=None):
        h = tf.zeros([1, *self.shape[:2], 2 * self.shape[2]], self.dtype)
        if self.learned is not None:
            h = self.learned(h, ema)
        h = tf.broadcast_to(h, [batch_size, *h.shape[1:]])
        if self.y_embedding is not None:
            h = h + self.y_embedding(y_onehot, ema)[:, None, None, :]
        n_z = self.shape[2]
        return h[..., :n_z], h[..., n_z:]
