"""Glow (Kingma & Dhariwal 2018) in TF2: layers in glow.nn, the multi-scale model and its API in
glow.model, sample-time tools (encode, decode, interpolate, attribute vectors) in glow.tools."""
from glow.model import (Glow, GlowConfig, attribute_vectors, image_seeds, interpolate, manipulate,
                        per_image_bits, postprocess, preprocess)

__all__ = ["Glow", "GlowConfig", "attribute_vectors", "image_seeds", "interpolate", "manipulate",
           "per_image_bits", "postprocess", "preprocess"]
