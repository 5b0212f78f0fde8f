"""Mixed precision (trainer/precision.py): the policy reaches the convolutions and stops before
the likelihoods and the flow; the bfloat16 model scores like the float32 one, its pixel mass
still sums to one, Glow's log-determinants and inverse stay exact; fp16's loss scale skips a
step with non-finite gradients and recovers; checkpoints resume under any policy; one step on
2 devices equals one on 1 device in bfloat16 too; and the fast sampler's cached network stays
closer to the bf16 network than bf16 is to fp32."""
import math

import numpy as np
import pytest
import tensorflow as tf

import train
from cli_errors import last_error_line
from data.pixels import to_model_input
from glow import nn as glow_nn
from glow.model import Glow, GlowConfig
from photo_crops import photo_crops
from pixel_cnn_pp import nn
from pixel_cnn_pp.model import PixelCNNConfig, PixelCNNPP
from fast_generation import teacher_forced_params
from saved_state import checkpoint_values
from test_fast_generation import PARITY_CONFIGS, parity_case
from test_trainer_loop import make_trainer, same_start_and_batch
from trainer import checkpoint, dist, optim, precision

# bf16 keeps 8 significant bits: the per-image NLL of these small models (8x8 crops, 192
# sub-pixels, seeded weights) moves by up to 3.3e-3 of itself (measured; 5.4e-3 with other random
# weights), so 1e-2 passes with margin while a
# broken network (a wrong cast, a missing layer) is far off; that the likelihood itself is float32
# is asserted on the traced graph above.
NLL_RELATIVE_TOLERANCE = 1e-2
MAX_FAST_BF16_GAP = 0.25


def pixelcnn(image_shape=(8, 8, 3), **config):
    """A tiny PixelCNN++ initialised on 8 photo crops, the crops in [-1, 1], and their one-hot
    classes (None for an unconditional model)."""
    tf.random.set_seed(0)  # the initial weights: every run tests the same model
    model = PixelCNNPP(PixelCNNConfig(image_shape=image_shape, nr_resnet=1, nr_filters=16,
                                      nr_logistic_mix=5, **config))
    x = to_model_input(photo_crops(8, image_shape[0], seed=3)[..., :image_shape[2]])
    h = tf.one_hot(np.arange(8) % 3, 3) if config.get("num_classes") else None
    model.initialize(x, h, seed=[0, 0])
    return model, x, h


def graph_ops(function, *args):
    return function.get_concrete_function(*args).graph.get_operations()


def test_policy_puts_convolutions_in_bf16_and_the_likelihood_in_float32():
    model, x, _ = pixelcnn()
    precision.apply(model, "bf16")
    assert precision.low_precision_modules(model) == [model]

    @tf.function(autograph=False)
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss(x, training=True, seed=[1, 2]))
        return tape.gradient(loss, model.trainable_variables)

    ops = graph_ops(step, x)
    convolutions = [op for op in ops if op.type in ("Conv2D", "Conv2DBackpropInput",
                                                    "Conv2DBackpropFilter", "MatMul")]
    assert convolutions and all(op.get_attr("T") == tf.bfloat16 for op in convolutions)
    softplus = [op for op in ops if op.type == "Softplus"]  # the logistic CDFs of the likelihood
    assert softplus and all(op.outputs[0].dtype == tf.float32 for op in softplus)
    norms = [op for op in ops if op.type == "Rsqrt"]  # weight normalisation's 1/||V||
    assert norms and all(op.outputs[0].dtype == tf.float32 for op in norms)
    assert model(x).dtype == tf.float32


def test_glow_policy_reaches_only_the_coupling_networks():
    config = GlowConfig(image_shape=(8, 8, 3), n_levels=2, depth=2, width=8, flow_permutation=3,
                        flow_coupling=1, learntop=True)
    model = Glow(config)
    images = photo_crops(4, 8, seed=1)
    model.initialize(images, seed=0)
    precision.apply(model, "bf16")
    assert {type(m).__name__ for m in precision.low_precision_modules(model)} == {
        "CouplingNetwork"}
    log_prob = tf.function(lambda x: model.log_prob(x, None, None, [1, 2]), autograph=False)
    ops = graph_ops(log_prob, images)
    convolutions = [op for op in ops if op.type == "Conv2D"]
    low = [op for op in convolutions if op.get_attr("T") == tf.bfloat16]
    # 3 convolutions per coupling network, 2 x 2 flow steps; the rest (priors) stay float32
    assert len(low) == 3 * 4 and len(convolutions) > len(low)
    assert all(op.outputs[0].dtype != tf.bfloat16 for op in ops
               if op.type in ("MatrixTriangularSolve", "Qr", "LogSigmoid", "Softplus"))


@pytest.mark.parametrize("config", [dict(), dict(image_shape=(8, 8, 1)),
                                    dict(num_classes=3), dict(resnet_nonlinearity="elu")])
def test_bf16_nll_matches_fp32_with_the_same_weights(config):
    model, x, h = pixelcnn(**config)
    fp32 = model.loss(x, h).numpy()
    precision.apply(model, "bf16")
    bf16 = model.loss(x, h).numpy()
    np.testing.assert_allclose(bf16, fp32, rtol=NLL_RELATIVE_TOLERANCE)
    assert not np.array_equal(bf16, fp32)  # it did compute in bf16


def test_pixel_mass_sums_to_one_on_the_bf16_network_output():
    model, x, _ = pixelcnn()
    precision.apply(model, "bf16")
    l = tf.cast(model(x[:1]), tf.float64)[0, 3, 4]  # one pixel's mixture parameters
    values = (np.arange(256) - 127.5) / 127.5
    total = 0.0
    for red in values.reshape(16, 16):  # 16 reds x 256 greens x 256 blues at a time
        grid = np.stack(np.meshgrid(red, values, values, indexing="ij"), axis=-1)
        params = tf.broadcast_to(l, [grid[..., 0].size, 1, 1, l.shape[-1]])
        total += np.exp(nn.mix_logistic_log_prob(tf.constant(grid.reshape(-1, 1, 1, 3)),
                                                 params).numpy()).sum()
    assert abs(total - 1.0) < 1e-6


@pytest.mark.parametrize("coupling", [0, 1])
def test_glow_logdet_is_the_jacobians_in_bf16(coupling, monkeypatch):
    """float64 flow, bf16 coupling networks. Autodiff through a bf16 network rounds the
    cotangents it carries, which leaks bf16 error into the Jacobian's diagonal blocks (log|det|
    off by ~1e-4 from depth 2 on, measured). The networks' own derivatives never enter the
    determinant (each coupling's Jacobian is block triangular), so the brute-force Jacobian is
    taken with their outputs held constant: then it must match the flow's log-det as in fp32."""
    original = glow_nn.CouplingNetwork.__call__
    monkeypatch.setattr(glow_nn.CouplingNetwork, "__call__",
                        lambda self, *args, **kwargs: tf.stop_gradient(
                            original(self, *args, **kwargs)))
    config = GlowConfig(image_shape=(4, 4, 3), n_levels=2, depth=2, width=8, flow_permutation=2,
                        flow_coupling=coupling, learntop=True, dtype="float64")
    model = Glow(config)
    rng = np.random.default_rng(coupling)
    for variable in model.trainable_variables:
        variable.assign(variable + 0.1 * rng.normal(size=variable.shape))
    precision.apply(model, "bf16")
    x = tf.constant(rng.uniform(-0.5, 0.5, [3, 4, 4, 3]))
    with tf.GradientTape() as tape:
        tape.watch(x)
        eps_list, logdet, logp = model.flow(x)
        eps = model.flatten(eps_list)
    log_abs_det = tf.linalg.slogdet(tf.reshape(tape.batch_jacobian(eps, x), [3, 48, 48]))[1]
    standard_normal = tf.reduce_sum(-0.5 * math.log(2 * math.pi) - 0.5 * tf.square(eps), axis=1)
    np.testing.assert_allclose(logdet + logp, standard_normal + log_abs_det, atol=1e-9)
    assert logdet.dtype == tf.float64
    monkeypatch.undo()
    precision.apply(model, "fp32")
    _, logdet_fp32, _ = model.flow(x)  # the bf16 networks did change the affine log-scales
    assert coupling == 0 or not np.array_equal(logdet_fp32.numpy(), logdet.numpy())


@pytest.mark.parametrize("n_bits_x", [8, 5])
def test_glow_decode_encode_is_exact_in_bf16(n_bits_x):
    model = Glow(GlowConfig(image_shape=(8, 8, 3), n_levels=2, depth=3, width=16,
                            flow_permutation=3, flow_coupling=1, n_bits_x=n_bits_x, seed=2))
    images = photo_crops(16, 8, seed=4)
    model.initialize(images, seed=0)
    for variable in model.trainable_variables:  # away from the identity the init gives
        variable.assign(variable + 0.02 * tf.random.stateless_normal(variable.shape, [1, 2]))
    precision.apply(model, "bf16")
    quantised = images // 2 ** (8 - n_bits_x) * 2 ** (8 - n_bits_x)
    np.testing.assert_array_equal(model.decode(model.encode(images)).numpy(), quantised)


def test_bf16_gradients_are_finite_at_the_edges():
    model, _, _ = pixelcnn()
    precision.apply(model, "bf16")
    edges = np.zeros([4, 8, 8, 3], np.uint8)
    edges[1], edges[2, :, :4], edges[3] = 255, 255, 127
    x = to_model_input(edges)
    out = model.out_nin  # push every log-scale to the -7 floor
    out.b.assign(tf.where(tf.range(out.b.shape[0]) >= 5, -20.0, out.b))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model.loss(x, training=True, seed=[3, 4]))
    grads = tape.gradient(loss, model.trainable_variables)
    assert np.isfinite(float(loss))
    assert all(np.isfinite(g.numpy()).all() for g in grads)


def test_fp16_loss_scale_skips_a_non_finite_step_and_recovers(monkeypatch):
    monkeypatch.setattr(precision, "GROWTH_INTERVAL", 3)
    w = tf.Variable([1.0, 2.0])
    optimizer = optim.Adam([w], 0.1)
    scale = precision.LossScale()
    scale.enabled = True

    @tf.function(autograph=False)
    def step(poison):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(tf.cast(w, tf.float16) * poison, tf.float32))
            scaled = scale.scaled(loss)
        grads, nonfinite = scale.unscaled(tape.gradient(scaled, [w]))
        scale.apply_if_finite(nonfinite, lambda: optimizer.apply(grads, [w]),
                              optimizer.iterations)

    initial = float(scale.scale.numpy())
    step(tf.constant(1.0, tf.float16))
    after_first = w.numpy().copy()
    assert not np.array_equal(after_first, [1.0, 2.0])
    step(tf.constant(np.inf, tf.float16))  # an overflow: skipped, scale halved, step counted
    np.testing.assert_array_equal(w.numpy(), after_first)
    assert float(scale.scale.numpy()) == initial / 2
    assert int(optimizer.iterations.numpy()) == 2 and int(scale.good_steps.numpy()) == 0
    for _ in range(3):  # three finite steps in a row double it back
        step(tf.constant(1.0, tf.float16))
    assert float(scale.scale.numpy()) == initial and not np.array_equal(w.numpy(), after_first)
    assert not scale.collapsed()
    scale.scale.assign(0.5)
    assert scale.collapsed()


def test_device_checks():
    gpu = tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")
    old = {"compute_capability": (7, 5)}
    with pytest.raises(precision.PrecisionError, match="fp16"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(tf.config.experimental, "get_device_details", lambda device: old)
            precision.check_devices("bf16", gpus=[gpu])
    precision.check_devices("bf16", gpus=[])  # CPUs: fine


def test_fp16_on_cpu_warns_in_one_line(capsys):
    precision.check_devices("fp16", gpus=[])
    assert capsys.readouterr().err.count("\n") == 1


TINY = ["-d", "folder", "--image_size", "8", "-q", "1", "-n", "8", "-m", "2", "-b", "8",
        "-t", "1", "-ns", "0"]


def test_a_collapsed_fp16_loss_scale_stops_the_run_in_one_line(tiny_image_folder, tmp_path,
                                                               monkeypatch, capsys):
    # a floor above the starting scale: collapsed after the first step, whatever its gradients
    monkeypatch.setattr(precision, "MIN_SCALE", 4 * precision.INITIAL_SCALE)
    run = tmp_path / "run"
    assert train.main(["-i", tiny_image_folder, "-o", str(run), *TINY, "-x", "1",
                       "--precision", "fp16"]) == 1
    line = last_error_line(capsys.readouterr().err)
    assert line.startswith("error: the fp16 loss scale fell below") and "epoch 0, step 1" in line
    assert "--precision bf16 or fp32" in line
    assert checkpoint.checkpoint_names(str(run)) == []


def test_checkpoints_resume_under_any_policy(tiny_image_folder, tmp_path):
    run = tmp_path / "run"
    assert train.main(["-i", tiny_image_folder, "-o", str(run), *TINY, "-x", "1",
                       "--precision", "bf16"]) == 0
    first = checkpoint.read_run_config(str(run / "ckpt-0"))
    assert first["flags"]["precision"] == "bf16"
    assert train.main(["-i", tiny_image_folder, "-o", str(run), *TINY, "-x", "2", "-r",
                       "--precision", "fp16"]) == 0
    assert train.main(["-i", tiny_image_folder, "-o", str(run), *TINY, "-x", "3", "-r"]) == 0
    last = checkpoint.latest_checkpoint(str(run))
    values = checkpoint_values(last)
    assert all(np.isfinite(value).all() for value in values.values()
               if np.issubdtype(value.dtype, np.number))
    # the third run kept the second's policy: resuming takes the run's precision by default
    assert checkpoint.read_run_config(last)["flags"]["precision"] == "fp16"


def test_one_step_on_two_devices_equals_one_on_one_in_bf16(tiny_image_folder, tmp_path):
    bf16 = ("--precision", "bf16")
    one = make_trainer("pixelcnn", tiny_image_folder, tmp_path / "one", 1, 6, *bf16)
    two = make_trainer("pixelcnn", tiny_image_folder, tmp_path / "two", 2, 3, *bf16)
    images, labels = same_start_and_batch(one, two, tiny_image_folder)
    loss_one = float(one.train_step(images, labels)["train_bits_per_dim"])
    loss_two = float(two.train_step(images, labels)["train_bits_per_dim"])
    # the same bf16 arithmetic per image, split differently: equal up to bf16 rounding
    assert loss_two == pytest.approx(loss_one, rel=1e-3)
    learning_rate = 1e-3
    differences = []
    for index, (a, b) in enumerate(zip(one.model.trainable_variables,
                                       two.model.trainable_variables)):
        # gradients (Adam's first moment) equal up to bf16 rounding: a few % of the layer's
        # gradient norm (sums over pixels and images round at 2^-8); a wrongly scaled or
        # missing replica would be 50-100% off
        m1_one = one.optimizers["optimizer"].m1[index].numpy()
        m1_two = two.optimizers["optimizer"].m1[index].numpy()
        assert np.linalg.norm(m1_two - m1_one) <= 0.1 * np.linalg.norm(m1_one) + 1e-12
        differences += [np.abs(copy.numpy() - a.numpy()).ravel()
                        for copy in dist.device_copies(b)]
    # Adam's first step moves a weight by about lr * sign(gradient): where a gradient is ~0 its
    # rounding may flip the sign (measured: under 1% of the weights), nowhere more
    differences = np.concatenate(differences)
    assert differences.max() <= 2 * learning_rate
    assert (differences > 1e-5).mean() <= 0.02


@pytest.mark.parametrize("name", sorted(PARITY_CONFIGS))
def test_fast_sampler_adds_less_error_than_bf16_itself(name):
    """In bf16 the cached layers round at other points than the full network (the parameters of
    about half the pixels differ, by up to ~1 bf16 step of the largest values), so the property
    that holds is relative: teacher-forced, the cached network's mixture parameters are closer on
    average to the bf16 network's than those are to the fp32 network's (measured 0.0044-0.0050
    against 0.0060-0.0080), and never off by more than MAX_FAST_BF16_GAP (measured up to 0.078;
    a wrong cache or weight is off by whole units)."""
    model, ema, x, h = parity_case(name)
    fp32 = model(x, h, ema=ema).numpy()
    precision.apply(model, "bf16")
    bf16 = model(x, h, ema=ema).numpy()
    cached = teacher_forced_params(model, x, h, ema=ema).numpy()
    gap = np.abs(cached - bf16)
    assert gap.mean() < np.abs(bf16 - fp32).mean()
    assert gap.max() <= MAX_FAST_BF16_GAP
