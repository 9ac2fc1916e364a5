"""The losses beyond cross_entropy and mse from the config: a tiny model trains with each
(`nnctl train` on generated npz data, figures read back from the run folder), the binary /
multi-label metrics agree with scikit-learn, and the mistakes around them are one line:
a metric of another loss family, a target outside [0, 1], pos_weight or alpha of the wrong
length. A NaN report names the layer's line in the YAML."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.train.metrics import MultiLabelTotals

TEMPLATE = """\
seed: 0
data: {{dataset: npz, path: data.npz, normalize: none, split: {{val: 0.2, test: 0.2}}}}
model:
  layers:
    - dense: {{units: 16, activation: tanh}}
    - dense: {{units: {units}}}
loss: {loss}
optimizer: {{name: adam, lr: 0.03}}
train: {{epochs: {epochs}, batch_size: 32, dtype: float64}}
{extra}"""


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def write(tmp_path: Path, y, loss: str, units: int, epochs: int = 15, extra: str = "",
          x=None) -> Path:
    np.savez(tmp_path / "data.npz", x=X if x is None else x, y=y)
    path = tmp_path / "c.yaml"
    path.write_text(TEMPLATE.format(loss=loss, units=units, epochs=epochs, extra=extra))
    return path


def train(tmp_path: Path, config: Path) -> tuple[list[dict], dict]:
    """(the per-epoch records, summary.json) of a finished run."""
    result = invoke("train", config, "--no-progress", "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return records, json.loads((run / "summary.json").read_text())


X = np.random.default_rng(0).normal(size=(400, 4))
MULTI = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] > 0.8], 1).astype(np.int64)


@pytest.mark.parametrize("loss", ["{name: bce_with_logits, pos_weight: [1.0, 2.0, 1.0]}",
                                  "{name: sigmoid_focal, gamma: 2, alpha: 0.25}"])
def test_a_multilabel_model_trains_and_reports_its_metrics(tmp_path, loss):
    records, summary = train(tmp_path, write(tmp_path, MULTI, loss, 3, extra="metrics: "
                             "[accuracy, subset_accuracy, f1_micro, f1_macro, roc_auc]\n"))
    assert records[-1]["train_loss"] < 0.25 * records[0]["train_loss"]
    assert summary["test_subset_accuracy"] >= 0.85
    assert summary["test_accuracy"] >= summary["test_subset_accuracy"]
    assert summary["test_f1_micro"] >= 0.85 and summary["test_f1_macro"] >= 0.8
    assert summary["test_roc_auc"] >= 0.97
    assert records[-1]["train_accuracy"] >= 0.9  # label decisions counted while training


def test_binary_targets_of_one_column_train_with_the_default_metrics(tmp_path):
    y = (X[:, 0] - X[:, 1] > 0).astype(np.int64)  # [N] 0/1 ints: one logit per sample
    records, summary = train(tmp_path, write(tmp_path, y, "bce_with_logits", 1))
    assert set(summary) >= {"test_accuracy", "test_f1_micro", "test_roc_auc"}
    assert summary["test_accuracy"] >= 0.9 and summary["test_roc_auc"] >= 0.97


def test_focal_trains_a_classifier(tmp_path):
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)  # three classes
    records, summary = train(tmp_path, write(tmp_path, y, "{name: focal, gamma: 2, alpha: "
                                                          "[1.0, 1.0, 2.0]}", 3))
    assert records[-1]["train_loss"] < 0.25 * records[0]["train_loss"]
    assert summary["test_accuracy"] >= 0.9 and summary["test_f1_macro"] >= 0.85


@pytest.mark.parametrize("loss", ["l1", "{name: huber, delta: 0.5}", "smooth_l1"])
def test_robust_regression_losses_train(tmp_path, loss):
    y = X[:, :2] @ np.array([[1.5, -0.5], [0.5, 2.0]])
    records, summary = train(tmp_path, write(tmp_path, y, loss, 2, epochs=20))
    assert records[-1]["train_loss"] < 0.25 * records[0]["train_loss"]
    assert summary["test_r2"] >= 0.95 and summary["test_mae"] < 0.3


def one_error(tmp_path: Path, config: Path, *parts: str) -> str:
    result = invoke("train", config, "--no-progress", "--out", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line, line
    for part in parts:
        assert part in line, line
    return line


def test_a_metric_of_another_family_is_a_config_error(tmp_path):
    y = (X[:, 0] > 0).astype(np.int64)
    one_error(tmp_path, write(tmp_path, y, "cross_entropy", 2, extra="metrics: [f1_micro]\n"),
              "c.yaml:10: metrics[0]: metric 'f1_micro' needs loss bce_with_logits or "
              "sigmoid_focal, but the loss is cross_entropy")
    one_error(tmp_path, write(tmp_path, y, "bce_with_logits", 1, extra="metrics: [r2]\n"),
              "metric 'r2' needs loss mse, l1, huber or smooth_l1, but the loss is "
              "bce_with_logits")


def test_a_target_outside_0_1_names_the_sample(tmp_path):
    y = MULTI.copy()
    y[7, 2] = 2
    one_error(tmp_path, write(tmp_path, y, "bce_with_logits", 3),
              "c.yaml:7: loss: bce_with_logits needs targets in [0, 1]", "(sample 7, label 2)",
              "cross_entropy or focal")
    y = np.full(400, 0.5)  # soft targets are fine; a negative one is not
    y[3] = -0.5
    one_error(tmp_path, write(tmp_path, y, "sigmoid_focal", 1), "hold -0.5 (sample 3)")


def test_weights_of_the_wrong_length_are_config_errors(tmp_path):
    one_error(tmp_path, write(tmp_path, MULTI, "{name: bce_with_logits, pos_weight: [1, 2]}",
                              3),
              "c.yaml:7: loss.pos_weight: 2 weights, but the data has 3 labels per sample: "
              "give one per label")
    y = (X[:, 0] > 0).astype(np.int64)
    one_error(tmp_path, write(tmp_path, y, "{name: focal, alpha: [1, 2, 3]}", 2),
              "loss.alpha: 3 weights, but the data has 2 classes: give one per class")


def test_a_nonfinite_loss_names_the_layers_yaml_line(tmp_path):
    x = np.full((100, 4), 3e38)  # finite in float32, but their sum in dense_0 is not
    config = write(tmp_path, (X[:100, 0] > 0).astype(np.int64), "bce_with_logits", 1, x=x)
    text = config.read_text().replace("dtype: float64", "dtype: float32").replace(
        "units: 16, activation: tanh", "units: 16")  # no tanh to tame the inf
    config.write_text(text)
    result = invoke("train", config, "--no-progress", "--out", tmp_path / "runs")
    assert result.exit_code != 0
    assert f"in layer 'dense_0' ({config}:5)" in result.output, result.output


def test_multilabel_totals_match_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    truth = rng.random((90, 4)) < [0.5, 0.2, 0.7, 0.05]
    logits = rng.normal(size=(90, 4)) + 1.5 * truth - 0.4
    totals = MultiLabelTotals()
    for part in np.array_split(np.arange(90), 4):  # batch by batch, as the trainer feeds
        totals.update(logits[part], truth[part].astype(np.float64))
    got = totals.result("test")
    pred = logits > 0
    expected = {"accuracy": float((pred == truth).mean()),
                "subset_accuracy": metrics.accuracy_score(truth, pred),
                "roc_auc": metrics.roc_auc_score(truth, logits, average="macro")}
    for avg in ("micro", "macro"):
        expected[f"precision_{avg}"] = metrics.precision_score(truth, pred, average=avg,
                                                               zero_division=0)
        expected[f"recall_{avg}"] = metrics.recall_score(truth, pred, average=avg,
                                                         zero_division=0)
        expected[f"f1_{avg}"] = metrics.f1_score(truth, pred, average=avg, zero_division=0)
    assert set(got) == {f"test_{k}" for k in expected}
    for key, value in expected.items():
        assert got[f"test_{key}"] == pytest.approx(float(value), rel=1e-12), key


def test_roc_auc_averages_only_labels_with_both_classes():
    truth = np.array([[1, 0], [0, 0], [1, 0], [0, 0]], bool)  # label 1 never positive
    logits = np.array([[2.0, 1.0], [1.0, -1.0], [0.5, 0.0], [3.0, 2.0]])
    totals = MultiLabelTotals()
    totals.update(logits, truth)
    # label 0: positives score 2.0 and 0.5, negatives 1.0 and 3.0: 1 of 4 pairs ordered right
    assert totals.result("val")["val_roc_auc"] == pytest.approx(0.25, rel=1e-15)
