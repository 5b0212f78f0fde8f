"""The names openai/glow's TF1 checkpoints give this model's variables, and the architecture read
back from a checkpoint's names and shapes.

openai/glow names everything under `model/`: flow step k of level i is `model/{i}/{k}/`, the split
prior after level i `model/pool{i}/`, the top prior `model/prior/`, the classifier
`model/classifier/`. Every value maps by a reshape only: biases and log-scales are stored as
[1, 1, 1, C] or [1, C] where this project keeps [C]; kernels and 1x1-convolution matrices have
the same layout. Its LU-decomposed 1x1 convolution is unreachable code in openai/glow (an
`if True:` selects the plain one), but a run with it enabled stores P, L, sign_S, log_S, U under
`invconv/`, which map to flow_permutation 3.
"""
import re

SIGNATURE = "model/0/0/actnorm_center/b"  # in every openai/glow checkpoint
_STEP = re.compile(r"model/(\d+)/(\d+)/actnorm_center/b")


def _actnorm(prefix, actnorm):
    channels = actnorm.b.shape[0]
    return [(f"{prefix}_center/b", actnorm.b, (1, 1, 1, channels)),
            (f"{prefix}_scale/logs", actnorm.logs, (1, 1, 1, channels))]


def _zeros_layer(prefix, layer, bias_shape):
    """conv2d_zeros / linear_zeros: W as is, b of `bias_shape`, logs [1, C]."""
    channels = layer.b.shape[0]
    return [(f"{prefix}/W", layer.w, tuple(layer.w.shape)),
            (f"{prefix}/b", layer.b, bias_shape(channels)),
            (f"{prefix}/logs", layer.logs, (1, channels))]


def _conv_zeros(prefix, layer):
    return _zeros_layer(prefix, layer, lambda channels: (1, 1, 1, channels))


def _linear_zeros(prefix, layer):
    return _zeros_layer(prefix, layer, lambda channels: (1, channels))


def _permutation(prefix, permutation, kind):
    if kind == 0:  # reverse: no variables
        return []
    if kind == 1:
        return [(f"{prefix}/shuffle/indices", permutation.indices,
                 tuple(permutation.indices.shape)),
                (f"{prefix}/shuffle/indices_inverse", permutation.indices_inverse,
                 tuple(permutation.indices_inverse.shape))]
    if kind == 2:
        return [(f"{prefix}/invconv/W", permutation.w, tuple(permutation.w.shape))]
    # openai/glow's LU branch, in its creation order; L keeps its unit diagonal there, which this
    # project's mask ignores as openai/glow's did
    return [(f"{prefix}/invconv/{name}", variable, tuple(variable.shape)) for name, variable in
            (("P", permutation.permutation), ("L", permutation.lower),
             ("sign_S", permutation.sign_s), ("log_S", permutation.log_s),
             ("U", permutation.upper))]


def original_variables(model):
    """[(original name, variable, original shape)] for every variable of a Glow, in the order
    openai/glow created them, which is also the order of its optimizer moments."""
    config = model.config
    found = []
    for level, steps in enumerate(model.levels):
        for number, step in enumerate(steps):
            prefix = f"model/{level}/{number}"
            network = step.coupling.nn
            found += _actnorm(f"{prefix}/actnorm", step.actnorm)
            found += _permutation(prefix, step.permutation, config.flow_permutation)
            found.append((f"{prefix}/f1/l_1/W", network.conv1.w, tuple(network.conv1.w.shape)))
            found += _actnorm(f"{prefix}/f1/l_1/actnorm", network.actnorm1)
            found.append((f"{prefix}/f1/l_2/W", network.conv2.w, tuple(network.conv2.w.shape)))
            found += _actnorm(f"{prefix}/f1/l_2/actnorm", network.actnorm2)
            found += _conv_zeros(f"{prefix}/f1/l_last", network.conv_out)
        if level < len(model.levels) - 1:
            found += _conv_zeros(f"model/pool{level}/conv", model.split_priors[level].conv)
    if model.top_prior.learned is not None:
        found += _conv_zeros("model/prior/p", model.top_prior.learned)
    if model.top_prior.y_embedding is not None:
        found += _linear_zeros("model/prior/y_emb", model.top_prior.y_embedding)
    if model.classifier is not None:
        found += _linear_zeros("model/classifier", model.classifier)
    return found


def architecture_flags(shapes):
    """train.py flags of the architecture stored in an openai/glow checkpoint, from its
    {name: shape} map. The image size and channels come from the data set, n_bits_x and weight_y
    (the classifier's weight) are not stored, so those are left to the caller's flags.
    ValueError (one line) when the steps fit no Glow, KeyError naming a tensor it needs and
    lacks."""
    steps = {tuple(map(int, match.groups())) for match in map(_STEP.fullmatch, shapes) if match}
    n_levels = len({level for level, _ in steps})
    depth = len({number for level, number in steps if level == 0})
    if steps != {(level, number) for level in range(n_levels) for number in range(depth)}:
        raise ValueError(f"its flow steps model/<level>/<step> are not {n_levels} levels of "
                         f"{depth} steps each")
    channels = shapes[SIGNATURE][-1]
    width = shapes["model/0/0/f1/l_1/W"][-1]
    coupling_outputs = shapes["model/0/0/f1/l_last/W"][-1]
    if "model/0/0/invconv/W" in shapes:
        permutation = 2
    elif "model/0/0/invconv/L" in shapes:
        permutation = 3
    elif "model/0/0/shuffle/indices" in shapes:
        permutation = 1
    else:
        permutation = 0
    flags = ["--n_levels", str(n_levels), "--depth", str(depth), "--width", str(width),
             "--flow_permutation", str(permutation),
             "--flow_coupling", "1" if coupling_outputs == channels else "0",
             "--learntop" if "model/prior/p/W" in shapes else "--no-learntop"]
    if "model/prior/y_emb/W" in shapes:
        flags.append("--ycond")
    return flags


MISMATCH_HINT = ("the data set fixes the image size (--image_size where it resizes), the "
                 "channels and the number of classes; pass --weight_y > 0 when the checkpoint "
                 "holds model/classifier")
