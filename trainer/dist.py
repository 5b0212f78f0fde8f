"""Devices: one tf.distribute.MirroredStrategy over `nr_gpu` devices.

As in openai/pixel-cnn, --nr_gpu N trains data-parallel on N GPUs with --batch_size images on each
(CUDA_VISIBLE_DEVICES restricts which GPUs TensorFlow sees). On a machine without GPUs, N logical
CPU devices stand in for them, so the multi-device code path runs (slowly) anywhere. Logical
devices can only be set up before TensorFlow initialises its runtime; a runtime that is already
initialised (e.g. by tests/conftest.py) is accepted when it has enough of them.
"""
import tensorflow as tf


class DeviceError(Exception):
    """The requested devices do not exist. The message is one line."""


def logical_cpus(count):
    """Split the CPU into `count` logical devices if TensorFlow has not initialised yet; returns
    the number of logical CPU devices the runtime has (or will have)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu) or []
    if len(configured) < count:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
        except RuntimeError:  # already initialised: keep what it has
            pass
    return len(tf.config.list_logical_devices("CPU"))


def mirrored_strategy(nr_gpu):
    """(strategy, description) for `nr_gpu` devices; DeviceError when they are not there."""
    if nr_gpu < 1:
        raise DeviceError(f"--nr_gpu must be at least 1, got {nr_gpu}")
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if nr_gpu > len(gpus):
            raise DeviceError(f"--nr_gpu {nr_gpu} asks for more GPUs than the {len(gpus)} visible "
                              f"ones (CUDA_VISIBLE_DEVICES); lower --nr_gpu")
        devices = [f"/gpu:{i}" for i in range(nr_gpu)]
        description = f"{nr_gpu} GPU(s): {', '.join(devices)}"
    else:
        available = logical_cpus(nr_gpu)
        if available < nr_gpu:
            raise DeviceError(f"--nr_gpu {nr_gpu}: no GPU visible and the TensorFlow runtime was "
                              f"already initialised with {available} logical CPU device(s); "
                              f"lower --nr_gpu")
        devices = [f"/cpu:{i}" for i in range(nr_gpu)]
        description = (f"no GPU visible: {nr_gpu} logical CPU device(s) stand in for --nr_gpu "
                       f"{nr_gpu} ({', '.join(devices)})")
    return tf.distribute.MirroredStrategy(devices), description


def assign_on_every_device(variable, value):
    """variable.assign(value) for every device's copy of a variable (mirrored or plain), from
    cross-replica context. Same result as a mirrored variable's own assign, with a fraction of the
    tracing work (it matters for the hundreds of variables an optimizer step updates)."""
    for copy in tf.distribute.get_strategy().experimental_local_results(variable):
        copy.assign(value)
