"""Glow, the multi-scale flow (Kingma & Dhariwal 2018), with openai/glow's model and objective.

Encoder (image -> latents): squeeze; for each of `n_levels` levels, `depth` flow steps (glow.nn.FlowStep),
then -- except at the top -- split off half the channels under the learned conditional prior p(z2 | z1) and
squeeze the kept half. The top latent gets N(0, 1), optionally learned (`learntop`) and class-conditional
(`ycond`). Objective per image, in nats of the n_bits_x-bit data (openai/glow model.py):
    log p(x) = -D log(n_bins) + sum(flow log-dets) + sum(log p(z2 | z1)) + log p(z_top)
on x/n_bins - 0.5 plus U(0, 1/n_bins) dequantisation noise; bits_x = -log p(x) / (D ln 2);
loss = bits_x + weight_y * bits_y (bits_y: a linear classifier on mean_{H,W} z_top, only with ycond).

Usage:
    from glow.model import Glow, GlowConfig
    model = Glow(GlowConfig(image_shape=(32, 32, 3), n_levels=3, depth=32, width=512, learntop=True))
    model.initialize(x_init_uint8, seed=0)              # actnorm data-dependent init, once, before training
    loss, stats = model.loss(x_uint8, seed=step_seed, training=True)   # [B] and {bits_x, bits_y, pred_loss}
    eps = model.encode(x_uint8)                         # list of per-level latents (bin-centre encoding)
    x_again = model.decode(eps)                         # == x_uint8 quantised to n_bits_x
    images = model.sample(16, temperature=0.7, seed=1, ema=ema)   # uint8 [16,H,W,C]
    flat = model.flatten(model.encode(faces))           # [N, D]; attributes: [N, A] of +-1 (or 1/0)
    dz = attribute_vectors(flat, attributes)            # [A, D]
    smiling = model.decode(model.unflatten(manipulate(flat, dz[31], 0.5)))

API: GlowConfig (dataclass; to_dict/from_dict; ValueError on impossible settings) and Glow(config), a tf.Module:
    initialize(x_uint8, y=None, seed=0)                     actnorm data-dependent init
    flow(z, y=None, ema=None) -> (eps_list, logdet, logp)   continuous flow on a dequantised float image
    reverse(eps_list, y=None, ema=None) -> z                its exact inverse
    log_prob(x_uint8, y, ema, seed) -> [B] nats;  bits_per_dim(x_uint8, y, ema, seed) -> [B]
    loss(x_uint8, y, ema, seed, training) -> ([B] bits, {bits_x, bits_y, pred_loss})
    encode(x_uint8, y, ema, seed=None) -> eps_list;  decode(eps_list, y, ema) -> uint8
    flatten(eps_list) -> [B, D];  unflatten([B, D]) -> eps_list;  eps_shapes;  num_parameters()
    sample(n, y=None, temperature=1.0, seed=0, ema=None) -> uint8 [n, H, W, C]
and functions preprocess, postprocess, image_seeds, per_image_bits, attribute_vectors, manipulate,
interpolate.

`ema` anywhere is None or an object with `.average(variable) -> variable` (trainer.ema); `seed` is an int or an
int [2] tensor for TF's stateless RNG, so every stochastic call is reproducible (for a given device and
compilation mode: XLA draws different numbers from the same seed).
y is int labels [B]. Every method runs eagerly or inside tf.function (jit_compile included).
Call `initialize` outside any replica context (it assigns the actnorm variables from one batch).
"""
import dataclasses
import math

import numpy as np
import tensorflow as tf

from data.pixels import as_seed, bits_per_dim
from glow import nn

PERMUTATIONS = {0: "reverse", 1: "shuffle", 2: "1x1 conv", 3: "LU 1x1 conv"}
COUPLINGS = {0: "additive", 1: "affine"}


@dataclasses.dataclass
class GlowConfig:
    image_shape: tuple = (32, 32, 3)
    n_levels: int = 3
    depth: int = 32  # flow steps per level
    width: int = 512  # hidden channels of the coupling network
    flow_permutation: int = 2  # 0 reverse, 1 shuffle, 2 invertible 1x1 conv, 3 LU-decomposed 1x1 conv
    flow_coupling: int = 0  # 0 additive, 1 affine
    learntop: bool = False  # learned mean / log-sd of the top prior
    ycond: bool = False  # class-conditional top prior (needs num_classes)
    weight_y: float = 0.0  # weight of the classifier term bits_y (needs ycond)
    n_bits_x: int = 8  # bit depth modelled
    num_classes: int = 0  # n_y
    gradient_checkpointing: bool = False  # recompute each flow step's activations in the backward pass
    augmentation: int = 0  # openai/glow --dal: 0 none, 1 shifts, 2 + rotation, zoom, shear, flip (data/augment.py)
    seed: int = 0  # initial weights and shuffle permutations
    dtype: str = "float32"  # "float64" for exact-arithmetic checks

    def __post_init__(self):
        self.image_shape = tuple(int(s) for s in self.image_shape)
        self.validate()

    def validate(self):
        if len(self.image_shape) != 3:
            raise ValueError(f"image_shape must be (H, W, C), got {self.image_shape}")
        h, w, c = self.image_shape
        if self.n_levels < 1 or self.depth < 1 or self.width < 1 or c < 1:
            raise ValueError(f"n_levels, depth, width and channels must be >= 1, got n_levels={self.n_levels}, "
                             f"depth={self.depth}, width={self.width}, channels={c}")
        for name, size in (("height", h), ("width", w)):
            if size < 2 ** self.n_levels or size & (size - 1):
                raise ValueError(f"image {name} {size} must be a power of two >= 2**n_levels = "
                                 f"{2 ** self.n_levels}; resize the images or lower n_levels")
        if self.flow_permutation not in PERMUTATIONS:
            raise ValueError(f"flow_permutation must be one of {PERMUTATIONS}, got {self.flow_permutation}")
        if self.flow_coupling not in COUPLINGS:
            raise ValueError(f"flow_coupling must be one of {COUPLINGS}, got {self.flow_coupling}")
        if not 1 <= self.n_bits_x <= 8:
            raise ValueError(f"n_bits_x must be in 1..8, got {self.n_bits_x}")
        if self.ycond and self.num_classes < 1:
            raise ValueError("ycond needs num_classes >= 1 (the number of labels in the data set)")
        if self.weight_y < 0 or (self.weight_y > 0 and not self.ycond):
            raise ValueError(f"weight_y={self.weight_y} needs ycond=True and must be >= 0")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.augmentation not in (0, 1, 2):
            raise ValueError(f"augmentation (--dal) must be 0, 1 or 2, got {self.augmentation}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["image_shape"] = list(self.image_shape)
        return d

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown GlowConfig keys {unknown}; known keys are {sorted(known)}")
        return cls(**d)


# ------------------------------------------------------------------------------------------------ data <-> model

def preprocess(x_uint8, n_bits_x, dtype=tf.float32):
    """uint8 -> floor(x / 2^(8-n)) / n_bins - 0.5 in [-0.5, 0.5) (openai/glow preprocess)."""
    x = tf.cast(x_uint8, dtype)
    if n_bits_x < 8:
        x = tf.floor(x / 2 ** (8 - n_bits_x))
    return x / 2 ** n_bits_x - 0.5


def postprocess(x, n_bits_x):
    """Model space -> uint8: floor((x + 0.5) * n_bins) * 256/n_bins, clipped (openai/glow postprocess)."""
    n_bins = 2 ** n_bits_x
    x = tf.floor((x + 0.5) * n_bins) * (256 // n_bins)
    return tf.cast(tf.clip_by_value(x, 0, 255), tf.uint8)


def dequantize(x, n_bits_x, seed):
    """x + U(0, 1/n_bins) from a stateless seed: the density of this continuous x bounds discrete P(x)."""
    if seed is None:
        raise ValueError("the likelihood needs dequantisation noise: pass seed (an int or an int [2] tensor)")
    return x + tf.random.stateless_uniform(tf.shape(x), as_seed(seed), 0.0, 1.0 / 2 ** n_bits_x, dtype=x.dtype)


def bin_centre(x, n_bits_x):
    """x + 1/(2 n_bins): the middle of each pixel's bin (deterministic encoding)."""
    return x + 0.5 / 2 ** n_bits_x


def discretization_log_prob(image_shape, n_bits_x):
    """-D log(n_bins): turns the density of the dequantised [-.5,.5) data into a bound on discrete P(x)."""
    return -float(np.prod(image_shape)) * math.log(2 ** n_bits_x)


# ------------------------------------------------------------------------------------------------ the model

class Glow(tf.Module):
    """See the module docstring. All variables are created here, so a checkpoint restores without a call."""

    def __init__(self, config, name=None):
        super().__init__(name=name)
        config.validate()
        self.config = config
        self.dtype = tf.as_dtype(config.dtype)
        h, w, c = config.image_shape
        L = config.n_levels
        self.levels = []  # levels[i][k]: FlowStep k of level i
        self.split_priors = []  # split_priors[i]: p(z2 | z1) after level i < L-1
        self.eps_shapes = []  # per-level latent shapes [H,W,C], level order 0..top
        channels = 4 * c
        for level in range(L):
            steps = []
            for k in range(config.depth):
                # Per-step rng seeded by (seed, level, step): reproducible in any process.
                rng = np.random.default_rng([config.seed, level, k])
                steps.append(nn.FlowStep(channels, config.width, config.flow_permutation,
                                         config.flow_coupling == 1, rng, config.dtype))
            self.levels.append(steps)
            size = (h // 2 ** (level + 1), w // 2 ** (level + 1))
            if level < L - 1:
                self.split_priors.append(nn.SplitPrior(channels, config.dtype))
                self.eps_shapes.append((*size, channels // 2))
                channels *= 2  # keep half, squeeze x4
            else:
                self.eps_shapes.append((*size, channels))
        num_classes = config.num_classes if config.ycond else 0
        self.top_prior = nn.TopPrior(self.eps_shapes[-1], config.learntop, num_classes, config.dtype)
        self.classifier = (nn.LinearZeros(channels, config.num_classes, config.dtype)
                           if config.weight_y > 0 else None)

    # -------------------------------------------------------------------------------------------- helpers

    def num_parameters(self):
        return int(sum(np.prod(v.shape) for v in self.trainable_variables))

    def _y_onehot(self, y):
        if not self.config.ycond:
            return None
        if y is None:
            raise ValueError("this Glow is class-conditional (ycond=True): pass the labels y")
        return tf.one_hot(tf.cast(y, tf.int32), self.config.num_classes, dtype=self.dtype)

    def _dequantized_input(self, x_uint8, seed):
        return dequantize(preprocess(x_uint8, self.config.n_bits_x, self.dtype), self.config.n_bits_x, seed)

    def _step_forward(self, step, z, ema, init, checkpoint):
        if checkpoint:
            # Activations inside the step are recomputed in the backward pass; gradients are unchanged.
            return tf.recompute_grad(lambda t: step.forward(t, ema))(z)
        return step.forward(z, ema, init)

    def _flow(self, z, y_onehot, ema=None, init=False, checkpoint=False):
        """Encoder on a dequantised float image -> (eps_list, logdet [B], logp [B], z_top)."""
        batch = tf.shape(z)[0]
        logdet = tf.zeros([batch], self.dtype)
        logp = tf.zeros([batch], self.dtype)
        eps_list = []
        z = nn.squeeze2d(z)
        for level, steps in enumerate(self.levels):
            for step in steps:
                z, step_logdet = self._step_forward(step, z, ema, init, checkpoint)
                logdet += step_logdet
            if level < len(self.levels) - 1:
                z1, z2 = nn.split_channels(z)
                mean, logsd = self.split_priors[level](z1, ema)
                logp += nn.gaussian_log_prob(z2, mean, logsd)
                eps_list.append(nn.gaussian_eps(z2, mean, logsd))
                z = nn.squeeze2d(z1)
        mean, logsd = self.top_prior(batch, y_onehot, ema)
        logp += nn.gaussian_log_prob(z, mean, logsd)
        eps_list.append(nn.gaussian_eps(z, mean, logsd))
        return eps_list, logdet, logp, z

    # -------------------------------------------------------------------------------------------- continuous flow

    def flow(self, z, y=None, ema=None):
        """Preprocessed (dequantised) float image [B,H,W,C] -> (eps_list, logdet [B], logp [B]).

        logdet: log|det dz_latent/dz| of the flow steps (the split/top latents before standardisation);
        logp: sum of the split priors' and the top prior's log-densities of those latents.
        uint8 images are refused: they go through encode(), or dequantize(preprocess(x)) first.
        """
        if tf.as_dtype(getattr(z, "dtype", tf.float32)).is_integer:
            raise TypeError("Glow.flow takes a float image in [-0.5, 0.5) (dequantize(preprocess(x, "
                            "n_bits_x), n_bits_x, seed)); pass uint8 images to encode() instead")
        eps_list, logdet, logp, _ = self._flow(tf.cast(z, self.dtype), self._y_onehot(y), ema)
        return eps_list, logdet, logp

    def reverse(self, eps_list, y=None, ema=None):
        """Exact inverse of flow: per-level standardised latents -> float image [B,H,W,C]."""
        eps_list = [tf.cast(e, self.dtype) for e in eps_list]
        if len(eps_list) != len(self.levels):
            raise ValueError(f"expected {len(self.levels)} per-level latents, got {len(eps_list)}")
        mean, logsd = self.top_prior(tf.shape(eps_list[-1])[0], self._y_onehot(y), ema)
        z = nn.gaussian_from_eps(eps_list[-1], mean, logsd)
        for level in reversed(range(len(self.levels))):
            if level < len(self.levels) - 1:
                z1 = nn.unsqueeze2d(z)
                mean, logsd = self.split_priors[level](z1, ema)
                z = tf.concat([z1, nn.gaussian_from_eps(eps_list[level], mean, logsd)], axis=-1)
            for step in reversed(self.levels[level]):
                z = step.reverse(z, ema)
        return nn.unsqueeze2d(z)

    # -------------------------------------------------------------------------------------------- objective

    def initialize(self, x_uint8, y=None, seed=0):
        """Actnorm data-dependent init on an init batch, layer by layer in forward order."""
        self._flow(self._dequantized_input(x_uint8, seed), self._y_onehot(y), init=True)

    def _log_prob_and_top(self, x_uint8, y, ema, seed, checkpoint):
        x = self._dequantized_input(x_uint8, seed)
        _, logdet, logp, z_top = self._flow(x, self._y_onehot(y), ema, checkpoint=checkpoint)
        log_px = discretization_log_prob(self.config.image_shape, self.config.n_bits_x) + logdet + logp
        return log_px, z_top

    def log_prob(self, x_uint8, y=None, ema=None, seed=None):
        """Per-image lower bound on log P(x) in nats of the n_bits_x data (one dequantisation sample)."""
        return self._log_prob_and_top(x_uint8, y, ema, seed, checkpoint=False)[0]

    def bits_per_dim(self, x_uint8, y=None, ema=None, seed=None):
        """Per-image bits/dim as openai/glow's bits_x -> [B]."""
        return bits_per_dim(-self.log_prob(x_uint8, y, ema, seed), self.config.image_shape)

    def loss(self, x_uint8, y=None, ema=None, seed=None, training=False):
        """Per-image loss bits_x + weight_y * bits_y [B] and stats {bits_x, bits_y, pred_loss} (each [B]).

        seed (required) draws the dequantisation noise, used in training and evaluation alike (openai/glow):
        give each training step its own. training=True turns on gradient checkpointing when the config asks
        for it (it only matters when gradients are taken).
        """
        checkpoint = training and self.config.gradient_checkpointing
        log_px, z_top = self._log_prob_and_top(x_uint8, y, ema, seed, checkpoint)
        bits_x = bits_per_dim(-log_px, self.config.image_shape)
        if self.classifier is not None:
            logits = self.classifier(tf.reduce_mean(z_top, axis=[1, 2]), ema)
            labels = tf.cast(y, tf.int32)
            xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            bits_y = xent / math.log(2.0)
            correct = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels)
            pred_loss = 1.0 - tf.cast(correct, self.dtype)
        else:
            bits_y = tf.zeros_like(bits_x)
            pred_loss = tf.ones_like(bits_x)
        loss = bits_x + self.config.weight_y * bits_y
        return loss, {"bits_x": bits_x, "bits_y": bits_y, "pred_loss": pred_loss}

    # -------------------------------------------------------------------------------------------- encode / decode

    def encode(self, x_uint8, y=None, ema=None, seed=None):
        """uint8 images -> list of per-level eps (level order 0..top).

        seed=None puts every pixel at its bin centre (deterministic, and decode reproduces the image with
        half a bin of margin); an int/[2] seed adds openai/glow's U(0, 1/n_bins) dequantisation noise.
        """
        if seed is None:
            x = bin_centre(preprocess(x_uint8, self.config.n_bits_x, self.dtype), self.config.n_bits_x)
        else:
            x = self._dequantized_input(x_uint8, seed)
        return self.flow(x, y, ema)[0]

    def decode(self, eps_list, y=None, ema=None):
        """Per-level eps -> uint8 images; decode(encode(x)) == x quantised to n_bits_x."""
        return postprocess(self.reverse(eps_list, y, ema), self.config.n_bits_x)

    def flatten(self, eps_list):
        """Per-level eps -> [B, D] (concatenated in level order, as openai/glow's encode)."""
        return tf.concat([tf.reshape(e, [tf.shape(e)[0], -1]) for e in eps_list], axis=1)

    def unflatten(self, flat):
        """[B, D] -> per-level eps (inverse of flatten)."""
        sizes = [int(np.prod(s)) for s in self.eps_shapes]
        if flat.shape[-1] != sum(sizes):
            raise ValueError(f"flat latents must have {sum(sizes)} dims, got {flat.shape[-1]}")
        parts = tf.split(tf.cast(flat, self.dtype), sizes, axis=1)
        return [tf.reshape(p, [-1, *s]) for p, s in zip(parts, self.eps_shapes)]

    def sample(self, n, y=None, temperature=1.0, seed=0, ema=None):
        """n uint8 images; every level's eps ~ N(0, T^2) with T a scalar or per example [n] (T=0: the mode chain)."""
        temperature = tf.broadcast_to(tf.cast(temperature, self.dtype), [n])[:, None, None, None]
        seeds = tf.random.experimental.stateless_split(as_seed(seed), num=len(self.eps_shapes))
        eps_list = [tf.random.stateless_normal([n, *shape], seeds[i], dtype=self.dtype) * temperature
                    for i, shape in enumerate(self.eps_shapes)]
        return self.decode(eps_list, y, ema)


# ------------------------------------------------------------------------------------------------ per-image noise

def pixel_hashes(images):
    """A deterministic int32 per image from its pixels (a weighted sum mod 2^31 - 1)."""
    flat = tf.cast(tf.reshape(images, [tf.shape(images)[0], -1]), tf.int64)
    weights = tf.range(1, tf.shape(flat)[1] + 1, dtype=tf.int64) * 2654435761 % 2147483647
    return tf.cast(tf.reduce_sum(flat * weights[None], axis=1) % 2147483647, tf.int32)


def image_seeds(images, seed):
    """One stateless seed per image: (a number drawn from `seed`, or 0 when seed is None; the
    image's pixel hash). Noise drawn from it depends on the seed and the image's pixels only, not
    on the batch the image is in or on how a batch is split over devices and processes."""
    if seed is None:
        seed_part = tf.constant(0, tf.int32)
    else:
        seed_part = tf.random.stateless_uniform([], as_seed(seed), minval=None, maxval=None,
                                                dtype=tf.int32)
    hashes = pixel_hashes(images)
    return tf.stack([tf.fill(tf.shape(hashes), seed_part), hashes], axis=1)


def per_image_bits(model, x_uint8, y=None, ema=None, seed=None, training=False):
    """Per-image bits [B], each image dequantised with its own noise (image_seeds(x, seed); seed
    None scores every image with a fixed noise, the evaluation convention): training=True gives
    openai/glow's loss bits_x + weight_y * bits_y, else bits_x alone. Runs under
    tf.vectorized_map, as fast as one batched call. Without gradient checkpointing only:
    tf.recompute_grad inside vectorized_map gives wrong gradients."""
    seeds = image_seeds(x_uint8, seed)
    labels = tf.zeros(tf.shape(x_uint8)[:1], tf.int32) if y is None else tf.cast(y, tf.int32)

    def one_image(elements):
        image, label, image_seed = elements
        loss, stats = model.loss(image[None], None if y is None else label[None], ema=ema,
                                 seed=image_seed, training=training)
        return loss[0] if training else stats["bits_x"][0]

    return tf.vectorized_map(one_image, (x_uint8, labels, seeds), warn=False)


# ------------------------------------------------------------------------------------------------ manipulation

def attribute_vectors(encodings, attributes):
    """[N,D] flat encodings, [N,A] attributes (+1/-1 or 1/0) -> [A,D] mean(z | a=+1) - mean(z | a=-1)."""
    z = np.asarray(encodings, np.float64)
    positive = np.asarray(attributes) > 0
    if z.ndim != 2 or positive.ndim != 2 or positive.shape[0] != z.shape[0]:
        raise ValueError(f"need encodings [N,D] and attributes [N,A], got {z.shape} and {positive.shape}")
    counts = positive.sum(axis=0)
    if np.any(counts == 0) or np.any(counts == len(z)):
        raise ValueError(f"every attribute needs positive and negative examples; positive counts: {counts}")
    mean_positive = (positive.T.astype(np.float64) @ z) / counts[:, None]
    mean_negative = ((~positive).T.astype(np.float64) @ z) / (len(z) - counts)[:, None]
    return (mean_positive - mean_negative).astype(np.float32)


def manipulate(z, dz, alpha):
    """z + alpha * dz (openai/glow demo manipulate)."""
    return z + alpha * dz


def interpolate(z_a, z_b, steps):
    """`steps` points on the line from z_a to z_b, endpoints included -> [steps, *z.shape]."""
    alphas = np.linspace(0.0, 1.0, steps).reshape([steps] + [1] * np.ndim(z_a))
    return (1.0 - alphas) * np.asarray(z_a)[None] + alphas * np.asarray(z_b)[None]
