"""Glow: openai/glow's Adamax with linear warmup and Polyak averaging around glow.model (its flags
and defaults are in glow_flags.py); sample.py's temperature rows, interpolation, attribute
manipulation and encoding call glow.tools.

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
import os

import numpy as np
import tensorflow as tf

from data import augment
from glow import model as glow_model
from glow import tools
from trainer import export, optim
from trainer import images as image_files
from trainer.families.base import Family, SampleError
from trainer.families.glow_flags import GlowFlags

# openai/glow's training-visualisation temperatures (train.py): one grid row each.
TEMPERATURES = (0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


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


class GlowFamily(GlowFlags, Family):
    samplers = {"temperatures": sample_temperatures}

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
