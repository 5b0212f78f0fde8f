"""Decoding image files and making them square, for the sources that read folders of images."""
import sys

import numpy as np
from PIL import Image

from data.base import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
# PIL's modes for one channel of more than 8 bits (16-bit greyscale PNGs open as "I;16"; "I" is
# 32-bit). PIL's own convert() clips these to 255 instead of scaling them.
WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def eight_bit(values):
    """16-bit values (0..65535) as uint8: their high byte, v >> 8, as PIL reduces 16-bit RGB
    PNGs, so grey and colour files lose the same low bits; v = 257 * k (an 8-bit value
    widened) gives back k."""
    return (values.astype(np.int64) >> 8).astype(np.uint8)


def _wide_grey_as_eight_bit(image, path):
    values = np.asarray(image)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise DataError(f"{path}: greyscale values {values.min()}..{values.max()} do not fit in "
                        f"16 bits; save the image with 8 or 16 bits per channel")
    return Image.fromarray(eight_bit(values), "L")


def read_image(path, mode="RGB"):
    """The image at `path` as uint8 [H, W, C]: C = 3 for mode "RGB", 1 for mode "L".

    16-bit greyscale is scaled to 8 bits by `eight_bit`; PIL itself reduces 16-bit RGB PNGs
    the same way."""
    try:
        with Image.open(path) as image:
            if image.mode in WIDE_GREY_MODES:
                image = _wide_grey_as_eight_bit(image, path)
            pixels = np.asarray(image.convert(mode))
    except DECODE_ERRORS as error:
        raise DataError(f"{path}: cannot decode image ({error}); replace or remove the file") \
            from None
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def source_size(path):
    """(width, height) of the image file at `path`, from its header alone."""
    try:
        with Image.open(path) as image:
            return image.size
    except DECODE_ERRORS as error:
        raise DataError(f"{path}: cannot decode image ({error}); replace or remove the file") \
            from None


def say_enlarged(description, paths, size):
    """One line on stderr when images among `paths` are smaller than size x size (after the
    centre crop) and so are enlarged; reads only the files' headers."""
    sizes = {path: source_size(path) for path in paths}
    small = [path for path, (width, height) in sizes.items() if min(width, height) < size]
    if small:
        smallest = min(small, key=lambda path: min(sizes[path]))
        width, height = sizes[smallest]
        print(f"{description}: {len(small)} of {len(paths)} images are smaller than "
              f"{size}x{size} and are enlarged (bicubic); the smallest is {smallest} at "
              f"{width}x{height}", file=sys.stderr, flush=True)


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
