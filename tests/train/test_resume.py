"""Checkpoints and resume: bit-identical continuation, determinism, interrupts, refusals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MLP = CONFIGS / "digits_mlp.yaml"  # dropout + Adam: every kind of state a resume must restore


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def only(folder: Path) -> Path:
    (run,) = list(folder.iterdir())
    return run


def assert_same_run(a: Path, b: Path) -> None:
    assert (a / "metrics.jsonl").read_bytes() == (b / "metrics.jsonl").read_bytes()
    wa, wb = np.load(a / "weights.npz"), np.load(b / "weights.npz")
    assert sorted(wa.files) == sorted(wb.files)
    for k in wa.files:
        assert np.array_equal(wa[k], wb[k]), k


def test_two_runs_with_one_seed_are_byte_identical(tmp_path):
    for name in ("a", "b"):
        assert cli("train", MLP, "--epochs", "3", "--out", tmp_path / name).exit_code == 0
    assert_same_run(only(tmp_path / "a"), only(tmp_path / "b"))
    other = tmp_path / "c"
    assert cli("train", MLP, "--epochs", "3", "--seed", "1", "--out", other).exit_code == 0
    assert (only(other) / "metrics.jsonl").read_bytes() != \
        (only(tmp_path / "a") / "metrics.jsonl").read_bytes()


def test_four_epochs_equal_two_plus_resume_plus_two(tmp_path):
    assert cli("train", MLP, "--epochs", "4", "--out", tmp_path / "straight").exit_code == 0
    assert cli("train", MLP, "--epochs", "2", "--out", tmp_path / "split").exit_code == 0
    run = only(tmp_path / "split")
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    result = cli("train", MLP, "--epochs", "4", "--resume", run)
    assert result.exit_code == 0, result.stderr
    assert_same_run(only(tmp_path / "straight"), run)
    assert len((run / "metrics.csv").read_text().splitlines()) == 5  # header + 4 epochs


def test_checkpoint_holds_the_whole_state_and_no_pickle(tmp_path):
    assert cli("train", MLP, "--epochs", "1", "--out", tmp_path).exit_code == 0
    from nnctl.train.checkpoint import load_checkpoint
    arrays, meta = load_checkpoint(only(tmp_path) / "checkpoint.npz")
    assert {"param/dense_0.weight", "optim/step"} <= set(arrays)
    assert any(k.startswith("optim/m.") for k in arrays)
    assert meta["epoch"] == 2 and meta["step_in_epoch"] == 0 and meta["global_step"] == 40
    assert meta["shuffle_state"]["bit_generator"] == "PCG64"
    assert len(meta["config_fingerprint"]) == 64
    assert all(a.dtype != object for a in arrays.values())


def test_resume_refuses_a_changed_config(tmp_path):
    assert cli("train", MLP, "--epochs", "1", "--out", tmp_path).exit_code == 0
    result = cli("train", MLP, "--epochs", "2", "--set", "optimizer.lr=0.5", "--resume",
                 only(tmp_path))
    assert result.exit_code == 2
    assert "its config differs in optimizer.lr; only train.epochs, train.threads, " \
        "train.divergence, train.restore_best, logging, tune and distributed may change" \
        in result.stderr


def test_resume_of_a_finished_run_says_how_to_continue(tmp_path):
    assert cli("train", MLP, "--epochs", "1", "--out", tmp_path).exit_code == 0
    result = cli("train", MLP, "--epochs", "1", "--resume", only(tmp_path))
    assert result.exit_code == 2
    assert "already finished epoch 1 of 1; pass --epochs N" in result.stderr


def test_a_corrupt_checkpoint_is_a_clean_error(tmp_path):
    assert cli("train", MLP, "--epochs", "1", "--out", tmp_path).exit_code == 0
    run = only(tmp_path)
    data = (run / "checkpoint.npz").read_bytes()
    (run / "checkpoint.npz").write_bytes(data[: len(data) // 2])
    result = cli("train", MLP, "--epochs", "2", "--resume", run)
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "unreadable checkpoint" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_epoch_checkpoints_exits_130_and_resume_matches(tmp_path, sig):
    # digits_mlp with small batches: many steps per epoch, so the signal lands mid-epoch
    args = ["train", str(MLP), "--epochs", "3", "--set", "train.batch_size=4", "--no-progress"]
    assert cli(*args, "--out", tmp_path / "straight").exit_code == 0
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "nnctl", *args, "--out",
                             str(tmp_path / "cut")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            runs = list((tmp_path / "cut").glob("*/metrics.jsonl"))
            if runs and runs[0].read_text().count("\n") >= 1:
                break
            time.sleep(0.02)
        time.sleep(0.05)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    run = only(tmp_path / "cut")
    assert (f"resume with: nnctl train {MLP} --set train.batch_size=4 --epochs 3 "
            f"--resume {run}") in err  # the command repeats the options that shaped the run
    from nnctl.train.checkpoint import load_checkpoint
    _, meta = load_checkpoint(run / "checkpoint.npz")
    assert meta["epoch"] >= 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    result = cli(*args, "--resume", run)
    assert result.exit_code == 0, result.stderr
    assert_same_run(only(tmp_path / "straight"), run)
