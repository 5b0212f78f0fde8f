"""Run logs: one JSON object per line in <save_dir>/log.jsonl (the first line is the resolved
configuration), TensorBoard scalars and images in <save_dir>/tensorboard, and plain lines on
stdout in the original's format."""
import json
import os

import numpy as np
import tensorflow as tf

LOG_FILE = "log.jsonl"


class Logger:
    def __init__(self, save_dir):
        os.makedirs(save_dir, exist_ok=True)
        self.path = os.path.join(save_dir, LOG_FILE)
        self.writer = tf.summary.create_file_writer(os.path.join(save_dir, "tensorboard"))

    def _append(self, record):
        with open(self.path, "a") as file:
            file.write(json.dumps(record, sort_keys=True) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def config(self, config, resumed=False):
        """Print the resolved configuration and log it (first line of a fresh log)."""
        print("configuration" + (" (resumed run)" if resumed else "") + ":")
        for key in sorted(config):
            print(f"  {key} = {config[key]}")
        self._append({"config": config, "resumed": resumed})

    def message(self, text):
        print(text, flush=True)

    def epoch(self, epoch, step, seconds, scalars):
        """One epoch's scalars: stdout, log.jsonl and TensorBoard (x axis: the global step)."""
        text = ", ".join(f"{name.replace('_', ' ', 1)} = {value:.4g}"
                         for name, value in scalars.items())
        print(f"Iteration {epoch}, time = {seconds:.0f}s, {text}", flush=True)
        self._append({"epoch": epoch, "step": step, "time": seconds, **scalars})
        with self.writer.as_default(step=step):
            for name, value in scalars.items():
                tf.summary.scalar(name, value)
        self.writer.flush()

    def image(self, name, grid, step):
        """A uint8 image [H, W, C] to TensorBoard."""
        with self.writer.as_default(step=step):
            tf.summary.image(name, np.asarray(grid)[None])
        self.writer.flush()
