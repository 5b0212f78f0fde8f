"""A run's save directory: what makes it look like a run, the lock that keeps it to one run at a
time, the flags a resume takes from it, and its log after a resume.

Nothing here deletes or overwrites what another run wrote: a new run is refused in a directory
that holds any trace of a run, and a second run is refused while the lock is held.
"""
import fcntl
import json
import os
import socket
import time

from trainer import checkpoint as ckpt
from trainer import files
from trainer.logger import LOG_FILE

LOCK_FILE = "run.lock"

# Flags a resume may change, logged: they do not alter the steps the run takes (schedule,
# checkpoints, logging, samples, where the data lies), or, for precision, only their rounding
# (checkpoints do not depend on it: trainer/precision.py). A differing value of any other flag is
# refused unless --override names it (then it is logged too).
CHANGEABLE_ON_RESUME = {
    "max_epochs", "save_interval", "save_steps", "save_minutes", "keep_checkpoints",
    "log_interval", "num_samples", "sample_batch_size", "sheet_width", "data_dir", "precision"}
# Flags that say how this process is invoked, not what the run is: never taken or compared.
INVOCATION_FLAGS = {"save_dir", "load_params", "eval_only", "out", "checkpoint", "override",
                    "cache_dir"}
# May change together when the images per step (their product) stay the same.
BATCH_FLAGS = ("batch_size", "nr_gpu")


class RunDirError(Exception):
    """The save directory cannot be used as asked. The message is one line."""


def run_files(save_dir):
    """The entries of save_dir that belong to a run (checkpoint files in any state, the index
    file, config.json, log.jsonl), sorted; [] for a directory a new run may use."""
    if not os.path.isdir(save_dir):
        return []
    entries = set(os.listdir(save_dir)) & {ckpt.STATE_FILE, ckpt.CONFIG_FILE, LOG_FILE}
    for names in ckpt.checkpoint_files(save_dir).values():
        entries.update(names)
    return sorted(entries)


def refuse_new_run_over(save_dir):
    """RunDirError naming what is there when save_dir holds a run."""
    found = run_files(save_dir)
    if found:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        raise RunDirError(f"{save_dir!r} already holds a run ({shown}); pass --load_params to "
                          f"resume it or choose another --save_dir (nothing was changed)")


def remove_dead_temporaries(save_dir):
    """Remove what a run killed in the middle of a write left in save_dir (the run that holds
    its lock calls this once accepted, so no other run is writing there): the `<file>.tmp<pid>`
    files of atomic writes whose writer has ended (a live writer's, sample.py's say, are kept),
    and the `ckpt-..._temp` scratch directories of checkpoint saves, never a checkpoint."""
    for name in files.dead_temporaries(save_dir):
        os.remove(os.path.join(save_dir, name))
    for names in ckpt.checkpoint_files(save_dir).values():
        ckpt.remove_files(save_dir, [name for name in names if name.endswith("_temp")])


class SaveDirLock:
    """An exclusive lock on a save directory for the life of one run: the file run.lock, held
    with flock and naming its holder. The kernel drops the flock when the holder dies, however
    it dies, so a lock file left by a dead run is recognised as stale and taken over."""

    def __init__(self, save_dir):
        self.path = os.path.join(save_dir, LOCK_FILE)
        self.fd = None

    def acquire(self, notify):
        """Take the lock (creating save_dir); RunDirError when a live run holds it. notify(line)
        is told about a stale lock taken over."""
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise RunDirError(f"{os.path.dirname(self.path)!r} is in use by another run "
                                  f"({holder or 'holder unknown'}; lock {self.path}); wait for "
                                  f"it to end or choose another --save_dir") from None
            try:
                same_file = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:  # its holder removed it between our open and flock
                same_file = False
            if same_file:
                break
            os.close(fd)
        previous = _read(fd)
        if previous:
            notify(f"took over the stale lock {self.path} ({previous}; that process has ended)")
        holder = (f"pid {os.getpid()} on {socket.gethostname()} since "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        self.fd = fd
        return self

    def release(self):
        if self.fd is not None:
            try:
                os.remove(self.path)
            except FileNotFoundError:  # the run directory was removed while the run held it
                pass
            os.close(self.fd)
            self.fd = None


def _read(fd):
    return os.pread(fd, 1000, 0).decode(errors="replace").strip()


def stored_flags(paths):
    """(run configuration, path) of the newest of `paths` whose configuration reads back."""
    for path in paths:
        try:
            return ckpt.read_run_config(path), path
        except ckpt.DamagedCheckpointError:
            continue
    raise ckpt.CheckpointError(f"no checkpoint among {', '.join(paths)} can be read (each is "
                               f"damaged, e.g. by a kill while it was written); train afresh "
                               f"with another -o/--save_dir")


def resumed_flags(args, stored, given, eval_only):
    """The run's flags: every flag not given on the command line takes its stored value. For a
    resume (not --eval_only, which may score any data set), a given flag that differs from the
    stored one is refused (RunDirError) unless it is changeable or named by --override. Returns
    one line per accepted change."""
    changes, refused = [], []
    overrides = set(args.override or [])
    for name, value in stored.items():
        if not hasattr(args, name) or name in INVOCATION_FLAGS:
            continue  # a flag this code no longer has, or one about this process only
        if name not in given:
            setattr(args, name, value)
        elif getattr(args, name) != value and not eval_only:
            if name in CHANGEABLE_ON_RESUME or name in BATCH_FLAGS:
                changes.append(f"{name}: {value} -> {getattr(args, name)}")
            elif name in overrides:
                changes.append(f"{name}: {value} -> {getattr(args, name)} (--override)")
            else:
                refused.append(f"--{name} {getattr(args, name)} (the run has {value})")
    if refused:
        raise RunDirError(f"{refused[0]}: a resume keeps the run's training flags; drop the "
                          f"flag, or pass --override {refused[0].split()[0][2:]} to change it")
    if not eval_only and all(name in stored for name in BATCH_FLAGS):
        before = stored["batch_size"] * stored["nr_gpu"]
        if args.batch_size * args.nr_gpu != before and "batch_size" not in overrides:
            raise RunDirError(f"--batch_size {args.batch_size} x --nr_gpu {args.nr_gpu} images "
                              f"per step; the run has {before}, and an exact resume needs the "
                              f"same (or pass --override batch_size)")
    return changes


def trim_log(save_dir, step):
    """Drop the log records of steps after `step` (training the resumed checkpoint does not
    hold, which the resumed run logs again), so log.jsonl has one record per epoch. Returns how
    many were dropped."""
    path = os.path.join(save_dir, LOG_FILE)
    if not os.path.exists(path):
        return 0
    with open(path) as file:
        lines = file.readlines()
    kept = [line for line in lines if not _after(line, step)]
    if len(kept) == len(lines):
        return 0
    files.write_text(path, "".join(kept))
    return len(lines) - len(kept)


def _after(line, step):
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and isinstance(record.get("step"), int) and \
        record["step"] > step
