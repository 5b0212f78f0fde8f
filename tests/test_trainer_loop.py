"""The training loop across devices: one step on 1 device with batch 2B equals one step on 2
(logical) devices with batch B each, data-dependent init is identical on every replica, and the
test pass scores every test image exactly once however the batch is split."""
import os

import numpy as np
import pytest
import tensorflow as tf

import data
from data.pixels import bits_per_dim
from trainer import dist, flags, loop
from trainer.logger import Logger

# Tiny models (dropout off) per family; a family joins these tests by adding its flags here.
FAMILY_FLAGS = {
    "pixelcnn": ["-q", "1", "-n", "8", "-m", "2", "-p", "0"],
    "glow": ["--n_levels", "2", "--depth", "2", "--width", "8", "--dal", "2"],  # augmented too
}


def make_trainer(family_name, folder, save_dir, nr_gpu, batch_size, *extra):
    argv = ["--model", family_name, "-d", "folder", "-i", folder, "--image_size", "8",
            "-o", str(save_dir), "-g", str(nr_gpu), "-b", str(batch_size), "-s", "7",
            *FAMILY_FLAGS[family_name], *extra]
    args, family = flags.parse_train_args(argv)
    trainer = loop.Trainer(family, args, dist.mirrored_strategy(nr_gpu)[0])
    trainer.start(resume=False)
    return trainer


def same_start_and_batch(one, two, folder):
    """Give trainer `two` the weights and averages of `one`; returns the 6-image batch both
    then step on."""
    for source, target in zip(one.model.trainable_variables, two.model.trainable_variables):
        target.assign(source.numpy())
        two.ema.average(target).assign(one.ema.average(source).numpy())
    return next(iter(data.load("folder", folder, "train", image_size=8, batch_size=6,
                               shuffle=True, seed=7)))


def local_copies(strategy, variable):
    return [value.numpy() for value in strategy.experimental_local_results(variable)]


@pytest.fixture(scope="module", params=sorted(FAMILY_FLAGS))
def trainers(request, tiny_image_folder, tmp_path_factory):
    one = make_trainer(request.param, tiny_image_folder, tmp_path_factory.mktemp("one"), 1, 6)
    two = make_trainer(request.param, tiny_image_folder, tmp_path_factory.mktemp("two"), 2, 3)
    return one, two


def test_data_dependent_init_is_identical_on_every_replica(trainers):
    _, two = trainers
    assert two.strategy.num_replicas_in_sync == 2
    for variable in two.model.trainable_variables:
        first, second = local_copies(two.strategy, variable)
        np.testing.assert_array_equal(first, second)
    for variable in two.model.trainable_variables:  # the averages start from the initialised weights
        np.testing.assert_array_equal(two.ema.average(variable).numpy(), variable.numpy())


def test_one_step_on_two_devices_equals_one_step_on_one(trainers, tiny_image_folder):
    one, two = trainers
    images, labels = same_start_and_batch(one, two, tiny_image_folder)
    loss_one = float(one.train_step(images, labels)["train_bits_per_dim"])
    loss_two = float(two.train_step(images, labels)["train_bits_per_dim"])
    assert loss_two == pytest.approx(loss_one, rel=1e-5)
    for index, (a, b) in enumerate(zip(one.model.trainable_variables, two.model.trainable_variables)):
        for copy in local_copies(two.strategy, b):
            np.testing.assert_allclose(copy, a.numpy(), rtol=1e-4, atol=1e-6)
        for slots in ("m1", "m2"):  # gradients, compared relative to their layer's scale
            expected = getattr(one.optimizers["optimizer"], slots)[index].numpy()
            np.testing.assert_allclose(getattr(two.optimizers["optimizer"], slots)[index].numpy(), expected,
                                       rtol=1e-4, atol=1e-4 * np.abs(expected).max())
        np.testing.assert_allclose(two.ema.average(b).numpy(), one.ema.average(a).numpy(),
                                   rtol=1e-4, atol=1e-6)
    assert int(two.optimizers["optimizer"].iterations.numpy()) == int(one.optimizers["optimizer"].iterations.numpy()) == 1


def test_replicas_sum_to_the_single_device_mean_gradient(trainers, tiny_image_folder):
    # The per-replica loss is sum(bits/dim) / global batch: summed over replicas it is the mean
    # bits/dim of the global batch, which is what a single device computes directly.
    one, _ = trainers
    images, labels = next(iter(data.load("folder", tiny_image_folder, "test", image_size=8)
                               .batch(4)))
    nats = one.family.nats(one.model, images, labels)
    mean_bits = float(tf.reduce_mean(bits_per_dim(nats, one.info.image_shape)))
    assert one.test_bits_per_dim(nats.numpy()) == pytest.approx(mean_bits, rel=1e-6)


def test_evaluation_scores_every_test_image_once(trainers, tiny_image_folder):
    one, two = trainers
    test_size = data.info("folder", tiny_image_folder, image_size=8).split_sizes["test"]
    assert test_size % one.global_batch != 0  # the last batch is partial and must be padded
    nats_one, nats_two = one.evaluate(), two.evaluate()
    assert len(nats_one) == len(nats_two) == test_size
    images, labels = next(iter(data.load("folder", tiny_image_folder, "test", image_size=8,
                                         batch_size=test_size)))
    direct = one.family.nats(one.model, images, labels, ema=one.ema).numpy()
    np.testing.assert_allclose(nats_one, direct, rtol=1e-5)
    two_direct = two.family.nats(two.model, images, labels, ema=two.ema).numpy()
    np.testing.assert_allclose(nats_two, two_direct, rtol=1e-5)


def test_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(trainers, tmp_path):
    one, _ = trainers
    good = one.checkpoint.save(0)

    def files():
        return {name: open(os.path.join(one.args.save_dir, name), "rb").read()
                for name in sorted(os.listdir(one.args.save_dir))
                if os.path.isfile(os.path.join(one.args.save_dir, name))}

    before = files()
    first = one.model.trainable_variables[0]
    first.assign(np.full(first.shape, np.nan, np.float32))  # a diverged weight
    try:
        with pytest.raises(loop.NonFiniteLossError) as error:
            one.fit(Logger(str(tmp_path)))
        assert "non-finite training loss" in str(error.value)
        assert "\n" not in str(error.value)
        assert files() == before
    finally:
        one.checkpoint.restore(good)  # weights, averages and moments as before this test
