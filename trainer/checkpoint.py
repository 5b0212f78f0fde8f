"""Checkpoints: tf.train.CheckpointManager in the save directory, with the run's configuration
(model family, model config, flags) stored inside every checkpoint as a JSON string and beside
it as `config.json`, so `sample.py` needs no architecture flags.

tf.train.CheckpointManager writes the checkpoint files first and then replaces the small
`checkpoint` index file atomically, so a run killed mid-save still resumes from the previous one.
"""
import json
import os

import tensorflow as tf

CONFIG_FILE = "config.json"
RUN_CONFIG_KEY = "run_config/.ATTRIBUTES/VARIABLE_VALUE"


class CheckpointError(Exception):
    """Missing, corrupt or mismatched checkpoint. The message is one line."""


def write_json_atomic(path, value):
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w") as file:
        json.dump(value, file, indent=1, sort_keys=True)
    os.replace(temporary, path)


def latest_checkpoint(save_dir):
    """The newest checkpoint prefix in save_dir, or None."""
    return tf.train.latest_checkpoint(save_dir) if os.path.isdir(save_dir) else None


def find_checkpoint(save_dir=None, checkpoint=None):
    """The checkpoint prefix to load: `checkpoint` (a prefix such as save/ckpt-7) if given, else
    the newest one in save_dir."""
    if checkpoint:
        if not tf.io.gfile.glob(checkpoint + ".index"):
            raise CheckpointError(f"no checkpoint at {checkpoint} (expected {checkpoint}.index); "
                                  f"pass a prefix like <save_dir>/ckpt-N")
        return checkpoint
    path = latest_checkpoint(save_dir)
    if path is None:
        raise CheckpointError(f"no checkpoint in {save_dir!r}; train one with train.py "
                              f"--save_dir {save_dir} or pass the right --save_dir")
    return path


def read_run_config(path):
    """The run configuration dict stored in the checkpoint at `path`."""
    try:
        stored = tf.train.load_checkpoint(path).get_tensor(RUN_CONFIG_KEY)
        return json.loads(stored.decode() if isinstance(stored, bytes) else stored)
    except (tf.errors.OpError, ValueError, KeyError, IndexError) as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {_first_line(error)} "
                              f"(corrupt or not written by this trainer)") from None


def _first_line(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class RunCheckpoint:
    """The run's trackable objects (model, ema, optimizer, counters...) plus its configuration,
    saved with tf.train.CheckpointManager in `save_dir`.

    Build it outside any distribution strategy scope: the configuration is a string variable,
    which has no GPU kernel to be mirrored with.
    """

    def __init__(self, save_dir, run_config, max_to_keep=2, **objects):
        self.save_dir = save_dir
        self.run_config = run_config
        with tf.device("/cpu:0"):
            self._run_config_string = tf.Variable(json.dumps(run_config, sort_keys=True),
                                                  trainable=False, name="run_config")
        self.checkpoint = tf.train.Checkpoint(run_config=self._run_config_string, **objects)
        self.manager = tf.train.CheckpointManager(self.checkpoint, save_dir,
                                                  max_to_keep=max_to_keep)

    def save(self, number):
        """Write checkpoint `ckpt-<number>` and config.json; returns the checkpoint prefix."""
        os.makedirs(self.save_dir, exist_ok=True)
        path = self.manager.save(checkpoint_number=number)
        write_json_atomic(os.path.join(self.save_dir, CONFIG_FILE), self.run_config)
        return path

    def restore(self, path):
        """Load every value of `path` into the objects (an exact resume: all must match)."""
        _restore(self.checkpoint, path, partial=False)


def restore_weights(path, **objects):
    """Load the given objects (e.g. model=..., ema=...) from `path`, ignoring the rest of the
    file (optimizer slots, counters); every variable of the objects must be found."""
    _restore(tf.train.Checkpoint(**objects), path, partial=True)


def _restore(checkpoint, path, partial):
    try:
        status = checkpoint.restore(path)
        if partial:
            status.expect_partial().assert_existing_objects_matched()
        else:
            status.assert_consumed()
    except (tf.errors.OpError, ValueError, IndexError, AssertionError) as error:
        raise CheckpointError(f"cannot restore {path}: {_first_line(error)}") from None
