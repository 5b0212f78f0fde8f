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


def sheet(images):
    """uint8 [rows, columns, H, W, C] -> one uint8 image [rows*H, columns*W, C]."""
    rows, columns, height, width, channels = images.shape
    return images.transpose(0, 2, 1, 3, 4).reshape(rows * height, columns * width, channels)


def save_arrays(path, **arrays):
    """Named arrays as one .npz file."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def save_samples(prefix, images, key="arr_0", **extra):
    """`<prefix>.png` and `<prefix>.npz` of uint8 images [N, H, W, C] (a grid, ceil(sqrt(N)) per
    row) or [rows, columns, H, W, C] (a sheet with those rows); returns the PNG's image. The npz
    holds the raw images under `key` (np.savez's default name arr_0, as the original) and any
    `extra` arrays."""
    images = np.asarray(images, np.uint8)
    grid = sheet(images) if images.ndim == 5 else image_grid(images)
    save_png(prefix + ".png", grid)
    save_arrays(prefix + ".npz", **{key: images}, **extra)
    return grid
