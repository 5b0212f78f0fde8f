"""The pixel conventions every model family shares: 8-bit images as floats in [-1, 1] and back,
and a per-image negative log-likelihood in nats as bits per sub-pixel."""
import math

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
