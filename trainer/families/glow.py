"""Glow adapter: openai/glow's flags, defaults, Adamax with linear warmup and Polyak averaging
around glow.model, plus sample.py's temperature rows, interpolation, attribute manipulation and
encoding.

Objective and units. openai/glow minimises, per image, loss = bits_x + weight_y * bits_y (bits/dim
of the n_bits_x-bit data, plus the classifier's bits with --ycond --weight_y > 0). The trainer
works in nats per image and converts with bits_per_dim, so `nats` returns loss * D ln 2. Training
(training=True) returns the full objective; evaluation returns bits_x alone, so the test
bits/dim the trainer logs is the likelihood bound, comparable with the paper's.

Dequantisation noise. U(0, 1/n_bins) per image and step, as openai/glow, but seeded per image
by (the step seed, the same on every replica and process; a hash of the image's pixels): an
image's noise does not depend on the batch it is in or on how the batch is split over devices
or processes, so 1 device x 2B images, 2 devices x B and 2 Horovod ranks x B take the same step,
and a test image always gets the same score (evaluation uses seed 0). Exception: with
--gradient_checkpointing 1 a training step is one batched call with the replica's seed (see
`nats`).

Augmentation (--dal). As openai/glow, training images (and the init batch) are augmented on the
fly, by default for CIFAR-10 only (--dal 1, shifts); see data/augment.py. Each image's draw is
seeded like its noise (the step's seed and its pixels), so it too is the same on any device split.

Learning rate. openai/glow computed lr * min(1, n_processed / (n_train * epochs_warmup)) before
each step with n_processed starting at 0, so its first step had lr 0; here step t = 1, 2, ...
uses lr * min(1, t / (steps_per_epoch * epochs_warmup)), the same ramp one step earlier.
"""
import argparse
import hashlib
import io
import os

import numpy as np
import tensorflow as tf
from PIL import Image
from tqdm import tqdm

import data
from data import augment
from glow import model as glow_model
from trainer import images as image_files
from trainer import optim
from trainer.argtypes import positive_int
from trainer.checkpoint import CheckpointError

NAME = "glow"

# openai/glow's training-visualisation temperatures (train.py:26-66): one grid row each.
TEMPERATURES = (0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

# openai/glow's CIFAR-10 setting (README: --n_level 3 --depth 32 --learntop --lr 0.001, defaults
# for the rest, additive coupling as its ablation; 8 GPUs x 64 images; full test and samples
# every 50 epochs). learntop is on because every README command sets it (the flag's own default
# was off). sample_batch_size 64 = 8 temperatures x 8 columns.
PAPER_SETTING = dict(n_levels=3, depth=32, width=512, flow_permutation=2, flow_coupling=0,
                     learntop=True, n_bits_x=8, batch_size=64, nr_gpu=8, learning_rate=0.001,
                     epochs_warmup=10.0, polyak_epochs=1.0, optimizer="adamax",
                     gradient_checkpointing=1, save_interval=50, max_epochs=1000000,
                     sample_batch_size=64, dal=0)
# openai/glow augmented MNIST and CIFAR-10 by default (--dal 1: random shifts of up to 10%); its
# TFRecord data sets (ImageNet, CelebA-HQ, LSUN) were not augmented.
CIFAR_SETTING = dict(PAPER_SETTING, dal=1)
# The README's CelebA-HQ command: 6 levels, 5-bit data, and 64 images per GPU at the 32 px anchor
# resolution, i.e. 1 image per GPU at 256 px (openai/glow train.py:93-99).
CELEBAHQ_SETTING = dict(PAPER_SETTING, n_levels=6, n_bits_x=5, batch_size=1)
# Small enough that `python3 train.py --model glow` trains, evaluates and samples a few epochs in
# a few minutes on 2 CPU cores: measured 3 min 4 s wall (2 min 8 s CPU) on a shared 2-core
# machine, 4 epochs of 79 steps, test bits/dim 5.93 after epoch 0 and 4.09 after epoch 3.
CPU_SETTING = dict(n_levels=3, depth=8, width=128, flow_permutation=2, flow_coupling=0,
                   learntop=True, n_bits_x=8, batch_size=32, nr_gpu=1, learning_rate=0.001,
                   epochs_warmup=1.0, polyak_epochs=1.0, optimizer="adamax",
                   gradient_checkpointing=0, save_interval=1, max_epochs=4, sample_batch_size=64,
                   dal=0)
# The one per-data-set table of defaults; data sets not listed get the paper setting.
DEFAULTS_BY_DATA_SET = {"cifar": CIFAR_SETTING, "imagenet": PAPER_SETTING,
                        "celebahq": CELEBAHQ_SETTING, "celebahq_pggan": CELEBAHQ_SETTING,
                        "celebahq_images": CELEBAHQ_SETTING,
                        "real32": CPU_SETTING, "fashion_mnist": CPU_SETTING,
                        "folder": CPU_SETTING}


def defaults(data_set):
    return dict(DEFAULTS_BY_DATA_SET.get(data_set, PAPER_SETTING))


def add_arguments(parser):
    group = parser.add_argument_group("Glow (openai/glow flags; None = from the per-data-set "
                                      "table in trainer/families/glow.py)")
    group.add_argument("--n_levels", "--n_level", type=positive_int, default=None,
                       help="levels L of the multi-scale flow")
    group.add_argument("--depth", type=positive_int, default=None, help="flow steps K per level")
    group.add_argument("--width", type=positive_int, default=None,
                       help="channels of the coupling networks")
    group.add_argument("--flow_permutation", type=int, choices=sorted(glow_model.PERMUTATIONS),
                       default=None, help="0 reverse, 1 shuffle, 2 invertible 1x1 conv, "
                                          "3 LU-decomposed 1x1 conv")
    group.add_argument("--flow_coupling", type=int, choices=sorted(glow_model.COUPLINGS),
                       default=None, help="0 additive, 1 affine")
    group.add_argument("--learntop", action=argparse.BooleanOptionalAction, default=None,
                       help="learn the top prior's mean and log-sd")
    group.add_argument("--ycond", action="store_true",
                       help="class-conditional top prior (labelled data sets)")
    group.add_argument("--weight_y", type=float, default=0.0,
                       help="weight of the classifier's bits_y in the loss (needs --ycond)")
    group.add_argument("--n_bits_x", type=int, default=None, help="bit depth modelled (1..8)")
    group.add_argument("--lr", "--learning_rate", dest="learning_rate", type=float,
                       default=None, help="base learning rate (after warmup)")
    group.add_argument("--epochs_warmup", type=float, default=None,
                       help="epochs of linear learning-rate warmup")
    # aliases: the shared flag's action sets the default
    group.add_argument("--n_batch_train", dest="batch_size", type=positive_int,
                       default=argparse.SUPPRESS,
                       help="alias of -b/--batch_size (images per device and step)")
    group.add_argument("--n_batch_init", dest="init_batch_size", type=positive_int,
                       default=argparse.SUPPRESS, help="alias of -u/--init_batch_size")
    group.add_argument("--epochs", dest="max_epochs", type=positive_int,
                       default=argparse.SUPPRESS, help="alias of -x/--max_epochs")
    group.add_argument("--polyak_epochs", type=float, default=None,
                       help="beta2 = 1 - 1/(steps_per_epoch * polyak_epochs), for Adamax's "
                            "second moment and the Polyak average")
    group.add_argument("--weight_decay", type=float, default=1.0,
                       help="multiplicative: w <- weight_decay * w - step (1 = off; Adamax only)")
    group.add_argument("--gradient_checkpointing", type=int, choices=(0, 1), default=None,
                       help="recompute each flow step's activations in the backward pass")
    group.add_argument("--optimizer", choices=("adamax", "adam"), default=None,
                       help="adamax (openai/glow's default) or adam")
    group.add_argument("--beta1", type=float, default=0.9, help="first-moment decay")
    group.add_argument("--dal", type=int, choices=augment.LEVELS, default=None,
                       help="training-data augmentation: 0 none, 1 random shifts of up to 10%%, "
                            "2 also rotation, zoom, shear and horizontal flips (data/augment.py)")


def model_config(args, info):
    if args.ycond and not info.num_classes:
        raise ValueError(f"--ycond: data set {info.name!r} has no labels; drop the flag or use "
                         f"a labelled set")
    if args.optimizer == "adam" and args.weight_decay != 1.0:
        raise ValueError("--weight_decay is only implemented for --optimizer adamax")
    try:
        config = glow_model.GlowConfig(
            image_shape=info.image_shape, n_levels=args.n_levels, depth=args.depth,
            width=args.width, flow_permutation=args.flow_permutation,
            flow_coupling=args.flow_coupling, learntop=bool(args.learntop), ycond=args.ycond,
            weight_y=args.weight_y, n_bits_x=args.n_bits_x,
            num_classes=info.num_classes if args.ycond else 0,
            gradient_checkpointing=bool(args.gradient_checkpointing), augmentation=args.dal,
            seed=args.seed)
    except ValueError as error:
        raise ValueError(f"Glow on {info.name!r} ({'x'.join(map(str, info.image_shape))}): "
                         f"{error} (--image_size, --n_levels, ...)") from None
    return config.to_dict()


def build(config):
    return glow_model.Glow(glow_model.GlowConfig.from_dict(config))


def _labels(model, labels):
    """Labels for a class-conditional model, None otherwise."""
    return labels if model.config.ycond else None


def initialize(model, images, labels, seed):
    """Data-dependent init; with --dal on augmented images, as openai/glow's init batch came
    from its augmented training stream."""
    model.initialize(augmented(model, images, seed), _labels(model, labels), seed=seed)


def pixel_hashes(images):
    """A deterministic int32 per image from its pixels (a weighted sum mod 2^31 - 1)."""
    flat = tf.cast(tf.reshape(images, [tf.shape(images)[0], -1]), tf.int64)
    weights = tf.range(1, tf.shape(flat)[1] + 1, dtype=tf.int64) * 2654435761 % 2147483647
    return tf.cast(tf.reduce_sum(flat * weights[None], axis=1) % 2147483647, tf.int32)


def image_seeds(images, seed):
    """One dequantisation-noise seed per image: (a number drawn from the step's seed, or 0 for
    evaluation; the image's pixel hash). An image's noise thus depends on the step and on its
    pixels only, not on the batch it is in or how the batch is split over devices."""
    if seed is None:
        step_part = tf.constant(0, tf.int32)
    else:
        step_part = tf.random.stateless_uniform([], glow_model.as_seed(seed), minval=None,
                                                maxval=None, dtype=tf.int32)
    hashes = pixel_hashes(images)
    return tf.stack([tf.fill(tf.shape(hashes), step_part), hashes], axis=1)


def augmented(model, images, seed):
    """The images after the model's --dal augmentation (unchanged, and no seeds computed, at 0).
    Each image is seeded like image_seeds, from a stream folded off `seed`, so its augmentation
    is independent of its dequantisation noise."""
    if not model.config.augmentation:
        return images
    seeds = image_seeds(images, tf.random.experimental.stateless_fold_in(glow_model.as_seed(seed), 1))
    return augment.augment(images, seeds, model.config.augmentation)


def nats(model, images, labels, training=False, ema=None, seed=None, step_seed=None):
    """training=True: openai/glow's loss (bits_x + weight_y bits_y); else -log p(x) alone.
    Returned per image in nats (the trainer's unit; bits_per_dim converts back).

    `seed`: the replica's noise seed; `step_seed`: the step's, the same on every replica (default:
    `seed`, for a caller with one replica).
    Every image is scored with its own noise seed (image_seeds) under tf.vectorized_map, which
    runs as fast as one batched call. tf.recompute_grad does not survive vectorized_map (wrong
    gradients, measured), so with --gradient_checkpointing 1 training takes one batched call and
    its noise depends on the split of the batch over devices."""
    y = _labels(model, labels)
    step_seed = seed if step_seed is None else step_seed
    if training:  # --dal, seeded per image by the step's seed
        images = augmented(model, images, step_seed)
    checkpointed = training and model.config.gradient_checkpointing
    if checkpointed:
        bits, _ = model.loss(images, y, ema=ema, seed=seed, training=True)
    else:
        seeds = image_seeds(images, step_seed if training else None)
        labels = tf.cast(labels, tf.int32)

        def one_image(elements):
            image, label, image_seed = elements
            loss, stats = model.loss(image[None], None if y is None else label[None], ema=ema,
                                     seed=image_seed, training=training)
            return loss[0] if training else stats["bits_x"][0]

        bits = tf.vectorized_map(one_image, (images, labels, seeds), warn=False)
    return bits * (np.log(2.0) * float(np.prod(model.config.image_shape)))


def bits_per_dim(nats_per_image, image_shape):
    return glow_model.bits_per_dim(-nats_per_image, image_shape)


def warmup_learning_rate(base_learning_rate, warmup_steps):
    """Linear warmup: step t (t = 1, 2, ...) uses base * min(1, t / warmup_steps)."""
    def learning_rate(step):
        if warmup_steps <= 0:
            return tf.constant(base_learning_rate, tf.float32)
        ramp = tf.cast(step, tf.float32) / float(warmup_steps)
        return base_learning_rate * tf.minimum(1.0, ramp)
    return learning_rate


def make_optimizer(args, variables, steps_per_epoch):
    """Adamax (openai/glow's default) or Adam, both with beta2 = glow_beta2. The Adam is the
    trainer's (epsilon inside the square root) where openai/glow added epsilon outside it."""
    learning_rate = warmup_learning_rate(args.learning_rate, steps_per_epoch * args.epochs_warmup)
    beta2 = ema_decay(args, steps_per_epoch)
    if args.optimizer == "adam":
        return optim.Adam(variables, learning_rate, beta1=args.beta1, beta2=beta2, epsilon=1e-8)
    return optim.Adamax(variables, learning_rate, beta2=beta2, beta1=args.beta1,
                        weight_decay=args.weight_decay)


def ema_decay(args, steps_per_epoch):
    """openai/glow averages with the optimizer's beta2 (optim.py:159)."""
    return optim.glow_beta2(steps_per_epoch, args.polyak_epochs)


def sample_temperatures(model, num_images, seed, labels=None, ema=None):
    """One row per temperature in TEMPERATURES (the same latents scaled, so a column shows one
    draw cooling down); with labels, column j has class labels[j]. 64 images make an 8 x 8 grid."""
    columns = -(-num_images // len(TEMPERATURES))
    y = None if labels is None else np.asarray(labels, np.int32)[:columns]
    batches = [model.sample(columns, _labels(model, y), temperature, seed, ema).numpy()
               for temperature in TEMPERATURES]
    return np.concatenate(batches)[:num_images]


SAMPLERS = {"temperatures": sample_temperatures}
DEFAULT_SAMPLER = "temperatures"


# -- sample.py ---------------------------------------------------------------------------------

def add_sample_arguments(group):
    group.add_argument("--temperature", type=float, nargs="+", default=None,
                       help="one grid row of --n samples per temperature (default 0.7, the "
                            "openai/glow demo's); the first one is used by --seed_b, "
                            "--manipulate without --manipulate_image")
    group.add_argument("--interpolate_images", nargs=2, default=None, metavar=("A", "B"),
                       help="encode two images and decode --steps points on the line between "
                            "their latents (--label / --label_b: their classes)")
    group.add_argument("--manipulate", default=None, metavar="ATTR",
                       help="move latents along an attribute vector (name or index): "
                            "mean(z | attribute) - mean(z | not attribute) over --attr_data_set")
    group.add_argument("--alpha", type=float, nargs="+", default=None,
                       help="--manipulate: multiples of the attribute vector, one image each "
                            "(default -1 -0.5 0 0.5 1)")
    group.add_argument("--manipulate_image", default=None,
                       help="--manipulate: the image to change (default: --n samples of --seed)")
    group.add_argument("--attr_data_set", default=None,
                       help="--manipulate: labelled data set for the vectors (CelebA-HQ "
                            "attributes, or class labels one-vs-rest; default the checkpoint's)")
    group.add_argument("--attr_data_dir", default=None,
                       help="--manipulate: its location (default the checkpoint's --data_dir)")
    group.add_argument("--attr_count", type=positive_int, default=2000,
                       help="--manipulate: train images encoded for the vectors (cached as .npy "
                            "beside the checkpoint)")
    group.add_argument("--encode", nargs="+", default=None, metavar="PATH_OR_SPLIT",
                       help="save flattened latents (.npz: latents [N, D], labels) of images, "
                            "or of a split ('train'/'test') of the checkpoint's data set")
    group.add_argument("--decode", default=None, metavar="NPZ",
                       help="decode the latents of an --encode .npz to images")


def _label_tensor(model, labels):
    return None if labels is None else _labels(model, tf.constant(labels, tf.int32))


def load_image(path, image_shape):
    """An image file as uint8 [H, W, C] of the model's shape (no resizing: a clear error)."""
    try:
        with Image.open(path) as image:
            image = image.convert("L" if image_shape[2] == 1 else "RGB")
            array = np.asarray(image, np.uint8)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read image {path}: {error}") from None
    array = array.reshape(array.shape[:2] + (image_shape[2],))
    if array.shape != tuple(image_shape):
        raise CheckpointError(f"{path} is {array.shape[1]}x{array.shape[0]}, the model takes "
                              f"{image_shape[1]}x{image_shape[0]} images; resize it first")
    return array


def save_rows(prefix, rows, **extra):
    """A grid with one row per entry of `rows` (uint8 [N, H, W, C] each) as <prefix>.png, and
    the images [R, N, H, W, C] (plus `extra` arrays) as <prefix>.npz."""
    rows = np.stack([np.asarray(row, np.uint8) for row in rows])
    grid = np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
    image_files.save_png(prefix + ".png", grid)
    buffer = io.BytesIO()
    np.savez(buffer, images=rows, **extra)
    image_files.write_atomic(prefix + ".npz", buffer.getvalue())
    return [prefix + ".png", prefix + ".npz"]


def _sample_labels(args, model, count, label=None):
    """Labels for `count` images of a class-conditional model (--label or cycling), else None."""
    num_classes = model.config.num_classes if model.config.ycond else 0
    label = args.label if label is None else label
    if not num_classes:
        if label is not None:
            raise CheckpointError("--label: the model is not class-conditional")
        return None
    if label is None:
        return np.arange(count) % num_classes
    if not 0 <= label < num_classes:
        raise CheckpointError(f"--label {label}: the model has classes 0..{num_classes - 1}")
    return np.full([count], label)


def temperature_rows(args, model, ema):
    labels = _sample_labels(args, model, args.n)
    return [model.sample(args.n, labels, temperature, [args.seed, 0], ema).numpy()
            for temperature in args.temperature]


def encode_images(model, images, labels, ema):
    """Flattened bin-centre latents [N, D] (decode gives the quantised images back)."""
    y = _label_tensor(model, labels)
    return model.flatten(model.encode(images, y, ema)).numpy()


def decode_flat(model, flat, labels, ema):
    y = _label_tensor(model, labels)
    return model.decode(model.unflatten(tf.constant(flat, tf.float32)), y, ema).numpy()


def interpolation_row(args, model, ema, images, labels_ab):
    """Encode two images, decode args.steps points between their latents (each decoded with
    the label of the nearer end)."""
    flat = encode_images(model, images, labels_ab, ema)
    path = glow_model.interpolate(flat[0], flat[1], args.steps)
    labels = None
    if labels_ab is not None:
        labels = np.where(np.linspace(0.0, 1.0, args.steps) < 0.5, labels_ab[0], labels_ab[1])
    return decode_flat(model, path, labels, ema), path


def seed_images(args, model, ema, seed, label, count=1):
    labels = _sample_labels(args, model, count, label)
    return model.sample(count, labels, args.temperature[0], [seed, 0], ema).numpy(), labels


def _end_labels(args, model):
    labels = _sample_labels(args, model, 1)
    if labels is None:
        if args.label_b is not None:
            raise CheckpointError("--label_b: the model is not class-conditional")
        return None
    return np.array([labels[0], _sample_labels(args, model, 1, args.label_b)[0]
                     if args.label_b is not None else labels[0]])


def attribute_table(args, stored):
    """(name of the set, split used, names, labels [N, A] of +-1/0 flags, images) for the
    attribute vectors: the set's attributes if it has any, else its classes one-vs-rest."""
    flags = stored["flags"]
    name = args.attr_data_set or stored["data_set"]
    data_dir = args.attr_data_dir or flags["data_dir"]
    image_size = flags.get("image_size")
    try:
        info = data.info(name, data_dir, image_size)
        if info.attribute_names:
            batches = data.load(name, data_dir, "train", image_size=image_size, batch_size=64,
                                with_attributes=True).take(-(-args.attr_count // 64))
            parts = [(x.numpy(), a.numpy()) for x, _, a in batches]
            names = list(info.attribute_names)
            images = np.concatenate([x for x, _ in parts])[:args.attr_count]
            table = np.concatenate([a for _, a in parts])[:args.attr_count]
        elif info.num_classes:
            batches = data.load(name, data_dir, "train", image_size=image_size, batch_size=64,
                                shuffle=True, seed=0).take(-(-args.attr_count // 64))
            parts = [(x.numpy(), y.numpy()) for x, y in batches]
            names = list(info.class_names) or [str(k) for k in range(info.num_classes)]
            images = np.concatenate([x for x, _ in parts])[:args.attr_count]
            classes = np.concatenate([y for _, y in parts])[:args.attr_count]
            table = (classes[:, None] == np.arange(info.num_classes)[None]).astype(np.int32)
        else:
            raise CheckpointError(f"--manipulate: data set {name!r} has neither attributes nor "
                                  f"labels; pass --attr_data_set with a labelled set")
    except data.DataError as error:
        raise CheckpointError(f"--manipulate: {error}") from None
    return name, names, table, images


def attribute_vectors(args, model, ema, stored, checkpoint_path):
    """(names, [A, D] vectors), cached as .npy beside the checkpoint."""
    name, names, table, images = attribute_table(args, stored)
    data_dir = os.path.abspath(args.attr_data_dir or stored["flags"]["data_dir"])
    key = hashlib.sha1(f"{name}|{data_dir}|{len(images)}|{names}".encode()).hexdigest()[:10]
    cache = f"{checkpoint_path}.glow_attributes_{name}_{key}.npy"
    if os.path.exists(cache):
        return names, np.load(cache)
    flat = np.concatenate([encode_images(model, images[i:i + 64], None, ema)
                           for i in tqdm(range(0, len(images), 64), desc="encoding",
                                         leave=False)])
    try:
        vectors = glow_model.attribute_vectors(flat, table)
    except ValueError as error:
        raise CheckpointError(f"--manipulate on {name!r} ({len(images)} images): {error}; "
                              f"raise --attr_count") from None
    buffer = io.BytesIO()
    np.save(buffer, vectors)
    image_files.write_atomic(cache, buffer.getvalue())
    return names, vectors


def attribute_index(attribute, names):
    if attribute in names:
        return names.index(attribute)
    if attribute.isdigit() and int(attribute) < len(names):
        return int(attribute)
    raise CheckpointError(f"--manipulate {attribute}: not one of {len(names)} attributes "
                          f"({', '.join(names[:8])}{', ...' if len(names) > 8 else ''}) or "
                          f"an index below {len(names)}")


def encode_targets(args, model, stored):
    """(images, labels) named by --encode: image files, or a split of the checkpoint's set."""
    if len(args.encode) == 1 and args.encode[0] in data.SPLITS:
        flags = stored["flags"]
        try:
            batches = [(x.numpy(), y.numpy()) for x, y in data.load(
                stored["data_set"], flags["data_dir"], args.encode[0],
                image_size=flags.get("image_size"), batch_size=64)]
        except data.DataError as error:
            raise CheckpointError(f"--encode: {error}") from None
        return (np.concatenate([x for x, _ in batches]),
                np.concatenate([y for _, y in batches]))
    images = np.stack([load_image(path, model.config.image_shape) for path in args.encode])
    labels = _sample_labels(args, model, len(images))
    return images, np.zeros([len(images)], np.int32) if labels is None else labels


def sample_main(args, model, ema, stored, prefix):
    """The Glow part of sample.py; returns the written paths."""
    args.temperature = args.temperature or [0.7]
    if args.manipulate is None:
        for flag in ("alpha", "manipulate_image", "attr_data_set", "attr_data_dir"):
            if getattr(args, flag) is not None:
                raise CheckpointError(f"--{flag} only works with --manipulate ATTR")
    checkpoint_path = getattr(args, "checkpoint", None) or tf.train.latest_checkpoint(
        args.save_dir)
    if args.encode:
        images, labels = encode_targets(args, model, stored)
        flat = np.concatenate([
            encode_images(model, images[i:i + 64], labels[i:i + 64], ema)
            for i in tqdm(range(0, len(images), 64), desc="encoding", leave=False)])
        path = prefix + "_latents.npz"
        buffer = io.BytesIO()
        np.savez(buffer, latents=flat, labels=labels)
        image_files.write_atomic(path, buffer.getvalue())
        return [path]
    if args.decode:
        try:
            stored_latents = np.load(args.decode)
            flat, labels = stored_latents["latents"], stored_latents["labels"]
        except (OSError, ValueError, KeyError) as error:
            raise CheckpointError(f"--decode {args.decode}: not an --encode .npz "
                                  f"({error})") from None
        if flat.ndim != 2 or flat.shape[1] != sum(int(np.prod(s)) for s in model.eps_shapes):
            raise CheckpointError(f"--decode {args.decode}: latents {flat.shape} do not fit "
                                  f"this model")
        decoded = decode_flat(model, flat, labels if model.config.ycond else None, ema)
        return save_rows(prefix + "_decoded", [decoded])
    if args.interpolate_images:
        images = np.stack([load_image(path, model.config.image_shape)
                           for path in args.interpolate_images])
        row, path = interpolation_row(args, model, ema, images, _end_labels(args, model))
        return save_rows(prefix + "_interpolation", [row], latents=path)
    if args.seed_b is not None:
        labels = _end_labels(args, model)
        a, _ = seed_images(args, model, ema, args.seed, None if labels is None else labels[0])
        b, _ = seed_images(args, model, ema, args.seed_b, None if labels is None else labels[1])
        row, path = interpolation_row(args, model, ema, np.concatenate([a, b]), labels)
        return save_rows(prefix + f"_interpolation_seed{args.seed_b}", [row], latents=path)
    if args.manipulate is not None:
        alphas = args.alpha if args.alpha is not None else [-1.0, -0.5, 0.0, 0.5, 1.0]
        names, vectors = attribute_vectors(args, model, ema, stored, checkpoint_path)
        index = attribute_index(args.manipulate, names)
        if args.manipulate_image:
            images = load_image(args.manipulate_image, model.config.image_shape)[None]
            labels = _sample_labels(args, model, 1)
        else:
            images, labels = seed_images(args, model, ema, args.seed, None, args.n)
        flat = encode_images(model, images, labels, ema)
        rows = [decode_flat(model, glow_model.manipulate(flat, vectors[index], alpha),
                            labels, ema) for alpha in alphas]
        # one row per image, one column per alpha
        rows = list(np.stack(rows, axis=1))
        return save_rows(prefix + f"_manipulate_{names[index]}".replace("/", "_"), rows,
                         alphas=np.asarray(alphas))
    return save_rows(prefix, temperature_rows(args, model, ema),
                     temperatures=np.asarray(args.temperature))
