"""Image grids and raw sample files, written atomically (a killed run never leaves half a file)."""
import io
import math
import os

import numpy as np
from PIL import Image


def image_grid(images):
    """uint8 images [N, H, W, C] tiled row by row, ceil(sqrt(N)) per row, into one uint8 image
    [rows*H, cols*W, C]; unused cells stay black."""
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images [N, H, W, C], got {images.dtype} {images.shape}")
    count, height, width, channels = images.shape
    columns = max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / columns))
    grid = np.zeros([rows * height, columns * width, channels], np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid[row * height:(row + 1) * height, column * width:(column + 1) * width] = image
    return grid


def write_atomic(path, payload):
    """Write bytes to `path` through a temporary file, so no reader ever sees half a file."""
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "wb") as file:
        file.write(payload)
    os.replace(temporary, path)


def save_png(path, image):
    """One uint8 image [H, W, C] (C = 1 or 3) as a PNG."""
    image = np.asarray(image)
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    write_atomic(path, buffer.getvalue())


def save_npz(path, images):
    """Raw uint8 images [N, H, W, C] under the key `arr_0` (np.savez's default, as the original)."""
    buffer = io.BytesIO()
    np.savez(buffer, np.asarray(images, np.uint8))
    write_atomic(path, buffer.getvalue())


def save_samples(prefix, images):
    """`<prefix>.png` (the grid) and `<prefix>.npz` (the raw images); returns the grid."""
    grid = image_grid(images)
    save_png(prefix + ".png", grid)
    save_npz(prefix + ".npz", images)
    return grid
