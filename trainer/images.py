"""Sample sheets and raw sample files, written atomically (a killed run never leaves half a file).

One layout for every family's samples (train.py's per-save files and every sample.py output):

- `<prefix>.npz` holds `images`, uint8 [N, H, W, C], every image in sheet order (row by row), and
  `columns`, the images per sheet row (rows = ceil(N / columns)); beside them, per-image
  metadata a sheet has, each [N] in the same order: `labels` (int32 classes), `temperatures`,
  `truncations`, `alphas` (float32), and `latents` (float32 [N, D], Glow). The images are the
  raw samples: no padding, no scaling.
- `<prefix>.png` shows them: `columns` per row, 2 px gaps, each image scaled up by a whole
  factor (nearest neighbour) so the sheet is at least `min_width` pixels wide, and a label strip
  on the left when the rows mean something (a temperature, a truncation, a class).

(openai/pixel-cnn saved its samples as np.savez's unnamed `arr_0`; here the name says what it is.)
"""
import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from trainer import files

GAP = 2  # pixels between images and around the sheet
BACKGROUND = 255
DEFAULT_MIN_WIDTH = 512


def image_grid(images, columns=None, scale=1, gap=0, background=0):
    """uint8 images [N, H, W, C] tiled row by row, `columns` per row (default ceil(sqrt(N))),
    each scaled up `scale` times (nearest neighbour), `gap` pixels of `background` between and
    around them, into one uint8 image; unused cells stay background."""
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images [N, H, W, C], got {images.dtype} {images.shape}")
    count, height, width, channels = images.shape
    columns = columns or max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / columns))
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    cell_height, cell_width = height * scale + gap, width * scale + gap
    grid = np.full([rows * cell_height + gap, columns * cell_width + gap, channels], background,
                   np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top, left = gap + row * cell_height, gap + column * cell_width
        grid[top:top + height * scale, left:left + width * scale] = image
    return grid


def sheet_image(images, columns=None, row_labels=None, min_width=DEFAULT_MIN_WIDTH):
    """The PNG picture of a sheet (see the module docstring): uint8 [height, width, C]."""
    images = np.asarray(images)
    count, _, width, _ = images.shape
    columns = columns or max(1, math.ceil(math.sqrt(count)))
    scale = max(1, math.ceil((min_width - GAP * (columns + 1)) / (columns * width)))
    grid = image_grid(images, columns, scale, GAP, BACKGROUND)
    if not row_labels:
        return grid
    return with_row_labels(grid, row_labels, images.shape[1] * scale + GAP)


def with_row_labels(grid, labels, row_height):
    """`grid` with a white strip on its left holding labels[r] beside row r."""
    size = max(10, min(18, row_height // 3))
    font = ImageFont.load_default(size=size)
    strip = max(int(font.getlength(str(label))) for label in labels) + size + GAP
    mode, white, black = ("L", BACKGROUND, 0) if grid.shape[-1] == 1 else \
        ("RGB", (BACKGROUND,) * 3, (0, 0, 0))
    canvas = Image.new(mode, (strip + grid.shape[1], grid.shape[0]), white)
    canvas.paste(Image.fromarray(grid[..., 0] if mode == "L" else grid), (strip, 0))
    pen = ImageDraw.Draw(canvas)
    for row, label in enumerate(labels):
        middle = GAP + row * row_height + (row_height - GAP) // 2
        pen.text((size // 2, middle), str(label), fill=black, font=font, anchor="lm")
    picture = np.asarray(canvas)
    return picture[..., None] if mode == "L" else picture


def save_png(path, image):
    """One uint8 image [H, W, C] (C = 1 or 3) as a PNG."""
    image = np.asarray(image)
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    files.write_bytes(path, buffer.getvalue())


def save_arrays(path, **arrays):
    """Named arrays as one .npz file."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    files.write_bytes(path, buffer.getvalue())


def save_samples(prefix, images, row_labels=None, min_width=DEFAULT_MIN_WIDTH, columns=None,
                 **metadata):
    """`<prefix>.png` and `<prefix>.npz` (the layout of the module docstring) of uint8 images
    [N, H, W, C] (`columns` per row, default ceil(sqrt(N))) or [rows, columns, H, W, C] (a
    sheet with those rows);
    `metadata` arrays are per image ([N], or [rows, columns] for a sheet). Returns the PNG's
    picture."""
    images = np.asarray(images, np.uint8)
    if images.ndim == 5:
        rows, columns = images.shape[:2]
        images = images.reshape(rows * columns, *images.shape[2:])
        metadata = {name: np.reshape(value, (rows * columns,) + np.shape(value)[2:])
                    for name, value in metadata.items()}
    else:
        columns = columns or max(1, math.ceil(math.sqrt(len(images))))
    picture = sheet_image(images, columns, row_labels, min_width)
    save_png(prefix + ".png", picture)
    save_arrays(prefix + ".npz", images=images, columns=np.int64(columns), **metadata)
    return picture
