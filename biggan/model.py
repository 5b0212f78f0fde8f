"""BigGAN (Brock, Donahue & Simonyan 2019): ResNet generator with a shared class embedding,
hierarchical latents and conditional batch norm; projection discriminator; hinge loss; spectral
norm in G and D; orthogonal regularisation of G; an EMA of G sampled with standing statistics.
Follows ajbrock/BigGAN-PyTorch BigGAN.py / train_fns.py, NHWC, images in [-1, 1].

Training (the D and G steps, Adam, the EMA of G) lives in the trainer's BigGAN family
(trainer/families/biggan.py); this file holds the networks, the losses and sampling.

Sampling conventions (the TF-Hub BigGAN modules and their Colab):
  * truncation is the TF-Hub/Colab one: z = psi * TN(-2, 2) (`truncated_z`), a SCALE on a normal
    already truncated at +-2, not the paper's resample-above-threshold.
  * `G(z, y, truncation=psi)` normalises with the standing statistics, which must have been
    accumulated for that psi (and for the same choice of EMA weights) by
    `BigGAN.accumulate_standing_stats` -- recomputed on demand, one set at a time, not a table per
    psi; G checks and fails with a message naming the call to make. `truncation=None` in eval mode
    uses the running statistics instead.
"""
import dataclasses

import numpy as np
import tensorflow as tf

from biggan import layers
from biggan.layers import ACCUMULATE, RUNNING, STANDING, TRAIN
from data.pixels import to_uint8

BOTTOM_WIDTH = 4  # G starts from a 4x4 map


def generator_arch(ch, resolution):
    """BigGAN-PyTorch G_arch: per up block (in_channels, out_channels, output resolution)."""
    multipliers = {32: ([4, 4, 4], [4, 4, 4]),
                   64: ([16, 16, 8, 4], [16, 8, 4, 2]),
                   128: ([16, 16, 8, 4, 2], [16, 8, 4, 2, 1]),
                   256: ([16, 16, 8, 8, 4, 2], [16, 8, 8, 4, 2, 1])}[resolution]
    return [(ch * i, ch * o, 2 ** (3 + k)) for k, (i, o) in enumerate(zip(*multipliers))]


def discriminator_arch(ch, resolution):
    """BigGAN-PyTorch D_arch: per block (in_channels, out_channels, downsample, output resolution)."""
    ins, outs, down, res = {
        32: ([4, 4, 4], [4, 4, 4, 4], [True, True, False, False], [16, 8, 8, 8]),
        64: ([1, 2, 4, 8], [1, 2, 4, 8, 16], [True] * 4 + [False], [32, 16, 8, 4, 4]),
        128: ([1, 2, 4, 8, 16], [1, 2, 4, 8, 16, 16], [True] * 5 + [False], [64, 32, 16, 8, 4, 4]),
        256: ([1, 2, 4, 8, 8, 16], [1, 2, 4, 8, 8, 16, 16], [True] * 6 + [False],
              [128, 64, 32, 16, 8, 4, 4])}[resolution]
    in_channels = [None] + [ch * m for m in ins]  # None: the image channels
    return [(i, ch * o, d, r) for i, o, d, r in zip(in_channels, outs, down, res)]


RESOLUTIONS = (32, 64, 128, 256)


@dataclasses.dataclass
class BigGANConfig:
    image_shape: tuple = (32, 32, 3)
    num_classes: int = 10
    dim_z: int = 120  # rounded down to a multiple of the number of z chunks when hier
    shared_dim: int = 128
    G_ch: int = 64
    D_ch: int = 64
    attn_res: tuple = (16,)  # resolutions after whose G and D blocks self-attention sits
    hier: bool = True
    sn_eps: float = 1e-6  # BigGAN-PyTorch launch scripts (--SN_eps 1e-6)
    bn_eps: float = 1e-5
    G_lr: float = 1e-4  # BigGAN-PyTorch (SA-GAN) settings; the paper uses 5e-5 / 2e-4
    D_lr: float = 4e-4
    adam_beta1: float = 0.0
    adam_beta2: float = 0.999
    # trainer.optim.Adam puts epsilon INSIDE the square root; 1e-12 there ~ BigGAN-PyTorch's
    # --adam_eps 1e-6 outside it.
    adam_eps: float = 1e-12
    num_D_steps: int = 2  # paper; each D step takes its own 1/num_D_steps of the real batch
    G_ortho: float = 1e-4  # paper's beta; 0 turns orthogonal regularisation off
    ema_decay: float = 0.9999
    ema_start: int = 20000  # G steps before which the EMA copies G (BigGAN-PyTorch launch scripts)
    seed: int = 0  # initial weights

    def __post_init__(self):
        self.image_shape = tuple(int(s) for s in self.image_shape)
        self.attn_res = tuple(int(r) for r in self.attn_res)
        height, width, _ = self.image_shape
        if height != width or height not in RESOLUTIONS:
            raise ValueError(f"BigGAN needs square images of side {RESOLUTIONS}, got "
                             f"{self.image_shape}; resize the data set (image_size=32 or 64)")
        if self.num_classes < 1:
            raise ValueError(f"BigGAN is class-conditional: num_classes must be >= 1, "
                             f"got {self.num_classes}")
        self.dim_z = (self.dim_z // self.num_z_chunks) * self.num_z_chunks
        if self.dim_z < self.num_z_chunks:
            raise ValueError(f"dim_z must be at least {self.num_z_chunks} (one per z chunk)")
        if self.num_D_steps < 1:
            raise ValueError(f"num_D_steps must be >= 1, got {self.num_D_steps}")

    @property
    def resolution(self):
        return self.image_shape[0]

    @property
    def num_z_chunks(self):
        """len(G blocks) + 1 with hierarchical z (chunk 0 feeds the first linear layer), else 1."""
        return len(generator_arch(1, self.resolution)) + 1 if self.hier else 1

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown BigGAN config keys {unknown}; known: {sorted(known)}")
        return cls(**values)


def as_one_hot(y, num_classes):
    """Integer labels [B] -> float one-hot [B, K]; float (one-hot or soft) labels pass through."""
    y = tf.convert_to_tensor(y)
    if y.dtype.is_integer:
        return tf.one_hot(y, num_classes)
    return tf.cast(y, tf.float32)


def truncated_z(n, dim_z, truncation, seed):
    """The TF-Hub/Colab truncation trick: z = truncation * TN(-2, 2), TF's stateless truncated
    normal (standard normal, values beyond 2 re-drawn), so every |z| <= 2 * truncation.
    `seed` is an int or a stateless seed pair."""
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.zeros_like(seed)])
    return truncation * tf.random.stateless_truncated_normal([n, dim_z], seed)


def random_labels(n, num_classes, seed):
    """n uniformly random classes, one-hot [n, K] (BigGAN-PyTorch samples fake classes uniformly)."""
    classes = tf.random.stateless_uniform([n], seed, 0, num_classes, dtype=tf.int32)
    return tf.one_hot(classes, num_classes)


def discriminator_hinge_loss(real_logits, fake_logits):
    """(mean(relu(1 - D(x))), mean(relu(1 + D(G(z))))); D minimises their sum."""
    return tf.reduce_mean(tf.nn.relu(1.0 - real_logits)), tf.reduce_mean(tf.nn.relu(1.0 + fake_logits))


def generator_hinge_loss(fake_logits):
    """-mean(D(G(z)))."""
    return -tf.reduce_mean(fake_logits)


def upsample(x):
    """Nearest-neighbour x2."""
    return tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)


def downsample(x):
    """2x2 average pooling."""
    return tf.nn.avg_pool2d(x, 2, 2, "VALID")


class GBlock(tf.Module):
    """BN-ReLU-up-conv3x3-BN-ReLU-conv3x3 plus an upsampled 1x1-conv shortcut (BigGAN.GBlock);
    both BNs are conditional on c."""

    def __init__(self, in_channels, out_channels, cond_dim, rng, config, name=None):
        super().__init__(name=name)
        with self.name_scope:
            self.bn1 = layers.ConditionalBatchNorm(in_channels, cond_dim, rng, config.bn_eps,
                                                   config.sn_eps, name="bn1")
            self.conv1 = layers.SNConv2D(in_channels, out_channels, 3, rng, config.sn_eps, name="conv1")
            self.bn2 = layers.ConditionalBatchNorm(out_channels, cond_dim, rng, config.bn_eps,
                                                   config.sn_eps, name="bn2")
            self.conv2 = layers.SNConv2D(out_channels, out_channels, 3, rng, config.sn_eps, name="conv2")
            self.conv_sc = layers.SNConv2D(in_channels, out_channels, 1, rng, config.sn_eps,
                                           name="conv_sc")

    def __call__(self, x, c, mode, ema=None):
        training = mode == TRAIN
        h = upsample(tf.nn.relu(self.bn1(x, c, mode, ema)))
        h = self.conv1(h, training, ema)
        h = self.conv2(tf.nn.relu(self.bn2(h, c, mode, ema)), training, ema)
        return h + self.conv_sc(upsample(x), training, ema)


class DBlock(tf.Module):
    """[ReLU]-conv3x3-ReLU-conv3x3-[avgpool] plus a 1x1-conv/avgpool shortcut (BigGAN.DBlock, wide:
    hidden channels = out channels). Every block but the first is pre-activated (ReLU first, and
    its shortcut convolves before pooling)."""

    def __init__(self, in_channels, out_channels, downsample, preactivation, rng, config, name=None):
        super().__init__(name=name)
        self.downsample, self.preactivation = downsample, preactivation
        with self.name_scope:
            self.conv1 = layers.SNConv2D(in_channels, out_channels, 3, rng, config.sn_eps, name="conv1")
            self.conv2 = layers.SNConv2D(out_channels, out_channels, 3, rng, config.sn_eps, name="conv2")
            learnable_shortcut = in_channels != out_channels or downsample
            self.conv_sc = (layers.SNConv2D(in_channels, out_channels, 1, rng, config.sn_eps,
                                            name="conv_sc") if learnable_shortcut else None)

    def shortcut(self, x, training):
        pool = downsample if self.downsample else (lambda t: t)
        conv = (lambda t: self.conv_sc(t, training)) if self.conv_sc is not None else (lambda t: t)
        return pool(conv(x)) if self.preactivation else conv(pool(x))

    def __call__(self, x, training):
        h = tf.nn.relu(x) if self.preactivation else x
        h = self.conv2(tf.nn.relu(self.conv1(h, training)), training)
        if self.downsample:
            h = downsample(h)
        return h + self.shortcut(x, training)


class Generator(tf.Module):
    """z [B, dim_z], y [B, K] (float one-hot or soft; int labels are one-hot encoded) -> [B,H,W,C].

    The shared embedding is y @ E (no spectral norm: "applying SN to G's embedding seems to randomly
    cripple G"). With hier, z is split into len(blocks)+1 equal chunks: chunk 0 feeds the first
    linear layer (to 4x4 x in_channels[0]) and block i is conditioned on c_i = [y @ E, chunk i+1].
    The network runs in compute_dtype (set by trainer.precision), batch-norm statistics in
    float32; the images are float32 always."""

    compute_dtype = tf.float32

    def __init__(self, config, rng, name="G"):
        super().__init__(name=name)
        self.config = config
        arch = generator_arch(config.G_ch, config.resolution)
        chunk = config.dim_z // config.num_z_chunks
        cond_dim = config.shared_dim + (chunk if config.hier else 0)
        self.bottom_channels = arch[0][0]
        with self.name_scope:
            self.shared = tf.Variable(layers.orthogonal(rng, config.num_classes, config.shared_dim),
                                      name="shared")
            self.linear = layers.SNLinear(chunk, arch[0][0] * BOTTOM_WIDTH ** 2, rng, config.sn_eps,
                                          name="linear")
            self.blocks = [GBlock(i, o, cond_dim, rng, config, name=f"block{k}")
                           for k, (i, o, _) in enumerate(arch)]
            self.attention = [layers.Attention(o, rng, config.sn_eps, name=f"attention{k}")
                              if r in config.attn_res else None for k, (_, o, r) in enumerate(arch)]
            self.output_bn = layers.BatchNorm(arch[-1][1], config.bn_eps, name="output_bn")
            self.output_conv = layers.SNConv2D(arch[-1][1], config.image_shape[2], 3, rng,
                                               config.sn_eps, name="output_conv")
            # Which sampling distribution the standing statistics were accumulated for.
            self.standing_truncation = tf.Variable(-1.0, trainable=False, name="standing_truncation")
            self.standing_ema = tf.Variable(False, trainable=False, name="standing_ema")

    def batch_norms(self):
        return [bn for block in self.blocks for bn in (block.bn1, block.bn2)] + [self.output_bn]

    def ortho_matrices(self):
        """The raw weights that orthogonal regularisation applies to, as [out, -1] matrices: every
        SN kernel of G (the shared embedding is exempt, as in BigGAN-PyTorch)."""
        return [module.as_matrix(module.kernel) for module in self.submodules
                if isinstance(module, layers.SpectralNormalized)]

    def averaged_variables(self):
        """What the EMA of G averages: the trainable weights and the BN running statistics."""
        return list(self.trainable_variables) + [v for bn in self.batch_norms()
                                                 for v in (bn.running_mean, bn.running_var)]

    def forward(self, z, y, mode, ema=None):
        """The network with an explicit batch-norm mode (layers.TRAIN / ACCUMULATE / RUNNING /
        STANDING); spectral-norm vectors move only in TRAIN."""
        training = mode == TRAIN
        z = tf.cast(z, self.compute_dtype)
        y = tf.cast(as_one_hot(y, self.config.num_classes), self.compute_dtype)
        shared = tf.matmul(y, layers.cast_like(layers.averaged(self.shared, ema), y))
        if self.config.hier:
            chunks = tf.split(z, self.config.num_z_chunks, axis=1)
            z, conditions = chunks[0], [tf.concat([shared, chunk], axis=1) for chunk in chunks[1:]]
        else:
            conditions = [shared] * len(self.blocks)
        h = self.linear(z, training, ema)
        h = tf.reshape(h, [-1, BOTTOM_WIDTH, BOTTOM_WIDTH, self.bottom_channels])
        for block, attention, c in zip(self.blocks, self.attention, conditions):
            h = block(h, c, mode, ema)
            if attention is not None:
                h = attention(h, training, ema)
        h = tf.nn.relu(self.output_bn(h, mode, ema))
        return tf.cast(tf.tanh(self.output_conv(h, training, ema)), tf.float32)

    def __call__(self, z, y, training=False, ema=None, truncation=None):
        """training=True: batch statistics (running ones updated), SN vectors updated.
        Eval: running statistics when truncation is None, else the standing statistics, which must
        have been accumulated for this truncation and the same ema-or-not."""
        if training:
            if truncation is not None:
                raise ValueError("truncation selects eval-mode standing statistics; "
                                 "leave it None with training=True")
            return self.forward(z, y, TRAIN)
        if truncation is None:
            return self.forward(z, y, RUNNING, ema)
        hint = ("standing statistics were accumulated for another truncation or EMA setting; call "
                "BigGAN.accumulate_standing_stats(truncation, ..., ema=...) before sampling")
        checks = [tf.debugging.assert_less_equal(
                      tf.abs(self.standing_truncation - truncation), 1e-6, message=hint),
                  tf.debugging.assert_equal(self.standing_ema, ema is not None, message=hint)]
        with tf.control_dependencies(checks):
            return self.forward(z, y, STANDING, ema)


class Discriminator(tf.Module):
    """x [B,H,W,C] in [-1,1], y [B,K] -> logits [B]: DBlocks, ReLU, global SUM pooling h, then
    linear(h) + <embed(y), h> (the projection discriminator, Miyato & Koyama 2018)."""

    compute_dtype = tf.float32  # set by trainer.precision; the logits are float32 always

    def __init__(self, config, rng, name="D"):
        super().__init__(name=name)
        self.config = config
        arch = discriminator_arch(config.D_ch, config.resolution)
        with self.name_scope:
            self.blocks = [DBlock(i or config.image_shape[2], o, down, k > 0, rng, config,
                                  name=f"block{k}") for k, (i, o, down, _) in enumerate(arch)]
            self.attention = [layers.Attention(o, rng, config.sn_eps, name=f"attention{k}")
                              if r in config.attn_res else None
                              for k, (_, o, _, r) in enumerate(arch)]
            self.linear = layers.SNLinear(arch[-1][1], 1, rng, config.sn_eps, name="linear")
            self.embed = layers.SNEmbedding(config.num_classes, arch[-1][1], rng, config.sn_eps,
                                            name="embed")

    def __call__(self, x, y, training=False):
        """training=True moves the spectral-norm vectors (D has no batch norm). The blocks run
        in compute_dtype; the pooled features, the projection and the logits are float32."""
        h = tf.cast(x, self.compute_dtype)
        for block, attention in zip(self.blocks, self.attention):
            h = block(h, training)
            if attention is not None:
                h = attention(h, training)
        h = tf.reduce_sum(tf.cast(tf.nn.relu(h), tf.float32), axis=[1, 2])
        projection = tf.reduce_sum(self.embed(as_one_hot(y, self.config.num_classes), training) * h,
                                   axis=1)
        return tf.squeeze(self.linear(h, training), axis=1) + projection


class BigGAN(tf.Module):
    """G and D; every variable is created here, so a checkpoint restores without a forward pass.
    Built inside `strategy.scope()` the variables are mirrored on the strategy's devices;
    `strategy` is the one in scope at construction (the default, single-device one outside any
    scope), where accumulate_standing_stats runs."""

    def __init__(self, config, name="biggan"):
        super().__init__(name=name)
        if isinstance(config, dict):
            config = BigGANConfig.from_dict(config)
        self.config = config
        self.strategy = tf.distribute.get_strategy()
        rng = np.random.default_rng(config.seed)
        with self.name_scope:
            self.G = Generator(config, rng)
            self.D = Discriminator(config, rng)

    def num_parameters(self):
        """Trainable weights of G and D."""
        variables = self.G.trainable_variables + self.D.trainable_variables
        return sum(int(np.prod(v.shape)) for v in variables)

    def ortho_loss(self):
        """Orthogonal regularisation of G (layers.orthogonal_regularization, beta = G_ortho)."""
        return tf.add_n([layers.orthogonal_regularization(w, self.config.G_ortho)
                         for w in self.G.ortho_matrices()])

    def accumulate_standing_stats(self, truncation, num_batches=16, batch_size=64, seed=0, ema=None):
        """Standing statistics (BigGAN-PyTorch utils.accumulate_standing_stats): reset, then average
        every G batch norm's batch mean and variance over num_batches forward passes on
        z = truncated_z(truncation) and uniformly random classes, with the weights G samples with
        (ema or raw). Afterwards G(..., truncation=truncation, ema=ema) uses them.
        Runs in the cross-replica context of the model's strategy: every batch on one device,
        written to every device's copy of the statistics."""
        with self.strategy.scope():
            for bn in self.G.batch_norms():
                bn.reset_standing()
            seeds = tf.random.experimental.stateless_split(tf.constant([seed, 1], tf.int64),
                                                           num_batches)
            for i in range(num_batches):
                self._accumulate_batch(tf.constant(truncation, tf.float32), batch_size, seeds[i],
                                       ema)
            for bn in self.G.batch_norms():
                bn.finish_standing(float(num_batches))
            self.G.standing_truncation.assign(truncation)
            self.G.standing_ema.assign(ema is not None)

    @tf.function(reduce_retracing=True)
    def _accumulate_batch(self, truncation, batch_size, seed, ema):
        z_seed, y_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        z = truncated_z(batch_size, self.config.dim_z, truncation, z_seed)
        self.G.forward(z, random_labels(batch_size, self.config.num_classes, y_seed), ACCUMULATE, ema)


# ------------------------------------------------------------------------------------------ sampling
# Every sampler below accumulates the standing statistics it samples with from its own seed,
# `standing_seed`, never from the sample seed: a plain sample, both ends of an interpolation sheet,
# each row of a truncation sweep and an exported SavedModel agree image for image.

STANDING_BATCH = 64  # images per standing-statistics forward pass (BigGAN-PyTorch G_batch_size)


def generate(model, z, y, truncation, ema=None, batch_size=64):
    """G(z, y) in eval mode with the standing statistics of `truncation` (accumulated already), in
    mini-batches; float32 [N,H,W,C] in [-1,1]."""
    y = as_one_hot(y, model.config.num_classes)
    images = [model.G(z[i:i + batch_size], y[i:i + batch_size], ema=ema, truncation=truncation)
              for i in range(0, int(z.shape[0]), batch_size)]
    return tf.concat(images, axis=0)


def class_labels(model, labels, num_images):
    """Float one-hot [N, K] of int labels [N]; None cycles through the classes."""
    num_classes = model.config.num_classes
    labels = np.arange(num_images) % num_classes if labels is None else np.asarray(labels)
    return tf.one_hot(labels.astype(np.int32), num_classes)


def sample(model, num_images, seed, labels=None, ema=None, truncation=1.0,
           num_standing_batches=16, standing_seed=0):
    """uint8 [N, H, W, C]: z = truncated_z(truncation, seed), labels int [N] (None: cycling
    through the classes), standing statistics at `truncation`."""
    model.accumulate_standing_stats(truncation, num_standing_batches, STANDING_BATCH,
                                    standing_seed, ema)
    z = truncated_z(num_images, model.config.dim_z, truncation, seed)
    return to_uint8(generate(model, z, class_labels(model, labels, num_images), truncation,
                             ema)).numpy()


def class_sheet(model, per_class, seed, ema=None, truncation=1.0, num_standing_batches=16,
                standing_seed=0):
    """uint8 [K, per_class, H, W, C]: row k holds per_class samples of class k (BigGAN-PyTorch's
    class sheets); the same noise in every row."""
    num_classes = model.config.num_classes
    model.accumulate_standing_stats(truncation, num_standing_batches, STANDING_BATCH,
                                    standing_seed, ema)
    z = tf.tile(truncated_z(per_class, model.config.dim_z, truncation, seed), [num_classes, 1])
    y = tf.one_hot(np.repeat(np.arange(num_classes), per_class), num_classes)
    images = to_uint8(generate(model, z, y, truncation, ema)).numpy()
    return images.reshape(num_classes, per_class, *images.shape[1:])


def interpolate(z_a, y_a, z_b, y_b, steps):
    """The Colab's joint lerp of noise and (one-hot or soft) labels: for each of the N rows of
    z_a/z_b [N, dim_z] and y_a/y_b [N, K], `steps` points (1-t) a + t b at t = linspace(0, 1),
    laid out row-major as [N*steps, ...]. Equal z_a, z_b: class-only; equal y: noise-only."""
    t = tf.reshape(tf.linspace(0.0, 1.0, steps), [1, steps, 1])
    lerp = lambda a, b: tf.reshape((1.0 - t) * a[:, None] + t * b[:, None], [-1, a.shape[-1]])
    return lerp(tf.cast(z_a, tf.float32), tf.cast(z_b, tf.float32)), \
        lerp(tf.cast(y_a, tf.float32), tf.cast(y_b, tf.float32))


def interpolation_sheet(model, seed_a, class_a, seed_b, class_b, num_rows, steps, truncation,
                        ema=None, num_standing_batches=16, standing_seed=0):
    """The Colab's interpolation form: row r lerps (z_a[r], class_a) to (z_b[r], class_b) jointly
    in `steps` images, z_a = truncated_z(num_rows, seed_a) (the z of sample(num_rows, seed_a));
    float32 [num_rows, steps, H, W, C] in [-1, 1]. Same seeds: class-only; same classes:
    noise-only."""
    config = model.config
    model.accumulate_standing_stats(truncation, num_standing_batches, STANDING_BATCH,
                                    standing_seed, ema)
    ends = []
    for seed, label in ((seed_a, class_a), (seed_b, class_b)):
        ends += [truncated_z(num_rows, config.dim_z, truncation, seed),
                 tf.one_hot(tf.fill([num_rows], label), config.num_classes)]
    z, y = interpolate(*ends, steps)
    images = generate(model, z, y, truncation, ema)
    return tf.reshape(images, [num_rows, steps, *config.image_shape])


def truncation_sweep(model, truncations, num_images, seed, labels=None, ema=None,
                     num_standing_batches=16, standing_seed=0):
    """The same base noise TN(-2,2)(seed) and classes (int [N]; None: cycling) at each truncation
    psi, standing statistics accumulated at each; float32 [len(truncations), N, H, W, C] in
    [-1, 1]. Row i equals sample(...) at truncations[i]."""
    base = truncated_z(num_images, model.config.dim_z, 1.0, seed)
    y = class_labels(model, labels, num_images)
    rows = []
    for psi in truncations:
        model.accumulate_standing_stats(psi, num_standing_batches, STANDING_BATCH, standing_seed,
                                        ema)
        rows.append(generate(model, psi * base, y, psi, ema))
    return tf.stack(rows)
