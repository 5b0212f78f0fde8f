"""Glow (Kingma & Dhariwal 2018) in TF2: layers in glow.nn, the multi-scale model and its API in glow.model."""
from glow.model import (Glow, GlowConfig, attribute_vectors, bits_per_dim, interpolate, manipulate, postprocess,
                        preprocess)

__all__ = ["Glow", "GlowConfig", "attribute_vectors", "bits_per_dim", "interpolate", "manipulate", "postprocess",
           "preprocess"]
