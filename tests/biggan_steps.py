"""BigGAN's training step outside train.py: the model, optimizers, EMA and replicas that
trainer.loop.Trainer builds for --model biggan, for tests that drive the step directly."""
import tensorflow as tf

from biggan import model as bg
from trainer import dist, families, precision
from trainer.ema import ExponentialMovingAverage

FAMILY = families.get("biggan")


class BigGANRun:
    """A BigGAN, its G and D Adams, EMA of G and (unused, fp32) loss scale on `strategy` (default:
    train.py's one-device MirroredStrategy), and
    `step(images, labels, seed)`: BigGANFamily.train_step on a global batch of `global_batch`."""

    def __init__(self, config, global_batch, strategy=None):
        self.strategy = strategy or dist.mirrored_strategy(1)[0]
        with self.strategy.scope():
            self.model = bg.BigGAN(config)
            self.optimizers = FAMILY.make_optimizers(None, self.model, None)
            self.ema = ExponentialMovingAverage(FAMILY.averaged_variables(self.model),
                                                config.ema_decay, name="G_ema")
            self.loss_scale = precision.LossScale()
        self.replicas = dist.Replicas(self.strategy,
                                      global_batch // self.strategy.num_replicas_in_sync)

        def step(images, labels, seed):
            with self.strategy.scope():
                return FAMILY.train_step(self, images, labels, seed)
        self.step = tf.function(step, autograph=False)

    @property
    def variables(self):
        """Every piece of training state: G, D, both Adams' moments and counters, the EMA."""
        return (list(self.model.variables) + [v for name in sorted(self.optimizers)
                                              for v in self.optimizers[name].variables]
                + list(self.ema.variables))
