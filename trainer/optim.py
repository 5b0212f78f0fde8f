"""Hand-written optimizers with checkpointable tf.Variable slots (no Keras), and learning-rate
schedules.

Adam is openai/pixel-cnn's `nn.adam_updates`; Adamax is openai/glow's default `optim.adamax`.
Both count steps from t = 1 and take gradients that are already summed over replicas. `apply`
runs in cross-replica context. Adam computes the update once and assigns it to every device's
copy; Adamax runs TF's fused kernel on every copy with that device's copy of the summed gradient.
Either way mirrored variables stay identical.
"""
import tensorflow as tf

from trainer.dist import assign_on_every_device, device_copies, per_device_values


def exponential_decay(base_learning_rate, decay):
    """openai/pixel-cnn's schedule: the rate is multiplied by `decay` before every step, so step
    t (t = 1, 2, ...) uses base_learning_rate * decay**t."""
    def learning_rate(step):
        return base_learning_rate * tf.pow(tf.cast(decay, tf.float32), tf.cast(step, tf.float32))
    return learning_rate


def adam_step(w, grad, m1, m2, learning_rate, t, beta1, beta2, epsilon):
    """Adam with bias correction and epsilon INSIDE the square root (openai/pixel-cnn):
    m1 <- b1 m1 + (1-b1) g;  m2 <- b2 m2 + (1-b2) g^2;
    w <- w - lr * (m1 / (1-b1^t)) / sqrt(m2 / (1-b2^t) + eps).   Returns the new (w, m1, m2)."""
    m1 = beta1 * m1 + (1.0 - beta1) * grad
    m2 = beta2 * m2 + (1.0 - beta2) * tf.square(grad)
    m1_hat = m1 / (1.0 - tf.pow(beta1, t))
    m2_hat = m2 / (1.0 - tf.pow(beta2, t))
    return w - learning_rate * m1_hat / tf.sqrt(m2_hat + epsilon), m1, m2


def adamax_step_size(learning_rate, t, beta1, beta2):
    """openai/glow's Adamax step size before TF's fused kernel divides by (1 - b1^t):
    alpha_t (1 - b1^t) = lr sqrt(1 - b2^t). Returns (that, b1^t)."""
    return learning_rate * tf.sqrt(1.0 - tf.pow(beta2, t)), tf.pow(beta1, t)


def adamax_update(w, grad, m1, m2, step_size, beta1_power, beta1, beta2, weight_decay):
    """openai/glow's Adamax (Adam's bias correction folded into the step size), in place on the
    plain (one device's) variables w, m1, m2:
    alpha_t = lr sqrt(1-b2^t) / (1-b1^t);  m1 <- b1 m1 + (1-b1) g;  m2 <- max(b2 m2, |g|);
    w <- weight_decay * w - alpha_t * m1 / (m2 + 1e-8)   (weight_decay multiplies; 1 = off).
    TF's fused ApplyAdaMax kernel does the moment updates and w -= lr' / (1-b1^t) m1 / (m2 + eps),
    so lr' = step_size (`adamax_step_size`) gives alpha_t exactly: one fused kernel per variable
    instead of a dozen elementwise ops (README, Benchmarks)."""
    if weight_decay != 1.0:
        w.assign(weight_decay * w)
    tf.raw_ops.ResourceApplyAdaMax(var=w.handle, m=m1.handle, v=m2.handle, grad=grad,
                                   beta1_power=beta1_power, lr=step_size, beta1=beta1,
                                   beta2=beta2, epsilon=1e-8)


class _MomentOptimizer(tf.Module):
    """Two moment slots per variable, a step counter, and a learning rate that is a float or a
    function of the step t. Subclasses give the per-step constants (`_step_constants`) and the
    per-variable rule (`_update`)."""

    def __init__(self, variables, learning_rate, name):
        super().__init__(name=name)
        self.learning_rate = learning_rate if callable(learning_rate) else (
            lambda step, rate=float(learning_rate): tf.constant(rate, tf.float32))
        # Steps taken so far; the next step is t = iterations + 1.
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        with self.name_scope:
            self.m1 = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="m1")
                       for v in variables]
            self.m2 = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="m2")
                       for v in variables]

    def apply(self, grads, variables):
        """One step on `variables` with `grads` (one per variable, summed over replicas)."""
        if len(grads) != len(self.m1) or len(variables) != len(self.m1):
            raise ValueError(f"optimizer built for {len(self.m1)} variables got {len(grads)} "
                             f"gradients for {len(variables)} variables")
        t = self.iterations + 1
        step_constants = self._step_constants(self.learning_rate(t), tf.cast(t, tf.float32))
        for variable, grad, m1, m2 in zip(variables, grads, self.m1, self.m2):
            self._update(variable, grad, m1, m2, *step_constants)
        assign_on_every_device(self.iterations, t)


class Adam(_MomentOptimizer):
    """openai/pixel-cnn's Adam: beta1 0.95, beta2 0.9995, epsilon 1e-8 inside the square root."""

    def __init__(self, variables, learning_rate, beta1=0.95, beta2=0.9995, epsilon=1e-8,
                 name="adam"):
        super().__init__(variables, learning_rate, name)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def _step_constants(self, learning_rate, t):
        return learning_rate, t

    def _update(self, variable, grad, m1, m2, learning_rate, t):
        new_values = adam_step(tf.convert_to_tensor(variable), tf.convert_to_tensor(grad),
                               tf.convert_to_tensor(m1),
                               tf.convert_to_tensor(m2), learning_rate, t, self.beta1, self.beta2,
                               self.epsilon)
        for target, value in zip((variable, m1, m2), new_values):
            assign_on_every_device(target, value)


def glow_beta2(train_iterations, polyak_epochs):
    """openai/glow's second-moment (and Polyak) decay: 1 - 1/(train_its * polyak_epochs)."""
    return 1.0 - 1.0 / (train_iterations * polyak_epochs)


class Adamax(_MomentOptimizer):
    """openai/glow's Adamax (its default optimizer); beta2 usually from `glow_beta2`."""

    def __init__(self, variables, learning_rate, beta2, beta1=0.9, weight_decay=1.0,
                 name="adamax"):
        super().__init__(variables, learning_rate, name)
        self.beta1, self.beta2, self.weight_decay = beta1, beta2, weight_decay

    def _step_constants(self, learning_rate, t):
        return adamax_step_size(learning_rate, t, self.beta1, self.beta2)

    def _update(self, variable, grad, m1, m2, step_size, beta1_power):
        # The fused kernel updates one device's copy in place, with that device's copy of the
        # replica-summed gradient (no cross-device read), so mirrored copies stay identical.
        for w, m1_copy, m2_copy, grad_copy in zip(device_copies(variable), device_copies(m1),
                                                  device_copies(m2),
                                                  per_device_values(variable, grad)):
            adamax_update(w, grad_copy, m1_copy, m2_copy, step_size, beta1_power, self.beta1,
                          self.beta2, self.weight_decay)
