"""The names openai/pixel-cnn's TF1 checkpoints (e.g. the released `params_cifar.ckpt`) give this
network's variables, and the architecture read back from a checkpoint's names and shapes.

openai/pixel-cnn builds its network inside tf.make_template('model', ...) and names every layer
<kind>_<k>, k counting the layers of that kind in the order the forward pass creates them: conv2d,
deconv2d, dense (a nin is a dense layer at every pixel) with variables V, g, b, and
conditional_weights with a gated block's class bias hw. Every layout equals ours (conv V
[kh, kw, Cin, Cout], deconv V [kh, kw, Cout, Cin], dense V [Cin, Cout]), so values copy unchanged.
"""
import collections
import re

SIGNATURE = "model/conv2d_0/V"  # in every openai/pixel-cnn checkpoint, in no openai/glow one
_LAYER = re.compile(r"model/(conv2d|deconv2d|dense)_(\d+)/V")


def original_variables(model):
    """[(original name, variable, original shape)] for every variable of a PixelCNNPP, in the
    order openai/pixel-cnn created them, which is also the order of its Adam moments."""
    counters = collections.Counter()
    found = []

    def add(kind, variables):
        number = counters[kind]
        counters[kind] += 1
        found.extend((f"model/{kind}_{number}/{name}", variable, tuple(variable.shape))
                     for name, variable in variables)

    def layer(kind, module):
        add(kind, [("V", module.V), ("g", module.g), ("b", module.b)])

    def gated_block(block):  # creation order inside openai/pixel-cnn's gated_resnet
        layer("conv2d", block.conv1)
        if block.nin_aux is not None:
            layer("dense", block.nin_aux)
        layer("conv2d", block.conv2)
        if block.hw is not None:
            add("conditional_weights", [("hw", block.hw)])

    for module in (model.u_init, model.ul_init_down, model.ul_init_right):
        layer("conv2d", module)
    for stage in range(3):
        for u_block, ul_block in zip(model.up_u[stage], model.up_ul[stage]):
            gated_block(u_block)
            gated_block(ul_block)
        if stage < 2:
            layer("conv2d", model.down_u_stride[stage])
            layer("conv2d", model.down_ul_stride[stage])
    for stage in range(3):
        for u_block, ul_block in zip(model.down_u[stage], model.down_ul[stage]):
            gated_block(u_block)
            gated_block(ul_block)
        if stage < 2:
            layer("deconv2d", model.up_u_deconv[stage])
            layer("deconv2d", model.up_ul_deconv[stage])
    if model.config.energy_distance:
        heads = (model.ed_nin_features, model.ed_nin_noise, model.ed_nin_hidden,
                 model.ed_nin_out)
    else:
        heads = (model.out_nin,)
    for head in heads:
        layer("dense", head)
    return found


def architecture_flags(shapes):
    """train.py flags of the architecture stored in an openai/pixel-cnn checkpoint, from its
    {name: shape} map. The 1- or 3-channel images and the number of classes come from the data
    set, and elu versus relu cannot be told apart (both keep the channel count), so those are
    left to the caller's flags. ValueError (one line) when the layer counts fit no PixelCNN++,
    KeyError naming a tensor it needs and lacks."""
    counts = collections.Counter(match.group(1) for match in map(_LAYER.fullmatch, shapes)
                                 if match)
    nr_resnet, remainder = divmod(counts["conv2d"] - 15, 24)  # 24R + 15 convolutions
    if nr_resnet < 1 or remainder or counts["deconv2d"] != 4:
        raise ValueError(f"{counts['conv2d']} conv2d and {counts['deconv2d']} deconv2d layers fit "
                         f"no PixelCNN++ (it has 24*nr_resnet+15 and 4)")
    heads = counts["dense"] - (9 * nr_resnet + 4)  # the skip nins, then the head's layers
    if heads not in (1, 4):
        raise ValueError(f"{counts['dense']} dense layers fit no PixelCNN++ with nr_resnet "
                         f"{nr_resnet} (it has {9 * nr_resnet + 5}, or {9 * nr_resnet + 8} with "
                         f"the energy-distance head)")
    nr_filters = shapes["model/conv2d_0/V"][-1]
    channels = shapes["model/conv2d_0/V"][2] - 1  # the image plus a channel of ones
    flags = ["--nr_resnet", str(nr_resnet), "--nr_filters", str(nr_filters)]
    if heads == 4:
        flags.append("--energy_distance")
    else:
        outputs = shapes[f"model/dense_{9 * nr_resnet + 4}/V"][-1]
        flags += ["--nr_logistic_mix", str(outputs // (10 if channels == 3 else 3))]
    # a gated block's first convolution sees nonlinearity(x): 2F channels only for concat_elu
    if shapes["model/conv2d_3/V"][2] == 2 * nr_filters:
        flags += ["--resnet_nonlinearity", "concat_elu"]
    if "model/conditional_weights_0/hw" in shapes:
        flags.append("--class_conditional")
    return flags


MISMATCH_HINT = ("the data set fixes the channels (1 or 3) and the number of classes; "
                 "pass --resnet_nonlinearity elu or relu when the blocks take nr_filters input "
                 "channels")
