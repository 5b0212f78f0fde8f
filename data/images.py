"""Decoding image files and making them square, for the sources that read folders of images."""
import numpy as np
from PIL import Image

from data.base import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def read_image(path, mode="RGB"):
    """The image at `path` as uint8 [H, W, C]: C = 3 for mode "RGB", 1 for mode "L"."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert(mode))
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise DataError(f"{path}: cannot decode image ({error}); replace or remove the file") \
            from None
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def resize_square(image, size):
    """Centre-crop uint8 [H, W, C] to a square and resize it to [size, size, C].

    Shrinking by a whole factor averages each factor x factor block exactly (PIL's `reduce`,
    rounded half up), the area downsampling of small ImageNet; other shrinking uses PIL's BOX
    filter (area weights, applied per axis) and enlarging bicubic interpolation.
    """
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(square)
    channels = square.shape[2]
    picture = Image.fromarray(square[:, :, 0] if channels == 1 else square)
    if side % size == 0:
        picture = picture.reduce(side // size)
    else:
        picture = picture.resize((size, size), Image.BOX if side > size else Image.BICUBIC)
    return np.asarray(picture).reshape(size, size, channels)


def square_rgb(path, size):
    """The image file at `path` as RGB, centre-cropped and resized to uint8 [size, size, 3]."""
    return resize_square(read_image(path, mode="RGB"), size)
