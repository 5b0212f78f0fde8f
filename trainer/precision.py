"""Mixed precision, in one place for every family (--precision fp32 | bf16 | fp16).

Variables, optimizer moments and Polyak averages are float32 under every policy, so a checkpoint
does not depend on it: a bf16 run resumes in fp32 and the other way round. What computes in low
precision is decided by the model packages, each at one entry point and one exit: a module that
can compute in low precision has a `compute_dtype` attribute (float32 by default), casts its
input to it and its output back to float32. `apply` sets that attribute on a model and on every
such submodule:
  * PixelCNN++ (PixelCNNPP): the whole network; weight normalisation (its norm and the
    data-dependent init) and the discretised logistic mixture likelihood and sampler stay
    float32, the head's output is cast to float32 before them.
  * Glow (glow.nn.CouplingNetwork): the coupling networks only; the bijection itself (actnorm,
    1x1 convolutions and their log-determinants, coupling arithmetic, priors, the objective) is
    float32.
  * BigGAN (Generator, Discriminator): both networks; batch-norm statistics (cross-replica too),
    spectral norm's power iteration, the orthogonal regulariser and the hinge losses float32.
fp16 adds dynamic loss scaling (LossScale): the loss is multiplied by the scale before the
gradients are taken and the gradients divided by it; a step whose gradients are not finite is
skipped and the scale halved, and after GROWTH_INTERVAL finite steps in a row it doubles. bf16
has float32's exponent range and needs none.
"""
import sys

import tensorflow as tf

from trainer.argtypes import PRECISIONS

POLICIES = dict(zip(PRECISIONS, (tf.float32, tf.bfloat16, tf.float16)))
DEFAULT_POLICY = PRECISIONS[0]
INITIAL_SCALE = 2.0 ** 15
GROWTH_INTERVAL = 2000  # finite steps in a row before the scale doubles
MIN_SCALE = 1.0  # below this the gradients overflow at any scale: the run has diverged


class PrecisionError(Exception):
    """The policy cannot run on these devices. The message is one line."""


def compute_dtype(policy):
    return POLICIES[policy]


def low_precision_modules(model):
    """The model and its submodules that have a compute dtype of their own."""
    return [module for module in (model, *model.submodules)
            if isinstance(getattr(type(module), "compute_dtype", None), tf.DType)]


def apply(model, policy):
    """Make `model` compute in the policy's dtype (see the module doc); returns the model."""
    dtype = compute_dtype(policy)
    for module in low_precision_modules(model):
        module.compute_dtype = dtype
    return model


def check_devices(policy, gpus=None):
    """Refuse bf16 on GPUs without it (compute capability below 8.0) with one line; warn in one
    line that CPUs have no fast fp16 path."""
    gpus = tf.config.list_physical_devices("GPU") if gpus is None else gpus
    if policy == "bf16":
        for gpu in gpus:
            capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
            if capability and tuple(capability) < (8, 0):
                raise PrecisionError(
                    f"--precision bf16: {gpu.name} has compute capability "
                    f"{capability[0]}.{capability[1]}, bfloat16 needs 8.0 (Ampere) or newer; "
                    f"use --precision fp16")
    if policy == "fp16" and not gpus:
        print("warning: --precision fp16 on a CPU: CPUs have no fast float16 path (use bf16 on "
              "CPUs with AVX512-BF16/AMX, or fp32)", file=sys.stderr)


class LossScale(tf.Module):
    """fp16's dynamic loss scale: `scale` and the count of finite steps since it last changed.
    Every run checkpoints it (unused outside fp16), so checkpoints of every policy have the same
    contents and resume under any policy."""

    def __init__(self, name="loss_scale"):
        super().__init__(name=name)
        self.enabled = False  # set by the trainer for fp16, before the first step is traced
        with self.name_scope:
            self.scale = tf.Variable(INITIAL_SCALE, trainable=False, name="scale")
            self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="good_steps")

    def scaled(self, loss):
        """The loss to differentiate (replica context)."""
        return loss * self.scale if self.enabled else loss

    def unscaled(self, grads):
        """(gradients of the scaled loss divided by the scale, the count of their non-finite
        values) in replica context; the count is summed over replicas with the losses."""
        if not self.enabled:
            return grads, tf.constant(0.0)
        grads = [grad / self.scale for grad in grads]
        nonfinite = tf.add_n([tf.reduce_sum(tf.cast(~tf.math.is_finite(grad), tf.float32))
                              for grad in grads])
        return grads, nonfinite

    def apply_if_finite(self, nonfinite, apply, iterations):
        """Run `apply()` (the optimizer step and what follows it) unless some gradient was not
        finite; a skipped step still advances `iterations`, so step seeds and the learning
        rate move on as usual. Then update the scale. Cross-replica context."""
        if not self.enabled:
            apply()
            return

        def skip():
            iterations.assign_add(1)  # no return value: both branches return None

        finite = tf.equal(nonfinite, 0.0)
        tf.cond(finite, apply, skip)
        grow = tf.logical_and(finite, self.good_steps + 1 >= GROWTH_INTERVAL)
        self.scale.assign(tf.where(finite, tf.where(grow, self.scale * 2.0, self.scale),
                                   self.scale * 0.5))
        self.good_steps.assign(tf.where(finite & ~grow, self.good_steps + 1,
                                        tf.constant(0, tf.int64)))

    def collapsed(self):
        return self.enabled and float(self.scale.numpy()) < MIN_SCALE
