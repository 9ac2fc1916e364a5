"""`nnctl train` end to end: metrics, the run folder, plain output off a terminal, failures."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from conftest import CONFIGS


def run_folder(out):
    (folder,) = list(out.iterdir())
    return folder


def test_digits_mlp_reaches_the_accuracy_the_readme_promises(cli, tmp_path):
    result = cli("train", CONFIGS / "digits_mlp.yaml", "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    summary = json.loads((run_folder(tmp_path) / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["test_accuracy"] >= 0.965
    assert f"test_accuracy {summary['test_accuracy']:.4f}" in result.stdout


def test_spirals_reaches_95_percent(cli, tmp_path):
    result = cli("train", CONFIGS / "spirals.yaml", "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    summary = json.loads((run_folder(tmp_path) / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.95


def test_run_folder_contents(cli, tmp_path):
    result = cli("train", CONFIGS / "spirals.yaml", "--epochs", "3", "--seed", "5",
                 "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    folder = run_folder(tmp_path)
    assert folder.name.startswith("spirals-")
    names = {p.name for p in folder.iterdir()}
    assert names - {"plots"} == {  # plots/ only where matplotlib is installed
        "best.json", "best.npz", "checkpoint.npz", "config.yaml", "confusion.json",
        "metrics.csv", "metrics.jsonl", "normalizer.json", "summary.json", "weights.npz"}
    resolved = yaml.safe_load((folder / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == 3 and resolved["seed"] == 5  # overrides recorded
    assert resolved["train"]["eval_batch_size"] == 512                 # defaults filled in
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy"} <= set(records[0])
    weights = np.load(folder / "weights.npz", allow_pickle=False)
    assert sorted(weights.files) == ["dense_0.bias", "dense_0.weight", "dense_1.bias",
                                     "dense_1.weight", "dense_2.bias", "dense_2.weight"]
    assert weights["dense_0.weight"].shape == (2, 64)
    assert weights["dense_0.weight"].dtype == np.float32
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_plain_output_off_a_terminal(cli, tmp_path):
    result = cli("train", CONFIGS / "spirals.yaml", "--epochs", "2", "--out", tmp_path)
    assert "\x1b[" not in result.stdout + result.stderr
    epoch_lines = [x for x in result.stderr.splitlines() if x.startswith("epoch ")]
    assert len(epoch_lines) == 2 and "samples/s" in epoch_lines[0]


def test_same_seed_same_weights(cli, tmp_path):
    for name in ("a", "b"):
        assert cli("train", CONFIGS / "spirals.yaml", "--epochs", "2",
                   "--out", tmp_path / name).exit_code == 0
    wa = np.load(run_folder(tmp_path / "a") / "weights.npz")
    wb = np.load(run_folder(tmp_path / "b") / "weights.npz")
    assert all(np.array_equal(wa[k], wb[k]) for k in wa.files)


def test_divergence_stops_with_exit_3_and_keeps_a_valid_run_folder(cli, tmp_path):
    config = tmp_path / "diverge.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"dataset": "spirals", "samples": 200},
        "model": {"layers": [{"dense": {"units": 16, "activation": "relu"}},
                             {"dense": {"units": 2}}]},
        "loss": "cross_entropy", "optimizer": {"name": "sgd", "lr": 1e30},
        "train": {"epochs": 3}}))
    result = cli("train", config, "--out", tmp_path / "runs")
    assert result.exit_code == 3
    assert "the loss became nan at epoch 1, step 2" in result.stderr
    assert "RuntimeWarning" not in result.stderr
    folder = run_folder(tmp_path / "runs")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "failed"
    weights = np.load(folder / "weights.npz", allow_pickle=False)
    assert all(np.isfinite(weights[k]).all() for k in weights.files)


def test_ctrl_c_stops_after_a_step_and_exits_130(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nnctl", "train", str(CONFIGS / "spirals.yaml"), "--epochs",
         "100000", "--out", str(tmp_path), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            folders = list(tmp_path.iterdir())
            if folders and (folders[0] / "metrics.jsonl").exists():
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    folder = run_folder(tmp_path)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert summary["epochs_completed"] >= 1
    weights = np.load(folder / "weights.npz", allow_pickle=False)
    assert weights["dense_2.weight"].shape == (64, 2)


def _user_data_config(tmp_path, data: dict, loss="cross_entropy", metrics=("accuracy",),
                      units=2):
    config = tmp_path / "user.yaml"
    config.write_text(yaml.safe_dump({
        "data": data,
        "model": {"layers": [{"dense": {"units": 32, "activation": "tanh"}},
                             {"dense": {"units": units}}]},
        "loss": loss, "metrics": list(metrics), "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"epochs": 60, "batch_size": 16}}))
    return config


def test_a_users_csv_file(cli, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    lines = ["a,b,c,label"] + [f"{r[0]:.5f},{r[1]:.5f},{r[2]:.5f},{c}" for r, c in zip(x, y)]
    (tmp_path / "points.csv").write_text("\n".join(lines) + "\n")
    config = _user_data_config(tmp_path, {"dataset": "csv", "path": "points.csv",
                                          "label_column": "label"})
    result = cli("train", config, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    summary = json.loads((run_folder(tmp_path / "runs") / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.9  # a linearly separable problem


def test_regression_from_npz_with_mae_and_rmse(cli, tmp_path):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(400, 2)).astype(np.float32)
    y = (np.sin(2 * x[:, :1]) + x[:, 1:] ** 2).astype(np.float32)   # targets of shape (N, 1)
    np.savez(tmp_path / "reg.npz", x=x, y=y)
    config = _user_data_config(tmp_path, {"dataset": "npz", "path": "reg.npz"}, loss="mse",
                               metrics=("mae", "rmse"), units=1)
    result = cli("train", config, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    summary = json.loads((run_folder(tmp_path / "runs") / "summary.json").read_text())
    assert summary["test_rmse"] == pytest.approx(summary["test_loss"] ** 0.5, rel=1e-4)
    assert summary["test_rmse"] < 0.15 * float(np.std(y))
    assert 0 < summary["test_mae"] <= summary["test_rmse"]


def test_csv_regression_with_default_metrics(cli, tmp_path):
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, size=(200, 2))
    lines = [f"{a:.5f},{b:.5f},{a - 2 * b:.5f}" for a, b in x]  # header-less, target last
    (tmp_path / "reg.csv").write_text("\n".join(lines) + "\n")
    config = _user_data_config(tmp_path, {"dataset": "csv", "path": "reg.csv"}, loss="mse",
                               metrics=(), units=1)
    text = config.read_text().replace("metrics: []\n", "")
    config.write_text(text)
    result = cli("train", config, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    folder = run_folder(tmp_path / "runs")
    summary = json.loads((folder / "summary.json").read_text())
    assert {"test_loss", "test_mae", "test_rmse"} <= set(summary)   # mse's default metrics
    assert yaml.safe_load((folder / "config.yaml").read_text())["metrics"] == ["mae", "rmse", "r2"]
    assert oct((folder / "weights.npz").stat().st_mode & 0o777) == "0o644"
