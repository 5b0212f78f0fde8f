"""scripts/convert_checkpoint.py: checkpoints in the exact TF1 name-based format of openai/pixel-cnn
and openai/glow (written here with tf.raw_ops.SaveV2: the originals' names and shapes, Polyak
shadows, and the unnamed optimizer tensors both leave behind) become runs that train.py and
sample.py use unchanged.

The originals' names are written out below from their counter formulas and scopes, and the
creation order of their optimizer tensors is recorded from this project's own forward pass (the
order in which it reads each variable), so neither is taken from the module under test."""
import importlib.util
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import sample
import train
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
    """`model` with every trainable variable set to random values (the fixed permutations kept),
    so no value can be right by coincidence."""
    rng = np.random.default_rng(seed)
    for variable in model.variables:
        if variable.dtype.is_floating and variable.trainable:
            values = rng.normal(0.0, 0.1, variable.shape)
            variable.assign(values.astype(variable.dtype.as_numpy_dtype))
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


def round_trip(family_name, run_flags, root):
    """(train.py flags, run A, run B): A is a one-epoch train.py run, B the conversion of A
    written in the original's TF1 format."""
    original_names = {"pixelcnn": pixelcnn_original_names, "glow": glow_original_names}
    model, ema, optimizer = trained_run(family_name, root / "a", run_flags)
    assert int(optimizer.iterations.numpy()) == 5
    save_tf1(str(root / "original.ckpt"),
             original_tensors(model, original_names[family_name](model), averages=ema,
                              optimizer=optimizer))
    assert convert_checkpoint.main([family_name, str(root / "original.ckpt"), "-o",
                                    str(root / "b"), *run_flags]) == 0
    return run_flags, root / "a", root / "b"


@pytest.fixture(scope="module")
def pixelcnn_round_trip(tiny_image_folder, tmp_path_factory):
    return round_trip("pixelcnn", ["-d", "folder", "-i", tiny_image_folder, *PIXELCNN_RUN],
                      tmp_path_factory.mktemp("pixelcnn_round_trip"))


@pytest.fixture(scope="module")
def glow_round_trip(tiny_image_folder, tmp_path_factory):
    return round_trip("glow", ["-d", "folder", "-i", tiny_image_folder, *GLOW_RUN],
                      tmp_path_factory.mktemp("glow_round_trip"))


ROUND_TRIPS = ["pixelcnn_round_trip", "glow_round_trip"]


@pytest.mark.parametrize("trip", ROUND_TRIPS)
def test_the_converted_run_holds_the_runs_weights_averages_moments_and_step(trip, request):
    """Every tensor of B's checkpoint equals A's, except the epoch: neither original stores
    one, so B starts at epoch 0 (A finished epoch 0)."""
    _, run_a, run_b = request.getfixturevalue(trip)
    a_values = checkpoint_values(checkpoint.find_checkpoint(str(run_a)))
    b_values = checkpoint_values(checkpoint.find_checkpoint(str(run_b)))
    assert sorted(a_values) == sorted(b_values)
    assert a_values["optimizer/iterations/.ATTRIBUTES/VARIABLE_VALUE"] == 5
    assert (a_values["epoch/.ATTRIBUTES/VARIABLE_VALUE"],
            b_values["epoch/.ATTRIBUTES/VARIABLE_VALUE"]) == (1, 0)
    for key, value in a_values.items():
        if not key.startswith("epoch/"):
            np.testing.assert_array_equal(b_values[key], value, err_msg=key)


@pytest.mark.parametrize("trip", ROUND_TRIPS)
def test_eval_only_scores_every_test_image_identically(trip, request, tmp_path):
    """`train.py -o RUN --eval_only`, the run's flags read from its checkpoint."""
    _, run_a, run_b = request.getfixturevalue(trip)
    for run in (run_a, run_b):
        out = tmp_path / f"{run.name}_nll.npy"
        assert train.main(["-o", str(run), "--eval_only", "--out", str(out)]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "b_nll.npy"), np.load(tmp_path / "a_nll.npy"))


def test_the_converted_run_fine_tunes_samples_and_exports(glow_round_trip, tmp_path):
    """train.py -r continues from the stored step; sample.py draws and exports. Shown on the
    Glow round trip, whose tracing is cheap; both runs' checkpoints hold the same objects."""
    _, _, converted = glow_round_trip
    run_b = tmp_path / "b"
    shutil.copytree(converted, run_b)  # the other tests read the unchanged one
    assert train.main(["-o", str(run_b), "-r", "-x", "1"]) == 0
    resumed = checkpoint_values(checkpoint.find_checkpoint(str(run_b)))
    assert resumed["optimizer/iterations/.ATTRIBUTES/VARIABLE_VALUE"] == 5 + 5
    assert sample.main(["-o", str(run_b), "--n", "2"]) == 0
    assert sample.main(["-o", str(run_b), "--n", "2", "--export", str(tmp_path / "hub")]) == 0
    assert os.path.exists(tmp_path / "hub" / "saved_model.pb")


# -- configuration inference ---------------------------------------------------------------------

class RandomAdam:
    """Optimizer state for a fixture: random moments (second moments >= 0) and a step."""

    def __init__(self, variables, step, seed):
        rng = np.random.default_rng(seed)
        self.m1 = [tf.constant(rng.normal(size=v.shape), v.dtype) for v in variables]
        self.m2 = [tf.constant(np.abs(rng.normal(size=v.shape)), v.dtype) for v in variables]
        self.iterations = tf.constant(step, tf.int64)


def data_flags(data_set, tiny_image_folder, tmp_path):
    if data_set == "folder":
        return ["-d", "folder", "-i", tiny_image_folder, "--image_size", "8", "-b", "8", "-g", "1"]
    if data_set == "fashion_mnist":
        write_fashion_mnist(str(tmp_path))
        return ["-d", "fashion_mnist", "-i", str(tmp_path), "-b", "4", "-g", "1"]
    return ["-d", data_set, "-g", "1"]


PIXELCNN_CASES = {
    # name: (config, data set, flags the checkpoint cannot give)
    "elu R2 F4 M3": (dict(image_shape=(8, 8, 3), nr_resnet=2, nr_filters=4, nr_logistic_mix=3,
                          resnet_nonlinearity="elu"), "folder", ["--resnet_nonlinearity", "elu"]),
    "1 channel": (dict(image_shape=(32, 32, 1), nr_resnet=1, nr_filters=4, nr_logistic_mix=2),
                  "fashion_mnist", []),
    "class-conditional": (dict(image_shape=(32, 32, 3), nr_resnet=1, nr_filters=4,
                               nr_logistic_mix=2, num_classes=10), "real32", []),
    "energy distance": (dict(image_shape=(8, 8, 3), nr_resnet=1, nr_filters=4,
                             energy_distance=True), "folder", []),
}


@pytest.mark.parametrize("case", sorted(PIXELCNN_CASES))
def test_pixelcnn_configuration_is_read_from_names_and_shapes(case, tiny_image_folder,
                                                              tmp_path, capsys):
    config, data_set, needed = PIXELCNN_CASES[case]
    source = randomised(PixelCNNPP(PixelCNNConfig(**config)), seed=1)
    names = pixelcnn_original_names(source)
    save_tf1(str(tmp_path / "original.ckpt"), original_tensors(source, names, averages=Shadows()))
    lines = convert(capsys, "pixelcnn", tmp_path / "original.ckpt", "-o", tmp_path / "run",
                    *data_flags(data_set, tiny_image_folder, tmp_path), *needed)
    assert any(line.startswith("optimizer: fresh moments and step 0, because it holds no "
                               "optimizer tensors") for line in lines)
    stored, model, ema = converted_model(tmp_path / "run")
    expected = dict(PixelCNNConfig(**config).to_dict(),
                    dropout_p=stored["model_config"]["dropout_p"])  # a training flag
    if config.get("energy_distance"):  # unused by that head, so not in the checkpoint
        expected["nr_logistic_mix"] = stored["model_config"]["nr_logistic_mix"]
    assert stored["model_config"] == expected
    assert_same_weights(source, names, model, pixelcnn_original_names(model),
                        averages=(Shadows(), ema))


def test_elu_and_relu_need_the_flag_concat_elu_does_not(tiny_image_folder, tmp_path, capsys):
    """Both keep the channel count, so shapes tell concat_elu from them but not elu from relu."""
    config, data_set, _ = PIXELCNN_CASES["elu R2 F4 M3"]
    source = PixelCNNPP(PixelCNNConfig(**config))
    save_tf1(str(tmp_path / "original.ckpt"),
             original_tensors(source, pixelcnn_original_names(source)))
    line = refusal(capsys, tmp_path, "pixelcnn", tmp_path / "original.ckpt",
                   *data_flags(data_set, tiny_image_folder, tmp_path))
    assert "model/conv2d_3/V has shape [2, 3, 4, 4], this configuration needs [2, 3, 8, 4]" in line
    assert "--resnet_nonlinearity elu or relu" in line


def test_moments_skip_the_sampling_labels_and_fall_back_when_misplaced(tmp_path, capsys):
    """A class-conditional openai/pixel-cnn run saves its int sampling labels first among the
    unnamed tensors; the moments after them map. With each pair swapped, a first moment lands
    where a second is expected, is negative somewhere, and fresh moments are used instead."""
    config, _, _ = PIXELCNN_CASES["class-conditional"]
    source = randomised(PixelCNNPP(PixelCNNConfig(**config)), seed=2)
    names = pixelcnn_original_names(source)
    adam = RandomAdam(source.trainable_variables, step=41, seed=3)
    tensors = original_tensors(source, names, optimizer=adam, sampling_inputs=8)
    save_tf1(str(tmp_path / "original.ckpt"), tensors)
    lines = convert(capsys, "pixelcnn", tmp_path / "original.ckpt", "-o", tmp_path / "run",
                    "-d", "real32", "-g", "1")
    assert ("Polyak averages: none in the checkpoint, so the averages start as the raw "
            "weights") in lines
    assert any(line.startswith("optimizer: step 41 and both moments") for line in lines)
    values = checkpoint_values(checkpoint.find_checkpoint(str(tmp_path / "run")))
    for i in range(len(adam.m1)):
        for slot in ("m1", "m2"):
            np.testing.assert_array_equal(
                values[f"optimizer/{slot}/{i}/.ATTRIBUTES/VARIABLE_VALUE"],
                getattr(adam, slot)[i].numpy())

    swapped = dict(tensors)  # Variable_8 is the step counter, then (second, first) pairs
    for k in range(len(adam.m1)):
        second, first = f"Variable_{9 + 2 * k}", f"Variable_{10 + 2 * k}"
        swapped[second], swapped[first] = tensors[first], tensors[second]
    save_tf1(str(tmp_path / "swapped.ckpt"), swapped)
    lines = convert(capsys, "pixelcnn", tmp_path / "swapped.ckpt", "-o", tmp_path / "swapped",
                    "-d", "real32", "-g", "1")
    assert any(line.startswith("optimizer: fresh moments and step 0") and "negative" in line
               for line in lines)


GLOW_CASES = {
    # name: (config, data set, flags the checkpoint cannot give)
    "reverse additive learntop": (dict(image_shape=(8, 8, 3), n_levels=2, depth=2, width=4,
                                       flow_permutation=0, flow_coupling=0, learntop=True),
                                  "folder", []),
    "shuffle affine 3 levels": (dict(image_shape=(8, 8, 3), n_levels=3, depth=1, width=4,
                                     flow_permutation=1, flow_coupling=1, learntop=False,
                                     seed=11), "folder", []),
    "invconv ycond classifier": (dict(image_shape=(32, 32, 3), n_levels=2, depth=1, width=4,
                                      flow_permutation=2, learntop=True, ycond=True,
                                      weight_y=0.5, num_classes=10), "real32",
                                 ["--weight_y", "0.5"]),
    "LU affine": (dict(image_shape=(8, 8, 3), n_levels=2, depth=2, width=4, flow_permutation=3,
                       flow_coupling=1, learntop=True), "folder", []),
}


@pytest.mark.parametrize("case", sorted(GLOW_CASES))
def test_glow_configuration_is_read_from_names_and_shapes(case, tiny_image_folder, tmp_path,
                                                          capsys):
    """The shuffle case's source has another seed than the converted run, so its permutations
    differ from the ones the run would draw: equal indices mean they were copied."""
    config, data_set, needed = GLOW_CASES[case]
    source = randomised(Glow(GlowConfig(**config)), seed=4)
    names = glow_original_names(source)
    save_tf1(str(tmp_path / "original.ckpt"),
             original_tensors(source, names, averages=Shadows(),
                              optimizer=RandomAdam(source.trainable_variables, 7, seed=5)))
    lines = convert(capsys, "glow", tmp_path / "original.ckpt", "-o", tmp_path / "run",
                    *data_flags(data_set, tiny_image_folder, tmp_path), *needed)
    assert any(line.startswith("optimizer: step 7 and both moments") for line in lines)
    stored, model, ema = converted_model(tmp_path / "run")
    architecture = ("image_shape", "n_levels", "depth", "width", "flow_permutation",
                    "flow_coupling", "learntop", "ycond", "weight_y", "num_classes")
    expected = GlowConfig(**config).to_dict()
    assert {key: stored["model_config"][key] for key in architecture} == {
        key: expected[key] for key in architecture}
    assert_same_weights(source, names, model, glow_original_names(model),
                        averages=(Shadows(), ema))


# -- refusals -----------------------------------------------------------------------------------

def one_line_refusal(capsys, argv):
    """Runs the script, asserts exit 2 and exactly one line on stderr; returns that line."""
    capsys.readouterr()
    assert convert_checkpoint.main([str(arg) for arg in argv]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def refusal(capsys, tmp_path, *argv):
    """Refused conversion into tmp_path/refused: one line, and nothing written (no such directory,
    no staging directory beside it); returns the line."""
    before = sorted(os.listdir(tmp_path))
    line = one_line_refusal(capsys, [*argv[:2], "-o", tmp_path / "refused", *argv[2:]])
    assert sorted(os.listdir(tmp_path)) == before
    return line


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """Small checkpoints in each original's format: {family: prefix}."""
    root = tmp_path_factory.mktemp("originals")
    pixelcnn = PixelCNNPP(PixelCNNConfig(image_shape=(8, 8, 3), nr_resnet=1, nr_filters=4,
                                         nr_logistic_mix=2))
    glow = Glow(GlowConfig(image_shape=(8, 8, 3), n_levels=2, depth=1, width=4, learntop=True))
    prefixes = {}
    for name, model, names in (("pixelcnn", pixelcnn, pixelcnn_original_names(pixelcnn)),
                               ("glow", glow, glow_original_names(glow))):
        prefixes[name] = str(root / f"{name}.ckpt")
        save_tf1(prefixes[name], original_tensors(model, names, averages=Shadows()))
    return prefixes


def edited(originals, tmp_path, family_name, drop=(), replace=None):
    """A copy of the family's original checkpoint without `drop` and with `replace` values."""
    reader = tf.train.load_checkpoint(originals[family_name])
    tensors = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
               if name not in drop}
    tensors.update(replace or {})
    prefix = str(tmp_path / "edited.ckpt")
    save_tf1(prefix, tensors)
    return prefix


FOLDER_8 = ["-d", "folder", "--image_size", "8", "-b", "8", "-g", "1"]


def test_refuses_what_is_not_a_checkpoint(tiny_image_folder, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    for source in (tmp_path / "missing.ckpt", tmp_path / "notes.txt"):
        line = refusal(capsys, tmp_path, "pixelcnn", source, *FOLDER_8, "-i", tiny_image_folder)
        assert "is not a TF checkpoint" in line


def test_refuses_the_other_familys_checkpoint_and_its_own_format(originals, tiny_image_folder,
                                                                 tmp_path, capsys):
    data = [*FOLDER_8, "-i", tiny_image_folder]
    line = refusal(capsys, tmp_path, "pixelcnn", originals["glow"], *data)
    assert "is an openai/glow checkpoint, not openai/pixel-cnn" in line
    line = refusal(capsys, tmp_path, "glow", originals["pixelcnn"], *data)
    assert "is an openai/pixel-cnn checkpoint, not openai/glow" in line

    convert(capsys, "glow", originals["glow"], "-o", tmp_path / "ours", *data)
    line = refusal(capsys, tmp_path, "glow", checkpoint.find_checkpoint(str(tmp_path / "ours")),
                   *data)
    assert "is already a checkpoint of this project" in line


@pytest.mark.parametrize("family_name, drop, replace, message", [
    ("pixelcnn", ["model/conv2d_4/g"], None, "lacks tensor model/conv2d_4/g (shape [8])"),
    ("pixelcnn", [], {"model/dense_2/V": np.zeros([8, 5], np.float32)},
     "tensor model/dense_2/V has shape [8, 5], this configuration needs [8, 4]"),
    ("glow", ["model/0/0/f1/l_2/actnorm_scale/logs"], None,
     "lacks tensor model/0/0/f1/l_2/actnorm_scale/logs (shape [1, 1, 1, 4])"),
    ("glow", [], {"model/pool0/conv/logs": np.zeros([12], np.float32)},
     "tensor model/pool0/conv/logs has shape [12], this configuration needs [1, 12]"),
    ("glow", ["model/prior/p/b/ExponentialMovingAverage"], None,
     "lacks Polyak average model/prior/p/b/ExponentialMovingAverage"),
    ("glow", [], {"model/classifier/W": np.zeros([48, 10], np.float32)},
     "holds tensor model/classifier/W, which this configuration does not have"),
    ("glow", ["model/0/0/f1/l_1/W"], None,
     "missing tensor model/0/0/f1/l_1/W, which every openai/glow checkpoint holds"),
])
def test_refuses_a_missing_misshaped_or_foreign_tensor_naming_it(
        originals, family_name, drop, replace, message, tiny_image_folder, tmp_path, capsys):
    source = edited(originals, tmp_path, family_name, drop, replace)
    line = refusal(capsys, tmp_path, family_name, source, *FOLDER_8, "-i", tiny_image_folder)
    assert message in line


def test_refuses_a_save_dir_that_holds_a_run_or_anything_else(originals, tiny_image_folder,
                                                              tmp_path, capsys):
    data = [*FOLDER_8, "-i", tiny_image_folder]
    convert(capsys, "glow", originals["glow"], "-o", tmp_path / "ours", *data)
    (tmp_path / "log_only").mkdir()
    (tmp_path / "log_only" / "log.jsonl").write_text("{}\n")
    for save_dir, message in ((tmp_path / "ours", "already holds checkpoint"),
                              (tmp_path / "log_only", "is not empty (holds log.jsonl)")):
        before = {name: os.path.getmtime(save_dir / name) for name in os.listdir(save_dir)}
        line = one_line_refusal(capsys, ["glow", originals["glow"], "-o", save_dir, *data])
        assert message in line
        assert {name: os.path.getmtime(save_dir / name) for name in os.listdir(save_dir)} == before
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".converting_")]


# -- options ------------------------------------------------------------------------------------

def test_raw_averages_store_the_raw_weights_as_the_averages(originals, tiny_image_folder,
                                                            tmp_path, capsys):
    lines = convert(capsys, "glow", originals["glow"], "-o", tmp_path / "run", "--raw_averages",
                    *FOLDER_8, "-i", tiny_image_folder)
    assert "Polyak averages: the raw weights (--raw_averages)" in lines
    _, model, ema = converted_model(tmp_path / "run")
    for variable in model.trainable_variables:
        np.testing.assert_array_equal(ema.average(variable).numpy(), variable.numpy())
