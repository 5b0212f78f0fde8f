"""Glow: openai/glow's flags, defaults, Adamax with linear warmup and Polyak averaging around
glow.model; sample.py's temperature rows, interpolation, attribute manipulation and encoding call
glow.tools.

Objective and units. openai/glow minimises, per image, loss = bits_x + weight_y * bits_y (bits/dim
of the n_bits_x-bit data, plus the classifier's bits with --ycond --weight_y > 0). The trainer
works in nats per image and converts with bits_per_dim, so `nats` returns loss * D ln 2. Training
(training=True) returns the full objective; evaluation returns bits_x alone, so the test
bits/dim the trainer logs is the likelihood bound, comparable with the paper's.

Dequantisation noise. U(0, 1/n_bins) per image and step, as openai/glow, but seeded per image
by (the step seed, the same on every replica and process; a hash of the image's pixels:
glow.model.image_seeds): an
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
import os

import numpy as np
import tensorflow as tf

from data import augment
from glow import model as glow_model
from glow import tools
from trainer import export, optim
from trainer import images as image_files
from trainer.argtypes import positive_int
from trainer.families.base import Family, SampleError
from trainer.families.profiles import kind_of_data_set

# openai/glow's training-visualisation temperatures (train.py): one grid row each.
TEMPERATURES = (0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

# openai/glow's CIFAR-10 setting (README: --n_level 3 --depth 32 --learntop --lr 0.001, defaults
# for the rest, additive coupling as its ablation; 8 GPUs x 64 images; full test and samples
# every 50 epochs). learntop is on because every README command sets it (the flag's own default
# was off). sample_batch_size 64 = 8 temperatures x 8 columns.
PAPER_PROFILE = dict(n_levels=3, depth=32, width=512, flow_permutation=2, flow_coupling=0,
                     learntop=True, n_bits_x=8, batch_size=64, nr_gpu=8, learning_rate=0.001,
                     epochs_warmup=10.0, polyak_epochs=1.0, optimizer="adamax",
                     gradient_checkpointing=1, save_interval=50, max_epochs=1000000,
                     sample_batch_size=64, dal=0)
# The README's CelebA-HQ command: 6 levels, 5-bit data, and 64 images per GPU at the 32 px anchor
# resolution, i.e. 1 image per GPU at 256 px (openai/glow train.py).
CELEBAHQ_PROFILE = dict(n_levels=6, n_bits_x=5, batch_size=1)
# The data sets' image sizes without --image_size (data/), where not 32.
PAPER_IMAGE_SIZES = {"celebahq": 256, "celebahq_pggan": 256, "celebahq_images": 256}


def sample_temperatures(model, num_images, seed, labels=None, ema=None):
    """One row per temperature in TEMPERATURES (the same latents scaled, so a column shows one
    draw cooling down); with labels, column j has class labels[j]. 64 images make an 8 x 8 grid."""
    columns = -(-num_images // len(TEMPERATURES))
    y = None if labels is None else np.asarray(labels, np.int32)[:columns]
    batches = [model.sample(columns, tools.model_labels(model, y), temperature, seed, ema).numpy()
               for temperature in TEMPERATURES]
    return np.concatenate(batches)[:num_images]


def warmup_learning_rate(base_learning_rate, warmup_steps):
    """Linear warmup: step t (t = 1, 2, ...) uses base * min(1, t / warmup_steps)."""
    def learning_rate(step):
        if warmup_steps <= 0:
            return tf.constant(base_learning_rate, tf.float32)
        ramp = tf.cast(step, tf.float32) / float(warmup_steps)
        return base_learning_rate * tf.minimum(1.0, ramp)
    return learning_rate


def augmented(model, images, seed):
    """The images after the model's --dal augmentation (unchanged at level 0). Each image is
    seeded like its dequantisation noise (glow.model.image_seeds), from a stream folded off
    `seed`, so its augmentation is independent of its noise."""
    if not model.config.augmentation:
        return images
    stream = tf.random.experimental.stateless_fold_in(glow_model.as_seed(seed), 1)
    return augment.augment(images, glow_model.image_seeds(images, stream),
                           model.config.augmentation)


class GlowFamily(Family):
    name = "glow"
    profiles = {
        "paper": PAPER_PROFILE,
        # `python3 train.py --model glow` trains, evaluates and samples 4 epochs in minutes on 2
        # CPU cores (README).
        "cpu": dict(n_levels=3, depth=8, width=128, flow_permutation=2, flow_coupling=0,
                    learntop=True, n_bits_x=8, batch_size=32, nr_gpu=1, learning_rate=0.001,
                    epochs_warmup=1.0, polyak_epochs=1.0, optimizer="adamax",
                    gradient_checkpointing=0, save_interval=1, max_epochs=4,
                    sample_batch_size=64, dal=0),
    }
    # openai/glow augmented MNIST and CIFAR-10 by default (--dal 1: random shifts of up to 10%);
    # its TFRecord data sets (ImageNet, CelebA-HQ, LSUN) were not augmented.
    data_set_profiles = {"cifar": dict(dal=1), "celebahq": CELEBAHQ_PROFILE,
                         "celebahq_pggan": CELEBAHQ_PROFILE, "celebahq_images": CELEBAHQ_PROFILE}
    samplers = {"temperatures": sample_temperatures}
    default_sampler = "temperatures"

    def defaults(self, data_set, image_size=None):
        """The profiles, and on the paper data sets openai/glow's init batch: 256 images at
        its 32 px anchor size, scaled by (32 / image size)^2 (256 for CIFAR-10, 4 for
        CelebA-HQ at 256 px)."""
        values = super().defaults(data_set)
        if kind_of_data_set(data_set) == "paper":
            size = image_size or PAPER_IMAGE_SIZES.get(data_set, 32)
            values["init_batch_size"] = max(1, 256 * 32 ** 2 // size ** 2)
        return values

    def add_arguments(self, parser):
        group = parser.add_argument_group("Glow (openai/glow flags; unset: from the data set's "
                                          "profile)")
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


    def model_config(self, args, info):
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


    def build(self, config):
        return glow_model.Glow(glow_model.GlowConfig.from_dict(config))

    def conditional(self, model):
        return model.config.ycond

    def training_samples(self, model, ema, args, seed):
        """A sheet [len(TEMPERATURES), ceil(sample_batch_size / 8), H, W, C]: one row per
        temperature, the same latents scaled down each column."""
        columns = -(-args.sample_batch_size // len(TEMPERATURES))
        labels = self.sample_labels(model, None, columns)
        images = sample_temperatures(model, columns * len(TEMPERATURES), seed, labels, ema)
        return images.reshape(len(TEMPERATURES), columns, *images.shape[1:])

    def sheet_row_labels(self, model, args):
        return [f"T = {temperature:g}" for temperature in TEMPERATURES]

    def initialize(self, model, images, labels, seed):
        """Data-dependent init; with --dal on augmented images, as openai/glow's init batch came
        from its augmented training stream."""
        model.initialize(augmented(model, images, seed), tools.model_labels(model, labels),
                         seed=seed)

    def nats(self, model, images, labels, training=False, ema=None, seed=None, step_seed=None):
        """training=True: openai/glow's loss (bits_x + weight_y bits_y); else -log p(x) alone;
        per image in nats. `step_seed` (default: `seed`) seeds each image's augmentation and
        noise; with --gradient_checkpointing 1 training takes one batched call with the
        replica's `seed` (glow.model.per_image_bits cannot recompute gradients)."""
        step_seed = seed if step_seed is None else step_seed
        y = tools.model_labels(model, labels)
        if training:
            images = augmented(model, images, step_seed)
        if training and model.config.gradient_checkpointing:
            bits, _ = model.loss(images, y, ema=ema, seed=seed, training=True)
        else:
            bits = glow_model.per_image_bits(model, images, y, ema,
                                             step_seed if training else None, training)
        return bits * (np.log(2.0) * float(np.prod(model.config.image_shape)))

    def ema_decay(self, args, steps_per_epoch):
        """openai/glow averages with the optimizer's beta2."""
        return optim.glow_beta2(steps_per_epoch, args.polyak_epochs)

    def make_optimizers(self, args, model, steps_per_epoch):
        """Adamax (openai/glow's default) or Adam, both with beta2 = glow_beta2. The Adam is the
        trainer's (epsilon inside the square root) where openai/glow added epsilon outside it."""
        variables = tuple(model.trainable_variables)
        learning_rate = warmup_learning_rate(args.learning_rate,
                                             steps_per_epoch * args.epochs_warmup)
        beta2 = self.ema_decay(args, steps_per_epoch)
        if args.optimizer == "adam":
            optimizer = optim.Adam(variables, learning_rate, beta1=args.beta1, beta2=beta2,
                                   epsilon=1e-8)
        else:
            optimizer = optim.Adamax(variables, learning_rate, beta2=beta2, beta1=args.beta1,
                                     weight_decay=args.weight_decay)
        return {"optimizer": optimizer}

    # -- sample.py -----------------------------------------------------------------------------

    def add_sample_arguments(self, group):
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


    def output_name(self, args):
        """After the mode: latents_<what>, decoded_<npz>, interpolation_<a>_<b>,
        manipulate_<attribute>_<image or seed>, else sample_temperatures_seed<seed>."""
        def stem(path):
            return os.path.splitext(os.path.basename(path))[0]

        if args.encode:
            more = f"_and_{len(args.encode) - 1}_more" if len(args.encode) > 1 else ""
            return f"latents_{stem(args.encode[0])}{more}"
        if args.decode:
            return f"decoded_{stem(args.decode)}"
        if args.interpolate_images:
            return "interpolation_" + "_".join(map(stem, args.interpolate_images))
        if args.seed_b is not None:
            return f"interpolation_seed{args.seed}_seed{args.seed_b}"
        if args.manipulate is not None:
            subject = stem(args.manipulate_image) if args.manipulate_image else f"seed{args.seed}"
            return f"manipulate_{args.manipulate}_{subject}".replace("/", "_")
        return f"sample_temperatures_seed{args.seed}"

    def sample_main(self, args, model, ema, stored, prefix):
        try:
            return self._sample_main(args, model, ema, stored, prefix)
        except tools.ToolError as error:
            raise SampleError(str(error)) from None

    def _sample_main(self, args, model, ema, stored, prefix):
        """Temperature rows (default), --encode, --decode, --interpolate_images, --seed_b or
        --manipulate; returns the written paths."""
        temperatures = args.temperature or [0.7]
        if args.manipulate is None:
            for flag in ("alpha", "manipulate_image", "attr_data_set", "attr_data_dir"):
                if getattr(args, flag) is not None:
                    raise SampleError(f"--{flag} only works with --manipulate ATTR")
        flags = stored["flags"]

        def save_rows(rows, row_labels=None, **metadata):
            """A sheet of `rows` ([columns, H, W, C] each); metadata [rows, columns, ...]."""
            image_files.save_samples(prefix, np.stack(rows), row_labels=row_labels,
                                     min_width=args.sheet_width, **metadata)
            return [prefix + ".png", prefix + ".npz"]

        def seed_images(seed, label, count=1):
            labels = self.sample_labels(model, label if label is not None else args.label, count)
            return model.sample(count, tools.model_labels(model, labels), temperatures[0],
                                [seed, 0], ema).numpy(), labels

        if args.encode:
            if len(args.encode) == 1 and args.encode[0] in ("train", "test"):
                images, labels = tools.split_images(stored["data_set"], flags["data_dir"],
                                                    flags.get("image_size"), args.encode[0],
                                                    args.cache_dir)
            else:
                images = np.stack([tools.load_image(path, model.config.image_shape)
                                   for path in args.encode])
                labels = self.sample_labels(model, args.label, len(images))
                labels = np.zeros([len(images)], np.int32) if labels is None else labels
            path = prefix + ".npz"
            image_files.save_arrays(path, latents=tools.encode_images(model, images, labels, ema),
                                    labels=np.asarray(labels, np.int32))
            return [path]
        if args.decode:
            if not os.path.isfile(args.decode):
                raise SampleError(f"--decode {args.decode}: no such file; write one with "
                                  f"--encode IMAGES_OR_SPLIT")
            try:
                stored_latents = np.load(args.decode)
                flat, labels = stored_latents["latents"], stored_latents["labels"]
            except (OSError, ValueError, KeyError) as error:
                raise SampleError(f"--decode {args.decode}: not an --encode .npz "
                                  f"({error})") from None
            return save_rows([tools.decode_flat(model, flat, labels, ema)],
                             labels=np.asarray(labels, np.int32)[None])
        if args.interpolate_images:
            images = np.stack([tools.load_image(path, model.config.image_shape)
                               for path in args.interpolate_images])
            row, path = tools.interpolate_images(model, images, self._end_labels(args, model),
                                                 args.steps, ema)
            return save_rows([row], latents=np.float32(path)[None])
        if args.seed_b is not None:
            labels = self._end_labels(args, model)
            a, _ = seed_images(args.seed, None if labels is None else labels[0])
            b, _ = seed_images(args.seed_b, None if labels is None else labels[1])
            row, path = tools.interpolate_images(model, np.concatenate([a, b]), labels,
                                                 args.steps, ema)
            return save_rows([row], latents=np.float32(path)[None])
        if args.manipulate is not None:
            alphas = args.alpha if args.alpha is not None else [-1.0, -0.5, 0.0, 0.5, 1.0]
            try:  # the vectors are cached beside the checkpoint sample.py restored
                names, vectors = tools.attribute_vectors(
                    model, ema, args.attr_data_set or stored["data_set"],
                    args.attr_data_dir or flags["data_dir"], flags.get("image_size"),
                    args.attr_count, args.checkpoint, args.cache_dir)
                index = tools.attribute_index(args.manipulate, names)
            except tools.ToolError as error:
                raise SampleError(f"--manipulate: {error}") from None
            if args.manipulate_image:
                images = tools.load_image(args.manipulate_image, model.config.image_shape)[None]
                labels = self.sample_labels(model, args.label, 1)
            else:
                images, labels = seed_images(args.seed, None, args.n)
            rows = tools.manipulate_images(model, images, labels, vectors[index], alphas, ema)
            return save_rows(list(rows), alphas=np.tile(np.float32(alphas), (len(rows), 1)))
        labels = self.sample_labels(model, args.label, args.n)
        rows = [model.sample(args.n, tools.model_labels(model, labels), temperature,
                             [args.seed, 0], ema).numpy() for temperature in temperatures]
        return save_rows(rows, row_labels=[f"T = {t:g}" for t in temperatures],
                         temperatures=np.repeat(np.float32(temperatures), args.n).reshape(
                             len(temperatures), args.n))

    def _end_labels(self, args, model):
        """The classes [2] of an interpolation's ends (--label, --label_b), None when the model
        is unconditional."""
        labels = self.sample_labels(model, args.label, 1)
        if labels is None:
            if args.label_b is not None:
                raise SampleError("--label_b: the model is not class-conditional")
            return None
        end = labels[0] if args.label_b is None else self.sample_labels(model, args.label_b, 1)[0]
        return np.array([labels[0], end])

    def export_module(self, model, ema, args):
        return export.GlowModule(model, ema)


FAMILY = GlowFamily()
