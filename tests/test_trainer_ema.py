"""The Polyak average: its update rule, its starting point and its checkpoint."""
import numpy as np
import pytest
import tensorflow as tf

from trainer import dist
from trainer.ema import ExponentialMovingAverage


def test_shadows_follow_the_exponential_moving_average():
    a = tf.Variable([1.0, -2.0])
    b = tf.Variable([[3.0]])
    a.assign([5.0, 5.0])  # e.g. the data-dependent init: the shadow starts from THIS value
    ema = ExponentialMovingAverage([a, b], decay=0.9)
    np.testing.assert_array_equal(ema.average(a).numpy(), [5.0, 5.0])
    expected_a, expected_b = np.array([5.0, 5.0]), np.array([[3.0]])
    rng = np.random.default_rng(0)
    for _ in range(4):
        a.assign(rng.normal(size=2).astype(np.float32))
        b.assign(rng.normal(size=(1, 1)).astype(np.float32))
        ema.apply()
        expected_a = 0.9 * expected_a + 0.1 * a.numpy()
        expected_b = 0.9 * expected_b + 0.1 * b.numpy()
    np.testing.assert_allclose(ema.average(a).numpy(), expected_a, rtol=1e-6)
    np.testing.assert_allclose(ema.average(b).numpy(), expected_b, rtol=1e-6)
    assert not ema.average(a).trainable


def test_average_of_an_unknown_variable_is_a_key_error():
    ema = ExponentialMovingAverage([tf.Variable(1.0)], decay=0.5)
    with pytest.raises(KeyError):
        ema.average(tf.Variable(1.0))


def test_mirrored_shadows_are_used_inside_replicas():
    strategy, _ = dist.mirrored_strategy(2)
    with strategy.scope():
        w = tf.Variable([2.0, 4.0])
        ema = ExponentialMovingAverage([w], decay=0.5)

    @tf.function
    def step():
        w.assign([0.0, 0.0])
        ema.apply()
        return strategy.run(lambda: ema.average(w) * 1.0)

    results = strategy.experimental_local_results(step())
    for value in results:
        np.testing.assert_allclose(value.numpy(), [1.0, 2.0])


def test_checkpoint_restores_shadows_without_storing_the_variables_twice(tmp_path):
    w = tf.Variable([1.0, 2.0])
    ema = ExponentialMovingAverage([w], decay=0.5)
    w.assign([3.0, 3.0])
    ema.apply()
    path = tf.train.Checkpoint(w=w, ema=ema).save(str(tmp_path / "ckpt"))
    names = sorted(name for name, _ in tf.train.list_variables(path)
                   if name.endswith("VARIABLE_VALUE") and not name.startswith("save_counter"))
    assert names == ["ema/shadows/0/.ATTRIBUTES/VARIABLE_VALUE", "w/.ATTRIBUTES/VARIABLE_VALUE"]
    fresh_w = tf.Variable([0.0, 0.0])
    fresh = ExponentialMovingAverage([fresh_w], decay=0.5)
    tf.train.Checkpoint(w=fresh_w, ema=fresh).restore(path).assert_consumed()
    np.testing.assert_allclose(fresh.average(fresh_w).numpy(), [2.0, 2.5])
