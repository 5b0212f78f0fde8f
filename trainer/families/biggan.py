"""BigGAN adapter: BigGAN-PyTorch's flag names and defaults around `biggan`, a GAN Trainer on the
shared data layer, checkpoints and logs, and sample.py's truncation / interpolation / sweep sheets.

A GAN has no likelihood, so this family brings its own Trainer (same interface as trainer.loop's:
start(resume), fit(logger), evaluate(), global_batch, steps_per_epoch, model). One step is
BigGAN.train_step: num_D_steps D updates (each on its own 1/num_D_steps of the real batch) then one
G update, Adam with beta1 = 0 and separate G/D learning rates, then the EMA of G. Its noise is
seeded by (seed, G step), the batches of an epoch by (seed, epoch), and checkpoints are written at
epoch ends, so a resumed run takes exactly the steps the uninterrupted one would have.

--nr_gpu N trains data-parallel in one process (MirroredStrategy, as trainer.loop): --batch_size
is per device, a step sees N x batch_size images, every replica takes its slice of each D and G
step, gradients are summed over replicas and batch norm in G is cross-replica, so the step equals
the single-device step on the global batch. Checkpoints do not depend on N: a run may resume, or be
sampled, with any --nr_gpu.

Sampling (sample.py and the per-save class sheets) uses the EMA generator with standing batch-norm
statistics accumulated at the sampling truncation over `num_standing_accumulations` batches of
STANDING_BATCH random (z, y), seeded by `standing_seed` -- NOT by the sample seed, so a sheet's
endpoints, a plain sample and an exported SavedModel (trainer/export.py) agree image for image.
"""
import argparse
import math
import os
import time

import numpy as np
import tensorflow as tf
from tqdm import tqdm

import data
from biggan import model as bg
from pixel_cnn_pp.model import to_uint8
from trainer import checkpoint as ckpt
from trainer import images as image_files
from trainer.loop import (ConfigError, NonFiniteLossError, checked_model_config,
                          checked_steps_per_epoch, run_config)

NAME = "biggan"
STANDING_BATCH = 64  # images per standing-statistics forward pass (BigGAN-PyTorch G_batch_size)

# BigGAN-PyTorch's CIFAR-10 launch script (launch_cifar_ema.sh): batch 50, 4 D steps, both learning
# rates 2e-4, no orthogonal regularisation and no attention, EMA from iteration 1000, 500 epochs.
PAPER_SETTING = dict(G_ch=64, D_ch=64, dim_z=128, shared_dim=128, hier=False, attn_res="0",
                     G_lr=2e-4, D_lr=2e-4, num_D_steps=4, G_ortho=0.0, ema_decay=0.9999,
                     ema_start=1000, batch_size=200, nr_gpu=1, max_epochs=500, save_interval=10,
                     sample_batch_size=10)
# A G and D small enough that `python3 train.py --model biggan` trains 316 steps (4 epochs of the
# 2547 real32 photos crops in batches of 32, 2 D steps of 16 real + 16 fake each) on 2 CPU cores
# in a few minutes. The short run needs a short EMA.
CPU_SETTING = dict(G_ch=8, D_ch=8, dim_z=20, shared_dim=16, hier=True, attn_res="16", G_lr=2e-4,
                   D_lr=2e-4, num_D_steps=2, G_ortho=1e-4, ema_decay=0.99, ema_start=100,
                   batch_size=32, nr_gpu=1, max_epochs=4, save_interval=2, sample_batch_size=8)
# (fashion_mnist's 28x28 is not a BigGAN resolution; folder sets resize to 32 by default.)
DEFAULTS_BY_DATA_SET = {"cifar": PAPER_SETTING, "real32": CPU_SETTING, "folder": CPU_SETTING}


def defaults(data_set):
    return dict(DEFAULTS_BY_DATA_SET.get(data_set, PAPER_SETTING))


def resolutions(text):
    """BigGAN-PyTorch's --G_attn syntax: resolutions joined by '_' ('16_32'); '0' means none."""
    try:
        values = tuple(int(part) for part in text.split("_"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected resolutions joined by '_' (e.g. 16_32) or "
                                         f"0, got {text!r}") from None
    return () if values == (0,) else values


def add_arguments(parser):
    group = parser.add_argument_group("BigGAN (BigGAN-PyTorch flags; None = from the per-data-set "
                                      "table in trainer/families/biggan.py)")
    group.add_argument("--G_ch", type=int, default=None, help="generator channel multiplier")
    group.add_argument("--D_ch", type=int, default=None, help="discriminator channel multiplier")
    group.add_argument("--dim_z", type=int, default=None,
                       help="latent size (rounded down to a multiple of the z chunks with --hier)")
    group.add_argument("--shared_dim", type=int, default=None, help="shared class embedding size")
    group.add_argument("--hier", action=argparse.BooleanOptionalAction, default=None,
                       help="hierarchical z: a chunk of z for every G block")
    group.add_argument("--G_attn", "--attn_res", dest="attn_res", default=None,
                       help="resolutions with self-attention in G and D, joined by '_'; 0 = none")
    group.add_argument("--G_lr", type=float, default=None, help="generator Adam learning rate")
    group.add_argument("--D_lr", type=float, default=None, help="discriminator Adam learning rate")
    group.add_argument("--num_D_steps", type=int, default=None, help="D steps per G step")
    group.add_argument("--G_ortho", type=float, default=None,
                       help="orthogonal regularisation strength beta of G (0 = off)")
    group.add_argument("--ema_decay", type=float, default=None, help="decay of the EMA of G")
    group.add_argument("--ema_start", type=int, default=None,
                       help="G steps during which the EMA is a copy of G")
    group.add_argument("--num_standing_accumulations", type=int, default=16,
                       help="batches of standing batch-norm statistics for the per-save sheets")


def model_config(args, info):
    if not info.num_classes:
        raise ValueError(f"BigGAN is class-conditional and data set {info.name!r} has no labels; "
                         f"use a labelled set (real32, cifar, imagenet_npz, ...)")
    if args.batch_size % args.num_D_steps:
        raise ValueError(f"--batch_size {args.batch_size} (per device) must be divisible by "
                         f"--num_D_steps {args.num_D_steps} (each D step takes its share of every "
                         f"device's real batch)")
    config = bg.BigGANConfig(
        image_shape=info.image_shape, num_classes=info.num_classes, dim_z=args.dim_z,
        shared_dim=args.shared_dim, G_ch=args.G_ch, D_ch=args.D_ch,
        attn_res=resolutions(args.attn_res),
        hier=args.hier, G_lr=args.G_lr, D_lr=args.D_lr, num_D_steps=args.num_D_steps,
        G_ortho=args.G_ortho, ema_decay=args.ema_decay, ema_start=args.ema_start, seed=args.seed)
    return config.to_dict()


def build(config):
    return bg.BigGAN(bg.BigGANConfig.from_dict(config))


# ---------------------------------------------------------------------------------------- sampling

def one_hot_labels(model, labels, num_images):
    """Float one-hot [N, K]; labels None cycles through the classes."""
    num_classes = model.config.num_classes
    labels = np.arange(num_images) % num_classes if labels is None else np.asarray(labels)
    return tf.one_hot(labels.astype(np.int32), num_classes)


def standing_stats(model, truncation, ema, num_standing_accumulations=16, standing_seed=0):
    """The standing statistics every sampler here uses for `truncation` (see the module doc)."""
    model.accumulate_standing_stats(truncation, num_standing_accumulations, STANDING_BATCH,
                                    standing_seed, ema)


def sample_truncated(model, num_images, seed, labels=None, ema=None, truncation=1.0,
                     num_standing_accumulations=16, standing_seed=0):
    """uint8 [N, H, W, C]: z = truncation * TN(-2, 2) drawn from `seed`, labels int [N] (None:
    cycle through the classes), standing statistics at `truncation`."""
    standing_stats(model, truncation, ema, num_standing_accumulations, standing_seed)
    z = bg.truncated_z(num_images, model.config.dim_z, truncation, seed)
    return to_uint8(bg.generate(model, z, one_hot_labels(model, labels, num_images), truncation,
                                ema)).numpy()


SAMPLERS = {"truncated": sample_truncated}
DEFAULT_SAMPLER = "truncated"


def sheet(images):
    """uint8 [rows, columns, H, W, C] -> one uint8 image [rows*H, columns*W, C]."""
    rows, columns, height, width, channels = images.shape
    return images.transpose(0, 2, 1, 3, 4).reshape(rows * height, columns * width, channels)


def save_sheet(prefix, images):
    """<prefix>.png (the rows x columns sheet) and <prefix>.npz (uint8 [rows, columns, H, W, C])."""
    image_files.save_png(prefix + ".png", sheet(images))
    image_files.save_npz(prefix + ".npz", images)
    return [prefix + ".png", prefix + ".npz"]


def class_sheet(model, per_class, seed, ema, truncation=1.0, num_standing_accumulations=16,
                standing_seed=0):
    """uint8 [K, per_class, H, W, C]: row k holds per_class samples of class k (BigGAN-PyTorch's
    class sheets); the same noise in every row."""
    num_classes = model.config.num_classes
    standing_stats(model, truncation, ema, num_standing_accumulations, standing_seed)
    z = tf.tile(bg.truncated_z(per_class, model.config.dim_z, truncation, seed), [num_classes, 1])
    y = tf.one_hot(np.repeat(np.arange(num_classes), per_class), num_classes)
    images = to_uint8(bg.generate(model, z, y, truncation, ema)).numpy()
    return images.reshape(num_classes, per_class, *images.shape[1:])


def interpolation_sheet(model, num_rows, seed_a, label_a, seed_b, label_b, steps, truncation, ema,
                        num_standing_accumulations=16, standing_seed=0):
    """uint8 [num_rows, steps, H, W, C]: row r lerps (z_a[r], y_a) to (z_b[r], y_b) jointly, with
    z_a = truncated_z(num_rows, seed_a) (the z of `sample.py --n num_rows --seed seed_a`), one-hot
    y. Same seeds: class-only; same labels: noise-only."""
    config = model.config
    standing_stats(model, truncation, ema, num_standing_accumulations, standing_seed)
    ends = []
    for seed, label in ((seed_a, label_a), (seed_b, label_b)):
        ends += [bg.truncated_z(num_rows, config.dim_z, truncation, seed),
                 tf.one_hot(tf.fill([num_rows], label), config.num_classes)]
    z, y = bg.interpolate(*ends, steps)
    images = to_uint8(bg.generate(model, z, y, truncation, ema)).numpy()
    return images.reshape(num_rows, steps, *images.shape[1:])


def truncation_sweep(model, truncations, num_images, seed, labels, ema,
                     num_standing_accumulations=16, standing_seed=0):
    """uint8 [len(truncations), N, H, W, C]: row i is sample_truncated at truncations[i] with the
    same seed and labels, i.e. the same base noise TN(-2, 2) scaled by each truncation."""
    return np.stack([sample_truncated(model, num_images, seed, labels, ema, psi,
                                      num_standing_accumulations, standing_seed)
                     for psi in truncations])


def add_sample_arguments(group):
    group.add_argument("--truncation", type=float, default=1.0,
                       help="z = truncation * TN(-2, 2) (TF-Hub convention), standing statistics "
                            "accumulated at it")
    group.add_argument("--interpolate", action="store_true",
                       help="--n rows of --steps images from (--seed, --label) to (--seed_b, "
                            "--label_b), lerping z and the one-hot y together")
    group.add_argument("--truncation_sweep", type=float, nargs="+", default=None,
                       help="one row of --n images per truncation, same base noise and classes")
    group.add_argument("--num_standing_accumulations", type=int, default=16,
                       help=f"batches of {STANDING_BATCH} for the standing statistics")
    group.add_argument("--standing_seed", type=int, default=0,
                       help="seed of the standing-statistics batches")
    group.add_argument("--truncation_grid", type=int, default=11,
                       help="--export: standing statistics stored for this many truncations "
                            "evenly spaced in [0, 1], linearly interpolated between them")


def check_truncation(value, flag="--truncation"):
    if not 0.0 <= value <= 1.0:
        raise ckpt.CheckpointError(f"{flag} {value}: truncation must lie in [0, 1]")


def sample_main(args, model, ema, stored, prefix):
    """sample.py's BigGAN outputs: a plain grid, an interpolation sheet or a truncation sweep
    (PNG + raw npz); `ema` is the model's EMA of G (sample.py restores it as `model.ema`)."""
    num_classes = model.config.num_classes
    for label in (args.label, args.label_b):
        if label is not None and not 0 <= label < num_classes:
            raise ckpt.CheckpointError(f"label {label}: the model has classes 0..{num_classes - 1}")
    if args.num_standing_accumulations < 1:
        raise ckpt.CheckpointError("--num_standing_accumulations must be >= 1")
    if args.interpolate and args.truncation_sweep:
        raise ckpt.CheckpointError("--interpolate and --truncation_sweep make different sheets; "
                                   "pass one of them")
    standing = dict(num_standing_accumulations=args.num_standing_accumulations,
                    standing_seed=args.standing_seed)
    check_truncation(args.truncation)
    if args.interpolate:
        label_a = 0 if args.label is None else args.label
        seed_b = args.seed if args.seed_b is None else args.seed_b
        label_b = label_a if args.label_b is None else args.label_b
        if (seed_b, label_b) == (args.seed, label_a):
            raise ckpt.CheckpointError("--interpolate: both ends are the same; give --seed_b "
                                       "and/or --label_b")
        images = interpolation_sheet(model, args.n, args.seed, label_a, seed_b, label_b,
                                     args.steps, args.truncation, ema, **standing)
        return save_sheet(prefix, images)
    labels = None if args.label is None else np.full([args.n], args.label)
    if args.truncation_sweep:
        for psi in args.truncation_sweep:
            check_truncation(psi, "--truncation_sweep")
        images = truncation_sweep(model, args.truncation_sweep, args.n, args.seed, labels, ema,
                                  **standing)
        return save_sheet(prefix, images)
    images = sample_truncated(model, args.n, args.seed, labels, ema, args.truncation, **standing)
    image_files.save_samples(prefix, images)
    return [prefix + ".png", prefix + ".npz"]


# ----------------------------------------------------------------------------------------- trainer

LOSSES = ("D_loss_real", "D_loss_fake", "G_loss", "G_ortho")


class Trainer:
    """A BigGAN run on the strategy's devices (--nr_gpu N: data-parallel, --batch_size images per
    device, as trainer.loop): BigGAN.train_step over the shuffled train split, per-epoch mean
    losses, class sheets and checkpoints every save_interval epochs."""

    def __init__(self, family, args, strategy):
        self.family, self.args, self.strategy = family, args, strategy
        if args.eval_only:
            raise ConfigError("--eval_only: BigGAN has no likelihood to evaluate; sample it with "
                              "sample.py instead")
        self.info = data.info(args.data_set, args.data_dir, args.image_size)
        self.model_config = checked_model_config(family, args, self.info)
        replicas = strategy.num_replicas_in_sync
        self.global_batch = args.batch_size * replicas
        self.steps_per_epoch = checked_steps_per_epoch(
            self.info, self.global_batch, f"{args.batch_size} x {replicas} devices")
        with strategy.scope():  # G, D, optimizers and EMA mirrored on every device
            self.model = family.build(self.model_config)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.checkpoint = ckpt.RunCheckpoint(
            args.save_dir, run_config(family, args, self.model_config, args.ema_decay),
            model=self.model, ema=self.model.ema, epoch=self.epoch)

    def start(self, resume):
        """A fresh run (the weights are set by the config's seed) or a resume from the newest
        checkpoint in save_dir; refuses to start fresh over an existing checkpoint."""
        save_dir = self.args.save_dir
        existing = ckpt.latest_checkpoint(save_dir)
        if not resume:
            if existing is not None:
                raise ckpt.CheckpointError(f"{save_dir!r} already holds checkpoint {existing}; "
                                           f"pass --load_params to resume it or choose another "
                                           f"--save_dir")
            return "new run"
        if existing is None:
            raise ckpt.CheckpointError(f"no checkpoint in {save_dir!r} to resume; check "
                                       f"--save_dir, or drop --load_params to start a new run")
        stored = ckpt.read_run_config(existing)
        if stored.get("model") != NAME or (bg.BigGANConfig.from_dict(stored["model_config"])
                                           != bg.BigGANConfig.from_dict(self.model_config)):
            raise ckpt.CheckpointError(f"{existing} was trained with another model or "
                                       f"configuration; pass the same model flags to resume")
        self.checkpoint.restore(existing)
        return (f"resumed from {existing}: epoch {int(self.epoch.numpy())}, "
                f"G step {int(self.model.G_optimizer.iterations.numpy())}")

    def evaluate(self):
        raise ConfigError("BigGAN has no likelihood to evaluate")

    def train_epoch(self, epoch):
        """One pass over the shuffled train split; returns the mean of every loss."""
        batches = data.load(self.args.data_set, self.args.data_dir, "train",
                            image_size=self.args.image_size, batch_size=self.global_batch,
                            shuffle=True, seed=self.args.seed, epoch=epoch, drop_remainder=True)
        totals = dict.fromkeys(LOSSES, 0.0)
        bar = tqdm(batches, total=self.steps_per_epoch, desc=f"epoch {epoch} train", leave=False)
        for count, (images, labels) in enumerate(bar, start=1):
            step = self.model.G_optimizer.iterations
            losses = {name: float(value) for name, value in self.model.train_step(
                images, labels, tf.stack([tf.constant(self.args.seed, tf.int64),
                                          tf.cast(step, tf.int64)])).items()}
            if not all(math.isfinite(value) for value in losses.values()):
                raise NonFiniteLossError(
                    f"non-finite loss {losses} at epoch {epoch}, G step {int(step.numpy())}; "
                    f"stopped without saving (the last checkpoint in {self.args.save_dir!r} is "
                    f"untouched); lower --G_lr/--D_lr")
            for name in LOSSES:
                totals[name] += losses[name]
            bar.set_postfix(D=f"{losses['D_loss_real'] + losses['D_loss_fake']:.3f}",
                            G=f"{losses['G_loss']:.3f}")
        return {name: total / count for name, total in totals.items()}

    def save_samples(self, epoch, logger):
        """num_samples class sheets (every class x sample_batch_size images, EMA generator,
        truncation 1), seeded by (seed, epoch, sheet)."""
        for k in range(self.args.num_samples):
            images = class_sheet(self.model, self.args.sample_batch_size,
                                 [self.args.seed, epoch * self.args.num_samples + k],
                                 self.model.ema,
                                 num_standing_accumulations=self.args.num_standing_accumulations)
            prefix = os.path.join(self.args.save_dir,
                                  f"{self.args.data_set}_classes{epoch}" + (f"_{k}" if k else ""))
            save_sheet(prefix, images)
            logger.image("class_sheet", sheet(images),
                         int(self.model.G_optimizer.iterations.numpy()))

    def fit(self, logger):
        """Train from the current epoch to max_epochs."""
        args = self.args
        for epoch in range(int(self.epoch.numpy()), args.max_epochs):
            started = time.time()
            losses = self.train_epoch(epoch)
            self.epoch.assign(epoch + 1)
            step = int(self.model.G_optimizer.iterations.numpy())
            logger.epoch(epoch, step, time.time() - started,
                         {"D_loss": losses["D_loss_real"] + losses["D_loss_fake"], **losses})
            if (epoch + 1) % args.save_interval == 0 or epoch == args.max_epochs - 1:
                if args.num_samples:
                    self.save_samples(epoch, logger)
                path = self.checkpoint.save(epoch)
                logger.message(f"saved {path}")
