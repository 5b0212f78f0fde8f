"""Model families the trainer can train, registered by name.

A family has two sides: its command line (`FamilyFlags`: name, flags, per-data-set defaults,
sampler names) and its model (`base.Family`, which extends its command line). A built-in family
keeps its command line in a TensorFlow-free `<name>_flags.py`, so train.py and sample.py parse
flags and print --help without importing TensorFlow; `get` imports the model side on first use.
"""
import importlib

from trainer.families.biggan_flags import BigGANFlags
from trainer.families.family_flags import FamilyFlags, SampleError
from trainer.families.glow_flags import GlowFlags
from trainer.families.pixelcnn_flags import PixelCNNFlags

# name -> its command line: a built-in family's FamilyFlags, or a registered Family itself
FLAGS = {flags.name: flags for flags in (PixelCNNFlags(), GlowFlags(), BigGANFlags())}
# name -> the module whose FAMILY is the built-in family's Family
MODULES = {"pixelcnn": "trainer.families.pixelcnn", "glow": "trainer.families.glow",
           "biggan": "trainer.families.biggan"}
# name -> Family, filled by get() and register()
FAMILIES = {}
DEFAULT_FAMILY = "pixelcnn"

__all__ = ["FamilyFlags", "SampleError", "FLAGS", "FAMILIES", "DEFAULT_FAMILY", "names",
           "flags_of", "get", "register", "restore"]


def names():
    return sorted(FLAGS)


def flags_of(name):
    """The command line of family `name` (no TensorFlow import)."""
    if name not in FLAGS:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(names())}")
    return FLAGS[name]


def get(name):
    """The Family `name`, its model side imported on first use."""
    flags_of(name)
    if name not in FAMILIES:
        FAMILIES[name] = importlib.import_module(MODULES[name]).FAMILY
    return FAMILIES[name]


def register(family):
    """Make a Family instance available as --model family.name (train.py, sample.py)."""
    from trainer.families.base import Family
    if not isinstance(family, Family) or not family.name:
        raise TypeError("register a Family instance with a name")
    FLAGS[family.name] = FAMILIES[family.name] = family
    return family


def restore(path):
    """(family, model, Polyak averages, stored run configuration) of the checkpoint at `path`,
    built from the configuration stored in it; CheckpointError with one line when it cannot be."""
    from trainer import checkpoint
    from trainer.ema import ExponentialMovingAverage
    stored = checkpoint.read_run_config(path)
    kind = stored.get("model")
    if kind not in FLAGS:
        raise checkpoint.CheckpointError(f"{path} holds a {kind!r} model, which this code cannot "
                                         f"load (known: {', '.join(names())})")
    if "model_config" not in stored:
        raise checkpoint.CheckpointError(f"{path} stores no model configuration (not written by "
                                         f"train.py, or corrupt)")
    family = get(kind)
    model = family.build(stored["model_config"])
    ema = ExponentialMovingAverage(family.averaged_variables(model), stored["ema_decay"])
    checkpoint.restore_weights(path, model=model, ema=ema)
    return family, model, ema, stored
