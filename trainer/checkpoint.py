"""Checkpoints of a run in its save directory, with the run's configuration (model family, model
config, flags) stored inside every checkpoint as a JSON string and beside it as `config.json`, so
`sample.py` needs no architecture flags.

Names: `ckpt-<e>` is written after epoch e; `ckpt-<e>-step<s>` in the middle of epoch e, at global
step s (a step or time interval, or a signal). Besides the run's variables a checkpoint holds its
position in the epoch (`progress`: batches of the epoch already trained and their loss sums), so a
resume continues mid-epoch exactly.

A save writes the checkpoint's files, then replaces the small `checkpoint` index file (the one
tf.train.latest_checkpoint reads) atomically, then deletes the run's own checkpoints (those the
index file lists, and the one the run resumed from) beyond the newest `max_to_keep`. A run killed
mid-save therefore still resumes from the previous one, and a failed save removes its partial files
and leaves every earlier file as it was. Files of another checkpoint that already carry the new
name (a damaged one that a resume fell back from, or one newer than the checkpoint a run was
resumed from) are moved into `superseded/<time>/`, never overwritten. Reading never trusts the
index file: the checkpoints are found by their file names, and a resume takes the newest that
restores completely (`restore_newest`).
"""
import gc
import json
import logging
import os
import re
import shutil
import time

import tensorflow as tf

from trainer import files

CONFIG_FILE = "config.json"
STATE_FILE = "checkpoint"
SUPERSEDED_DIR = "superseded"
RUN_CONFIG_KEY = "run_config/.ATTRIBUTES/VARIABLE_VALUE"
# ckpt-<epoch> or ckpt-<epoch>-step<step>, then .index or .data-<shard>-of-<shards>
_FILE = re.compile(r"^(ckpt-(\d+)(?:-step(\d+))?)(\.index|\.data-\d+-of-\d+|_temp)$")


class CheckpointError(Exception):
    """Missing, corrupt, mismatched or unwritable checkpoint. The message is one line."""


class DamagedCheckpointError(CheckpointError):
    """The checkpoint's files cannot be read back completely (truncated, corrupt, missing)."""


def write_json_atomic(path, value):
    files.write_text(path, json.dumps(value, indent=1, sort_keys=True))


def checkpoint_name(epoch, step=None):
    """`ckpt-<epoch>` (after epoch `epoch`) or `ckpt-<epoch>-step<step>` (during it)."""
    return f"ckpt-{epoch}" if step is None else f"ckpt-{epoch}-step{step}"


def _order(name):
    """Sort key: during epoch e (by step) comes before after epoch e."""
    match = _FILE.match(name + ".index")
    epoch, step = int(match.group(2)), match.group(3)
    return (epoch, 0, int(step)) if step is not None else (epoch, 1, 0)


def checkpoint_files(save_dir):
    """{checkpoint name: [its file names]} of every checkpoint in save_dir with any file left,
    damaged or not (an `_temp` directory is a save that never finished)."""
    found = {}
    if os.path.isdir(save_dir):
        for entry in sorted(os.listdir(save_dir)):
            match = _FILE.match(entry)
            if match:
                found.setdefault(match.group(1), []).append(entry)
    return found


def checkpoint_names(save_dir):
    """Names of the checkpoints in save_dir that have an index file, oldest first."""
    return sorted((name for name, entries in checkpoint_files(save_dir).items()
                   if name + ".index" in entries), key=_order)


def latest_checkpoint(save_dir):
    """The newest checkpoint prefix in save_dir (by name; it may be damaged), or None."""
    names = checkpoint_names(save_dir)
    return os.path.join(save_dir, names[-1]) if names else None


def candidates(save_dir, checkpoint=None):
    """The checkpoint prefixes a resume may load, newest first: [checkpoint] when one is named
    explicitly (a prefix such as save/ckpt-7), else every checkpoint in save_dir."""
    if checkpoint:
        if not tf.io.gfile.exists(checkpoint + ".index"):
            raise CheckpointError(f"no checkpoint at {checkpoint} (expected {checkpoint}.index); "
                                  f"pass a prefix like <save_dir>/ckpt-N")
        return [checkpoint]
    names = checkpoint_names(save_dir)
    if not names:
        raise CheckpointError(f"no checkpoint in {save_dir!r}; check --save_dir (train one with "
                              f"train.py --save_dir {save_dir})")
    return [os.path.join(save_dir, name) for name in reversed(names)]


def find_checkpoint(save_dir=None, checkpoint=None):
    """The checkpoint prefix to load: `checkpoint` if given, else the newest in save_dir."""
    return candidates(save_dir, checkpoint)[0]


def restore_newest(paths, restore, notify):
    """(path, restore(path)) for the first of `paths` (newest first) that restores completely.
    A damaged one (DamagedCheckpointError) is skipped with one line to notify(line), and its
    files are left as they are; other errors stop at once."""
    failures = []
    for path in paths:
        try:
            result = restore(path)
        except DamagedCheckpointError as error:
            failures.append(f"{os.path.basename(path)}: {error}")
            continue
        for failure in failures:
            notify(f"skipped damaged checkpoint {failure} (its files are kept); using {path}")
        return path, result
    raise CheckpointError(f"no checkpoint restores completely: {'; '.join(failures)}")


def read_run_config(path):
    """The run configuration dict stored in the checkpoint at `path`."""
    try:
        stored = tf.train.load_checkpoint(path).get_tensor(RUN_CONFIG_KEY)
        return json.loads(stored.decode() if isinstance(stored, bytes) else stored)
    except (tf.errors.OpError, ValueError, KeyError, IndexError) as error:
        raise DamagedCheckpointError(f"cannot read checkpoint {path}: {_first_line(error)} "
                                     f"(corrupt or not written by this trainer)") from None


def stored_keys(path):
    try:
        return {name for name, _ in tf.train.list_variables(path)}
    except (tf.errors.OpError, ValueError) as error:
        raise DamagedCheckpointError(f"cannot read checkpoint {path}: "
                                     f"{_first_line(error)}") from None


def _first_line(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def kept_names(save_dir):
    """The checkpoints the index file lists, oldest first (none if it is missing or garbled)."""
    try:
        with open(os.path.join(save_dir, STATE_FILE), errors="replace") as file:
            listed = re.findall(r'^all_model_checkpoint_paths: "(.*)"$', file.read(), re.M)
    except OSError:
        return []
    names = [os.path.basename(path) for path in listed]
    return [name for name in names if _FILE.match(name + ".index")]


def _write_state(save_dir, names):
    """The index file tf.train.latest_checkpoint reads (a CheckpointState text proto)."""
    lines = [f'model_checkpoint_path: "{names[-1]}"'] + \
        [f'all_model_checkpoint_paths: "{name}"' for name in names]
    files.write_text(os.path.join(save_dir, STATE_FILE), "\n".join(lines) + "\n")


def remove_files(save_dir, entries):
    """Remove these files and directories of save_dir (those that exist)."""
    for entry in entries:
        path = os.path.join(save_dir, entry)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)


class RunCheckpoint:
    """The run's trackable objects (model, ema, optimizer, counters...) plus its configuration
    and position in the epoch, saved in `save_dir` (see the module docstring).

    Build it outside any distribution strategy scope: the configuration is a string variable,
    which has no GPU kernel to be mirrored with.
    """

    def __init__(self, save_dir, run_config, max_to_keep=2, **objects):
        self.save_dir = save_dir
        self.run_config = run_config
        self.max_to_keep = max_to_keep
        self.objects = objects
        with tf.device("/cpu:0"):
            self._run_config_string = tf.Variable(json.dumps(run_config, sort_keys=True),
                                                  trainable=False, name="run_config")
            self._progress_string = tf.Variable("{}", trainable=False, name="progress")
        self.checkpoint = tf.train.Checkpoint(run_config=self._run_config_string,
                                              progress=self._progress_string, **objects)
        self.checkpoint.save_counter  # noqa: B018 -- created now, so every file holds it
        self.kept = None  # this run's checkpoints, oldest first (the index file's, at first)
        self.resumed_from = None  # the name of the checkpoint `restore` loaded

    def save(self, number, progress=None):
        """Write checkpoint `ckpt-<number>` (after epoch `number`) and config.json; returns the
        checkpoint prefix. `progress`: the position in the epoch (default: none, an epoch end)."""
        return self._write(checkpoint_name(number), progress)

    def save_mid_epoch(self, epoch, step, progress):
        """Write `ckpt-<epoch>-step<step>` holding `progress`; returns its prefix."""
        return self._write(checkpoint_name(epoch, step), progress)

    def _write(self, name, progress):
        save_dir = self.save_dir
        try:
            os.makedirs(save_dir, exist_ok=True)
            if self.kept is None:
                self.kept = self._own_checkpoints()
            self._set_aside(name)
            # this run's configuration, not the one a restore read back
            self._run_config_string.assign(json.dumps(self.run_config, sort_keys=True))
            self._progress_string.assign(json.dumps(progress or {}, sort_keys=True))
            self.checkpoint.save_counter.assign_add(1)
            prefix = os.path.join(save_dir, name)
            try:
                self.checkpoint.write(prefix)
            except BaseException:
                remove_files(save_dir, checkpoint_files(save_dir).get(name, []))
                raise
            kept = [kept for kept in self.kept if kept != name] + [name]
            pruned, self.kept = kept[:-self.max_to_keep], kept[-self.max_to_keep:]
            _write_state(save_dir, self.kept)
            write_json_atomic(os.path.join(save_dir, CONFIG_FILE), self.run_config)
            for old in pruned:
                remove_files(save_dir, checkpoint_files(save_dir).get(old, []))
        except (OSError, tf.errors.OpError) as error:
            previous = [other for other in checkpoint_names(save_dir) if other != name]
            intact = (f"the previous checkpoint {os.path.join(save_dir, previous[-1])} is "
                      f"intact" if previous else "no earlier checkpoint exists")
            raise CheckpointError(f"cannot write checkpoint {os.path.join(save_dir, name)}: "
                                  f"{_first_line(error)}; {intact}") from None
        return prefix

    def _own_checkpoints(self):
        """The checkpoints the index file lists and the one this run resumed from, which a kill
        between writing it and rewriting the index file left unlisted (oldest first)."""
        existing = checkpoint_names(self.save_dir)
        own = set(kept_names(self.save_dir)) | {self.resumed_from}
        return [name for name in existing if name in own]

    def _set_aside(self, name):
        """Move the files of an existing checkpoint called `name` to superseded/<time>/."""
        entries = checkpoint_files(self.save_dir).get(name)
        if not entries:
            return
        target = os.path.join(self.save_dir, SUPERSEDED_DIR,
                              time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
        os.makedirs(target, exist_ok=True)
        for entry in entries:
            os.replace(os.path.join(self.save_dir, entry), os.path.join(target, entry))
        if name in self.kept:
            self.kept.remove(name)
        print(f"moved the existing {name} (not the checkpoint this run resumed from) to "
              f"{target}/ instead of overwriting it", flush=True)

    def restore(self, path):
        """Load every value of `path` into the objects (an exact resume: all must match);
        returns the stored position in the epoch ({} at an epoch end)."""
        if "progress/.ATTRIBUTES/VARIABLE_VALUE" in stored_keys(path):
            _restore(self.checkpoint, path, partial=False)
            progress = json.loads(self._progress_string.numpy().decode())
        else:  # written before checkpoints held a position: always at an epoch end
            _restore(tf.train.Checkpoint(run_config=self._run_config_string, **self.objects),
                     path, partial=False)
            progress = {}
        if os.path.abspath(os.path.dirname(path)) == os.path.abspath(self.save_dir):
            self.resumed_from = os.path.basename(path)
        return progress


def restore_weights(path, **objects):
    """Load the given objects (e.g. model=..., ema=...) from `path`, ignoring the rest of the
    file (optimizer slots, counters); every variable of the objects must be found."""
    _restore(tf.train.Checkpoint(**objects), path, partial=True)


def _restore(checkpoint, path, partial):
    # A failed restore leaves TF's bookkeeping of the values it did not assign, which it reports
    # as one warning per value when collected; the one-line error says it all.
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        status = checkpoint.restore(path)
        if partial:
            status.expect_partial().assert_existing_objects_matched()
        else:
            status.assert_consumed()
    except (tf.errors.OpError, ValueError, IndexError, AssertionError) as error:
        message = f"cannot restore {path}: {_first_line(error)}"
        del error
        gc.collect()
        raise DamagedCheckpointError(message) from None
    finally:
        logger.setLevel(level)
