"""Polyak averaging: an exponential moving average of every trainable variable.

openai/pixel-cnn evaluates and samples with these averages (decay 0.9995) while training the raw
weights. The trainer builds the average AFTER the data-dependent initialisation, so the shadows
start from the initialised weights; the original started them from the pre-init values, which
inflated its early test bits/dim.
"""
import tensorflow as tf

from trainer.dist import assign_on_every_device


def ema_step(shadow, value, decay):
    """The new average: shadow - (1 - decay) * (shadow - value) = decay*shadow + (1-decay)*value."""
    return shadow - (1.0 - decay) * (shadow - value)


class ExponentialMovingAverage(tf.Module):
    """Shadow copies of `variables`, created from their current values.

    `apply()` moves every shadow one step toward its variable; `average(variable)` returns the
    shadow, which is what a model reads when called with `ema=`. Inside a tf.distribute strategy
    the shadows are mirrored like the variables and `apply()` (cross-replica context) assigns the
    same new value to every device's copy.
    """

    def __init__(self, variables, decay, name="ema"):
        super().__init__(name=name)
        self.decay = float(decay)
        # References, not variables: the shadows' checkpoint must not hold the model a second time.
        self._averaged = [variable.ref() for variable in variables]
        with self.name_scope:
            self.shadows = [tf.Variable(variable.read_value(), trainable=False,
                                        name=variable.name.split(":")[0].replace("/", "_"))
                            for variable in variables]

    def average(self, variable):
        """The shadow variable of `variable` (KeyError if it is not averaged)."""
        try:
            return self.shadows[self._averaged.index(variable.ref())]
        except ValueError:
            raise KeyError(f"variable {variable.name} has no moving average") from None

    def apply(self):
        """One averaging step for every shadow."""
        for reference, shadow in zip(self._averaged, self.shadows):
            assign_on_every_device(shadow, ema_step(tf.convert_to_tensor(shadow),
                                                    tf.convert_to_tensor(reference.deref()),
                                                    self.decay))

    def copy_variables(self):
        """Set every shadow to its variable's current value (an average with decay 0)."""
        for reference, shadow in zip(self._averaged, self.shadows):
            assign_on_every_device(shadow, tf.convert_to_tensor(reference.deref()))
