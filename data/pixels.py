"""The conventions every model family shares: 8-bit images as floats in [-1, 1] and back, a
per-image negative log-likelihood in nats as bits per sub-pixel, and stateless seeds."""
import math

import numpy as np
import tensorflow as tf


def to_model_input(images):
    """uint8 images -> float32 in [-1, 1]: (x - 127.5) / 127.5."""
    return (tf.cast(images, tf.float32) - 127.5) / 127.5


def to_uint8(x):
    """Float images in [-1, 1] -> uint8: round((x + 1) * 127.5), clipped to [0, 255]."""
    return tf.cast(tf.clip_by_value(tf.round((tf.cast(x, tf.float32) + 1.0) * 127.5), 0.0, 255.0),
                   tf.uint8)


def bits_per_dim(nats_per_image, image_shape):
    """Negative log-likelihood per image in nats -> bits per sub-pixel: nats / (H*W*C*ln 2)."""
    return nats_per_image / (math.prod(image_shape) * math.log(2.0))


def as_seed(seed):
    """An int32 [2] seed for TF's stateless random ops: an int s is [s mod 2^31, 0]; a pair of
    ints or an int tensor [2] is taken as it is."""
    if isinstance(seed, (int, np.integer)):
        return tf.constant([int(seed) % (2 ** 31), 0], tf.int32)
    return tf.cast(tf.convert_to_tensor(seed), tf.int32)
