"""Training across processes, with real processes on this machine (trainer/dist.py):

* Horovod (horovodrun, Gloo) with 2 processes of batch B takes the same first step as one process
  with batch 2B, only rank 0 prints and writes, and every rank of a resumed run holds the
  checkpoint's weights (its test scores, gathered over ranks, equal the single-process ones);
* tf.distribute.MultiWorkerMirroredStrategy with 2 workers on loopback ports does the same, for
  PixelCNN++ and Glow;
* across ranks, every example is in exactly one rank's epoch.

Horovod runs in its own virtualenv with TensorFlow 2.13 (tests/horovod_env.py builds it once, a
few minutes); the single-process references for it run there too. Each run trains one epoch of
exactly one step: 40 training images, global batch 40, dropout off.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import data
import horovod_env
from launch import clean_environment, worker_addresses
from optional_env import fail_on_ci_else_skip
from saved_state import checkpoint_values
from trainer import dist, flags, loop

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROCESSES = 2
BATCH = 20  # per process; the 40 training images of tiny_image_folder make one global batch
FAMILY_FLAGS = {
    "pixelcnn": ["-q", "1", "-n", "8", "-m", "2", "-p", "0"],
    "glow": ["--n_levels", "2", "--depth", "1", "--width", "8"],
}
TIMEOUT = 400


def train_flags(family, folder, save_dir, batch, *extra):
    return ["train.py", "--model", family, "-d", "folder", "-i", folder, "--image_size", "8",
            "-b", str(batch), "-g", "1", "-x", "1", "-ns", "0", "-s", "7", "-o", str(save_dir),
            *FAMILY_FLAGS[family], *extra]


def run_single(python, arguments):
    result = subprocess.run([python, *arguments], cwd=REPO_ROOT, env=clean_environment(),
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def run_horovod(venv, arguments, temp_dir):
    bin_dir = os.path.join(venv, "bin")
    command = [os.path.join(bin_dir, "horovodrun"), "-np", str(PROCESSES), "-H",
               f"localhost:{PROCESSES}", "--gloo", os.path.join(bin_dir, "python"), *arguments]
    env = clean_environment(PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""),
                            TMPDIR=str(temp_dir))
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def run_multi_worker(python, arguments, temp_dir):
    """Start every worker of a loopback cluster; returns their (stdout, stderr)."""
    workers = worker_addresses(PROCESSES)
    processes = []
    for index in range(PROCESSES):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            [python, *arguments], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=clean_environment(TF_CONFIG=json.dumps(config), TMPDIR=str(temp_dir))))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=TIMEOUT))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, out[-2000:] + err[-3000:]
    return outputs


def assert_same_step(actual_dir, expected_dir):
    """Two one-step checkpoints agree. The optimizer moments (the summed gradients) agree to a
    tolerance relative to each tensor's scale: summation order changes their last bits.
    Weights and averages agree element by element except at a handful of elements: a first
    Adam/Adamax step is about lr * g / |g|, so where a gradient is within rounding of zero its
    sign, and the step, may flip. Unsummed or unaveraged gradients would be off everywhere by a
    factor of the process count."""
    expected, actual = (checkpoint_values(os.path.join(str(save_dir), "ckpt-0"))
                        for save_dir in (expected_dir, actual_dir))
    assert sorted(actual) == sorted(expected)
    assert int(actual["optimizer/iterations/.ATTRIBUTES/VARIABLE_VALUE"]) == 1
    elements, flipped = 0, 0
    for name, value in expected.items():
        scale = float(np.abs(value).max()) if value.size else 0.0
        close = np.isclose(actual[name], value, rtol=1e-4, atol=1e-6 + 1e-4 * scale)
        if name.startswith("optimizer/"):
            assert close.all(), name
        else:
            elements, flipped = elements + close.size, flipped + int((~close).sum())
    assert flipped <= 0.005 * elements, f"{flipped} of {elements} weights differ"


@pytest.fixture
def temp_dir(tmp_path):
    """TMPDIR of the launched processes: a run leaves nothing there (a worker's checkpoint
    scratch directory lives only as long as its save)."""
    path = tmp_path / "tmp"
    path.mkdir()
    yield path
    assert os.listdir(path) == []


def log_records(save_dir):
    with open(os.path.join(str(save_dir), "log.jsonl")) as file:
        return [json.loads(line) for line in file]


def assert_written_once(save_dir):
    """One process logged: one configuration, one epoch record, one checkpoint."""
    records = log_records(save_dir)
    assert sum("config" in record for record in records) == 1
    assert [record["epoch"] for record in records if "epoch" in record] == [0]
    assert records[0]["config"]["processes"] == PROCESSES
    assert records[0]["config"]["global_batch"] == PROCESSES * BATCH
    assert sorted(name for name in os.listdir(save_dir) if name.startswith("ckpt-")) == \
        ["ckpt-0.data-00000-of-00001", "ckpt-0.index"]


@pytest.fixture(scope="session")
def horovod_venv():
    """A Python with TensorFlow 2.13 and Horovod (built on first use). On CI a failed build
    fails the tests; elsewhere it skips them with the reason."""
    try:
        return horovod_env.ensure()
    except horovod_env.BuildError as error:
        fail_on_ci_else_skip(f"could not build the Horovod environment (or set "
                             f"PIXELCNN_HOROVOD_VENV to one): {error}")


# -- Horovod ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pixelcnn_tf213_reference(horovod_venv, tiny_image_folder, tmp_path_factory):
    """One process, batch 40, in the Horovod environment's TensorFlow."""
    save_dir = tmp_path_factory.mktemp("single_tf213")
    run_single(horovod_env.python_of(horovod_venv),
               train_flags("pixelcnn", tiny_image_folder, save_dir, PROCESSES * BATCH))
    return save_dir


def test_horovod_step_equals_single_process_step(horovod_venv, pixelcnn_tf213_reference,
                                                 tiny_image_folder, tmp_path, temp_dir):
    save_dir = tmp_path / "horovod"
    result = run_horovod(horovod_venv,
                         train_flags("pixelcnn", tiny_image_folder, save_dir, BATCH), temp_dir)
    assert_same_step(save_dir, pixelcnn_tf213_reference)
    assert_written_once(save_dir)
    assert "[0]<stdout>:Iteration 0" in result.stdout
    assert not [line for line in result.stdout.splitlines()
                if line.startswith("[1]<stdout>:") and line[len("[1]<stdout>:"):].strip()]
    single_bpd = log_records(pixelcnn_tf213_reference)[-1]["test_bits_per_dim"]
    assert log_records(save_dir)[-1]["test_bits_per_dim"] == pytest.approx(single_bpd, rel=1e-4)


def test_horovod_resume_restores_every_rank(horovod_venv, pixelcnn_tf213_reference,
                                            tiny_image_folder, tmp_path, temp_dir):
    # Each rank scores its shard of the test set with the weights it restored; the gathered
    # per-image NLL equals what one process scored with the checkpoint's weights.
    save_dir = tmp_path / "resumed"
    shutil.copytree(pixelcnn_tf213_reference, save_dir)
    out = tmp_path / "nll.npy"
    run_horovod(horovod_venv, train_flags("pixelcnn", tiny_image_folder, save_dir, BATCH,
                                          "--eval_only", "--out", str(out)), temp_dir)
    nats = np.load(out)
    assert nats.shape == (4,) and np.all(nats > 0)
    single_bpd = log_records(pixelcnn_tf213_reference)[-1]["test_bits_per_dim"]
    assert np.mean(nats) / (8 * 8 * 3 * np.log(2)) == pytest.approx(single_bpd, rel=1e-5)


def test_glow_horovod_step_equals_single_process_step(horovod_venv, tiny_image_folder, tmp_path,
                                                      temp_dir):
    run_single(horovod_env.python_of(horovod_venv),
               train_flags("glow", tiny_image_folder, tmp_path / "single", PROCESSES * BATCH))
    run_horovod(horovod_venv, train_flags("glow", tiny_image_folder, tmp_path / "hvd", BATCH),
                temp_dir)
    assert_written_once(tmp_path / "hvd")
    assert_same_step(tmp_path / "hvd", tmp_path / "single")


# -- MultiWorkerMirroredStrategy (this environment's TensorFlow) -------------------------------

@pytest.mark.parametrize("family", sorted(FAMILY_FLAGS))
def test_multi_worker_step_equals_single_process_step(family, tiny_image_folder, tmp_path,
                                                      temp_dir):
    run_single(sys.executable,
               train_flags(family, tiny_image_folder, tmp_path / "single", PROCESSES * BATCH))
    outputs = run_multi_worker(
        sys.executable, train_flags(family, tiny_image_folder, tmp_path / "workers", BATCH),
        temp_dir)
    assert_same_step(tmp_path / "workers", tmp_path / "single")
    assert_written_once(tmp_path / "workers")
    chief_out, worker_out = outputs[0][0], outputs[1][0]
    assert "Iteration 0" in chief_out and not worker_out.strip()
    assert log_records(tmp_path / "workers")[-1]["test_bits_per_dim"] == pytest.approx(
        log_records(tmp_path / "single")[-1]["test_bits_per_dim"], rel=1e-4)


# -- sharding ----------------------------------------------------------------------------------

class Rank(dist.SingleProcess):
    """One rank's view of a process group of `size` (for the data path only: no collectives)."""

    def __init__(self, rank, size):
        self.rank, self.size, self.is_chief = rank, size, rank == 0


def split_images(folder, split):
    return next(iter(data.load("folder", folder, split, image_size=8, batch_size=1000)))[0]


def image_keys(images):
    return [image.tobytes() for image in np.asarray(images)]


@pytest.mark.parametrize("size", [2, 3])
def test_every_example_is_in_exactly_one_ranks_epoch(tiny_image_folder, tmp_path, size):
    args, family = flags.parse_train_args(
        train_flags("pixelcnn", tiny_image_folder, tmp_path, 4)[1:])
    strategy, _ = dist.mirrored_strategy(1)
    trainers = [loop.Trainer(family, args, strategy, Rank(rank, size)) for rank in range(size)]
    steps = trainers[0].steps_per_epoch
    assert steps == 40 // (4 * size)
    train = [[key for images, _ in trainer.train_batches(epoch=1) for key in image_keys(images)]
             for trainer in trainers]
    assert all(len(keys) == steps * 4 for keys in train)  # equal steps on every rank
    seen = sum(train, [])
    assert len(set(seen)) == len(seen)  # no image twice in an epoch
    whole_train = image_keys(split_images(tiny_image_folder, "train"))
    assert set(seen) <= set(whole_train)
    if 40 % (4 * size) == 0:  # no remainder to drop: the epoch is the whole split
        assert sorted(seen) == sorted(whole_train)
    # the test split: every image on exactly one rank, at the position that rank reports
    whole_test = image_keys(split_images(tiny_image_folder, "test"))
    positions = []
    for trainer in trainers:
        batches, own = trainer.test_batches()
        keys = [key for images, _ in batches for key in image_keys(images)]
        assert keys == [whole_test[position] for position in own]
        positions.extend(own.tolist())
    assert sorted(positions) == list(range(len(whole_test)))
