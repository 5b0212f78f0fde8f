"""Sample-time tools for a trained Glow, as openai/glow's demo: encode images to flat latents and
back, interpolate between images, and attribute vectors (mean latent with an attribute minus mean
latent without) read from a labelled data set and cached beside the checkpoint.

Every function takes the model and its Polyak averages (`ema`, None for the raw weights); labels
are int [N] (used by class-conditional models only). Bad input raises ToolError with one line.
"""
import hashlib
import os

import numpy as np
import tensorflow as tf
from PIL import Image

import data
from data.cache import write_atomically
from data.progress import progress
from glow import model as glow_model

BATCH = 64  # images per encoder call


class ToolError(Exception):
    """The request cannot be served (unreadable image, wrong shape, no labels...). One line."""


def model_labels(model, labels):
    """Labels as the model takes them: int32 for a class-conditional model, else None."""
    if labels is None or not model.config.ycond:
        return None
    return tf.cast(labels, tf.int32)


def load_image(path, image_shape):
    """An image file as uint8 [H, W, C] of the model's shape (no resizing: a clear error)."""
    try:
        with Image.open(path) as image:
            image = image.convert("L" if image_shape[2] == 1 else "RGB")
            array = np.asarray(image, np.uint8)
    except (OSError, ValueError) as error:
        raise ToolError(f"cannot read image {path}: {error}") from None
    array = array.reshape(array.shape[:2] + (image_shape[2],))
    if array.shape != tuple(image_shape):
        raise ToolError(f"{path} is {array.shape[1]}x{array.shape[0]}, the model takes "
                        f"{image_shape[1]}x{image_shape[0]} images; resize it first")
    return array


def encode_images(model, images, labels=None, ema=None):
    """Flat bin-centre latents [N, D] (decode_flat gives the quantised images back), in batches
    of BATCH with a progress bar for more than one batch."""
    starts = range(0, len(images), BATCH)
    parts = []
    for start in progress(starts, desc="encoding", disable=len(starts) < 2):
        y = None if labels is None else labels[start:start + BATCH]
        eps = model.encode(images[start:start + BATCH], model_labels(model, y), ema)
        parts.append(model.flatten(eps).numpy())
    return np.concatenate(parts) if parts else np.zeros([0, latent_size(model)], np.float32)


def latent_size(model):
    return sum(int(np.prod(shape)) for shape in model.eps_shapes)


def decode_flat(model, flat, labels=None, ema=None):
    """uint8 images [N, H, W, C] of flat latents [N, D]."""
    flat = np.asarray(flat)
    if flat.ndim != 2 or flat.shape[1] != latent_size(model):
        raise ToolError(f"latents {flat.shape} do not fit this model ([N, {latent_size(model)}])")
    return model.decode(model.unflatten(tf.constant(flat, tf.float32)),
                        model_labels(model, labels), ema).numpy()


def interpolate_images(model, images, labels, steps, ema=None):
    """Encode two images (uint8 [2, H, W, C]; labels [2] or None) and decode `steps` points on
    the line between their latents, each with the label of the nearer end. Returns (uint8
    images [steps, H, W, C], flat latents [steps, D])."""
    flat = encode_images(model, images, labels, ema)
    path = glow_model.interpolate(flat[0], flat[1], steps)
    path_labels = None
    if labels is not None:
        path_labels = np.where(np.linspace(0.0, 1.0, steps) < 0.5, labels[0], labels[1])
    return decode_flat(model, path, path_labels, ema), path


def attribute_table(data_set, data_dir, image_size, count, cache_dir=None):
    """(attribute names, flags [N, A] of +-1 / 0, images [N, H, W, C]) of the first `count`
    training images of a labelled data set: its attributes if it has any (CelebA-HQ), else its
    classes one-vs-rest."""
    try:
        info = data.info(data_set, data_dir, image_size, cache_dir=cache_dir)
        batches = -(-count // BATCH)
        if info.attribute_names:
            parts = [(x.numpy(), a.numpy()) for x, _, a in data.load(
                data_set, data_dir, "train", image_size=image_size, cache_dir=cache_dir,
                batch_size=BATCH, with_attributes=True).take(batches)]
            names = list(info.attribute_names)
            table = np.concatenate([a for _, a in parts])[:count]
        elif info.num_classes:
            parts = [(x.numpy(), y.numpy()) for x, y in data.load(
                data_set, data_dir, "train", image_size=image_size, cache_dir=cache_dir,
                batch_size=BATCH, shuffle=True, seed=0).take(batches)]
            names = list(info.class_names) or [str(k) for k in range(info.num_classes)]
            classes = np.concatenate([y for _, y in parts])[:count]
            table = (classes[:, None] == np.arange(info.num_classes)[None]).astype(np.int32)
        else:
            raise ToolError(f"data set {data_set!r} has neither attributes nor labels; use a "
                            f"labelled set")
    except data.DataError as error:
        raise ToolError(str(error)) from None
    images = np.concatenate([x for x, _ in parts])[:count]
    return names, table, images


def attribute_vectors(model, ema, data_set, data_dir, image_size, count, cache_prefix,
                      cache_dir=None):
    """(names, vectors [A, D]) from `count` training images of `data_set`, cached as
    <cache_prefix>.glow_attributes_<set>_<key>.npy (the key hashes the set, its location and the
    count)."""
    names, table, images = attribute_table(data_set, data_dir, image_size, count, cache_dir)
    location = os.path.abspath(data_dir)
    key = hashlib.sha1(f"{data_set}|{location}|{len(images)}|{names}".encode()).hexdigest()[:10]
    cache = f"{cache_prefix}.glow_attributes_{data_set}_{key}.npy"
    if os.path.exists(cache):
        return names, np.load(cache)
    try:
        vectors = glow_model.attribute_vectors(encode_images(model, images, None, ema), table)
    except ValueError as error:
        raise ToolError(f"attribute vectors of {data_set!r} ({len(images)} images): {error}; "
                        f"use more images") from None
    write_atomically(cache, lambda file: np.save(file, vectors))
    return names, vectors


def attribute_index(attribute, names):
    """The index of an attribute given by name or number."""
    if attribute in names:
        return names.index(attribute)
    if attribute.isdigit() and int(attribute) < len(names):
        return int(attribute)
    raise ToolError(f"{attribute}: not one of {len(names)} attributes "
                    f"({', '.join(names[:8])}{', ...' if len(names) > 8 else ''}) or an index "
                    f"below {len(names)}")


def manipulate_images(model, images, labels, vector, alphas, ema=None):
    """uint8 [N, len(alphas), H, W, C]: image n moved by alpha * vector in latent space."""
    flat = encode_images(model, images, labels, ema)
    rows = [decode_flat(model, glow_model.manipulate(flat, vector, alpha), labels, ema)
            for alpha in alphas]
    return np.stack(rows, axis=1)


def split_images(data_set, data_dir, image_size, split, cache_dir=None):
    """(images, labels) of a whole split, for encoding."""
    try:
        batches = [(x.numpy(), y.numpy()) for x, y in data.load(
            data_set, data_dir, split, image_size=image_size, cache_dir=cache_dir,
            batch_size=BATCH)]
    except data.DataError as error:
        raise ToolError(str(error)) from None
    return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])
