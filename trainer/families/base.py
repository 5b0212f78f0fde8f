"""The one interface between a model family and everything shared: train.py's flags, the training
loop (trainer.loop), sample.py and the hub-style export (trainer.export).

A family is a `Family` subclass registered by name in trainer.families. The loop builds the
model, optimizers, Polyak averages, checkpoint and devices; the family says what is special about
its model through these methods. Defaults cover a likelihood model trained by minimising the
per-image negative log-likelihood with one optimizer; override what differs.

Units: `nats` is the per-image negative log-likelihood in nats for every family;
`data.pixels.bits_per_dim` turns it into bits per sub-pixel, the number the loop logs.

Flags: a Family is also its command-line side (`family_flags.FamilyFlags`: name, flags, per-data-set
defaults). A built-in family keeps that side in its own TensorFlow-free module
(`<name>_flags.py`), which its Family extends, so that flags parse before TensorFlow loads.
"""
import numpy as np
import tensorflow as tf

from data.pixels import bits_per_dim
from trainer import images as image_files
from trainer.export import ExportError
from trainer.families.family_flags import FamilyFlags, SampleError


class Family(FamilyFlags):
    # {name: fn(model, num_images, seed, labels=None, ema=None) -> uint8 [N, H, W, C]}
    samplers = {}
    # False: no likelihood (a GAN): --eval_only is refused and no test bits/dim is logged
    has_likelihood = True
    # False: refuse Horovod / multi-worker launches with one line
    multi_process = True
    # named in the message when the loss diverges
    learning_rate_flags = "--learning_rate"
    # the per-save image files are <data_set>_<sample_file_name><epoch>.png / .npz
    sample_file_name = "sample"

    # -- configuration ---------------------------------------------------------------------

    @property
    def sampler_names(self):
        """A family defined in one class names its samplers by `samplers` alone."""
        return tuple(sorted(self.samplers))

    def model_config(self, args, info):
        """Validated, JSON-serialisable model configuration from the flags and the data set's
        DatasetInfo; ValueError with a one-line message when impossible."""
        raise NotImplementedError

    def build(self, config):
        """The model (a tf.Module with every variable created) of a model_config dict."""
        raise NotImplementedError

    # -- training ----------------------------------------------------------------------------

    def initialize(self, model, images, labels, seed):
        """Data-dependent initialisation on uint8 images (default: none)."""

    def nats(self, model, images, labels, training=False, ema=None, seed=None, step_seed=None):
        """Per-image negative log-likelihood [B] in nats of uint8 images. When training, `seed`
        is the replica's noise seed and `step_seed` the step's, the same on every replica."""
        raise NotImplementedError

    def averaged_variables(self, model):
        """The variables with Polyak averages (read with ema= for evaluation and samples)."""
        return model.trainable_variables

    def ema_decay(self, args, steps_per_epoch):
        return args.polyak_decay

    def make_optimizers(self, args, model, steps_per_epoch):
        """{name: optimizer from trainer.optim}; the names are checkpoint keys."""
        raise NotImplementedError

    def iterations(self, optimizers):
        """The step counter of a run (the global step)."""
        return optimizers["optimizer"].iterations

    def learning_rates(self, optimizers, step):
        """Scalars logged each epoch beside the losses."""
        return {"learning_rate": float(optimizers["optimizer"].learning_rate(step))}

    def train_step(self, run, images, labels, step_seed):
        """One update on a process batch, in cross-replica context; returns {name: the global
        batch's mean} for the logs (trainer.logger: per step and per epoch). `run` is the
        trainer.loop.Trainer: its model, optimizers, ema, loss_scale (trainer.precision), info
        and replicas (trainer.dist.Replicas).
        Default: minimise the mean bits/dim of the global batch with optimizers["optimizer"],
        then one Polyak step; reports the loss and the global norm of its gradient."""
        model, replicas, loss_scale = run.model, run.replicas, run.loss_scale
        optimizer = run.optimizers["optimizer"]
        variables, image_shape = tuple(model.trainable_variables), run.info.image_shape

        def replica_step(images, labels):
            images, labels = replicas.slice(images), replicas.slice(labels)
            with tf.GradientTape() as tape:
                nats = self.nats(model, images, labels, training=True,
                                 seed=replicas.seed(step_seed), step_seed=step_seed)
                loss = tf.reduce_sum(bits_per_dim(nats, image_shape)) / replicas.global_batch
                scaled_loss = loss_scale.scaled(loss)
            grads, nonfinite = loss_scale.unscaled(tape.gradient(scaled_loss, variables))
            return (loss, nonfinite), grads

        (loss, nonfinite), grads = replicas.sum_gradients(replica_step, (images, labels),
                                                          variables)

        def apply():
            optimizer.apply(grads, variables)
            run.ema.apply()

        loss_scale.apply_if_finite(nonfinite, apply, optimizer.iterations)
        return {"train_bits_per_dim": loss, "grad_norm": tf.linalg.global_norm(grads)}

    # -- sampling ----------------------------------------------------------------------------

    def training_samples(self, model, ema, args, seed):
        """The images written at each save: uint8 [N, H, W, C] (a grid) or [rows, columns, H, W,
        C] (a sheet). Default: sample_batch_size images of the default sampler, cycling through
        the classes of a class-conditional model."""
        labels = self.sample_labels(model, None, args.sample_batch_size)
        return self.samplers[self.default_sampler](model, args.sample_batch_size, seed=seed,
                                                   labels=labels, ema=ema)

    def conditional(self, model):
        """Whether the model takes class labels."""
        return bool(getattr(model.config, "num_classes", 0))

    def sample_main(self, args, model, ema, stored, prefix):
        """sample.py's outputs for this family; returns the written paths. Default:
        one grid of args.n images of args.sampler. SampleError for flags it cannot serve."""
        labels = self.sample_labels(model, args.label, args.n)
        samples = self.samplers[args.sampler](model, args.n, seed=[args.seed, 0], labels=labels,
                                              ema=ema)
        metadata = {} if labels is None else {"labels": np.asarray(labels, np.int32)}
        image_files.save_samples(prefix, samples, min_width=args.sheet_width, **metadata)
        return [prefix + ".png", prefix + ".npz"]

    def output_name(self, args):
        """The file name (no extension) of sample.py's output without --out, after what it
        holds; written beside the checkpoint."""
        return f"sample_{args.sampler}_seed{args.seed}"

    def sheet_row_labels(self, model, args):
        """One label per row of a training_samples sheet ([rows, columns, ...]) when its rows
        mean something (a temperature, a class), for the PNG's label strip; else None."""
        return None

    def sample_labels(self, model, label, count):
        """The class of each of `count` images: `label` for all, else cycling; None for an
        unconditional model."""
        if not self.conditional(model):
            if label is not None:
                raise SampleError("--label: the model is not class-conditional")
            return None
        num_classes = model.config.num_classes
        if label is None:
            return np.arange(count) % num_classes
        if not 0 <= label < num_classes:
            raise SampleError(f"--label {label}: the model has classes 0..{num_classes - 1}")
        return np.full([count], label)

    def export_module(self, model, ema, args):
        """A trainer.export.HubModule of the restored model for sample.py --export."""
        raise ExportError(f"no SavedModel export for model family {self.name!r}")
