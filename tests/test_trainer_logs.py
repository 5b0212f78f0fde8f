"""Run logs (trainer.logger) and quiet start-up (trainer.startup): plain progress lines off a
terminal, step records every log_interval steps in log.jsonl and TensorBoard, curves.png, and no
TensorFlow start-up notices in train.py's output."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data import progress as progress_lines
from trainer import logger as logs
from trainer import startup

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_plain_progress_prints_whole_lines_with_the_postfix(capsys):
    bar = progress_lines.PlainProgress(range(3), 3, "epoch 0 train", "steps", interval=0.0)
    for step in bar:
        bar.set_postfix({"loss": f"{step:.1f}"})
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == ["epoch 0 train: 1/3 steps",
                                                      "epoch 0 train: 2/3 steps",
                                                      "epoch 0 train: 3/3 steps"]
    assert lines[-1].endswith("loss = 2.0") and "\r" not in "".join(lines)


def test_plain_progress_counts_updates_from_where_it_resumed(capsys):
    with progress_lines.PlainProgress(total=10, desc="decoding", unit="img", initial=4,
                                      interval=0.0) as bar:
        bar.update(3)
        bar.update(3)
    assert [line.split(",")[0] for line in capsys.readouterr().err.splitlines()] == [
        "decoding: 7/10 img", "decoding: 10/10 img"]


def test_progress_off_a_terminal_is_plain_and_silent_when_disabled(capsys):
    bar = progress_lines.progress(range(4), total=4, desc="test", disable=True)
    assert isinstance(bar, progress_lines.PlainProgress)  # captured stderr is no terminal
    bar.interval = 0.0
    assert list(bar) == [0, 1, 2, 3]
    assert capsys.readouterr().err == ""


def test_progress_write_puts_a_whole_line_on_stdout_with_either_kind(capsys, monkeypatch):
    plain = progress_lines.progress(range(2), desc="plain")
    plain.write("step 1: held-out 4.2")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    bar = progress_lines.progress(range(2), desc="bar")
    assert not isinstance(bar, progress_lines.PlainProgress)  # tqdm on a terminal
    for _ in bar:
        bar.write("step 2: held-out 4.1")
    assert capsys.readouterr().out.splitlines() == ["step 1: held-out 4.2",
                                                    "step 2: held-out 4.1",
                                                    "step 2: held-out 4.1"]


def tensorboard_scalars(directory):
    """{tag: {step: value}} of the scalars in a TensorBoard directory."""
    import tensorflow as tf
    from tensorboard.compat.proto.event_pb2 import Event
    values = {}
    for name in sorted(os.listdir(directory)):
        for record in tf.data.TFRecordDataset(os.path.join(directory, name)):
            event = Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    number = float(tf.make_ndarray(value.tensor))
                    values.setdefault(value.tag, {})[event.step] = number
    return values


def test_step_records_hold_interval_means_under_grouped_names(tmp_path, capsys):
    log = logs.Logger(str(tmp_path), log_interval=2)
    losses = [{"train_bits_per_dim": 5.0, "grad_norm": 1.0},
              {"train_bits_per_dim": 4.0, "grad_norm": 3.0},
              {"train_bits_per_dim": 3.0, "grad_norm": 5.0}]
    for step, scalars in enumerate(losses, start=1):
        log.train_step(step, scalars, images=8, seconds=0.5,
                       learning_rates=lambda step: {"learning_rate": 0.1 * step})
    log.epoch(0, 3, 1.5, {"train_bits_per_dim": 4.0, "test_bits_per_dim": 4.5})
    records = logs.read_log(str(tmp_path / logs.LOG_FILE))
    assert records[0] == {"step": 2, "train/bits_per_dim": 4.5, "train/grad_norm": 2.0,
                          "train/learning_rate": pytest.approx(0.2),
                          "train/images_per_second": 16.0}
    assert len(records) == 2 and records[1]["epoch"] == 0  # step 3 waits for step 4
    assert "Iteration 0, time = 2s, train bits_per_dim = 4, test bits_per_dim = 4.5" in \
        capsys.readouterr().out
    scalars = tensorboard_scalars(str(tmp_path / "tensorboard"))
    assert scalars["train/bits_per_dim"] == {2: 4.5}
    assert scalars["test/bits_per_dim"] == {3: 4.5}
    assert "train/train_bits_per_dim" not in scalars and "test_bits_per_dim" not in scalars


def test_gan_losses_print_under_their_own_names(tmp_path, capsys):
    logs.Logger(str(tmp_path)).epoch(2, 9, 3.0, {"D_loss_real": 0.5, "G_loss": 1.25})
    assert "D_loss_real = 0.5, G_loss = 1.25" in capsys.readouterr().out
    assert logs.grouped("D_loss_real") == "train/D_loss_real"


def test_curves_plot_train_losses_and_test_metrics_against_the_step(tmp_path):
    records = [{"config": {}, "resumed": False},
               {"step": 10, "train/bits_per_dim": 6.0, "train/learning_rate": 1e-3},
               {"step": 20, "train/bits_per_dim": 5.0, "train/grad_norm": 9.0},
               {"epoch": 0, "step": 20, "time": 1.0, "train_bits_per_dim": 5.5,
                "test_bits_per_dim": 5.2},
               {"step": 20, "train/bits_per_dim": 4.0}]  # a resumed run's record wins
    assert logs.curves_of(records) == {"train/bits_per_dim": [(10, 6.0), (20, 4.0)],
                                       "test/bits_per_dim": [(20, 5.2)]}
    image = np.asarray(logs.draw_curves(records))
    assert image.shape == (480, 800, 3)
    for colour in logs.COLOURS[:2]:  # one colour per curve
        assert (image == colour).all(axis=-1).any()
    assert not (image == logs.COLOURS[2]).all(axis=-1).any()


def quiet_import_output(code):
    """stderr of a fresh Python that runs `code` after quiet_tensorflow_import()."""
    program = ("from trainer.startup import quiet_tensorflow_import\n"
               "quiet_tensorflow_import()\n" + code)
    return subprocess.run([sys.executable, "-c", program], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300,
                          env={k: v for k, v in os.environ.items()
                               if k != "TF_CPP_MIN_LOG_LEVEL"}).stderr


def test_tensorflow_imports_without_its_start_up_notices_and_keeps_other_lines():
    err = quiet_import_output("import os, sys\n"
                              "import tensorflow as tf\n"
                              "print('after', tf.constant(2.0).numpy(), file=sys.stderr)\n")
    assert "oneDNN" not in err and "absl::InitializeLog" not in err
    assert err.strip().splitlines()[-1] == "after 2.0"


def test_the_quiet_loader_keeps_every_line_that_is_not_a_notice(tmp_path, capfd):
    import importlib.util
    module_file = tmp_path / "noisy.py"
    module_file.write_text("import os\n"
                           f"os.write(2, b'I0000 port.cc:153] {startup.NOTICES[1]} ...\\n')\n"
                           "os.write(2, b'a real warning\\n')\n")
    spec = importlib.util.spec_from_file_location("noisy", module_file)
    spec.loader = startup.QuietLoader(spec.loader)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert capfd.readouterr().err == "a real warning\n"


def test_train_py_output_is_whole_lines_and_logs_every_interval(tiny_image_folder, tmp_path):
    save_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "train.py"), "-d", "folder", "-i",
         tiny_image_folder, "--image_size", "8", "-q", "1", "-n", "8", "-m", "2", "-b", "4",
         "-x", "2", "-t", "1", "-ns", "1", "--sample_batch_size", "4", "--log_interval", "3",
         "-o", str(save_dir)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "\r" not in output and "oneDNN" not in output and "absl" not in output
    records = logs.read_log(str(save_dir / logs.LOG_FILE))
    steps = [record for record in records if "step" in record and "epoch" not in record]
    assert [record["step"] for record in steps] == [3, 6, 9, 12, 15, 18]  # 10 steps per epoch
    for record in steps:
        assert {"train/bits_per_dim", "train/grad_norm", "train/learning_rate",
                "train/images_per_second"} <= set(record)
        assert all(np.isfinite(value) for value in record.values())
    epochs = [record for record in records if "epoch" in record]
    assert [record["step"] for record in epochs] == [10, 20]
    scalars = tensorboard_scalars(str(save_dir / "tensorboard"))
    assert sorted(scalars["train/bits_per_dim"]) == [3, 6, 9, 12, 15, 18]
    assert sorted(scalars["test/bits_per_dim"]) == [10, 20]
    curves = Image.open(save_dir / logs.CURVES_FILE)
    assert curves.size == (800, 480)
    with open(save_dir / logs.LOG_FILE) as file:
        assert json.loads(file.readline())["config"]["log_interval"] == 3
