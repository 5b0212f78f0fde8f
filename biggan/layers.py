"""BigGAN's layers (Brock, Donahue & Simonyan 2019), one short piece of math each, after
ajbrock/BigGAN-PyTorch layers.py.

Layout is NHWC; kernels are stored the TF way (conv [kh, kw, Cin, Cout], linear [Cin, Cout],
embedding [K, D]). Wherever a weight is seen as a matrix (spectral norm, orthogonal
regularisation, orthogonal init) it is the PyTorch view `W.view(out, -1)`: one ROW per output
unit (per class for an embedding), see `as_matrix`.

Every layer reads its weights through `averaged(v, ema)`, so passing an EMA object (anything with
`.average(variable)`) evaluates the averaged weights without copying them.

Under a tf.distribute strategy (BigGAN.train_step with --nr_gpu N) every replica runs the layers on
its slice of the batch: batch norm in a replica context normalises with the statistics of the
GLOBAL batch (`batch_moments`, BigGAN's cross-replica BN), so N replicas of B images compute what
one device computes on N*B, and the state moved inside a replica context (spectral-norm vectors,
running statistics) takes identical values on every replica (`replicated_state`).
"""
import numpy as np
import tensorflow as tf

# Batch-norm modes. TRAIN normalises with batch statistics and moves the running ones; ACCUMULATE
# normalises with batch statistics and adds them to the standing sums; RUNNING and STANDING
# normalise with the stored running / standing statistics.
TRAIN, ACCUMULATE, RUNNING, STANDING = "train", "accumulate", "running", "standing"
BN_MOMENTUM = 0.1  # running <- 0.9 running + 0.1 batch (PyTorch's F.batch_norm default)


def replicated_state(initial_value, name):
    """A non-trainable variable that every replica assigns the same value (spectral-norm u, batch
    norm statistics): an assignment in a replica context writes the first replica's value to every
    copy, so no cross-replica aggregation is needed. Outside a strategy a plain variable."""
    return tf.Variable(initial_value, trainable=False, name=name,
                       synchronization=tf.VariableSynchronization.ON_WRITE,
                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


def averaged(variable, ema=None):
    """The variable itself, or its moving average when an EMA object is given."""
    return variable if ema is None else ema.average(variable)


def cast_like(value, x):
    """`value` in x's dtype (a no-op when they agree): layers compute in their input's dtype,
    bfloat16 or float16 under mixed precision, from float32 weights."""
    return value if value.dtype == x.dtype else tf.cast(value, x.dtype)


def orthogonal(rng, rows, cols):
    """A [rows, cols] matrix with orthonormal rows (rows <= cols) or columns (rows > cols), the
    BigGAN-PyTorch default init (`--G_init ortho`, torch.nn.init.orthogonal_)."""
    a = rng.normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))  # makes the factorisation unique, so q is uniformly distributed
    return (q if rows > cols else q.T).astype(np.float32)


def l2_normalize(v, eps):
    """v / max(||v||, eps) (PyTorch F.normalize)."""
    return v / tf.maximum(tf.norm(v), eps)


def power_iteration(w, u, eps):
    """One power-iteration step on w [rows, cols] from u [1, rows]:
    v = (u W) / ||u W||,  u' = (v W^T) / ||v W^T||,  sigma = u' W v^T  (Miyato et al. 2018).
    u' and v are constants for the gradient, which flows only through W in sigma."""
    v = tf.stop_gradient(l2_normalize(tf.matmul(u, w), eps))
    u_new = tf.stop_gradient(l2_normalize(tf.matmul(v, w, transpose_b=True), eps))
    sigma = tf.squeeze(tf.matmul(tf.matmul(u_new, w), v, transpose_b=True))
    return u_new, sigma


def orthogonal_regularization(w, beta):
    """The BigGAN paper's modified orthogonal regulariser (eq. 3):
    R_beta(W) = beta * || W W^T (.) (1 - I) ||_F^2  with W = [out, -1] (one row per output unit).

    The paper writes W^T W for a [in, out] matrix; rows here = its columns, the same Gram matrix.
    BigGAN-PyTorch's utils.ortho adds the gradient 2*beta*(W W^T (.) (1-I)) W directly, which is the
    gradient of this loss with beta/2; here it is a loss term with the paper's beta."""
    gram = tf.matmul(w, w, transpose_b=True)
    off_diagonal = gram * (1.0 - tf.eye(tf.shape(gram)[0], dtype=gram.dtype))
    return beta * tf.reduce_sum(tf.square(off_diagonal))


class SpectralNormalized(tf.Module):
    """A weight `kernel` divided by its largest singular value, estimated by power iteration from a
    persistent vector `u` (non-trainable) that moves one step per training call only
    (BigGAN-PyTorch layers.SN, num_svs=1, num_itrs=1). Eval calls take one step from the stored u
    without storing it. Subclasses define `as_matrix(kernel) -> [out, -1]`."""

    def __init__(self, kernel, rows, rng, eps, name=None):
        super().__init__(name=name)
        self.eps = eps
        with self.name_scope:
            self.kernel = tf.Variable(kernel, name="kernel")
            self.u = replicated_state(rng.normal(size=(1, rows)).astype(np.float32), name="u")

    def normalized_kernel(self, training, ema=None):
        kernel = averaged(self.kernel, ema)
        u, sigma = power_iteration(self.as_matrix(kernel), self.u, self.eps)
        if training:
            self.u.assign(u)
        return kernel / sigma


class SNConv2D(SpectralNormalized):
    """Spectrally normalised 'SAME' convolution, stride 1, optional bias (zeros at init)."""

    def __init__(self, in_channels, out_channels, kernel_size, rng, eps, bias=True, name=None):
        rows = orthogonal(rng, out_channels, kernel_size * kernel_size * in_channels)
        kernel = rows.reshape(out_channels, kernel_size, kernel_size, in_channels).transpose(1, 2, 3, 0)
        super().__init__(kernel, out_channels, rng, eps, name=name)
        with self.name_scope:
            self.bias = tf.Variable(tf.zeros([out_channels]), name="bias") if bias else None

    @staticmethod
    def as_matrix(kernel):
        return tf.reshape(tf.transpose(kernel, [3, 0, 1, 2]), [kernel.shape[3], -1])

    def __call__(self, x, training, ema=None):
        x = tf.nn.conv2d(x, cast_like(self.normalized_kernel(training, ema), x), 1, "SAME")
        return x if self.bias is None else x + cast_like(averaged(self.bias, ema), x)


class SNLinear(SpectralNormalized):
    """Spectrally normalised dense layer x W + b, optional bias (zeros at init)."""

    def __init__(self, in_features, out_features, rng, eps, bias=True, name=None):
        super().__init__(orthogonal(rng, out_features, in_features).T, out_features, rng, eps,
                         name=name)
        with self.name_scope:
            self.bias = tf.Variable(tf.zeros([out_features]), name="bias") if bias else None

    @staticmethod
    def as_matrix(kernel):
        return tf.transpose(kernel)

    def __call__(self, x, training, ema=None):
        x = tf.matmul(x, cast_like(self.normalized_kernel(training, ema), x))
        return x if self.bias is None else x + cast_like(averaged(self.bias, ema), x)


class SNEmbedding(SpectralNormalized):
    """Spectrally normalised class embedding [K, D]; looked up as y @ E so soft labels work."""

    def __init__(self, num_classes, dim, rng, eps, name=None):
        super().__init__(orthogonal(rng, num_classes, dim), num_classes, rng, eps, name=name)

    @staticmethod
    def as_matrix(kernel):
        return kernel

    def __call__(self, y, training, ema=None):
        return tf.matmul(y, cast_like(self.normalized_kernel(training, ema), y))


def batch_moments(x):
    """Mean and biased variance of x [B, H, W, C] over batch and space, per channel.

    In a replica context with several replicas (a step under tf.distribute) the moments are those
    of the GLOBAL batch: per-channel sums and counts are all-reduced across replicas (BigGAN's
    cross-replica batch norm), so every replica normalises alike. The variance is a second pass
    over the deviations from the global mean, as tf.nn.moments does on one device: E[x^2] - E[x]^2
    would cancel catastrophically where |mean| >> std. all_reduce has a gradient (the all-reduce
    of the incoming gradients), so each replica's loss reaches every replica's inputs, as on one
    device."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:  # cross-replica context or one device
        return tf.nn.moments(x, axes=[0, 1, 2])
    count = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), x.dtype)
    sums = context.all_reduce(tf.distribute.ReduceOp.SUM,
                              tf.concat([tf.reduce_sum(x, axis=[0, 1, 2]), count[None]], axis=0))
    total = sums[-1]
    mean = sums[:-1] / total
    # like tf.nn.moments: the variance's gradient through the mean is zero at the mean anyway
    squares = tf.reduce_sum(tf.math.squared_difference(x, tf.stop_gradient(mean)), axis=[0, 1, 2])
    return mean, context.all_reduce(tf.distribute.ReduceOp.SUM, squares) / total


class StandingBatchNorm(tf.Module):
    """Batch normalisation without its own affine, with two sets of stored statistics:

    * running mean/var, moved by every TRAIN call with momentum 0.1 (PyTorch semantics; the
      variance is the biased batch variance), used in RUNNING mode;
    * standing mean/var (BigGAN-PyTorch myBN), the plain average of the batch statistics of the
      ACCUMULATE calls since `reset_standing()`, finalised by `finish_standing(count)` and used in
      STANDING mode. Standing statistics of the sampling distribution (a truncation, EMA weights)
      are what BigGAN samples with.

    Batch statistics are `batch_moments`: over the global batch when run on several replicas.
    """

    def __init__(self, channels, eps, name=None):
        super().__init__(name=name)
        self.eps = eps
        with self.name_scope:
            def stat(value, name):
                return replicated_state(tf.fill([channels], value), name)
            self.running_mean, self.running_var = stat(0.0, "running_mean"), stat(1.0, "running_var")
            self.standing_mean = stat(0.0, "standing_mean")
            self.standing_var = stat(1.0, "standing_var")

    def statistics(self, x, mode, ema=None):
        """(mean, var) to normalise x with in `mode`, updating the stored statistics it owns."""
        if mode in (TRAIN, ACCUMULATE):
            mean, var = batch_moments(x)
            if mode == TRAIN:
                self.running_mean.assign_sub(BN_MOMENTUM * (self.running_mean - mean))
                self.running_var.assign_sub(BN_MOMENTUM * (self.running_var - var))
            else:
                self.standing_mean.assign_add(mean)
                self.standing_var.assign_add(var)
            return mean, var
        if mode == RUNNING:
            return averaged(self.running_mean, ema), averaged(self.running_var, ema)
        if mode == STANDING:
            return self.standing_mean, self.standing_var
        raise ValueError(f"unknown batch-norm mode {mode!r}")

    def reset_standing(self):
        self.standing_mean.assign(tf.zeros_like(self.standing_mean))
        self.standing_var.assign(tf.zeros_like(self.standing_var))

    def finish_standing(self, count):
        self.standing_mean.assign(self.standing_mean / count)
        self.standing_var.assign(self.standing_var / count)

    def normalize(self, x, mode, ema=None):
        """x normalised with the mode's statistics, computed (and stored) in float32 whatever
        x's dtype."""
        x32 = tf.cast(x, tf.float32)
        mean, var = self.statistics(x32, mode, ema)
        return cast_like((x32 - mean) * tf.math.rsqrt(var + self.eps), x)


class BatchNorm(StandingBatchNorm):
    """Unconditional batch norm with a learned gain (init 1) and bias (init 0): G's output layer."""

    def __init__(self, channels, eps, name=None):
        super().__init__(channels, eps, name=name)
        with self.name_scope:
            self.gain = tf.Variable(tf.ones([channels]), name="gain")
            self.bias = tf.Variable(tf.zeros([channels]), name="bias")

    def __call__(self, x, mode, ema=None):
        gain, bias = (cast_like(averaged(v, ema), x) for v in (self.gain, self.bias))
        return self.normalize(x, mode, ema) * gain + bias


class ConditionalBatchNorm(StandingBatchNorm):
    """BigGAN's conditional BN (layers.ccbn): out = BN(x) * (1 + gain(c)) + bias(c), where gain and
    bias are spectrally normalised linear maps without bias of the conditioning vector c
    (c = [shared(y), z_chunk]); gains are centred at 1, biases at 0."""

    def __init__(self, channels, cond_dim, rng, eps, sn_eps, name=None):
        super().__init__(channels, eps, name=name)
        with self.name_scope:
            self.gain = SNLinear(cond_dim, channels, rng, sn_eps, bias=False, name="gain")
            self.bias = SNLinear(cond_dim, channels, rng, sn_eps, bias=False, name="bias")

    def __call__(self, x, c, mode, ema=None):
        training = mode == TRAIN
        gain = 1.0 + self.gain(c, training, ema)[:, None, None, :]
        bias = self.bias(c, training, ema)[:, None, None, :]
        return self.normalize(x, mode, ema) * gain + bias


class Attention(tf.Module):
    """SA-GAN self-attention (Zhang et al. 2019; BigGAN-PyTorch layers.Attention):
    theta, phi, g = 1x1 SN convs to C/8, C/8, C/2 channels; phi and g 2x2 max-pooled;
    beta = softmax_j(theta_i . phi_j); o = 1x1 SN conv(sum_j beta_ij g_j) back to C channels;
    out = x + gamma * o with a learned gamma that starts at 0 (the block starts as the identity)."""

    def __init__(self, channels, rng, sn_eps, name=None):
        super().__init__(name=name)
        if channels < 8:
            raise ValueError(f"self-attention needs at least 8 channels, got {channels}; "
                             "raise the channel multiplier or drop attn_res")
        with self.name_scope:
            self.theta = SNConv2D(channels, channels // 8, 1, rng, sn_eps, bias=False, name="theta")
            self.phi = SNConv2D(channels, channels // 8, 1, rng, sn_eps, bias=False, name="phi")
            self.g = SNConv2D(channels, channels // 2, 1, rng, sn_eps, bias=False, name="g")
            self.o = SNConv2D(channels // 2, channels, 1, rng, sn_eps, bias=False, name="o")
            self.gamma = tf.Variable(0.0, name="gamma")

    def __call__(self, x, training, ema=None):
        height, width = x.shape[1], x.shape[2]
        pool = lambda t: tf.nn.max_pool2d(t, 2, 2, "VALID")
        theta = tf.reshape(self.theta(x, training, ema), [-1, height * width, self.theta.kernel.shape[3]])
        phi = tf.reshape(pool(self.phi(x, training, ema)), [-1, height * width // 4, self.phi.kernel.shape[3]])
        g = tf.reshape(pool(self.g(x, training, ema)), [-1, height * width // 4, self.g.kernel.shape[3]])
        beta = tf.nn.softmax(tf.matmul(theta, phi, transpose_b=True), axis=-1)  # [B, HW, HW/4]
        attended = tf.reshape(tf.matmul(beta, g), [-1, height, width, self.g.kernel.shape[3]])
        return x + cast_like(averaged(self.gamma, ema), x) * self.o(attended, training, ema)
