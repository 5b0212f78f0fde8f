"""trainer.files: a write lands whole or not at all, and a dead writer's temporary is found."""
import os
import subprocess
import sys

import numpy as np
import pytest

from trainer import files


def test_a_finished_write_replaces_the_file_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("old")
    files.write_text(str(path), "new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["config.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with files.replaced(str(path)) as temporary:
            with open(temporary, "w") as file:
                file.write("half")
            raise RuntimeError("the disk filled up")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["config.json"]


def test_a_directory_and_a_suffixing_writer_are_replaced_too(tmp_path):
    directory = tmp_path / "export"
    with files.replaced(str(directory)) as temporary:
        os.mkdir(temporary)
        (tmp_path / os.path.basename(temporary) / "saved_model.pb").write_text("graph")
    assert os.listdir(directory) == ["saved_model.pb"]
    with files.replaced(str(tmp_path / "nll.npy"), ".npy") as temporary:
        np.save(temporary, np.arange(3))  # would append .npy to a name without it
    np.testing.assert_array_equal(np.load(tmp_path / "nll.npy"), np.arange(3))
    assert sorted(os.listdir(tmp_path)) == ["export", "nll.npy"]


def test_only_the_temporaries_of_ended_writers_are_dead(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    dead_pid = int(ended.stdout)
    for name in (f"log.jsonl.tmp{dead_pid}", f"nll.npy.tmp{dead_pid}.npy",
                 f"config.json.tmp{os.getpid()}", "notes.tmp", "ckpt-1.index"):
        (tmp_path / name).write_text("x")
    (tmp_path / f"export.tmp{dead_pid}").mkdir()  # a directory: a SavedModel, not ours to judge
    assert files.dead_temporaries(str(tmp_path)) == [f"log.jsonl.tmp{dead_pid}",
                                                     f"nll.npy.tmp{dead_pid}.npy"]
