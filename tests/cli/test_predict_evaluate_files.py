"""Predictions and evaluation where people want them: `predict` writes CSV to standard
output without -o, drops a label column the file still has (and reports the metric on it),
and `evaluate --data FILE` scores an external labelled file as it scores a split."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

CONFIG = """\
seed: 0
data: {dataset: csv, path: train.csv, label_column: label, split: {val: 0.2, test: 0.2}}
model:
  layers:
    - dense: {units: 16, activation: tanh}
    - dense: {units: classes}
loss: cross_entropy
optimizer: {name: adam, lr: 0.05}
train: {epochs: 15, batch_size: 32, dtype: float64}
metrics: [accuracy]
"""


def table(n: int, seed: int):
    """Three features; the class is the sign of f0 + f1 (label in the middle column)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return x, (x[:, 0] + x[:, 1] > 0).astype(int)


def write_csv(path, x, y=None):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["f0", "label", "f1", "f2"] if y is not None else ["f0", "f1", "f2"])
        for i, row in enumerate(x):
            cells = [f"{v:.6f}" for v in row]
            w.writerow([cells[0], int(y[i]), *cells[1:]] if y is not None else cells)


@pytest.fixture
def run(tmp_path, cli):
    x, y = table(300, 0)
    write_csv(tmp_path / "train.csv", x, y)
    (tmp_path / "c.yaml").write_text(CONFIG)
    result = cli("train", tmp_path / "c.yaml", "--out", tmp_path / "runs", "--no-progress")
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "runs").iterdir()
    return folder


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_predict_without_o_writes_csv_to_stdout(tmp_path, cli, run):
    x, _ = table(7, 1)
    write_csv(tmp_path / "new.csv", x)
    result = cli("predict", run, tmp_path / "new.csv")
    assert result.exit_code == 0, result.output
    lines = rows(result.stdout)
    assert lines[0] == ["class", "p0", "p1"] and len(lines) == 8
    p = np.array([[float(v) for v in r[1:]] for r in lines[1:]])
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert [int(r[0]) for r in lines[1:]] == list(p.argmax(1))
    assert "wrote" not in result.stdout and not list(tmp_path.glob("*.out"))
    # with -o the same predictions go to the file
    result = cli("predict", run, tmp_path / "new.csv", "-o", tmp_path / "p.csv")
    assert result.exit_code == 0 and "wrote 7 predictions" in result.stdout
    assert rows((tmp_path / "p.csv").read_text()) == lines


def test_predict_drops_the_label_column_and_reports_the_accuracy(tmp_path, cli, run):
    x, y = table(40, 2)
    write_csv(tmp_path / "labelled.csv", x, y)
    write_csv(tmp_path / "bare.csv", x)
    with_labels = cli("predict", run, tmp_path / "labelled.csv")
    without = cli("predict", run, tmp_path / "bare.csv")
    assert with_labels.exit_code == 0 and without.exit_code == 0, with_labels.output
    assert with_labels.stdout == without.stdout  # the label column changed nothing
    predicted = np.array([int(r[0]) for r in rows(with_labels.stdout)[1:]])
    accuracy = float(np.mean(predicted == y))
    assert accuracy > 0.85
    assert f"accuracy on the 40 labelled rows of labelled.csv: {accuracy:.4f}" in \
        with_labels.stderr


def test_evaluate_data_scores_an_external_file_like_a_split(tmp_path, cli, run):
    x, y = table(60, 3)
    write_csv(tmp_path / "ext.csv", x, y)
    np.savez(tmp_path / "ext.npz", x=x, y=y)
    result = cli("evaluate", run, "--data", tmp_path / "ext.csv")
    assert result.exit_code == 0, result.output
    assert f"{run.name}: ext.csv, final weights" in result.stdout
    got = {line.split()[1]: float(line.split()[3]) for line in result.stdout.splitlines()
           if line.startswith("│ data_")}
    predicted = np.array([int(r[0]) for r in rows(cli("predict", run, tmp_path /
                                                      "ext.csv").stdout)[1:]])
    assert got["data_accuracy"] == pytest.approx(float(np.mean(predicted == y)), abs=1e-4)
    npz = cli("evaluate", run, "--data", tmp_path / "ext.npz")
    assert npz.exit_code == 0
    assert "data_accuracy" in npz.stdout and "confusion matrix" in npz.stdout


@pytest.mark.parametrize("content, message", [
    ("f0,label,f1\n1,0,2\n", "each row has [2] features; the model was trained on [3]"),
    ("f0,label,f1,f2\n1,7,2,3\n", "labels must be classes 0..1, found 7..7"),
])
def test_evaluate_data_mistakes_are_one_line(tmp_path, cli, run, content, message):
    (tmp_path / "bad.csv").write_text(content)
    result = cli("evaluate", run, "--data", tmp_path / "bad.csv")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
