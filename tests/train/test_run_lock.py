"""One process trains in a run folder at a time: a second `--resume` of the same folder is
refused with the holder's pid, a dead holder's lock is taken over, and the log never
interleaves."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.train.run_dir import LOCK_NAME, RunLock

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SPIRALS = CONFIGS / "spirals.yaml"


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def run(tmp_path):
    assert cli("train", SPIRALS, "--epochs", "1", "--out", tmp_path).exit_code == 0
    (folder,) = list(tmp_path.iterdir())
    return folder


def epochs_logged(folder: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in
            (folder / "metrics.jsonl").read_text().splitlines()]


def test_a_held_run_folder_is_refused_with_the_holders_pid(run):
    before = (run / "checkpoint.npz").read_bytes()
    with RunLock(run):  # another open file description: flock conflicts as between processes
        result = cli("train", SPIRALS, "--epochs", "3", "--resume", run)
    assert result.exit_code == 2
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert str(run) in line and f"process {os.getpid()}" in line
    assert (run / "checkpoint.npz").read_bytes() == before and epochs_logged(run) == [1]


def test_a_dead_processes_lock_is_taken_over(run):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / LOCK_NAME).write_text(f"{dead.pid}\n")  # what a kill -9 leaves behind
    result = cli("train", SPIRALS, "--epochs", "2", "--resume", run)
    assert result.exit_code == 0, result.stderr
    assert epochs_logged(run) == [1, 2]
    assert not (run / LOCK_NAME).exists()  # released at the end of the run


def test_the_lock_is_released_after_every_ending(run):
    result = cli("train", SPIRALS, "--epochs", "1", "--resume", run)  # already finished
    assert result.exit_code == 2
    with RunLock(run):  # not left held by the failed resume
        pass
    assert not (run / LOCK_NAME).exists()


def test_lock_records_the_pid_and_takes_over_an_unlinked_file(tmp_path):
    with RunLock(tmp_path) as lock:
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
        assert lock.held
    assert not (tmp_path / LOCK_NAME).exists()
    with RunLock(tmp_path):
        pass


def test_two_concurrent_resumes_one_trains_the_other_is_refused(run):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "nnctl", "train", str(SPIRALS), "--epochs", "6",
               "--resume", str(run), "--no-progress"]
    first = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env=env)
    try:
        assert first.stderr.readline().startswith("run folder:")  # it holds the lock now
        first.send_signal(signal.SIGSTOP)  # so the second surely runs while the first holds it
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120,
                                check=False)
        first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0, err
    assert second.returncode == 2, second.stderr
    assert f"process {first.pid}" in second.stderr and "Traceback" not in second.stderr
    assert epochs_logged(run) == [1, 2, 3, 4, 5, 6]
    assert not (run / LOCK_NAME).exists()


def test_a_lock_file_unlinked_between_open_and_flock_is_not_the_one_held(tmp_path, monkeypatch):
    from nnctl.train import run_dir
    real_flock, calls = run_dir.fcntl.flock, []

    def releaser_wins(fd, operation):
        calls.append(fd)
        if len(calls) == 1:  # the previous holder unlinks the file we just opened, and leaves
            os.unlink(tmp_path / LOCK_NAME)
        return real_flock(fd, operation)
    monkeypatch.setattr(run_dir.fcntl, "flock", releaser_wins)
    with RunLock(tmp_path) as lock:
        assert len(calls) == 2  # it retried on a fresh file
        assert os.path.samestat(os.fstat(lock.fd), os.stat(tmp_path / LOCK_NAME))
