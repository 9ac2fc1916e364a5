"""Losing the log pipe or the terminal never loses the run: after `2>&1 | head -1` training goes
on to the end (checkpoint, weights, summary) and resumes; a hang-up checkpoints and stops."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SPIRALS = CONFIGS / "spirals.yaml"
NNCTL = [sys.executable, "-m", "nnctl"]


def only(folder: Path) -> Path:
    (run,) = list(folder.iterdir())
    return run


def pipe_into_head(args, *streams) -> tuple[int, str, str]:
    """Run nnctl with the given streams ("stdout", "stderr") going into a pipe whose reader
    keeps one line and exits, as `2>&1 | head -1` does; (exit code, that line, the rest)."""
    reader, writer = os.pipe()
    proc = subprocess.Popen(
        NNCTL + [str(a) for a in args],
        stdout=writer if "stdout" in streams else subprocess.PIPE,
        stderr=writer if "stderr" in streams else subprocess.PIPE, text=True)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        first = pipe.readline().decode()
    # the read end is closed now: every later write to it fails with EPIPE
    out, err = proc.communicate(timeout=180)
    return proc.returncode, first, (out or "") + (err or "")


@pytest.mark.parametrize("streams", [("stdout", "stderr"), ("stderr",), ("stdout",)])
def test_a_closed_log_pipe_does_not_lose_the_run(tmp_path, streams):
    code, first, rest = pipe_into_head(["train", SPIRALS, "--epochs", "3", "--out", tmp_path],
                                       *streams)
    assert code == 0, rest
    assert "Traceback" not in rest and "Exception ignored" not in rest
    run = only(tmp_path)
    if "stderr" in streams:
        assert first.startswith("run folder:")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 3
    assert {"checkpoint.npz", "weights.npz", "best.npz"} <= {p.name for p in run.iterdir()}
    result = subprocess.run(NNCTL + ["train", str(SPIRALS), "--epochs", "4", "--resume",
                                     str(run)], capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] \
        == [1, 2, 3, 4]


def test_a_closed_pipe_on_an_error_still_exits_with_its_code(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {layers: []}\nfoo: 1\n")
    code, first, rest = pipe_into_head(["train", bad, "--out", tmp_path / "runs"], "stderr")
    assert code == 2 and first.startswith("error:")
    assert "Traceback" not in rest and "Exception ignored" not in rest


def test_a_hang_up_checkpoints_and_stops_resumably(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(NNCTL + ["train", str(SPIRALS), "--epochs", "100000", "--out",
                                     str(tmp_path), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        while True:  # wait for a finished epoch
            line = proc.stderr.readline()
            assert line, "nnctl ended before its first epoch"
            if line.startswith("epoch 1 "):
                break
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    run = only(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    weights = np.load(run / "weights.npz", allow_pickle=False)
    assert weights["dense_2.weight"].shape == (64, 2)
    result = subprocess.run(NNCTL + ["train", str(SPIRALS), "--epochs",
                                     str(summary["epochs_completed"] + 1), "--resume", str(run)],
                            capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr


def test_under_nohup_a_hang_up_is_still_ignored(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    import shlex
    command = NNCTL + ["train", str(SPIRALS), "--epochs", "80", "--out", str(tmp_path),
                       "--no-progress"]
    # as nohup does: SIGHUP ignored, which exec passes on
    proc = subprocess.Popen(["sh", "-c", "trap '' HUP; exec " + shlex.join(command)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        while not proc.stderr.readline().startswith("epoch 1 "):
            assert proc.poll() is None, "nnctl ended before its first epoch"
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads((only(tmp_path) / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 80


def test_a_terminal_that_goes_away_under_the_live_bar(tmp_path):
    import pty
    master, slave = pty.openpty()
    proc = subprocess.Popen(NNCTL + ["train", str(SPIRALS), "--epochs", "60", "--out",
                                     str(tmp_path)],
                            stdin=slave, stdout=slave, stderr=slave, env=dict(
                                os.environ, TERM="xterm", COLUMNS="100"))
    os.close(slave)
    seen = b""
    try:
        while b"epoch 1 " not in seen:  # the live bar is up and an epoch is done
            seen += os.read(master, 4096)
    finally:
        os.close(master)  # every later write to the terminal fails (EIO)
    assert proc.wait(timeout=180) == 0
    summary = json.loads((only(tmp_path) / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 60


class _GoneTerminal:
    """A terminal whose every write fails, as one does once it is closed."""

    def write(self, text):
        raise OSError(5, "Input/output error")

    flush = write

    def isatty(self):
        return True


def test_the_live_bar_survives_a_terminal_gone_before_it_starts():
    from rich.console import Console

    from nnctl.cli.progress import RichReporter
    reporter = RichReporter(Console(file=_GoneTerminal(), force_terminal=True))
    reporter.on_train_start({"epochs": 1, "samples": {"train": 8, "val": 0, "test": 0},
                             "run_dir": "runs/x", "device": "cpu", "params": 10,
                             "plan_steps": 3, "plan_peak_bytes": 1024, "steps_per_epoch": 2})
    reporter.on_step(1, 2, 2, 0.5, None, 100.0)
    reporter.on_epoch_end({"epoch": 1, "train_loss": 0.5, "seconds": 1.0,
                           "samples_per_s": 8.0})
    reporter.on_warning("something")
    reporter.close()
