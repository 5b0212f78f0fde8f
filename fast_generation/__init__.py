"""Fast PixelCNN++ generation (Ramachandran et al. 2017): the cached sampler.

`sample_fast(model, num_images, seed, h=None, ema=None, batch_size=None)` draws the images of
`pixel_cnn_pp.model.sample_naive` for the same seed (in float32: the same uint8 images up to rare
+-1 rounding flips), computing each layer only where a new pixel changes it. `teacher_forced_params(model, x, h=None, ema=None)` runs the cached layers over a given
image and returns the mixture parameters at every pixel (equal to model(x)); `fast_nn` holds the
cached layers, `sampler` the schedule and the loop.
"""
from fast_generation.sampler import CachedPixelCNN, sample_fast, teacher_forced_params

__all__ = ["CachedPixelCNN", "sample_fast", "teacher_forced_params"]
