"""Model families the trainer can train, registered by name; each is a Family (base.py)."""
from trainer.families.base import Family, SampleError
from trainer.families.biggan import FAMILY as BIGGAN
from trainer.families.glow import FAMILY as GLOW
from trainer.families.pixelcnn import FAMILY as PIXELCNN

FAMILIES = {family.name: family for family in (PIXELCNN, GLOW, BIGGAN)}
DEFAULT_FAMILY = PIXELCNN.name

__all__ = ["Family", "SampleError", "FAMILIES", "DEFAULT_FAMILY", "names", "get", "register"]


def names():
    return sorted(FAMILIES)


def get(name):
    if name not in FAMILIES:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(names())}")
    return FAMILIES[name]


def register(family):
    """Make a Family instance available as --model family.name (train.py, sample.py)."""
    if not isinstance(family, Family) or not family.name:
        raise TypeError("register a Family instance with a name")
    FAMILIES[family.name] = family
    return family


def restore(path):
    """(family, model, Polyak averages, stored run configuration) of the checkpoint at `path`,
    built from the configuration stored in it; CheckpointError with one line when it cannot be."""
    from trainer import checkpoint
    from trainer.ema import ExponentialMovingAverage
    stored = checkpoint.read_run_config(path)
    kind = stored.get("model")
    if kind not in FAMILIES:
        raise checkpoint.CheckpointError(f"{path} holds a {kind!r} model, which this code cannot "
                                         f"load (known: {', '.join(names())})")
    if "model_config" not in stored:
        raise checkpoint.CheckpointError(f"{path} stores no model configuration (not written by "
                                         f"train.py, or corrupt)")
    family = FAMILIES[kind]
    model = family.build(stored["model_config"])
    ema = ExponentialMovingAverage(family.averaged_variables(model), stored["ema_decay"])
    checkpoint.restore_weights(path, model=model, ema=ema)
    return family, model, ema, stored
