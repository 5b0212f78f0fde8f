"""Adam (openai/pixel-cnn) and Adamax (openai/glow) against NumPy references on a toy problem."""
import numpy as np
import pytest
import tensorflow as tf

from trainer import dist, optim

TARGET = np.array([[0.5, -1.0, 2.0], [3.0, 0.0, -0.25]], np.float32)


def toy_gradient(w):
    """Gradient of sum((w - TARGET)^2 * [1..6]) (a badly scaled quadratic)."""
    return 2.0 * (w - TARGET) * np.arange(1, 7, dtype=np.float32).reshape(TARGET.shape)


def numpy_adam(w, steps, lr, decay, beta1=0.95, beta2=0.9995, eps=1e-8):
    m1, m2 = np.zeros_like(w, np.float64), np.zeros_like(w, np.float64)
    w = w.astype(np.float64)
    for t in range(1, steps + 1):
        g = toy_gradient(w)
        m1 = beta1 * m1 + (1 - beta1) * g
        m2 = beta2 * m2 + (1 - beta2) * g * g
        w = w - lr * decay ** t * (m1 / (1 - beta1 ** t)) / np.sqrt(m2 / (1 - beta2 ** t) + eps)
    return w, m1, m2


def numpy_adamax(w, steps, lr, beta1, beta2, weight_decay):
    m1, m2 = np.zeros_like(w, np.float64), np.zeros_like(w, np.float64)
    w = w.astype(np.float64)
    for t in range(1, steps + 1):
        g = toy_gradient(w)
        alpha = lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        m1 = beta1 * m1 + (1 - beta1) * g
        m2 = np.maximum(beta2 * m2, np.abs(g))
        w = weight_decay * w - alpha * m1 / (m2 + 1e-8)
    return w, m1, m2


def run_tf(make_optimizer, steps, strategy=None):
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        w = tf.Variable(np.ones_like(TARGET))
        optimizer = make_optimizer([w])

    @tf.function
    def step():
        optimizer.apply([tf.numpy_function(toy_gradient, [w.read_value()], tf.float32)], [w])

    for _ in range(steps):
        step()
    return w, optimizer


def test_adam_matches_numpy_reference_with_per_step_decay():
    steps, lr, decay = 25, 0.05, 0.99
    w, optimizer = run_tf(
        lambda v: optim.Adam(v, optim.exponential_decay(lr, decay)), steps)
    expected_w, expected_m1, expected_m2 = numpy_adam(np.ones_like(TARGET), steps, lr, decay)
    # float32 1 - 0.9995**t loses ~4 digits (as in the original), hence atol 1e-4 on weights
    # that move by ~1 over the run.
    np.testing.assert_allclose(w.numpy(), expected_w, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(optimizer.m1[0].numpy(), expected_m1, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(optimizer.m2[0].numpy(), expected_m2, rtol=1e-3, atol=1e-6)
    assert int(optimizer.iterations.numpy()) == steps


def test_adam_first_step_moves_each_weight_by_the_decayed_rate():
    # t = 1: bias-corrected m1/sqrt(m2) = g/|g| (up to eps), so each weight moves by lr*decay.
    w, _ = run_tf(lambda v: optim.Adam(v, optim.exponential_decay(0.1, 0.5)), 1)
    moved = np.ones_like(TARGET) - w.numpy()
    np.testing.assert_allclose(np.abs(moved), 0.05 * (TARGET != 1), rtol=1e-4)


def test_adam_epsilon_sits_inside_the_square_root():
    # One step with |g| = 1e-4: g / sqrt(g^2 + 1e-8) = 1/sqrt(2), whereas epsilon outside the
    # root would give ~1.
    w = tf.Variable([0.0])
    optimizer = optim.Adam([w], 0.1)
    optimizer.apply([tf.constant([1e-4])], [w])
    np.testing.assert_allclose(w.numpy(), [-0.1 / np.sqrt(2.0)], rtol=1e-3)


@pytest.mark.parametrize("weight_decay", [1.0, 0.999])
def test_adamax_matches_numpy_reference(weight_decay):
    steps, lr, beta1 = 25, 0.05, 0.9
    beta2 = optim.glow_beta2(train_iterations=20, polyak_epochs=1)
    assert beta2 == pytest.approx(0.95)
    w, optimizer = run_tf(
        lambda v: optim.Adamax(v, lr, beta2=beta2, beta1=beta1, weight_decay=weight_decay), steps)
    expected_w, expected_m1, expected_m2 = numpy_adamax(np.ones_like(TARGET), steps, lr, beta1,
                                                        beta2, weight_decay)
    np.testing.assert_allclose(w.numpy(), expected_w, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(optimizer.m1[0].numpy(), expected_m1, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(optimizer.m2[0].numpy(), expected_m2, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("make", [
    lambda v: optim.Adam(v, optim.exponential_decay(0.05, 0.99)),
    lambda v: optim.Adamax(v, 0.05, beta2=0.999, weight_decay=0.999)], ids=["adam", "adamax"])
def test_mirrored_copies_stay_identical_and_match_one_device(make):
    """Steps taken outside the strategy's scope still update every device's copy."""
    strategy, _ = dist.mirrored_strategy(2)
    w, optimizer = run_tf(make, 5, strategy)
    copies = [value.numpy() for value in strategy.experimental_local_results(w)]
    np.testing.assert_array_equal(copies[0], copies[1])
    assert not np.array_equal(copies[1], np.ones_like(TARGET))
    slot_copies = [v.numpy() for v in strategy.experimental_local_results(optimizer.m2[0])]
    np.testing.assert_array_equal(slot_copies[0], slot_copies[1])
    single, _ = run_tf(make, 5)
    np.testing.assert_allclose(copies[0], single.numpy(), rtol=1e-6)


def test_optimizer_state_round_trips_through_a_checkpoint(tmp_path):
    make = lambda v: optim.Adam(v, 0.05)  # noqa: E731
    w, optimizer = run_tf(make, 3)
    path = tf.train.Checkpoint(w=w, optimizer=optimizer).save(str(tmp_path / "ckpt"))
    restored_w = tf.Variable(np.zeros_like(TARGET))
    restored = make([restored_w])
    tf.train.Checkpoint(w=restored_w, optimizer=restored).restore(path).assert_consumed()
    assert int(restored.iterations.numpy()) == 3
    np.testing.assert_array_equal(restored.m2[0].numpy(), optimizer.m2[0].numpy())
