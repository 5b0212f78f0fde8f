"""Model families the trainer can train: one adapter module per family, registered by name.

An adapter module gives the trainer everything model-specific, as plain module-level names:

    NAME                                   the --model value
    defaults(data_set) -> dict             values for the flags left at None (one table per family)
    add_arguments(parser)                  the family's own flags
    model_config(args, info) -> dict       validated, JSON-serialisable model configuration
                                           (ValueError with a one-line message when impossible)
    build(config) -> tf.Module             every variable created
    initialize(model, images, labels, seed)          data-dependent init on uint8 images
    nats(model, images, labels, training, ema, seed, step_seed)
                                           per-image negative log-likelihood [B] (nats); when
                                           training, `seed` is the replica's own noise seed and
                                           `step_seed` the step's, equal on every replica
    bits_per_dim(nats, image_shape)        the family's nats -> bits/dim conversion
    make_optimizer(args, variables, steps_per_epoch) an optimizer from trainer.optim
    ema_decay(args, steps_per_epoch)       Polyak decay
    SAMPLERS = {name: fn(model, num_images, seed, labels=None, ema=None) -> uint8 [N, H, W, C]}
                                           (seed: a pair of ints; labels: int [N] or None)
    DEFAULT_SAMPLER                        the SAMPLERS key train.py and sample.py use by default

The loop (trainer.loop) is written for likelihood models (PixelCNN++, Glow); a family whose
training step is not "minimise one per-image loss" (a GAN) brings its own step on top of the
same devices, checkpoints, EMA and logging.
"""
from trainer.families import biggan, glow, pixelcnn

FAMILIES = {module.NAME: module for module in (pixelcnn, glow, biggan)}
DEFAULT_FAMILY = pixelcnn.NAME


def names():
    return sorted(FAMILIES)


def get(name):
    if name not in FAMILIES:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(names())}")
    return FAMILIES[name]
