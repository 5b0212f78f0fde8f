"""Hub-style SavedModel export of any trained model (`sample.py --export DIR`).

Every export has TF-Hub BigGAN's calling convention (deepmind/biggan-*: named inputs z, y,
truncation; NHWC images in [-1, 1]) and loads with plain TensorFlow, none of this code needed:

    m = tf.saved_model.load(DIR)                        # or tensorflow_hub.load(DIR)
    images = m(dict(z=z, y=y, truncation=0.5))          # float32 [B, H, W, C] in [-1, 1]
    m.signatures["serving_default"](z=z, y=y, truncation=t)["default"]   # the same, as a signature
    print(m.description.numpy().decode())               # what z, y and truncation mean here

y is float one-hot [B, K] (K = the number of classes; [B, 0] for an unconditional model, where it
only carries the batch size). The weights are the averaged ones sample.py uses (EMA / Polyak),
baked into the SavedModel. What z and truncation are, per family:

* BigGAN: z [B, dim_z] = truncation * TN(-2, 2), scaled by the CALLER (the Hub convention);
  truncation (in [0, 1]) selects the batch-norm statistics. Standing statistics are accumulated
  at `--truncation_grid` truncations evenly spaced in [0, 1] (with sample.py's
  --num_standing_accumulations and --standing_seed) and linearly interpolated between grid points,
  as the Hub graph does with its 51; at a grid point the export equals sample.py exactly.
  Soft (interpolated) y is allowed.
* Glow: z [B, D] is the flat unit latent (every level's eps, in Glow.flatten's order) and the
  graph multiplies it by truncation, the temperature: eps = truncation * z, as Glow.sample.
  y must be one-hot (Glow conditions on class indices).
* PixelCNN++: there is no latent vector; z is the int32 [2] stateless seed of the sampler's
  per-pixel noise (sample.py --seed S is z = [S, 0]), and the batch size is fixed at export time
  (sample.py --n, y [n, K]). The cached fast sampler (fast_generation) draws the images, which
  equal sample.py's for the same seed. PixelCNN++ has no truncation: the input exists only for
  the common calling convention and must be 1.0 (checked).
"""
import os

import numpy as np
import tensorflow as tf

from biggan.layers import RUNNING
from biggan.model import STANDING_BATCH
from data.progress import progress
from fast_generation import sample_fast
from trainer import files


class ExportError(Exception):
    """The export cannot be written. The message is one line."""


def interpolate_table(table, truncation):
    """Row-wise linear interpolation of table [S, C] (rows for truncations k/(S-1)) at a
    truncation in [0, 1]; exactly row k at a grid point."""
    last = table.shape[0] - 1
    position = truncation * last
    lower = tf.minimum(tf.floor(position), last - 1)
    fraction = position - lower
    lower = tf.cast(lower, tf.int32)
    return table[lower] * (1.0 - fraction) + table[lower + 1] * fraction


class SamplingWeights:
    """What the exported generator reads (the `ema` argument of its layers): the EMA weights, and
    for every batch norm's running statistics the standing ones interpolated at the truncation."""

    def __init__(self, ema, statistics):
        self.ema, self.statistics = ema, statistics

    def average(self, variable):
        if variable.ref() in self.statistics:
            return self.statistics[variable.ref()]
        return self.ema.average(variable)


class HubModule(tf.Module):
    """The calling convention shared by every family: __call__(dict(z, y, truncation)) and the
    `serving_default` signature; subclasses define generate(z, y, truncation)."""

    def __init__(self, description, z_spec, num_classes, batch_size=None):
        super().__init__(name="hub_module")
        self.description = tf.Variable(description, trainable=False, name="description")
        specs = {"z": z_spec, "y": tf.TensorSpec([batch_size, num_classes], tf.float32, "y"),
                 "truncation": tf.TensorSpec([], tf.float32, "truncation")}
        self.__call__ = tf.function(lambda inputs: self.generate(**inputs),
                                    input_signature=[specs])
        self.serve = tf.function(lambda z, y, truncation: {"default": self.generate(z, y,
                                                                                    truncation)},
                                 input_signature=[specs["z"], specs["y"], specs["truncation"]])


class BigGANModule(HubModule):
    def __init__(self, model, ema, truncation_grid, num_standing_accumulations, standing_seed):
        config = model.config
        super().__init__(
            f"BigGAN {config.resolution}x{config.resolution}, {config.num_classes} classes. "
            f"z: [B, {config.dim_z}] = truncation * TN(-2, 2) (scaled by the caller); y: one-hot "
            f"or soft [B, {config.num_classes}]; truncation in [0, 1] selects standing batch-norm "
            f"statistics, stored at {truncation_grid} truncations evenly spaced in [0, 1] and "
            f"linearly interpolated. Returns images [B, H, W, C] in [-1, 1].",
            tf.TensorSpec([None, config.dim_z], tf.float32, "z"), config.num_classes)
        self.generator, self.ema = model.G, ema
        self.batch_norms = model.G.batch_norms()
        tables = []  # per truncation, per batch norm: (mean, var)
        for k in progress(range(truncation_grid), desc="standing statistics",
                          unit="truncations"):
            model.accumulate_standing_stats(k / (truncation_grid - 1), num_standing_accumulations,
                                            STANDING_BATCH, standing_seed, ema)
            tables.append([(bn.standing_mean.numpy(), bn.standing_var.numpy())
                           for bn in self.batch_norms])
        self.mean_tables = [tf.Variable(np.stack([t[i][0] for t in tables]), trainable=False)
                            for i in range(len(self.batch_norms))]
        self.var_tables = [tf.Variable(np.stack([t[i][1] for t in tables]), trainable=False)
                           for i in range(len(self.batch_norms))]

    def generate(self, z, y, truncation):
        check = tf.debugging.assert_equal(
            tf.logical_and(truncation >= 0.0, truncation <= 1.0), True,
            message="truncation must lie in [0, 1]")
        with tf.control_dependencies([check]):
            statistics = {}
            for bn, means, variances in zip(self.batch_norms, self.mean_tables, self.var_tables):
                statistics[bn.running_mean.ref()] = interpolate_table(means, truncation)
                statistics[bn.running_var.ref()] = interpolate_table(variances, truncation)
            return self.generator.forward(z, y, RUNNING, SamplingWeights(self.ema, statistics))


class GlowModule(HubModule):
    def __init__(self, model, ema):
        config = model.config
        self.num_classes = config.num_classes if config.ycond else 0
        dims = sum(int(np.prod(shape)) for shape in model.eps_shapes)
        height, width, _ = config.image_shape
        super().__init__(
            f"Glow {height}x{width}, {self.num_classes} classes. z: [B, {dims}] the flat unit "
            f"latent of every level (Glow.flatten order); truncation: the temperature, eps = "
            f"truncation * z; y: one-hot [B, {self.num_classes}] (class indices by argmax). "
            f"Returns images [B, H, W, C] in [-1, 1] (the {config.n_bits_x}-bit decoded image).",
            tf.TensorSpec([None, dims], tf.float32, "z"), self.num_classes)
        self.glow, self.ema = model, ema

    def generate(self, z, y, truncation):
        labels = tf.argmax(y, axis=1, output_type=tf.int32) if self.num_classes else None
        images = self.glow.decode(self.glow.unflatten(z * truncation), labels, self.ema)
        return tf.cast(images, tf.float32) / 127.5 - 1.0


class PixelCNNModule(HubModule):
    def __init__(self, model, ema, batch_size):
        config = model.config
        height, width, _ = config.image_shape
        super().__init__(
            f"PixelCNN++ {height}x{width}, {config.num_classes} classes, batch size {batch_size}. "
            f"z: int32 [2], the stateless seed of the per-pixel sampling noise (sample.py --seed "
            f"S is [S, 0]); y: one-hot [{batch_size}, {config.num_classes}]; truncation: unused "
            f"(PixelCNN++ has none), must be 1.0. Returns fast-sampler images [B, H, W, C] in "
            f"[-1, 1].", tf.TensorSpec([2], tf.int32, "z"), config.num_classes, batch_size)
        self.pixelcnn, self.ema, self.batch_size = model, ema, batch_size

    def generate(self, z, y, truncation):
        check = tf.debugging.assert_equal(truncation, 1.0, message=(
            "PixelCNN++ has no truncation; pass truncation=1.0"))
        with tf.control_dependencies([check]):
            h = y if self.pixelcnn.config.num_classes else None
            return sample_fast(self.pixelcnn, self.batch_size, z, h=h, ema=self.ema)


def export(module, directory):
    """Write a HubModule (a family's export_module) as a SavedModel to `directory`, which must
    not exist yet (the files are written beside it and moved in place at the end)."""
    if os.path.exists(directory):
        raise ExportError(f"--export {directory}: already exists; remove it or choose another "
                          f"directory")
    with files.replaced(directory) as temporary:
        tf.saved_model.save(module, temporary, signatures={"serving_default": module.serve})
    return directory
