"""The trainer's everyday features through the CLI: overrides, schedules, clipping, early
stopping and best weights, augmentation, label smoothing, non-finite batches, IDX data,
evaluate and predict."""

import json
from pathlib import Path

import numpy as np
import yaml
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.data import write_idx

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SPIRALS = CONFIGS / "spirals.yaml"


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def only(folder: Path) -> Path:
    (run,) = list(folder.iterdir())
    return run


def records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_set_overrides_are_validated_and_recorded(tmp_path):
    result = cli("train", SPIRALS, "--set", "train.epochs=2", "--set", "optimizer.lr=0.05",
                 "--set", "model.layers.0.dense.units=8", "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    resolved = yaml.safe_load((only(tmp_path) / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == 2 and resolved["optimizer"]["lr"] == 0.05
    assert resolved["model"]["layers"][0]["dense"]["units"] == 8
    bad = cli("train", SPIRALS, "--set", "optimizer.lr=fast")
    assert bad.exit_code == 2
    assert bad.stderr.strip() == ("error: --set optimizer.lr=fast: optimizer.lr: expected a "
                                  "positive learning rate, got 'fast'")
    typo = cli("train", SPIRALS, "--set", "train.epoch=3")
    assert "train.epoch: unknown key (did you mean 'epochs'?)" in typo.stderr


def test_step_schedule_with_warmup_sets_the_recorded_lr(tmp_path):
    result = cli("train", SPIRALS, "--epochs", "4", "--set",
                 "train.schedule={name: step, every_epochs: 2, gamma: 0.5, warmup_epochs: 1}",
                 "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    lrs = [r["lr"] for r in records(only(tmp_path))]
    assert lrs == [0.01, 0.01, 0.005, 0.005]  # the lr of each epoch's last step


def test_early_stopping_keeps_the_best_weights(tmp_path):
    result = cli("train", SPIRALS, "--epochs", "60", "--set", "train.patience=2",
                 "--set", "train.monitor=val_accuracy", "--set", "optimizer.lr=0.5",
                 "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    run = only(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    history = records(run)
    assert summary["status"] == "early_stopped" and len(history) < 60
    best = max(r["val_accuracy"] for r in history)
    assert summary["best_val_accuracy"] == best
    assert json.loads((run / "best.json").read_text())["val_accuracy"] == best
    assert np.load(run / "best.npz")["dense_0.weight"].shape == (2, 64)


def test_clipping_augmentation_and_label_smoothing_train(tmp_path):
    result = cli("train", CONFIGS / "digits_mlp.yaml", "--epochs", "3",
                 "--set", "train.clip_norm=0.5", "--set", "train.clip_value=1.0",
                 "--set", "train.augment={shift: 1, noise: 0.05, image_shape: [8, 8]}",
                 "--set", "loss={name: cross_entropy, label_smoothing: 0.1}",
                 "--set", "optimizer={name: adamw, lr: 0.003}", "--out", tmp_path)
    assert result.exit_code == 0, result.stderr
    summary = json.loads((only(tmp_path) / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.85


def test_augmentation_needs_an_image_shape_for_flat_features(tmp_path):
    result = cli("train", CONFIGS / "digits_mlp.yaml", "--set", "train.augment={flip: true}")
    assert result.exit_code == 2
    assert ": train.augment: " in result.stderr and "image_shape" in result.stderr


def test_nonfinite_batches_name_the_op_or_are_skipped(tmp_path):
    diverge = ["--set", "optimizer={name: sgd, lr: 1.0e+30}", "--epochs", "2"]
    mlp = CONFIGS / "digits_mlp.yaml"  # relu: nothing saturates, the logits overflow
    result = cli("train", mlp, *diverge, "--out", tmp_path / "stop")
    assert result.exit_code == 3
    assert "the first NaN/Inf came from op" in result.stderr
    assert "in layer 'dense_" in result.stderr
    skipped = cli("train", mlp, *diverge, "--set", "train.on_nonfinite=skip",
                  "--out", tmp_path / "skip")
    assert skipped.exit_code == 3  # every later batch is bad too: nothing left to train on
    assert "every batch of epoch" in skipped.stderr


def test_idx_files_train(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300).astype(np.uint8)
    images = np.zeros((300, 6, 6), np.uint8)
    for k in range(3):  # each class lights up its own row band
        images[labels == k, 2 * k:2 * k + 2, :] = 200
    images = images + rng.integers(0, 40, images.shape).astype(np.uint8)
    write_idx(tmp_path / "img-idx3-ubyte.gz", images)
    write_idx(tmp_path / "lab-idx1-ubyte", labels)
    config = tmp_path / "idx.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"dataset": "idx", "images": "img-idx3-ubyte.gz", "labels": "lab-idx1-ubyte"},
        "model": {"layers": [{"dense": {"units": 3}}]}, "loss": "cross_entropy",
        "optimizer": {"name": "adam", "lr": 0.01}, "train": {"epochs": 5}}))
    result = cli("train", config, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    assert json.loads((only(tmp_path / "runs") / "summary.json").read_text())[
        "test_accuracy"] > 0.95


def test_evaluate_and_predict_a_run(tmp_path):
    assert cli("train", CONFIGS / "digits_mlp.yaml", "--epochs", "5", "--out", tmp_path
               ).exit_code == 0
    run = only(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    result = cli("evaluate", run)
    assert result.exit_code == 0, result.stderr
    assert f"{summary['test_accuracy']:.4f}" in result.stdout
    assert "confusion matrix" in result.stdout
    val = cli("evaluate", run, "--split", "val", "--weights", "best")
    assert val.exit_code == 0 and "val_accuracy" in val.stdout

    digits = np.load(CONFIGS.parent / "datasets" / "digits.npz")
    np.savez(tmp_path / "new.npz", x=digits["x"][:20])
    out = tmp_path / "pred.csv"
    result = cli("predict", run, tmp_path / "new.npz", "-o", out)
    assert result.exit_code == 0, result.stderr
    rows = out.read_text().splitlines()
    assert rows[0].split(",")[:3] == ["class", "p0", "p1"] and len(rows) == 21
    classes = np.array([int(r.split(",")[0]) for r in rows[1:]])
    assert (classes == digits["y"][:20]).mean() >= 0.9
    probs = np.array([[float(v) for v in r.split(",")[1:]] for r in rows[1:]])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)

    np.savez(tmp_path / "wrong.npz", x=np.zeros((2, 10)))
    wrong = cli("predict", run, tmp_path / "wrong.npz", "-o", tmp_path / "p2.csv")
    assert wrong.exit_code == 2
    assert "each input has 10 values but the model takes [64]" in wrong.stderr
    assert not (tmp_path / "p2.csv").exists()
    missing = cli("evaluate", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "not a run folder" in missing.stderr


def test_predict_on_sequences_normalises_like_training(tmp_path):
    from nnctl.data import make_adding
    assert cli("train", CONFIGS / "seq_lstm.yaml", "--epochs", "1", "--out", tmp_path / "runs"
               ).exit_code == 0
    data = make_adding(5, 20, seed=3)
    np.savez(tmp_path / "seqs.npz", x=data.x)
    result = cli("predict", only(tmp_path / "runs"), tmp_path / "seqs.npz", "-o",
                 tmp_path / "p.npz")
    assert result.exit_code == 0, result.stderr
    assert np.load(tmp_path / "p.npz")["prediction"].shape == (5, 1)
