"""Run logs, all written by rank 0:

- stdout: the resolved configuration, then one line per epoch in openai/pixel-cnn's format
  ("Iteration 3, time = 41s, train bits_per_dim = 5.1, test bits_per_dim = 5.0").
- `<save_dir>/log.jsonl`: one JSON object per line. The first is the configuration
  ({"config": ..., "resumed": ...}); then a step record every `log_interval` global steps
  ({"step": s, "train/bits_per_dim": ..., "train/learning_rate": ..., "train/grad_norm": ...,
  "train/images_per_second": ...}: means over the steps since the previous record, the learning
  rate at step s) and an epoch record after every epoch ({"epoch": e, "step": s, "time": seconds,
  "train_bits_per_dim": epoch mean, "test_bits_per_dim": ...}).
- `<save_dir>/tensorboard`: the step records' scalars under their names (train/...), each
  epoch's test metrics as test/... and the sample sheets as samples/...; the x axis is the step.
- `<save_dir>/curves.png`: the train and test curves of log.jsonl, redrawn at every save.

Progress on stderr goes through `data.progress` (plain lines off a terminal).
"""
import io
import json
import os

from PIL import Image, ImageDraw, ImageFont

from trainer import files

LOG_FILE = "log.jsonl"
CURVES_FILE = "curves.png"


def grouped(name, group="train"):
    """A scalar's name under its TensorBoard group: train_bits_per_dim -> train/bits_per_dim,
    test_bits_per_dim -> test/bits_per_dim, G_loss -> train/G_loss."""
    for prefix in ("train", "test"):
        if name.startswith(prefix + "_"):
            return f"{prefix}/{name[len(prefix) + 1:]}"
    return f"{group}/{name}"


def printed(name):
    """openai/pixel-cnn's epoch line says "train bits_per_dim"; other names print as they are."""
    return name.replace("_", " ", 1) if name.startswith(("train_", "test_")) else name


class Logger:
    def __init__(self, save_dir, log_interval=50):
        import tensorflow as tf  # here, so that train.py --help never imports TensorFlow
        self.summary = tf.summary
        os.makedirs(save_dir, exist_ok=True)
        self.save_dir, self.log_interval = save_dir, log_interval
        self.path = os.path.join(save_dir, LOG_FILE)
        self.writer = tf.summary.create_file_writer(os.path.join(save_dir, "tensorboard"))
        self._sums, self._steps, self._images, self._seconds = {}, 0, 0, 0.0

    def _append(self, record):
        with open(self.path, "a") as file:
            file.write(json.dumps(record, sort_keys=True) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def _scalars(self, step, scalars):
        with self.writer.as_default(step=step):
            for name, value in scalars.items():
                self.summary.scalar(name, value)
        self.writer.flush()

    def config(self, config, resumed=False):
        """Print the resolved configuration and log it (first line of a fresh log)."""
        print("configuration" + (" (resumed run)" if resumed else "") + ":")
        for key in sorted(config):
            print(f"  {key} = {config[key]}")
        self._append({"config": config, "resumed": resumed})

    def message(self, text):
        print(text, flush=True)

    def train_step(self, step, losses, images, seconds, learning_rates):
        """Account one training step (global step `step` done, its `losses` {name: float},
        `images` in the global batch, `seconds` since the previous step); at every
        log_interval-th step write a step record. `learning_rates(step)` -> {name: float}."""
        for name, value in losses.items():
            self._sums[name] = self._sums.get(name, 0.0) + value
        self._steps += 1
        self._images += images
        self._seconds += seconds
        if step % self.log_interval:
            return
        scalars = {grouped(name): total / self._steps for name, total in self._sums.items()}
        scalars.update({grouped(name): value for name, value in learning_rates(step).items()})
        if self._seconds > 0:
            scalars["train/images_per_second"] = self._images / self._seconds
        self._append({"step": step, **scalars})
        self._scalars(step, scalars)
        self._sums, self._steps, self._images, self._seconds = {}, 0, 0, 0.0

    def epoch(self, epoch, step, seconds, scalars):
        """One epoch's scalars: a line on stdout and a log.jsonl record; the test metrics to
        TensorBoard as test/... (the training scalars went there step by step)."""
        text = ", ".join(f"{printed(name)} = {value:.4g}" for name, value in scalars.items())
        print(f"Iteration {epoch}, time = {seconds:.0f}s, {text}", flush=True)
        self._append({"epoch": epoch, "step": step, "time": seconds, **scalars})
        self._scalars(step, {grouped(name): value for name, value in scalars.items()
                             if name.startswith("test_")})

    def image(self, name, grid, step):
        """A uint8 image [H, W, C] to TensorBoard as samples/<name>."""
        import numpy as np
        with self.writer.as_default(step=step):
            self.summary.image(f"samples/{name}", np.asarray(grid)[None])
        self.writer.flush()

    def write_curves(self):
        """Redraw <save_dir>/curves.png from log.jsonl."""
        buffer = io.BytesIO()
        draw_curves(read_log(self.path)).save(buffer, format="PNG")
        files.write_bytes(os.path.join(self.save_dir, CURVES_FILE), buffer.getvalue())


def read_log(path):
    """The records of a log.jsonl, oldest first."""
    with open(path) as file:
        return [json.loads(line) for line in file if line.strip()]


def curves_of(records):
    """{name: [(step, value), ...]} of what curves.png plots: every train/... loss of the step
    records (not the learning rate, norm or speed) and every test_... metric of the epoch
    records (as test/...). A resumed run's log repeats no step: later records win."""
    series = {}
    for record in records:
        if "config" in record or "step" not in record:
            continue
        if "epoch" in record:
            values = {grouped(name): value for name, value in record.items()
                      if name.startswith("test_")}
        else:
            values = {name: value for name, value in record.items()
                      if name.startswith("train/") and not name.endswith(NOT_PLOTTED)}
        for name, value in values.items():
            series.setdefault(name, {})[record["step"]] = value
    return {name: sorted(points.items()) for name, points in series.items()}


NOT_PLOTTED = ("learning_rate", "grad_norm", "images_per_second")
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14),
           (23, 190, 207), (140, 86, 75), (127, 127, 127)]


def draw_curves(records, size=(800, 480)):
    """A line plot (PIL image) of curves_of(records) against the step, one colour per curve,
    with a legend and the axis ranges written at the ends."""
    width, height = size
    image = Image.new("RGB", size, "white")
    pen = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    series = curves_of(records)
    left, right, top, bottom = 70, width - 20, 20, height - 40
    pen.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    points = [point for curve in series.values() for point in curve]
    if not points:
        pen.text((left + 10, top + 10), "no step records yet", fill=(0, 0, 0), font=font)
        return image
    steps = [step for step, _ in points]
    values = [value for _, value in points if value == value and abs(value) != float("inf")]
    x0, x1 = min(steps), max(max(steps), min(steps) + 1)
    y0, y1 = (min(values), max(values)) if values else (0.0, 1.0)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def position(step, value):
        return (left + (right - left) * (step - x0) / (x1 - x0),
                bottom - (bottom - top) * (value - y0) / (y1 - y0))

    for index, (name, curve) in enumerate(sorted(series.items())):
        colour = COLOURS[index % len(COLOURS)]
        finite = [position(s, v) for s, v in curve if v == v and abs(v) != float("inf")]
        if len(finite) > 1:
            pen.line(finite, fill=colour, width=2)
        for x, y in finite[-1:] if len(finite) > 1 else finite:
            pen.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        pen.text((left + 10, top + 8 + 14 * index), name, fill=colour, font=font)
    pen.text((4, top), f"{y1:.4g}", fill=(0, 0, 0), font=font)
    pen.text((4, bottom - 10), f"{y0:.4g}", fill=(0, 0, 0), font=font)
    pen.text((left, bottom + 6), f"step {x0}", fill=(0, 0, 0), font=font)
    pen.text((right - 80, bottom + 6), f"step {x1}", fill=(0, 0, 0), font=font)
    return image
