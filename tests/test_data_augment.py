"""openai/glow's --dal augmentation (data/augment.py) against an independent float64 NumPy/SciPy
rendering of what Keras's ImageDataGenerator did with the same random draws."""
import numpy as np
import pytest
import scipy.ndimage as ndimage
import tensorflow as tf

from data import augment

H, W = 32, 32


def images(count, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, H, W, 3), dtype=np.uint8)


def seeds(count, step=7):
    return tf.constant([[step, 1000 + i] for i in range(count)], tf.int32)


def keras_style(image, u, level):
    """Keras 2.1's random_transform for one image, from the U(0, 1) draws u[0..6]."""
    tx, ty = (2 * u[1] - 1) * 0.1 * H, (2 * u[2] - 1) * 0.1 * W
    M = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], np.float64)
    if level == 2:
        theta, shear = np.deg2rad((2 * u[0] - 1) * 15), np.deg2rad((2 * u[3] - 1) * 0.02)
        zx, zy = 1 + (2 * u[4] - 1) * 0.1, 1 + (2 * u[5] - 1) * 0.1
        rotation = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0],
                             [0, 0, 1]])
        shearing = np.array([[1, -np.sin(shear), 0], [0, np.cos(shear), 0], [0, 0, 1]])
        M = rotation @ M @ shearing @ np.diag([zx, zy, 1])
    o_x, o_y = H / 2 + 0.5, W / 2 + 0.5
    M = (np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]]) @ M
         @ np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]]))
    out = np.stack([ndimage.affine_transform(image[..., c], M[:2, :2], M[:2, 2], order=0, mode="nearest")
                    for c in range(image.shape[-1])], axis=-1)
    if level == 2 and u[6] < 0.5:
        out = out[:, ::-1]
    return out


@pytest.mark.parametrize("level", [1, 2])
def test_augmentation_matches_keras_image_data_generator(level):
    x, s = images(24), seeds(24)
    ours = augment.augment(tf.constant(x), s, level).numpy()
    assert ours.dtype == np.uint8
    for i in range(len(x)):
        u = tf.random.stateless_uniform([7], s[i]).numpy().astype(np.float64)
        expected = keras_style(x[i], u, level)
        # float32 against float64 coordinates can round differently exactly at half-pixels
        assert np.mean(ours[i] != expected) < 0.01, i
    flipped = sum(tf.random.stateless_uniform([7], s[i]).numpy()[6] < 0.5 for i in range(len(x)))
    assert 0 < flipped < len(x)  # the flip branch is exercised both ways


def test_level_one_is_an_integer_shift_of_at_most_ten_percent_with_edge_replication():
    x, s = images(64), seeds(64)
    ours = augment.augment(tf.constant(x), s, 1).numpy()
    shifts = []
    for i in range(len(x)):
        def shifted(dr, dc):  # output (r, c) = input (r + dr, c + dc), clamped to the edges
            return x[i][np.clip(np.arange(H) + dr, 0, H - 1)][:, np.clip(np.arange(W) + dc, 0, W - 1)]

        found = [(dr, dc) for dr in range(-3, 4) for dc in range(-3, 4)
                 if np.array_equal(ours[i], shifted(dr, dc))]
        assert len(found) == 1, i
        shifts.append(found[0])
    shifts = np.array(shifts)
    assert len(set(shifts[:, 0])) >= 5 and len(set(shifts[:, 1])) >= 5  # the whole range is used


def test_level_zero_is_the_identity_and_an_image_depends_only_on_its_seed():
    x, s = images(6), seeds(6)
    np.testing.assert_array_equal(augment.augment(tf.constant(x), s, 0), x)
    whole = augment.augment(tf.constant(x), s, 2).numpy()
    alone = augment.augment(tf.constant(x[3:4]), s[3:4], 2).numpy()
    np.testing.assert_array_equal(whole[3], alone[0])
    other_step = augment.augment(tf.constant(x), seeds(6, step=8), 2).numpy()
    assert not np.array_equal(whole, other_step)
    with pytest.raises(ValueError, match="augmentation level"):
        augment.augment(tf.constant(x), s, 3)
