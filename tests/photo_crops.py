"""Real-photo image fixtures: square crops of photographs bundled in the scikit-image wheel."""
import functools

import numpy as np
from skimage import data as skimage_data


@functools.lru_cache(maxsize=None)
def photos():
    return (skimage_data.astronaut(), skimage_data.chelsea(), skimage_data.coffee())


def photo_crops(count, side, seed=0):
    """`count` uint8 [side, side, 3] crops at random places of real photos, cycling over them."""
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(count):
        photo = photos()[i % len(photos())]
        top = rng.integers(0, photo.shape[0] - side + 1)
        left = rng.integers(0, photo.shape[1] - side + 1)
        crops.append(photo[top:top + side, left:left + side])
    return np.stack(crops).astype(np.uint8)
