"""What two different float computations of the same 8-bit images agree on, asserted exactly.

A cached network and the full one, a SavedModel graph and the eager or tf.function path, or
another split over devices compute the same function in another order (oneDNN picks its algorithm
by shapes, graph and threads), so their floats agree only to about 1e-6. An 8-bit value is
round((x + 1) * 127.5): where x lies within that distance of a rounding edge, it lands on either
side. So the uint8 images are equal except for rare subpixels off by exactly 1; a real divergence
(other weights, statistics, a wrong cache) moves many subpixels or moves them further.

Autoregressive samples (PixelCNN++) condition each subpixel on the earlier ones. Their first
difference in raster and channel order must be such a flip; later subpixels are drawn from
conditionals that may differ (a mixture component chosen by a near tie), so only their number is
bounded. Tests comparing the same computation with itself (a resume, a call repeated, a
checkpoint round-trip) assert bit-equality instead.
"""
import numpy as np


def to_uint8(images):
    """Float images in [-1, 1] -> uint8, as pixel_cnn_pp.model.to_uint8 and sample.py round."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return np.clip(np.round((images.astype(np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _differences(actual, expected, err_msg):
    actual, expected = to_uint8(actual), to_uint8(expected)
    assert actual.shape == expected.shape, f"{err_msg}: shapes {actual.shape} != {expected.shape}"
    return actual.astype(np.int16) - expected.astype(np.int16)


def _describe(difference):
    where = np.argwhere(difference)
    return (f"{len(where)} of {difference.size} subpixels differ, by up to "
            f"{np.abs(difference).max()}; first at {where[:5].tolist()}")


def assert_images_agree(actual, expected, max_flip_fraction, err_msg=""):
    """uint8 images (or floats in [-1, 1], rounded to them) are equal except at rounding flips:
    every differing subpixel is off by exactly 1, and at most max_flip_fraction of all differ."""
    difference = _differences(actual, expected, err_msg)
    if not difference.any():
        return
    assert np.abs(difference).max() == 1, f"{err_msg}: {_describe(difference)}"
    assert np.count_nonzero(difference) <= max_flip_fraction * difference.size, (
        f"{err_msg}: more than {max_flip_fraction:.2%} flipped: {_describe(difference)}")


def assert_samples_agree(actual, expected, max_flip_fraction, max_diverged_fraction,
                         float_atol=None, err_msg=""):
    """Autoregressive samples [N, H, W, C] (uint8, or floats in [-1, 1] rounded to uint8) agree:
    the first differing subpixel of each image (raster order, then channel) is off by exactly 1;
    at most max_diverged_fraction of the images differ at all, and at most max_flip_fraction of
    all subpixels. With float_atol (both float), the floats agree to float_atol at every subpixel
    before each image's first difference."""
    difference = _differences(actual, expected, err_msg)
    flat = difference.reshape(len(difference), -1)
    diverged = np.flatnonzero(flat.any(axis=1))
    for image in diverged:
        first = np.flatnonzero(flat[image])[0]
        assert abs(flat[image, first]) == 1, (
            f"{err_msg}: image {image} first differs at subpixel "
            f"{np.unravel_index(first, difference.shape[1:])} by {flat[image, first]}, not a "
            f"rounding flip; {_describe(difference)}")
    assert len(diverged) <= max_diverged_fraction * len(difference), (
        f"{err_msg}: images {diverged.tolist()} of {len(difference)} differ; "
        f"{_describe(difference)}")
    assert np.count_nonzero(flat) <= max_flip_fraction * flat.size, (
        f"{err_msg}: more than {max_flip_fraction:.2%} differ: {_describe(difference)}")
    if float_atol is not None:
        gap = np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64))
        gap = gap.reshape(flat.shape)
        for image in range(len(flat)):
            end = np.flatnonzero(flat[image])[0] if image in diverged else flat.shape[1]
            assert np.all(gap[image, :end] <= float_atol), (
                f"{err_msg}: image {image} floats differ by {gap[image, :end].max():.3g} > "
                f"{float_atol} before its first 8-bit difference")
