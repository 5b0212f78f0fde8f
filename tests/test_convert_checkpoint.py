"""scripts/convert_checkpoint.py: checkpoints in the exact TF1 name-based format of openai/pixel-cnn
and openai/glow (written here with tf.raw_ops.SaveV2: the originals' names and shapes, Polyak
shadows, and the unnamed optimizer tensors both leave behind) become runs that train.py and
sample.py use unchanged.

The originals' names are written out below from their counter formulas and scopes, and the
creation order of their optimizer tensors is recorded from this project's own forward pass (the
order in which it reads each variable), so neither is taken from the module under test."""
import importlib.util
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import sample
import train
from cli_errors import error_line
from glow import nn as glow_nn
from glow.model import Glow, GlowConfig
from pixel_cnn_pp.model import PixelCNNConfig, PixelCNNPP
from saved_state import checkpoint_values
from test_data_fashion_mnist import write_set as write_fashion_mnist
from trainer import checkpoint, families, flags
from trainer.ema import ExponentialMovingAverage

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
    "convert_checkpoint", os.path.join(REPO_ROOT, "scripts", "convert_checkpoint.py"))
convert_checkpoint = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(convert_checkpoint)

SHADOW = "/ExponentialMovingAverage"
# 40 train images of 8x8, batch 8: 5 steps per epoch
TINY_RUN = ["--image_size", "8", "-b", "8", "-g", "1", "-u", "8", "-t", "1", "-ns", "0", "-s", "3"]
PIXELCNN_RUN = ["--model", "pixelcnn", "-q", "1", "-n", "8", "-m", "2", *TINY_RUN]
GLOW_RUN = ["--model", "glow", "--n_levels", "2", "--depth", "2", "--width", "8",
            "--flow_permutation", "2", *TINY_RUN]


# -- the originals' names --------------------------------------------------------------------------

def pixelcnn_original_names(model):
    """{variable ref: (name, shape)} from openai/pixel-cnn's per-kind counter formulas."""
    R = model.config.nr_resnet
    scopes, class_biases = [], []
    scopes += [(model.u_init, "conv2d_0"), (model.ul_init_down, "conv2d_1"),
               (model.ul_init_right, "conv2d_2")]
    for s in range(3):
        for r in range(R):
            B = 3 + s * (4 * R + 2) + 4 * r
            u, ul = model.up_u[s][r], model.up_ul[s][r]
            scopes += [(u.conv1, f"conv2d_{B}"), (u.conv2, f"conv2d_{B + 1}"),
                       (ul.conv1, f"conv2d_{B + 2}"), (ul.conv2, f"conv2d_{B + 3}"),
                       (ul.nin_aux, f"dense_{s * R + r}")]
            class_biases += [(u, 2 * (s * R + r)), (ul, 2 * (s * R + r) + 1)]
        if s < 2:
            k = 3 + s * (4 * R + 2) + 4 * R
            scopes += [(model.down_u_stride[s], f"conv2d_{k}"),
                       (model.down_ul_stride[s], f"conv2d_{k + 1}")]
    for t in range(3):
        for r in range((R, R + 1, R + 1)[t]):
            j = (0, R, 2 * R + 1)[t] + r
            D = 12 * R + 7 + 4 * j
            u, ul = model.down_u[t][r], model.down_ul[t][r]
            scopes += [(u.conv1, f"conv2d_{D}"), (u.conv2, f"conv2d_{D + 1}"),
                       (ul.conv1, f"conv2d_{D + 2}"), (ul.conv2, f"conv2d_{D + 3}"),
                       (u.nin_aux, f"dense_{3 * R + 2 * j}"),
                       (ul.nin_aux, f"dense_{3 * R + 2 * j + 1}")]
            class_biases += [(u, 6 * R + 2 * j), (ul, 6 * R + 2 * j + 1)]
        if t < 2:
            scopes += [(model.up_u_deconv[t], f"deconv2d_{2 * t}"),
                       (model.up_ul_deconv[t], f"deconv2d_{2 * t + 1}")]
    if model.config.energy_distance:
        heads = (model.ed_nin_features, model.ed_nin_noise, model.ed_nin_hidden, model.ed_nin_out)
    else:
        heads = (model.out_nin,)
    scopes += [(head, f"dense_{9 * R + 4 + k}") for k, head in enumerate(heads)]
    names = {}
    for layer, scope in scopes:
        for part in ("V", "g", "b"):
            variable = getattr(layer, part)
            names[variable.ref()] = (f"model/{scope}/{part}", tuple(variable.shape))
    for block, k in class_biases:
        if block.hw is not None:
            names[block.hw.ref()] = (f"model/conditional_weights_{k}/hw", tuple(block.hw.shape))
    return names


def glow_original_names(model):
    """{variable ref: (name, shape)} from openai/glow's scopes and its [1,1,1,C] / [1,C] shapes."""
    names = {}

    def put(variable, name, shape=None):
        names[variable.ref()] = (name, tuple(variable.shape if shape is None else shape))

    def actnorm(norm, scope):
        channels = norm.b.shape[0]
        put(norm.b, f"{scope}_center/b", [1, 1, 1, channels])
        put(norm.logs, f"{scope}_scale/logs", [1, 1, 1, channels])

    def zeros(layer, scope, convolution):
        channels = layer.b.shape[0]
        put(layer.w, f"{scope}/W")
        put(layer.b, f"{scope}/b", [1, 1, 1, channels] if convolution else [1, channels])
        put(layer.logs, f"{scope}/logs", [1, channels])

    for i, steps in enumerate(model.levels):
        for k, step in enumerate(steps):
            scope = f"model/{i}/{k}"
            actnorm(step.actnorm, f"{scope}/actnorm")
            permutation = step.permutation
            if isinstance(permutation, glow_nn.ShufflePermutation):
                put(permutation.indices, f"{scope}/shuffle/indices")
                put(permutation.indices_inverse, f"{scope}/shuffle/indices_inverse")
            elif isinstance(permutation, glow_nn.InvertibleConv1x1):
                put(permutation.w, f"{scope}/invconv/W")
            elif isinstance(permutation, glow_nn.InvertibleConv1x1LU):
                for variable, part in ((permutation.permutation, "P"), (permutation.lower, "L"),
                                       (permutation.sign_s, "sign_S"),
                                       (permutation.log_s, "log_S"), (permutation.upper, "U")):
                    put(variable, f"{scope}/invconv/{part}")
            network = step.coupling.nn
            put(network.conv1.w, f"{scope}/f1/l_1/W")
            actnorm(network.actnorm1, f"{scope}/f1/l_1/actnorm")
            put(network.conv2.w, f"{scope}/f1/l_2/W")
            actnorm(network.actnorm2, f"{scope}/f1/l_2/actnorm")
            zeros(network.conv_out, f"{scope}/f1/l_last", convolution=True)
        if i < len(model.levels) - 1:
            zeros(model.split_priors[i].conv, f"model/pool{i}/conv", convolution=True)
    if model.top_prior.learned is not None:
        zeros(model.top_prior.learned, "model/prior/p", convolution=True)
    if model.top_prior.y_embedding is not None:
        zeros(model.top_prior.y_embedding, "model/prior/y_emb", convolution=False)
    if model.classifier is not None:
        zeros(model.classifier, "model/classifier", convolution=False)
    return names


class ReadOrder:
    """An `ema` stand-in that records the order in which a forward pass first reads each
    variable: the order in which the originals (which create a variable at its first use)
    created them, and so the order of their optimizer tensors."""

    def __init__(self):
        self.order, self._seen = [], set()

    def average(self, variable):
        if variable.ref() not in self._seen:
            self._seen.add(variable.ref())
            self.order.append(variable)
        return variable


def creation_order(model):
    """The trainable variables of a PixelCNNPP or Glow in the originals' creation order."""
    reader = ReadOrder()
    height, width, channels = model.config.image_shape
    if isinstance(model, PixelCNNPP):
        classes = model.config.num_classes
        model(tf.zeros([1, height, width, channels]),
              tf.one_hot([0], classes) if classes else None, ema=reader)
    else:
        labels = tf.constant([0]) if model.config.ycond else None
        model.flow(tf.zeros([1, height, width, channels]), labels, ema=reader)
        if model.classifier is not None:  # used by the loss only, created last
            for variable in (model.classifier.w, model.classifier.b, model.classifier.logs):
                reader.average(variable)
    assert {v.ref() for v in reader.order} == {v.ref() for v in model.trainable_variables}
    return reader.order


# -- writing an original checkpoint ------------------------------------------------------------

def save_tf1(prefix, tensors):
    """A TF1 name-based checkpoint (prefix.index, prefix.data-00000-of-00001), as tf.train.Saver
    writes it."""
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tensors[name] for name in names])


def as_original(value, shape):
    value = np.reshape(np.asarray(value), shape)
    return value.astype(np.float32) if value.dtype == np.float64 else value


def original_tensors(model, names, averages=None, optimizer=None, sampling_inputs=0):
    """{name: value} of an original checkpoint holding `model`'s weights, optionally its Polyak
    averages (an object with .average) and its optimizer (m1, m2, iterations of trainer.optim)
    as t, then (second, first) moment per variable in creation order, all unnamed; a
    class-conditional openai/pixel-cnn run first creates `sampling_inputs` int label variables."""
    tensors = {}
    for variable in model.variables:
        name, shape = names[variable.ref()]
        tensors[name] = as_original(variable.numpy(), shape)
        if averages is not None and variable.trainable:
            tensors[name + SHADOW] = as_original(averages.average(variable).numpy(), shape)
    if optimizer is not None:
        unnamed = [np.arange(16, dtype=np.int32) % 10 for _ in range(sampling_inputs)]
        unnamed.append(np.float32(optimizer.iterations.numpy() + 1))
        slot = {v.ref(): i for i, v in enumerate(model.trainable_variables)}
        for variable in creation_order(model):
            shape = names[variable.ref()][1]
            unnamed += [as_original(optimizer.m2[slot[variable.ref()]].numpy(), shape),
                        as_original(optimizer.m1[slot[variable.ref()]].numpy(), shape)]
        for number, value in enumerate(unnamed):
            tensors["Variable" if number == 0 else f"Variable_{number}"] = value
    return tensors


def randomised(model, seed):
    """`model` with every float variable set to random values (shuffle indices kept), so no
    value can be right by coincidence."""
    rng = np.random.default_rng(seed)
    for variable in model.variables:
        if variable.dtype.is_floating and variable.trainable:
            variable.assign(rng.normal(0.0, 0.1, variable.shape).astype(variable.dtype.as_numpy_dtype))
    return model


class Shadows:
    """Polyak averages for a fixture: every variable times 0.5."""

    def average(self, variable):
        return variable * 0.5


def convert(capsys, *argv):
    """Runs the script; returns its stdout lines."""
    assert convert_checkpoint.main([str(arg) for arg in argv]) == 0
    return capsys.readouterr().out.splitlines()


def converted_model(save_dir):
    """(stored run config, model, ema) of a converted run, loaded as sample.py loads it."""
    path = checkpoint.find_checkpoint(str(save_dir))
    stored = checkpoint.read_run_config(path)
    family = families.get(stored["model"])
    model = family.build(stored["model_config"])
    ema = ExponentialMovingAverage(family.averaged_variables(model), stored["ema_decay"])
    checkpoint.restore_weights(path, model=model, ema=ema)
    return stored, model, ema


def assert_same_weights(source, source_names, converted, converted_names, averages=None):
    """Every variable of `converted` equals the one of `source` with the same original name
    (and so every Polyak average, when `averages` = (source's, converted's))."""
    by_name = {source_names[v.ref()][0]: v for v in source.variables}
    assert len(by_name) == len(converted.variables)
    for variable in converted.variables:
        original = by_name[converted_names[variable.ref()][0]]
        np.testing.assert_array_equal(variable.numpy(), original.numpy())
        if averages is not None and variable.trainable:
            np.testing.assert_array_equal(averages[1].average(variable).numpy(),
                                          averages[0].average(original).numpy())


# -- a real run, exported and imported back ------------------------------------------------------

def trained_run(family_name, save_dir, run_flags):
    """A one-epoch train.py run; returns (model, ema, optimizer) as its checkpoint holds them."""
    assert train.main([*run_flags, "-o", str(save_dir), "-x", "1"]) == 0
    path = checkpoint.find_checkpoint(str(save_dir))
    stored = checkpoint.read_run_config(path)
    family = families.get(family_name)
    model = family.build(stored["model_config"])
    ema = ExponentialMovingAverage(family.averaged_variables(model), stored["ema_decay"])
    args, _ = flags.parse_train_args([*run_flags, "-o", str(save_dir)])
    optimizers = family.make_optimizers(args, model, 5)
    tf.train.Checkpoint(model=model, ema=ema, **optimizers).restore(path).expect_partial()
    return model, ema, optimizers["optimizer"]


@pytest.mark.parametrize("family_name, run_flags, original_names", [
    ("pixelcnn", PIXELCNN_RUN, pixelcnn_original_names),
    ("glow", GLOW_RUN, glow_original_names)])
def test_a_run_in_the_original_format_converts_back_to_the_same_run(
        family_name, run_flags, original_names, tiny_image_folder, tmp_path, capsys):
    """train.py run A -> the original's TF1 format -> convert -> run B: B holds A's weights,
    Polyak averages, optimizer moments and step exactly, --eval_only gives the identical
    per-image NLL, and B fine-tunes (-r) and samples."""
    flags = ["-d", "folder", "-i", tiny_image_folder, *run_flags]
    model, ema, optimizer = trained_run(family_name, tmp_path / "a", flags)
    names = original_names(model)
    save_tf1(str(tmp_path / "original.ckpt"),
             original_tensors(model, names, averages=ema, optimizer=optimizer))
    step = int(optimizer.iterations.numpy())
    assert step == 5

    lines = convert(capsys, family_name, tmp_path / "original.ckpt", "-o", tmp_path / "b", *flags)
    assert "Polyak averages: from the ExponentialMovingAverage shadows" in lines
    assert any(line.startswith(f"optimizer: step {step} and both moments") for line in lines)
    a_values = checkpoint_values(checkpoint.find_checkpoint(str(tmp_path / "a")))
    b_values = checkpoint_values(checkpoint.find_checkpoint(str(tmp_path / "b")))
    assert sorted(a_values) == sorted(b_values)
    for key, value in a_values.items():
        if not key.startswith("epoch/"):  # neither original stores epochs: B starts at 0
            np.testing.assert_array_equal(b_values[key], value, err_msg=key)

    for run in ("a", "b"):
        assert train.main([*flags, "-o", str(tmp_path / run), "--eval_only"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "b" / "test_nll.npy"),
                                  np.load(tmp_path / "a" / "test_nll.npy"))

    assert train.main([*flags, "-o", str(tmp_path / "b"), "-r", "-x", "1"]) == 0
    resumed = checkpoint_values(checkpoint.find_checkpoint(str(tmp_path / "b")))
    assert resumed["optimizer/iterations/.ATTRIBUTES/VARIABLE_VALUE"] == step + 5
    assert sample.main(["-o", str(tmp_path / "b"), "--n", "2"]) == 0
