"""train.restore_best: the test metrics and weights.npz come from the best epoch by
train.monitor (Keras's restore_best_weights, Lightning's ckpt_path="best") unless it is
false; early stopping says in one line where it stopped and whose weights it keeps; a resumed
run ends on the same weights as one trained straight through."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app

# lr 0.5 makes val_loss bounce: its best epoch (5) is neither the first nor the last (8)
TINY = """\
seed: 0
data:
  dataset: spirals
  samples: 200
  noise: 0.2
  turns: 1.5
  split: {val: 0.2, test: 0.2}
  normalize: standard
model:
  layers:
    - dense: {units: 16, activation: tanh}
    - dense: {units: 2}
loss: cross_entropy
optimizer: {name: adam, lr: 0.5}
train:
  epochs: 8
  batch_size: 16
metrics: [accuracy]
"""


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def only(folder: Path) -> Path:
    (run,) = [p for p in folder.iterdir() if p.is_dir()]
    return run


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def same_arrays(a: Path, b: Path) -> bool:
    wa, wb = np.load(a), np.load(b)
    return sorted(wa.files) == sorted(wb.files) and \
        all(np.array_equal(wa[k], wb[k]) for k in wa.files)


def test_by_default_the_run_ends_on_the_best_epochs_weights(config, tmp_path):
    result = cli("train", config, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run = only(tmp_path / "runs")
    s, history = summary(run), records(run)
    best = min(history, key=lambda r: r["val_loss"])
    assert best["epoch"] == 5 and len(history) == 8  # the fixture's point: best is mid-run
    assert s["status"] == "completed" and s["epochs_completed"] == 8
    assert s["weights_epoch"] == s["best_epoch"] == 5
    assert s["best_val_loss"] == best["val_loss"]
    assert json.loads((run / "best.json").read_text())["epoch"] == 5
    assert same_arrays(run / "weights.npz", run / "best.npz")
    assert ("kept the weights of epoch 5 (the best val_loss "
            f"{best['val_loss']:.4f}), not those of the last epoch (8)") in result.stdout
    # the test metrics are those of the kept weights: evaluate them again from weights.npz
    again = cli("evaluate", run, "--split", "test")
    assert again.exit_code == 0, again.output
    assert f"{s['test_loss']:.4f}" in again.stdout
    # and the best weights' validation loss is the best epoch's
    val = cli("evaluate", run, "--split", "val")
    assert f"{best['val_loss']:.4f}" in val.stdout


def test_restore_best_false_ends_on_the_last_epoch(config, tmp_path):
    result = cli("train", config, "--set", "train.restore_best=false",
                 "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run = only(tmp_path / "runs")
    s = summary(run)
    assert s["weights_epoch"] == 8 and s["best_epoch"] == 5
    assert not same_arrays(run / "weights.npz", run / "best.npz")
    assert "kept the weights" not in result.stdout
    val = cli("evaluate", run, "--split", "val")
    assert f"{records(run)[-1]['val_loss']:.4f}" in val.stdout  # the last epoch's


@pytest.mark.parametrize("restore", [True, False])
def test_early_stopping_says_where_it_stopped_and_whose_weights_it_keeps(config, tmp_path,
                                                                         restore):
    result = cli("train", config, "--epochs", "10", "--set", "train.patience=3",
                 "--set", f"train.restore_best={str(restore).lower()}",
                 "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run = only(tmp_path / "runs")
    s, history = summary(run), records(run)
    assert s["status"] == "early_stopped" and len(history) == 8  # 6, 7, 8: none better
    best = f"epoch 5 (val_loss {history[4]['val_loss']:.4f})"
    lines = [line for line in result.stderr.splitlines() if line.startswith("early stopping")]
    if restore:
        assert lines == [f"early stopping: val_loss has not improved for 3 epochs; stopped "
                         f"after epoch 8; kept the weights of the best, {best}"]
        assert s["weights_epoch"] == 5 and same_arrays(run / "weights.npz", run / "best.npz")
    else:
        assert lines == [f"early stopping: val_loss has not improved for 3 epochs; stopped "
                         f"after epoch 8; kept the last weights (epoch 8, train.restore_best: "
                         f"false); the best, {best}, are in best.npz"]
        assert s["weights_epoch"] == 8
    assert "kept the weights of epoch" not in result.stdout  # said once, by the stop line


def test_a_resumed_run_ends_on_the_same_best_weights(config, tmp_path):
    """The best epoch (5) falls before the resume (after 6), so the resumed run must take
    its weights from best.npz; the checkpoint carries on from the last epoch's state."""
    assert cli("train", config, "--out", tmp_path / "a").exit_code == 0
    first = cli("train", config, "--epochs", "6", "--out", tmp_path / "b")
    assert first.exit_code == 0, first.output
    b = only(tmp_path / "b")
    assert summary(b)["weights_epoch"] == 5
    resumed = cli("train", config, "--epochs", "8", "--resume", b)
    assert resumed.exit_code == 0, resumed.output
    a = only(tmp_path / "a")
    assert (a / "metrics.jsonl").read_bytes() == (b / "metrics.jsonl").read_bytes()
    assert same_arrays(a / "weights.npz", b / "weights.npz")
    assert same_arrays(b / "weights.npz", b / "best.npz")
    sa, sb = summary(a), summary(b)
    for key in ("weights_epoch", "best_epoch", "best_val_loss", "test_loss", "test_accuracy"):
        assert sa[key] == sb[key], key
    assert sb["weights_epoch"] == 5
