"""openai/glow's training-data augmentation (`--dal`), as Keras's ImageDataGenerator applied it
there (data_loaders/get_mnist_cifar.py):

  level 0  none
  level 1  random shifts of up to 10% of the height and the width
  level 2  level 1 plus a random rotation of up to 15 degrees, zoom of up to 10% on each axis
           independently, shear of up to 0.02 degrees, and a horizontal flip half of the time
           (openai/glow offered it for CIFAR-10 only)

Each image gets one affine map, composed as Keras composed it: rotation, shift, shear, zoom,
about the centre (Keras's centre is size/2 + 0.5). The image is resampled with nearest-neighbour
sampling and edge replication outside the image (the Keras of 2018: `order=0`,
fill_mode='nearest'), so augmented pixels are pixels of the original image, and the flip comes
last. Randomness is stateless, one seed per image, so an image's augmentation depends on its
seed alone, not on the batch it is in.
"""
import numpy as np
import tensorflow as tf

LEVELS = (0, 1, 2)
SHIFT_FRACTION = 0.1
ROTATION_DEGREES = 15.0
ZOOM_FRACTION = 0.1
SHEAR_DEGREES = 0.02
# The uniform draws each image uses, in this order.
ROTATION, ROW_SHIFT, COLUMN_SHIFT, SHEAR, ROW_ZOOM, COLUMN_ZOOM, FLIP = range(7)


def _symmetric(u, bound):
    """U(0, 1) draws -> U(-bound, bound)."""
    return (2.0 * u - 1.0) * bound


def affine_matrices(draws, level, height, width):
    """[B, 3, 3] maps from an output pixel's (row, column, 1) to the input position it samples,
    from U(0, 1) draws [B, 7] (columns as ROTATION ... FLIP)."""
    draws = tf.convert_to_tensor(draws, tf.float32)
    zeros, ones = tf.zeros_like(draws[:, 0]), tf.ones_like(draws[:, 0])

    def matrix(rows):
        return tf.stack([tf.stack(row, axis=-1) for row in rows], axis=-2)

    row_shift = _symmetric(draws[:, ROW_SHIFT], SHIFT_FRACTION) * height
    column_shift = _symmetric(draws[:, COLUMN_SHIFT], SHIFT_FRACTION) * width
    transform = matrix([[ones, zeros, row_shift], [zeros, ones, column_shift], [zeros, zeros, ones]])
    if level >= 2:
        theta = _symmetric(draws[:, ROTATION], np.deg2rad(ROTATION_DEGREES))
        shear = _symmetric(draws[:, SHEAR], np.deg2rad(SHEAR_DEGREES))
        row_zoom = 1.0 + _symmetric(draws[:, ROW_ZOOM], ZOOM_FRACTION)
        column_zoom = 1.0 + _symmetric(draws[:, COLUMN_ZOOM], ZOOM_FRACTION)
        rotation = matrix([[tf.cos(theta), -tf.sin(theta), zeros],
                           [tf.sin(theta), tf.cos(theta), zeros], [zeros, zeros, ones]])
        shearing = matrix([[ones, -tf.sin(shear), zeros], [zeros, tf.cos(shear), zeros],
                           [zeros, zeros, ones]])
        zoom = matrix([[row_zoom, zeros, zeros], [zeros, column_zoom, zeros], [zeros, zeros, ones]])
        transform = rotation @ transform @ shearing @ zoom
    centre_row, centre_column = height / 2 + 0.5, width / 2 + 0.5
    to_centre = tf.constant([[1, 0, centre_row], [0, 1, centre_column], [0, 0, 1]], tf.float32)
    from_centre = tf.constant([[1, 0, -centre_row], [0, 1, -centre_column], [0, 0, 1]], tf.float32)
    return to_centre @ transform @ from_centre


def augment(images, seeds, level):
    """Augmented copies of images [B, H, W, C] (any dtype; values are only moved, never mixed),
    image i drawn from seeds[i] (int [B, 2])."""
    if level not in LEVELS:
        raise ValueError(f"augmentation level must be one of {LEVELS}, got {level}")
    if level == 0:
        return images
    height, width = images.shape[1], images.shape[2]
    draws = tf.map_fn(lambda seed: tf.random.stateless_uniform([7], seed), seeds,
                      fn_output_signature=tf.float32)
    A = affine_matrices(draws, level, height, width)
    # ImageProjectiveTransform maps an output (x = column, y = row) to the input (x', y').
    transforms = tf.stack([A[:, 1, 1], A[:, 1, 0], A[:, 1, 2], A[:, 0, 1], A[:, 0, 0], A[:, 0, 2],
                           tf.zeros_like(A[:, 0, 0]), tf.zeros_like(A[:, 0, 0])], axis=1)
    moved = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.constant([height, width]),
        fill_value=tf.constant(0.0), interpolation="NEAREST", fill_mode="NEAREST")
    if level >= 2:
        flip = draws[:, FLIP] < 0.5
        moved = tf.where(flip[:, None, None, None], tf.reverse(moved, axis=[2]), moved)
    return moved
