"""BigGAN: spectral norm, orthogonal regularisation, conditional BN with standing statistics,
self-attention, truncation, interpolation sheets, EMA, checkpoints, and a tiny model trained on
real photo crops labelled by their source photo."""
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from biggan import layers
from biggan import model as bg
from biggan_steps import BigGANRun
from photo_crops import photos
from trainer.ema import ExponentialMovingAverage


def tiny_config(**overrides):
    values = dict(num_classes=3, G_ch=4, D_ch=4, dim_z=20, shared_dim=16, attn_res=(16,))
    values.update(overrides)
    return bg.BigGANConfig(**values)


@pytest.fixture(scope="module")
def untrained():
    return bg.BigGAN(tiny_config())


def top_singular_value(matrix):
    return np.linalg.svd(np.asarray(matrix), compute_uv=False)[0]


# ------------------------------------------------------------------------------------ spectral norm

@pytest.mark.parametrize("make", [
    lambda rng: layers.SNConv2D(3, 5, 3, rng, 1e-6),
    lambda rng: layers.SNConv2D(8, 4, 1, rng, 1e-6),
    lambda rng: layers.SNLinear(7, 4, rng, 1e-6),
    lambda rng: layers.SNEmbedding(6, 9, rng, 1e-6),
])
def test_spectral_norm_converges_to_unit_top_singular_value(make):
    rng = np.random.default_rng(0)
    layer = make(rng)
    # A kernel far from the orthogonal init, with a clear gap between its top singular values.
    layer.kernel.assign(3.0 * rng.normal(size=layer.kernel.shape).astype(np.float32))
    assert top_singular_value(layer.as_matrix(layer.kernel)) > 2.0
    for _ in range(60):
        layer.normalized_kernel(training=True)
    u = layer.u.numpy()
    normalized = layer.normalized_kernel(training=False)
    np.testing.assert_array_equal(layer.u.numpy(), u)  # eval calls leave u alone
    assert top_singular_value(layer.as_matrix(normalized)) == pytest.approx(1.0, abs=1e-3)


def test_spectral_norm_gradient_flows_through_sigma_only():
    """With u and v held constant, d<W/sigma, P>/dW = P/sigma - <W, P>/sigma^2 * u v^T
    (sigma = u W v^T after one power-iteration step from the stored u)."""
    rng = np.random.default_rng(1)
    layer = layers.SNLinear(5, 3, rng, 1e-6)
    layer.kernel.assign(rng.normal(size=(5, 3)).astype(np.float32))
    for _ in range(30):
        layer.normalized_kernel(training=True)
    probe = tf.constant(rng.normal(size=(5, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(layer.normalized_kernel(training=False) * probe)
    grad = tape.gradient(value, layer.kernel).numpy()
    w = layer.kernel.numpy().T.astype(np.float64)  # [out, in]
    u = layer.u.numpy().astype(np.float64)
    v = u @ w / np.linalg.norm(u @ w)
    u2 = v @ w.T / np.linalg.norm(v @ w.T)
    sigma = (u2 @ w @ v.T).item()
    p = probe.numpy().T.astype(np.float64)
    expected = p / sigma - np.sum(w * p) / sigma ** 2 * (u2.T @ v)
    np.testing.assert_allclose(grad, expected.T, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------- orthogonal reg

def test_orthogonal_regularization_matches_paper_formula_and_its_gradient():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(6, 10))  # [out, -1]
    beta = 1e-4
    paper_w = w.T  # the paper's [in, out] matrix: R = beta ||W^T W (.) (1 - I)||_F^2
    expected = beta * np.sum((paper_w.T @ paper_w * (1.0 - np.eye(6))) ** 2)
    w_tf = tf.constant(w, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(w_tf)
        value = layers.orthogonal_regularization(w_tf, beta)
    assert float(value) == pytest.approx(expected, rel=1e-10)
    # BigGAN-PyTorch utils.ortho's gradient 2 (W W^T (.) (1-I)) W is this loss's gradient / (2 beta).
    repo_gradient = 2.0 * (w @ w.T * (1.0 - np.eye(6))) @ w
    np.testing.assert_allclose(tape.gradient(value, w_tf).numpy(), 2.0 * beta * repo_gradient,
                               rtol=1e-10)
    assert float(layers.orthogonal_regularization(tf.constant(np.linalg.qr(w.T)[0].T), 1.0)) < 1e-12


def test_ortho_loss_covers_every_g_kernel_but_the_shared_embedding(untrained):
    with tf.GradientTape() as tape:
        loss = untrained.ortho_loss()
    kernels = [m.kernel for m in untrained.G.submodules if isinstance(m, layers.SpectralNormalized)]
    grads = tape.gradient(loss, [untrained.G.shared] + kernels)
    assert grads[0] is None
    assert all(g is not None for g in grads[1:])
    assert len(untrained.G.ortho_matrices()) == len(kernels) > 10


# ------------------------------------------------------------------------------------ batch norm

def test_conditional_batch_norm_formula_and_dependence_on_condition():
    rng = np.random.default_rng(3)
    bn = layers.ConditionalBatchNorm(4, 5, rng, 1e-5, 1e-6)
    x = rng.normal(2.0, 3.0, size=(6, 3, 3, 4)).astype(np.float32)
    c = rng.normal(size=(6, 5)).astype(np.float32)
    out = bn(x, c, layers.TRAIN).numpy()
    gain = c @ bn.gain.normalized_kernel(False).numpy()
    bias = c @ bn.bias.normalized_kernel(False).numpy()
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    expected = (x - mean) / np.sqrt(var + 1e-5) * (1 + gain[:, None, None]) + bias[:, None, None]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    # The running statistics moved 10% of the way to the batch's.
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.9 + 0.1 * var, rtol=1e-5)
    other = rng.normal(size=(6, 5)).astype(np.float32)
    assert np.abs(bn(x, c, layers.RUNNING).numpy() - bn(x, other, layers.RUNNING).numpy()).min() > 0


def test_standing_statistics_average_batch_statistics_and_leave_running_ones():
    rng = np.random.default_rng(4)
    bn = layers.BatchNorm(3, 1e-5)
    batches = [rng.normal(k, k + 1.0, size=(5, 2, 2, 3)).astype(np.float32) for k in range(3)]
    bn.reset_standing()
    for x in batches:
        bn(x, layers.ACCUMULATE)
    bn.finish_standing(len(batches))
    np.testing.assert_allclose(bn.standing_mean.numpy(), np.mean([x.mean((0, 1, 2)) for x in batches], 0),
                               rtol=1e-5)
    np.testing.assert_allclose(bn.standing_var.numpy(), np.mean([x.var((0, 1, 2)) for x in batches], 0),
                               rtol=1e-5)
    np.testing.assert_array_equal(bn.running_mean.numpy(), 0.0)
    np.testing.assert_array_equal(bn.running_var.numpy(), 1.0)
    x = batches[0]
    expected = (x - bn.standing_mean.numpy()) / np.sqrt(bn.standing_var.numpy() + 1e-5)
    np.testing.assert_allclose(bn(x, layers.STANDING).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_generator_standing_statistics_are_used_at_sampling(untrained):
    G, config = untrained.G, untrained.config
    z = bg.truncated_z(8, config.dim_z, 0.5, 11)
    y = tf.one_hot([0, 1, 2, 0, 1, 2, 0, 1], 3)
    # Standing statistics of exactly this batch make eval-mode G equal to batch-statistics G.
    for bn in G.batch_norms():
        bn.reset_standing()
    batch_mode = G.forward(z, y, layers.ACCUMULATE)
    for bn in G.batch_norms():
        bn.finish_standing(1.0)
    np.testing.assert_allclose(G.forward(z, y, layers.STANDING).numpy(), batch_mode.numpy(),
                               rtol=1e-4, atol=1e-5)
    assert np.abs(G.forward(z, y, layers.RUNNING).numpy() - batch_mode.numpy()).max() > 1e-2
    # accumulate_standing_stats replaces them and records what they are for.
    before = [bn.standing_var.numpy() for bn in G.batch_norms()]
    untrained.accumulate_standing_stats(0.5, num_batches=3, batch_size=8, seed=5)
    assert all(np.abs(b - bn.standing_var.numpy()).max() > 1e-4 for b, bn in zip(before, G.batch_norms()))
    np.testing.assert_allclose(G(z, y, truncation=0.5).numpy(), G.forward(z, y, layers.STANDING).numpy())
    with pytest.raises(tf.errors.InvalidArgumentError, match="accumulate_standing_stats"):
        G(z, y, truncation=0.7)
    with pytest.raises(tf.errors.InvalidArgumentError, match="accumulate_standing_stats"):
        G(z, y, truncation=0.5, ema=ExponentialMovingAverage(G.averaged_variables(), 0.9))


def test_generator_depends_on_class_and_accepts_soft_labels(untrained):
    G = untrained.G
    z = bg.truncated_z(3, untrained.config.dim_z, 1.0, 3)
    images = [G(z, tf.one_hot([k] * 3, 3)).numpy() for k in range(3)]
    assert images[0].shape == (3, 32, 32, 3) and np.abs(images[0]).max() <= 1.0
    assert np.abs(images[0] - images[1]).max() > 1e-3 and np.abs(images[1] - images[2]).max() > 1e-3
    np.testing.assert_array_equal(G(z, tf.constant([2, 2, 2])).numpy(), images[2])
    soft = G(z, tf.fill([3, 3], 1.0 / 3.0)).numpy()
    assert np.isfinite(soft).all() and np.abs(soft - images[0]).max() > 1e-3


# ----------------------------------------------------------------------------------- attention

def test_self_attention_starts_as_identity_and_matches_numpy():
    rng = np.random.default_rng(5)
    attention = layers.Attention(16, rng, 1e-6)
    x = rng.normal(size=(2, 4, 6, 16)).astype(np.float32)
    np.testing.assert_array_equal(attention(x, training=False).numpy(), x)
    attention.gamma.assign(0.7)
    kernel = lambda conv: conv.normalized_kernel(False).numpy()[0, 0]  # [Cin, Cout]
    def pooled(t):  # 2x2 max pool, [B, H/2 * W/2, C]
        b, h, w, c = t.shape
        return t.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4)).reshape(b, -1, c)
    theta = (x @ kernel(attention.theta)).reshape(2, 24, 2)
    phi = pooled(x @ kernel(attention.phi))
    g = pooled(x @ kernel(attention.g))
    logits = np.einsum("bic,bjc->bij", theta, phi)
    beta = np.exp(logits - logits.max(-1, keepdims=True))
    beta /= beta.sum(-1, keepdims=True)
    o = (np.einsum("bij,bjc->bic", beta, g) @ kernel(attention.o)).reshape(x.shape)
    np.testing.assert_allclose(attention(x, training=False).numpy(), x + 0.7 * o, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------- discriminator

def test_discriminator_projection_term(untrained):
    D = untrained.D
    x = tf.random.stateless_uniform([4, 32, 32, 3], [1, 2], -1.0, 1.0)
    logits = {k: D(x, tf.one_hot([k] * 4, 3)).numpy() for k in range(3)}
    assert logits[0].shape == (4,)
    # Logits are affine in y: a soft label gives the same mixture of the one-hot logits.
    mixed = D(x, tf.constant([[0.2, 0.5, 0.3]] * 4)).numpy()
    np.testing.assert_allclose(mixed, 0.2 * logits[0] + 0.5 * logits[1] + 0.3 * logits[2],
                               rtol=1e-4, atol=1e-4)
    assert np.abs(logits[0] - logits[1]).min() > 0


# ----------------------------------------------------------------------------------- sampling

@pytest.mark.parametrize("truncation", [0.3, 1.0])
def test_truncated_z_is_a_scaled_normal_truncated_at_two(truncation):
    z = bg.truncated_z(500, 120, truncation, seed=7).numpy()
    assert np.abs(z).max() <= 2.0 * truncation + 1e-6
    assert np.abs(z).max() > 1.9 * truncation  # the bound is reached: it is TN(-2,2), not smaller
    assert np.std(z / truncation) == pytest.approx(0.88, abs=0.02)  # std of N(0,1) cut at +-2
    np.testing.assert_array_equal(bg.truncated_z(500, 120, truncation, seed=7).numpy(), z)


def test_truncation_zero_gives_one_image_per_class(untrained):
    config = untrained.config
    untrained.accumulate_standing_stats(0.0, num_batches=2, batch_size=8, seed=0)
    y = tf.one_hot([1, 1], 3)
    images = [untrained.G(bg.truncated_z(2, config.dim_z, 0.0, seed), y, truncation=0.0).numpy()
              for seed in (1, 2, 3)]
    for image in images[1:]:
        np.testing.assert_array_equal(image, images[0])
    other = untrained.G(bg.truncated_z(2, config.dim_z, 0.0, 1), tf.one_hot([2, 2], 3), truncation=0.0)
    assert np.abs(other.numpy() - images[0]).max() > 1e-3


def test_interpolation_endpoints_and_class_only_sheets(untrained):
    config = untrained.config
    sheet = bg.interpolation_sheet(untrained, seed_a=1, class_a=0, seed_b=2, class_b=2, num_rows=2,
                                   steps=5, truncation=0.5, num_standing_batches=2)
    assert sheet.shape == (2, 5, 32, 32, 3)
    for column, seed, label in ((0, 1, 0), (4, 2, 2)):
        direct = untrained.G(bg.truncated_z(2, config.dim_z, 0.5, seed), tf.one_hot([label] * 2, 3),
                             truncation=0.5)
        np.testing.assert_allclose(sheet[:, column].numpy(), direct.numpy(), rtol=1e-5, atol=1e-6)
    # Class-only: z is the same at every step and y moves on the segment between the classes.
    z_a = bg.truncated_z(2, config.dim_z, 0.5, 1)
    z, y = bg.interpolate(z_a, tf.one_hot([0, 0], 3), z_a, tf.one_hot([2, 2], 3), steps=5)
    np.testing.assert_array_equal(z.numpy(), np.repeat(z_a.numpy(), 5, axis=0))
    np.testing.assert_allclose(y.numpy()[:5], [[1 - t, 0, t] for t in np.linspace(0, 1, 5)], atol=1e-7)
    class_only = bg.interpolation_sheet(untrained, 1, 0, 1, 2, 2, 5, 0.5, num_standing_batches=2).numpy()
    assert np.abs(class_only[:, 0] - class_only[:, -1]).max() > 1e-3
    noise_only = bg.interpolation_sheet(untrained, 1, 1, 1, 1, 2, 3, 0.5, num_standing_batches=2).numpy()
    np.testing.assert_allclose(noise_only[:, 0], noise_only[:, -1], rtol=1e-5, atol=1e-6)


def test_truncation_sweep_and_sample_shapes(untrained):
    sweep = bg.truncation_sweep(untrained, [0.0, 1.0], num_images=3, seed=4,
                                num_standing_batches=2).numpy()
    assert sweep.shape == (2, 3, 32, 32, 3)
    assert np.abs(sweep[0] - sweep[1]).max() > 1e-3
    images = bg.sample(untrained, 5, seed=3, labels=[0, 1, 2, 0, 1], truncation=0.4,
                       num_standing_batches=2)
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.uint8


# ----------------------------------------------------------------------------------- config

def test_config_rounds_dim_z_and_round_trips():
    config = bg.BigGANConfig(image_shape=(64, 64, 3), num_classes=5, dim_z=122)
    assert config.num_z_chunks == 5 and config.dim_z == 120
    assert bg.BigGANConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert bg.BigGANConfig(hier=False, dim_z=121).dim_z == 121
    with pytest.raises(ValueError, match="square images"):
        bg.BigGANConfig(image_shape=(28, 28, 1))
    with pytest.raises(ValueError, match="unknown BigGAN config keys"):
        bg.BigGANConfig.from_dict({"G_chh": 3})


def test_architectures_follow_biggan_pytorch():
    assert bg.generator_arch(64, 32) == [(256, 256, 8), (256, 256, 16), (256, 256, 32)]
    assert [r for _, _, r in bg.generator_arch(8, 64)] == [8, 16, 32, 64]
    assert bg.discriminator_arch(2, 64)[-1] == (16, 32, False, 4)
    model = bg.BigGAN(tiny_config(image_shape=(64, 64, 3)))
    z = bg.truncated_z(2, model.config.dim_z, 1.0, 0)
    images = model.G(z, tf.one_hot([0, 1], 3))
    assert images.shape == (2, 64, 64, 3)
    assert model.D(images, tf.one_hot([0, 1], 3)).shape == (2,)


# ----------------------------------------------------------------------------------- training

def photo_patches(count, rng, side=32, photo_side=40):
    """Random side x side crops of astronaut / chelsea / coffee shrunk to photo_side x photo_side,
    labelled by their photo (classes 0, 1, 2): each class has its own layout and colours."""
    shrunk = [np.asarray(Image.fromarray(photo).resize((photo_side, photo_side), Image.BILINEAR))
              for photo in photos()]
    labels = np.arange(count) % 3
    images = []
    for label in labels:
        top, left = rng.integers(0, photo_side - side + 1, size=2)
        images.append(shrunk[label][top:top + side, left:left + side])
    return np.stack(images), labels.astype(np.int32)


def nearest_class_mean(images, class_means):
    """The class whose mean real image is nearest (mean squared error) to each image."""
    errors = ((images[:, None].astype(np.float32) - class_means[None]) ** 2).mean(axis=(2, 3, 4))
    return errors.argmin(axis=1)


def test_tiny_biggan_trains_on_photo_patches_and_samples_by_class(tmp_path):
    rng = np.random.default_rng(0)
    images, labels = photo_patches(1500, rng)
    class_means = np.stack([images[labels == k].mean(axis=0) for k in range(3)]).astype(np.float32)
    assert (nearest_class_mean(images, class_means) == labels).mean() > 0.95  # a fair classifier
    # Faster rates than the defaults and one D step per G step: a 300-step run on 2 CPU cores.
    run = BigGANRun(tiny_config(attn_res=(), G_lr=1e-3, D_lr=1e-3, num_D_steps=1, ema_start=100,
                                ema_decay=0.9), global_batch=16)
    model, ema = run.model, run.ema
    kernel, average = model.G.linear.kernel, ema.average(model.G.linear.kernel)
    losses = []
    for step in range(300):
        batch = rng.integers(0, len(images), 16)
        before = average.numpy()
        losses.append({k: float(v) for k, v in
                       run.step(images[batch], labels[batch], tf.constant([step, 0])).items()})
        if step == 0:  # before ema_start the average is a copy of G
            for variable in model.G.averaged_variables():
                np.testing.assert_array_equal(ema.average(variable).numpy(), variable.numpy())
        if step == 99:  # the 100th G step is the first averaged one
            np.testing.assert_allclose(average.numpy(), 0.9 * before + 0.1 * kernel.numpy(),
                                       rtol=1e-5, atol=1e-7)
    assert np.isfinite([list(step.values()) for step in losses]).all()
    assert all(optimizer.iterations.numpy() == 300 for optimizer in run.optimizers.values())
    assert np.abs(average.numpy() - kernel.numpy()).max() > 0

    model.accumulate_standing_stats(1.0, num_batches=4, batch_size=32, seed=0, ema=ema)
    z = bg.truncated_z(60, model.config.dim_z, 1.0, 5)
    classes = np.arange(60) % 3
    samples = bg.to_uint8(bg.generate(model, z, classes, 1.0, ema=ema)).numpy()
    assert np.abs(samples[classes == 0].astype(int) - samples[classes == 1]).mean() > 2
    assert samples[classes == 0].std(axis=0).mean() > 2  # not one image per class
    # Samples of class k look like crops of photo k: chance would be 1/3.
    accuracy = (nearest_class_mean(samples, class_means) == classes).mean()
    assert accuracy > 0.75, accuracy

    # Every variable exists after construction: a fresh model restores without a forward pass.
    path = tf.train.Checkpoint(model=model, ema=ema).write(str(tmp_path / "ckpt"))
    restored = BigGANRun(model.config, global_batch=16)
    tf.train.Checkpoint(model=restored.model, ema=restored.ema).read(path).assert_consumed()
    np.testing.assert_array_equal(
        bg.generate(restored.model, z, classes, 1.0, ema=restored.ema).numpy(),
        bg.generate(model, z, classes, 1.0, ema=ema).numpy())
