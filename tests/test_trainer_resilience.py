"""Never lose a run (trainer/checkpoint.py, trainer/run_dir.py, train.py): a new run never
touches a directory holding any trace of a run; resumes fall back past damaged checkpoints and
keep their files; SIGTERM / SIGINT save mid-epoch and the resumed run ends bit for bit where an
uninterrupted one does (SIGKILL between step checkpoints too); one run per directory (a lock);
a resume keeps the run's training flags; a full disk is one line with the previous checkpoint
intact; several processes stop at the same step."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import horovod_env
import sample
import train
from cli_errors import error_line
from launch import clean_environment, worker_addresses
from optional_env import fail_on_ci_else_skip, on_ci
from saved_state import checkpoint_values
from trainer import checkpoint, run_dir

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 40 train images / batch 4 = 10 steps per epoch; 4 test images.
MODEL_FLAGS = ["--image_size", "8", "-q", "1", "-n", "8", "-m", "2", "-b", "4", "-g", "1",
               "-t", "1", "-ns", "0", "-s", "5"]
TIMEOUT = 600

# train.py in a subprocess made reproducible bit for bit (one thread, no oneDNN, deterministic
# ops): CPU reductions otherwise run in any order, and the last bits differ run to run.
DETERMINISTIC_TRAIN = """
import sys
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
import train
sys.exit(train.main(sys.argv[1:]))
"""
DETERMINISTIC_ENV = {"TF_DETERMINISTIC_OPS": "1", "TF_ENABLE_ONEDNN_OPTS": "0",
                     "TF_CPP_MIN_LOG_LEVEL": "2"}


def folder_flags(folder, save_dir, *extra):
    return ["-d", "folder", "-i", str(folder), "-o", str(save_dir), *MODEL_FLAGS,
            *map(str, extra)]


def snapshot(directory):
    """{relative path: bytes} of every file under `directory`."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as file:
                files[os.path.relpath(path, directory)] = file.read()
    return files


def leftovers(directory):
    """Temporary files and unfinished saves anywhere under `directory`."""
    return [os.path.join(root, name) for root, dirs, names in os.walk(directory)
            for name in dirs + names if name.endswith("_temp") or ".tmp" in name]


def epoch_records(save_dir):
    with open(os.path.join(str(save_dir), "log.jsonl")) as file:
        return [record for record in map(json.loads, file) if "epoch" in record]


@pytest.fixture(scope="module")
def finished_run(tiny_image_folder, tmp_path_factory):
    """Two epochs, a checkpoint after each (ckpt-0, ckpt-1)."""
    save_dir = tmp_path_factory.mktemp("finished")
    assert train.main(folder_flags(tiny_image_folder, save_dir, "-x", 2)) == 0
    assert checkpoint.checkpoint_names(str(save_dir)) == ["ckpt-0", "ckpt-1"]
    return save_dir


def copy_of(run, tmp_path, name="run"):
    target = tmp_path / name
    shutil.copytree(run, target)
    return target


# -- safe starts --------------------------------------------------------------------------------

DAMAGE = {
    "newest index removed": lambda run: os.remove(run / "ckpt-1.index"),
    "index file garbled": lambda run: (run / "checkpoint").write_bytes(b"\x00garbage\xff"),
    "index file removed": lambda run: os.remove(run / "checkpoint"),
    "index file empty": lambda run: (run / "checkpoint").write_bytes(b""),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_new_run_is_refused_over_a_damaged_run_and_changes_nothing(
        damage, finished_run, tiny_image_folder, tmp_path, capsys):
    run = copy_of(finished_run, tmp_path)
    DAMAGE[damage](run)
    before = snapshot(run)
    message = error_line(train.main, folder_flags(tiny_image_folder, run, "-x", 1), capsys)
    assert "already holds a run" in message and "ckpt-0.index" in message
    assert "--load_params" in message
    assert snapshot(run) == before


def test_a_new_run_is_refused_over_a_log_or_config_alone(tiny_image_folder, tmp_path, capsys):
    for name in ("log.jsonl", "config.json"):
        run = tmp_path / name.split(".")[0]
        run.mkdir()
        (run / name).write_text("{}\n")
        message = error_line(train.main, folder_flags(tiny_image_folder, run, "-x", 1), capsys)
        assert f"already holds a run ({name})" in message
        assert snapshot(run) == {name: b"{}\n"}


def test_an_index_file_alone_does_not_decide_which_checkpoints_exist(finished_run, tmp_path):
    run = copy_of(finished_run, tmp_path)
    (run / "checkpoint").write_bytes(b"")
    assert checkpoint.candidates(str(run)) == [str(run / "ckpt-1"), str(run / "ckpt-0")]
    os.remove(run / "ckpt-1.index")
    assert checkpoint.find_checkpoint(str(run)) == str(run / "ckpt-0")


# -- fallback and explicit selection ------------------------------------------------------------

def truncate_newest(run):
    data_file = run / "ckpt-1.data-00000-of-00001"
    data_file.write_bytes(data_file.read_bytes()[:data_file.stat().st_size // 2])
    return data_file


def test_eval_only_and_sample_fall_back_past_a_truncated_checkpoint(finished_run, tmp_path,
                                                                    capsys):
    run = copy_of(finished_run, tmp_path)
    truncate_newest(run)
    damaged = snapshot(run)
    # no data or architecture flags: --eval_only reads them from the checkpoint
    assert train.main(["-o", str(run), "--eval_only", "--out", str(tmp_path / "a.npy")]) == 0
    assert "skipped damaged checkpoint ckpt-1" in capsys.readouterr().out
    assert train.main(["-o", str(finished_run), "--eval_only", "--checkpoint",
                       str(finished_run / "ckpt-0"), "--out", str(tmp_path / "b.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    assert sample.main(["-o", str(run), "--n", "1", "--out", str(tmp_path / "s.png")]) == 0
    captured = capsys.readouterr()
    assert "skipped damaged checkpoint ckpt-1" in captured.err
    assert f"from {run / 'ckpt-0'}" in captured.out
    assert snapshot(run) == damaged
    # a checkpoint named explicitly is not replaced by another
    message = error_line(sample.main, ["--checkpoint", str(run / "ckpt-1"), "--n", "1"], capsys)
    assert "cannot" in message and "ckpt-1" in message


def test_resume_falls_back_and_sets_the_damaged_files_aside(finished_run, tmp_path, capsys):
    run = copy_of(finished_run, tmp_path)
    data_file = truncate_newest(run)
    damaged_bytes = data_file.read_bytes()
    # the run's own flags: only the directory and the longer schedule are given
    assert train.main(["-o", str(run), "-r", "-x", "2"]) == 0
    out = capsys.readouterr().out
    assert "skipped damaged checkpoint ckpt-1" in out and "resumed from" in out
    set_aside = list((run / checkpoint.SUPERSEDED_DIR).glob("*/ckpt-1.data-00000-of-00001"))
    assert [path.read_bytes() for path in set_aside] == [damaged_bytes]
    expected = checkpoint_values(str(finished_run / "ckpt-1"))
    actual = checkpoint_values(str(run / "ckpt-1"))
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    assert [record["epoch"] for record in epoch_records(run)] == [0, 1]
    assert not leftovers(run)


def test_the_unlisted_checkpoint_a_run_resumed_from_is_pruned_like_its_others(finished_run,
                                                                              tmp_path):
    run = copy_of(finished_run, tmp_path)
    # a kill after ckpt-1's files were complete, before the index file listed it
    (run / "checkpoint").write_text('model_checkpoint_path: "ckpt-0"\n'
                                    'all_model_checkpoint_paths: "ckpt-0"\n')
    assert train.main(["-o", str(run), "-r", "-x", "4"]) == 0  # --keep_checkpoints 2
    assert checkpoint.checkpoint_names(str(run)) == ["ckpt-2", "ckpt-3"]
    assert checkpoint.kept_names(str(run)) == ["ckpt-2", "ckpt-3"]


def test_a_run_whose_every_checkpoint_is_damaged_is_one_line_and_kept(finished_run, tmp_path,
                                                                      capsys):
    """What a SIGKILL during a run's first checkpoint leaves: an empty .index file."""
    run = copy_of(finished_run, tmp_path)
    for index in run.glob("ckpt-*.index"):
        index.write_bytes(b"")
    damaged = snapshot(run)
    for argv in (["-o", str(run), "-r"], ["-o", str(run), "--eval_only"]):
        message = error_line(train.main, argv, capsys)
        assert "can be read" in message and "another -o/--save_dir" in message
    assert snapshot(run) == damaged


# -- flags on resume ----------------------------------------------------------------------------

def test_changed_training_flags_are_refused_on_resume(finished_run, tiny_image_folder, tmp_path,
                                                      capsys):
    before = snapshot(finished_run)
    for flag, value, named in (("-s", 9, "--seed 9"), ("-e", 0.9, "--lr_decay 0.9"),
                               ("-l", 0.5, "--learning_rate 0.5"),
                               ("-b", 8, "--batch_size 8 x --nr_gpu 1")):
        argv = folder_flags(tiny_image_folder, finished_run, "-r", "-x", 3, flag, value)
        message = error_line(train.main, argv, capsys)
        assert named in message, message
    assert "trained 2 epochs already" in error_line(
        train.main, ["-o", str(finished_run), "-r", "-x", "2"], capsys)
    assert "does not exist" in error_line(
        train.main, ["-o", str(finished_run), "--eval_only", "--out",
                     str(tmp_path / "missing" / "nll.npy")], capsys)
    assert snapshot(finished_run) == before


@pytest.mark.parametrize("flag, value", [("-l", "-1"), ("-l", "0"), ("-e", "1.5"),
                                         ("-p", "1"), ("--polyak_decay", "1"), ("-s", "-2")])
def test_numeric_flags_are_range_checked(flag, value, tiny_image_folder, tmp_path, capsys):
    argv = folder_flags(tiny_image_folder, tmp_path / "run", "-x", 1, flag, value)
    assert "must lie in" in error_line(train.main, argv, capsys)
    assert not (tmp_path / "run").exists()


def test_an_override_is_accepted_and_logged(finished_run, tmp_path):
    run = copy_of(finished_run, tmp_path)
    assert train.main(["-o", str(run), "-r", "-x", "3", "-e", "0.9999",
                       "--override", "lr_decay"]) == 0
    with open(run / "log.jsonl") as file:
        configs = [record["config"] for record in map(json.loads, file) if "config" in record]
    assert configs[-1]["changed_flags"] == ["lr_decay: 0.999995 -> 0.9999 (--override)",
                                            "max_epochs: 2 -> 3"]
    assert configs[-1]["data_set"] == "folder" and configs[-1]["nr_filters"] == 8
    assert [record["epoch"] for record in epoch_records(run)] == [0, 1, 2]
    assert checkpoint.read_run_config(str(run / "ckpt-2"))["flags"]["lr_decay"] == 0.9999


# -- the lock -----------------------------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from trainer.run_dir import SaveDirLock
SaveDirLock(sys.argv[1]).acquire(print)
print("held", flush=True)
time.sleep(600)
"""


def test_one_run_per_directory_and_stale_locks_and_dead_temporaries_are_cleared(
        tiny_image_folder, tmp_path, capsys):
    save_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(save_dir)], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for argv in (folder_flags(tiny_image_folder, save_dir, "-x", 1),):
            message = error_line(train.main, argv, capsys)
            assert "in use by another run" in message and f"pid {holder.pid}" in message
    finally:
        holder.kill()  # SIGKILL: the lock file stays behind
        holder.wait()
    assert (save_dir / run_dir.LOCK_FILE).exists()
    # writes the kill interrupted (a file and a checkpoint save's scratch directory), and one of
    # a live process (sample.py, say)
    (save_dir / f"checkpoint.tmp{holder.pid}").write_text("half")
    (save_dir / f"test_nll.npy.tmp{holder.pid}.npy").write_text("half")  # np.save's name
    (save_dir / "ckpt-0-step2_temp").mkdir()
    (save_dir / "ckpt-0-step2_temp" / "part-00000-of-00001.data-00000-of-00001").write_text("half")
    (save_dir / f"config.json.tmp{os.getpid()}").write_text("half")
    notices = []
    lock = run_dir.SaveDirLock(str(save_dir)).acquire(notices.append)
    assert len(notices) == 1 and "stale lock" in notices[0] and f"pid {holder.pid}" in notices[0]
    assert f"pid {os.getpid()}" in (save_dir / run_dir.LOCK_FILE).read_text()
    run_dir.remove_dead_temporaries(str(save_dir))  # what train.py does once the run is accepted
    assert sorted(os.listdir(save_dir)) == [f"config.json.tmp{os.getpid()}", run_dir.LOCK_FILE]
    with pytest.raises(run_dir.RunDirError, match="in use by another run"):
        run_dir.SaveDirLock(str(save_dir)).acquire(notices.append)  # held by this process
    lock.release()
    os.remove(save_dir / f"config.json.tmp{os.getpid()}")
    assert os.listdir(save_dir) == []


# -- signals ------------------------------------------------------------------------------------

@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_the_first_signal_asks_for_a_stop_and_the_second_ends_at_once(signal_number):
    """Either signal asks the trainer to stop (what a stop then does, end to end: the SIGTERM
    test below)."""
    class Recorder:
        reasons = []

        def request_stop(self, reason):
            self.reasons.append(reason)

    trainer = Recorder()
    before = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    with train.StopOnSignal(trainer):
        os.kill(os.getpid(), signal_number)
        time.sleep(0.1)  # the handler runs between Python bytecodes
        assert trainer.reasons == [signal.Signals(signal_number).name]
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # a second one kills
        assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL
    assert {number: signal.getsignal(number) for number in before} == before


def deterministic_train(*arguments, stdout=subprocess.PIPE):
    return subprocess.Popen([sys.executable, "-c", DETERMINISTIC_TRAIN, *map(str, arguments)],
                            cwd=REPO_ROOT, env={**os.environ, **DETERMINISTIC_ENV},
                            stdout=stdout, stderr=subprocess.PIPE, text=True)


def finish(process):
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, (out or "")[-2000:] + err[-3000:]
    return out


EPOCHS = 3
CADENCE = ["--save_steps", "2", "--keep_checkpoints", "3"]


@pytest.fixture(scope="module")
def deterministic_reference(tiny_image_folder, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("uninterrupted")
    finish(deterministic_train(*folder_flags(tiny_image_folder, save_dir, "-x", EPOCHS,
                                             *CADENCE)))
    return save_dir


def interrupt_after_a_step_checkpoint(process, save_dir, signal_number):
    """Signal the run once a step checkpoint is complete: listed in the index file, which the
    run rewrites after the checkpoint's files (its .index file shows up while TF still writes,
    and a SIGKILL then leaves no checkpoint to resume from)."""
    while process.poll() is None and not any(
            "-step" in name for name in checkpoint.kept_names(str(save_dir))):
        time.sleep(0.01)
    process.send_signal(signal_number)
    return process.communicate(timeout=TIMEOUT)


def assert_ends_like(save_dir, reference):
    expected = checkpoint_values(str(reference / f"ckpt-{EPOCHS - 1}"))
    actual = checkpoint_values(str(save_dir / f"ckpt-{EPOCHS - 1}"))
    assert sorted(actual) == sorted(expected)
    assert any("ema" in name for name in expected) and any("m2" in name for name in expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)
    assert [record["epoch"] for record in epoch_records(save_dir)] == list(range(EPOCHS))
    assert not leftovers(save_dir)


def test_a_signal_saves_mid_epoch_and_the_resume_is_bit_identical(
        deterministic_reference, tiny_image_folder, tmp_path):
    signal_number = signal.SIGTERM  # SIGINT takes the same handler (the test above)
    save_dir = tmp_path / "interrupted"
    process = deterministic_train(*folder_flags(tiny_image_folder, save_dir, "-x", EPOCHS,
                                                *CADENCE))
    out, err = interrupt_after_a_step_checkpoint(process, save_dir, signal_number)
    assert process.returncode == train.EXIT_STOPPED, out[-2000:] + err[-3000:]
    last = out.strip().splitlines()[-1]
    name = signal.Signals(signal_number).name
    assert last.startswith(f"stopped by {name} at epoch 0, step "), last
    assert f"resume with: python3 train.py -o {save_dir} -r" in last
    assert "Traceback" not in err
    step = int(last.split("step ")[1].split(":")[0])
    assert 0 < step < 10  # in the middle of epoch 0
    assert (save_dir / f"ckpt-0-step{step}.index").exists()
    finish(deterministic_train("-o", save_dir, "-r"))  # the run's own flags
    assert_ends_like(save_dir, deterministic_reference)


def test_sigkill_between_step_checkpoints_then_resume_is_bit_identical(
        deterministic_reference, tiny_image_folder, tmp_path):
    save_dir = tmp_path / "killed"
    process = deterministic_train(*folder_flags(tiny_image_folder, save_dir, "-x", EPOCHS,
                                                *CADENCE))
    interrupt_after_a_step_checkpoint(process, save_dir, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    finish(deterministic_train("-o", save_dir, "-r"))
    assert_ends_like(save_dir, deterministic_reference)


# -- a full disk --------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root / CAP_SYS_ADMIN): "
                    f"{mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(finished_run, small_disk,
                                                                   capsys):
    run = copy_of(finished_run, small_disk)
    size = sum(path.stat().st_size for path in run.glob("ckpt-1.*"))
    free = os.statvfs(run).f_bavail * os.statvfs(run).f_frsize
    with open(small_disk / "filler", "wb") as filler:  # room for the logs, not a checkpoint
        filler.write(b"\0" * max(free - size // 2, 0))
    kept = {name: data for name, data in snapshot(run).items() if name.startswith("ckpt-1")}
    message = error_line(train.main, ["-o", str(run), "-r", "-x", "3"], capsys)
    assert "cannot write checkpoint" in message and "No space left" in message
    assert f"the previous checkpoint {run / 'ckpt-1'} is intact" in message
    assert {name: data for name, data in snapshot(run).items()
            if name.startswith("ckpt-1")} == kept
    assert not leftovers(run) and not list(run.glob("ckpt-2*"))
    assert not (run / run_dir.LOCK_FILE).exists()


# -- several processes --------------------------------------------------------------------------

def stop_lines(outputs):
    return [out.strip().splitlines()[-1] if out.strip() else "" for out, _ in outputs]


def assert_stopped_together(chief, worker, save_dir):
    """Rank 0 (not signalled) and rank 1 (signalled) stopped at the same place, which rank 0
    saved: mid-epoch at a step, or (the signal came during the evaluation) an epoch's end."""
    assert chief.startswith("stopped by another process at "), chief
    assert worker.startswith("stopped by SIGTERM at ") and "saved by rank 0" in worker, worker
    where = chief.split(" at ", 1)[1].split(":")[0]
    assert worker.split(" at ", 1)[1].split(":")[0] == where
    if "step" in where:
        epoch, step = where.split("epoch ")[1].split(", step ")
        assert (save_dir / f"ckpt-{epoch}-step{step}.index").exists()
    else:
        assert (save_dir / f"ckpt-{where.split('epoch ')[1]}.index").exists()


def multi_process_flags(folder, save_dir):
    # 2 processes x batch 4: 5 steps per epoch, long enough to be signalled mid-run
    return ["train.py", "-d", "folder", "-i", str(folder), "-o", str(save_dir), "--image_size",
            "8", "-q", "1", "-n", "8", "-m", "2", "-p", "0", "-b", "4", "-g", "1", "-x", "20",
            "-ns", "0", "--save_steps", "2"]


def signal_rank_one(processes, save_dir):
    try:
        while all(p.poll() is None for p in processes) and not list(save_dir.glob("ckpt-*.index")):
            time.sleep(0.01)
        processes[1].send_signal(signal.SIGTERM)
        return [process.communicate(timeout=TIMEOUT) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


def test_sigterm_to_one_worker_stops_every_worker_at_the_same_step(tiny_image_folder,
                                                                   tmp_path):
    save_dir = tmp_path / "workers"
    workers = worker_addresses(2)
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            [sys.executable, *multi_process_flags(tiny_image_folder, save_dir)], cwd=REPO_ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=clean_environment(TF_CONFIG=json.dumps(config))))
    outputs = signal_rank_one(processes, save_dir)
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == train.EXIT_STOPPED, out[-2000:] + err[-3000:]
    assert_stopped_together(*stop_lines(outputs), save_dir)


def test_sigterm_to_one_horovod_rank_stops_every_rank_at_the_same_step(tiny_image_folder,
                                                                       tmp_path):
    venv = horovod_env.location()
    if not on_ci() and not horovod_env.works(venv):
        pytest.skip(f"Horovod is not importable here: no working environment at {venv} "
                    f"(tests/test_distributed.py builds it; or set PIXELCNN_HOROVOD_VENV)")
    try:
        venv = horovod_env.ensure()
    except horovod_env.BuildError as error:
        fail_on_ci_else_skip(f"could not build the Horovod environment: {error}")
    save_dir = tmp_path / "ranks"
    bin_dir = os.path.join(venv, "bin")
    env = clean_environment(PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""),
                            TF_ENABLE_ONEDNN_OPTS="0")
    process = subprocess.Popen(
        [os.path.join(bin_dir, "horovodrun"), "-np", "2", "-H", "localhost:2", "--gloo",
         os.path.join(bin_dir, "python"), *multi_process_flags(tiny_image_folder, save_dir)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while process.poll() is None and not list(save_dir.glob("ckpt-*.index")):
            time.sleep(0.01)
        os.kill(rank_pid(1), signal.SIGTERM)  # horovodrun starts the ranks; find rank 1
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    lines = [line.split("]<stdout>:", 1)[-1] for line in out.splitlines() if "stopped by" in line]
    assert len(lines) == 2, out[-2000:] + err[-3000:]
    chief = next(line for line in lines if "another process" in line)
    worker = next(line for line in lines if "SIGTERM" in line)
    assert_stopped_together(chief.strip(), worker.strip(), save_dir)


def rank_pid(rank):
    """The pid of the train.py process whose environment says HOROVOD_RANK=rank."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as file:
                environ = file.read().split(b"\0")
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                command = file.read()
        except OSError:
            continue
        if f"HOROVOD_RANK={rank}".encode() in environ and b"train.py" in command:
            return int(pid)
    raise AssertionError(f"no train.py process with HOROVOD_RANK={rank}")
