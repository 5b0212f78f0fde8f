"""Train an image model (PixelCNN++ by default; --model glow, --model biggan) with the shared
trainer.

    python3 train.py                          # small PixelCNN++ on the embedded real32 set (CPU)
    python3 train.py -d cifar -i /data/cifar  # openai/pixel-cnn's CIFAR-10 setting (8 GPUs x 16)
    python3 train.py -o save -r               # resume save/'s run with its own flags
    python3 train.py --eval_only              # test bits/dim + per-image NLL of save/'s checkpoint
    horovodrun -np 4 python3 train.py -g 1 ...    # 4 processes (Horovod), one device each
    TF_CONFIG='{...}' python3 train.py -g 1 ...   # one worker of a MultiWorkerMirroredStrategy

Several processes (trainer/dist.py) read a shard of the data each; rank 0 alone prints and writes.

Flags left unset take the model family's defaults for the data set (trainer/families/), or on
-r / --eval_only the stored run's; the log prints the resolved configuration.

Exit codes: 0 done; 1 the loss diverged; 2 bad flags, data or checkpoints, or a failed write
(one line on stderr, nothing written is lost); 3 stopped by SIGTERM or SIGINT after writing a
checkpoint (the line says how to resume). A second signal ends the process at once.
"""
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from trainer.startup import quiet_tensorflow_import  # noqa: E402

quiet_tensorflow_import()

from trainer import flags  # noqa: E402

if __name__ == "__main__":  # --help and flag mistakes answer before TensorFlow loads
    flags.parse_train_flags(sys.argv[1:])

import numpy as np  # noqa: E402

import data  # noqa: E402
from trainer import checkpoint, dist, files, loop, precision, run_dir  # noqa: E402
from trainer.logger import Logger  # noqa: E402

EXIT_STOPPED = 3
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def evaluate_only(trainer, args, out):
    nats = trainer.evaluate()  # every process takes part; rank 0 writes
    if not trainer.processes.is_chief:
        return
    with files.replaced(out, ".npy") as temporary:
        np.save(temporary, nats)
    print(f"test bits_per_dim = {trainer.test_bits_per_dim(nats):.4f} over {len(nats)} images; "
          f"per-image NLL (nats) written to {out}")


def checked_out_path(args):
    """--eval_only's output path, checked before the work: its directory must be writable."""
    out = args.out or os.path.join(args.save_dir, "test_nll.npy")
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise run_dir.RunDirError(f"--out {out}: directory {directory} does not exist or is "
                                  f"not writable; create it or pass another --out")
    return out


def with_stored_flags(argv, args, family):
    """(args, family, changes) of a resume or --eval_only: unset flags from the stored run,
    the model family too; RunDirError for a training flag changed on a resume."""
    paths = checkpoint.candidates(args.save_dir, args.checkpoint)
    stored, _ = run_dir.stored_flags(paths)
    given = flags.given_flags(family, argv)
    if "model" not in given and stored.get("model") not in (None, family.name):
        args, family = flags.parse_train_args([*argv, "--model", stored["model"]])
        given = flags.given_flags(family, argv)
    changes = run_dir.resumed_flags(args, stored.get("flags", {}), given, args.eval_only)
    return args, family, changes


class StopOnSignal:
    """SIGTERM / SIGINT ask the trainer to stop after its current step (it saves first); the
    handlers then fall back to the default, so a second signal ends the process at once."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.previous = {}

    def __enter__(self):
        for number in STOP_SIGNALS:
            self.previous[number] = signal.signal(number, self.handle)
        return self

    def handle(self, number, frame):
        for other in STOP_SIGNALS:
            signal.signal(other, signal.SIG_DFL)
        print(f"{signal.Signals(number).name}: stopping after this step with a checkpoint "
              f"(send it again to end at once)", file=sys.stderr, flush=True)
        self.trainer.request_stop(signal.Signals(number).name)

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)


def train(trainer, args, devices, changes, lock):
    processes = trainer.processes
    resume = args.load_params
    if lock is not None:
        lock.acquire(notify=print)
    started = trainer.start(resume=resume, checkpoint=args.checkpoint)
    if lock is not None:  # accepted: what a killed writer left here is debris
        run_dir.remove_dead_temporaries(args.save_dir)
    if resume and int(trainer.epoch.numpy()) >= args.max_epochs:
        raise loop.ConfigError(f"the run has trained {int(trainer.epoch.numpy())} epochs "
                               f"already; pass -x above that to train on")
    logger = None
    if processes.is_chief:
        if resume:
            dropped = run_dir.trim_log(args.save_dir, int(trainer.iterations.numpy()))
            if dropped:
                print(f"log.jsonl: dropped {dropped} record(s) after step "
                      f"{int(trainer.iterations.numpy())}, which this resume trains again")
        logger = Logger(args.save_dir, args.log_interval)
        logger.config({**vars(args), "devices": devices, "processes": processes.size,
                       "global_batch": trainer.global_batch,
                       "steps_per_epoch": trainer.steps_per_epoch,
                       "parameters": trainer.num_parameters(), "start": started,
                       "changed_flags": changes},
                      resumed=resume)
    trainer.fit(logger)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(arg) for arg in argv]
    args, family = flags.parse_train_args(argv)
    lock = None
    try:
        changes = []
        if args.load_params or args.eval_only:
            args, family, changes = with_stored_flags(argv, args, family)
        out = checked_out_path(args) if args.eval_only else None
        strategy, processes, devices = dist.setup(args.nr_gpu)
        trainer = loop.Trainer(family, args, strategy, processes)
        if args.eval_only:
            trainer.start(resume=True, checkpoint=args.checkpoint)
            evaluate_only(trainer, args, out)
            return 0
        if processes.is_chief:
            lock = run_dir.SaveDirLock(args.save_dir)
        with StopOnSignal(trainer):
            train(trainer, args, devices, changes, lock)
    except loop.Stopped as stopped:
        print(stopped, flush=True)
        # every process has said so before any exits: horovodrun ends the other ranks as soon
        # as one exits with a non-zero code
        trainer.processes.barrier()
        return EXIT_STOPPED
    except loop.NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (data.DataError, dist.DeviceError, loop.ConfigError, checkpoint.CheckpointError,
            run_dir.RunDirError, precision.PrecisionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a failed write: full disk, permissions, a missing directory
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}; earlier checkpoints are intact",
              file=sys.stderr)
        return 2
    finally:
        if lock is not None:
            lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
