"""Train an image model (PixelCNN++ by default; --model glow, --model biggan) with the shared
trainer.

    python3 train.py                          # small PixelCNN++ on the embedded real32 set (CPU)
    python3 train.py -d cifar -i /data/cifar  # openai/pixel-cnn's CIFAR-10 setting (8 GPUs x 16)
    python3 train.py -d cifar -i /data/cifar -r   # resume from the newest checkpoint in save/
    python3 train.py --eval_only              # test bits/dim + per-image NLL of save/'s checkpoint
    horovodrun -np 4 python3 train.py -g 1 ...    # 4 processes (Horovod), one device each
    TF_CONFIG='{...}' python3 train.py -g 1 ...   # one worker of a MultiWorkerMirroredStrategy

Several processes (trainer/dist.py) read a shard of the data each; rank 0 alone prints and writes.

Flags left unset take the model family's defaults for the data set (trainer/families/); the log
prints the resolved configuration.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from trainer.startup import quiet_tensorflow_import  # noqa: E402

quiet_tensorflow_import()

import numpy as np  # noqa: E402

import data  # noqa: E402
from trainer import checkpoint, dist, flags, loop  # noqa: E402
from trainer.logger import Logger  # noqa: E402


def evaluate_only(trainer, args):
    nats = trainer.evaluate()  # every process takes part; rank 0 writes
    if not trainer.processes.is_chief:
        return
    out = args.out or os.path.join(args.save_dir, "test_nll.npy")
    temporary = f"{out}.tmp{os.getpid()}.npy"
    np.save(temporary, nats)
    os.replace(temporary, out)
    print(f"test bits_per_dim = {trainer.test_bits_per_dim(nats):.4f} over {len(nats)} images; "
          f"per-image NLL (nats) written to {out}")


def main(argv=None):
    args, family = flags.parse_train_args(argv)
    try:
        strategy, processes, devices = dist.setup(args.nr_gpu)
        trainer = loop.Trainer(family, args, strategy, processes)
        started = trainer.start(resume=args.load_params or args.eval_only)
        if args.eval_only:
            evaluate_only(trainer, args)
            return 0
        logger = None
        if processes.is_chief:
            logger = Logger(args.save_dir, args.log_interval)
            logger.config({**vars(args), "devices": devices, "processes": processes.size,
                           "global_batch": trainer.global_batch,
                           "steps_per_epoch": trainer.steps_per_epoch,
                           "parameters": trainer.num_parameters(), "start": started},
                          resumed=args.load_params)
        trainer.fit(logger)
    except loop.NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (data.DataError, dist.DeviceError, loop.ConfigError,
            checkpoint.CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
