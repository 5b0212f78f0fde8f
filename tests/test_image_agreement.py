"""image_agreement accepts rare +-1 rounding flips and rejects every other difference."""
import numpy as np
import pytest

from image_agreement import assert_images_agree, assert_samples_agree, to_uint8


def images(count=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, 8, 8, 3)).astype(np.uint8)


def changed(images, changes):
    """A copy of uint8 images with (index, delta) changes applied."""
    out = images.astype(np.int16)
    for index, delta in changes:
        out[index] += delta
    return np.clip(out, 0, 255).astype(np.uint8)


def test_to_uint8_rounds_like_the_samplers():
    floats = np.array([-1.0, -1.5, 1.0, 1.2, 0.0, 3.6 / 127.5 - 1, 3.4 / 127.5 - 1], np.float32)
    np.testing.assert_array_equal(to_uint8(floats), [0, 0, 255, 255, 128, 4, 3])
    same = images()
    assert to_uint8(same) is same


def test_images_agree_allows_only_rare_single_flips():
    a = images()
    assert_images_agree(a, a.copy(), max_flip_fraction=0.0)
    flipped = changed(a, [((0, 1, 2, 0), 1), ((3, 7, 7, 2), -1)])
    assert_images_agree(flipped, a, max_flip_fraction=2 / a.size)
    with pytest.raises(AssertionError, match="more than"):
        assert_images_agree(flipped, a, max_flip_fraction=1 / a.size)
    with pytest.raises(AssertionError, match="by up to 2"):
        assert_images_agree(changed(a, [((1, 0, 0, 0), 2)]), a, max_flip_fraction=0.5)
    with pytest.raises(AssertionError, match="shapes"):
        assert_images_agree(a[:3], a, max_flip_fraction=0.5)


def test_images_agree_compares_floats_after_rounding():
    a = images().astype(np.float32) / 127.5 - 1.0
    assert_images_agree(a + 1e-6, a, max_flip_fraction=0.0)
    with pytest.raises(AssertionError):
        assert_images_agree(a + 2.0 / 127.5, a, max_flip_fraction=0.5)


def test_samples_agree_checks_each_images_first_difference():
    a = images()
    # image 0: a flip, then a subpixel further on differs by more (a diverged draw): allowed
    diverged = changed(a, [((0, 2, 3, 1), 1), ((0, 5, 0, 0), 40)])
    assert_samples_agree(diverged, a, max_flip_fraction=0.01, max_diverged_fraction=0.25)
    # the first difference (raster order, then channel) is not a flip
    with pytest.raises(AssertionError, match="first differs at subpixel"):
        assert_samples_agree(changed(a, [((2, 2, 3, 0), 3), ((2, 2, 3, 1), 1)]), a,
                             max_flip_fraction=0.01, max_diverged_fraction=1.0)
    # too many images differ, each by a single flip
    spread = changed(a, [((k, 4, 4, 0), 1) for k in range(2)])
    with pytest.raises(AssertionError, match=r"images \[0, 1\] of 4 differ"):
        assert_samples_agree(spread, a, max_flip_fraction=0.01, max_diverged_fraction=0.25)
    # too many subpixels differ in all
    with pytest.raises(AssertionError, match="more than"):
        assert_samples_agree(diverged, a, max_flip_fraction=1 / a.size, max_diverged_fraction=1.0)


def test_samples_agree_checks_floats_before_the_first_difference():
    a = images(2).astype(np.float32) / 127.5 - 1.0
    drift = a.copy()
    drift[1, 0, 0, 0] += 1e-3  # far from a rounding edge: the 8-bit values stay equal
    assert_samples_agree(drift, a, max_flip_fraction=0.0, max_diverged_fraction=0.0,
                         float_atol=2e-3)
    with pytest.raises(AssertionError, match="image 1 floats differ"):
        assert_samples_agree(drift, a, max_flip_fraction=0.0, max_diverged_fraction=0.0,
                             float_atol=1e-4)
    # after an image's first 8-bit difference its floats may differ
    diverged = a.copy()
    diverged[0, 0, 0, 0] += 0.6 / 127.5  # the first subpixel flips (its value was on a bin centre)
    diverged[0, 3] += 0.3
    assert_samples_agree(diverged, a, max_flip_fraction=0.5, max_diverged_fraction=0.5,
                         float_atol=1e-4)
