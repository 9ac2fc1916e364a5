"""`nnctl init DATA_FILE`: a commented config that trains on the user's raw table as it is
(string labels, categorical columns, gaps), and predict on raw rows prints class names."""

from __future__ import annotations

import csv

import numpy as np
import yaml


def write_table(path, n=500, seed=0):
    """String labels, two categorical columns, 10% of the numeric cells missing."""
    rng = np.random.default_rng(seed)
    colors, sizes = np.array(["red", "green", "blue"]), np.array(["S", "M", "L"])
    a, b = rng.normal(size=n), rng.normal(size=n)
    c, s = rng.integers(0, 3, n), rng.integers(0, 3, n)
    score = a + 1.5 * (c == 0) - 1.2 * (s == 2) + 0.5 * b
    label = np.where(score > 0.7, "high", np.where(score > -0.6, "mid", "low"))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["height", "color", "weight", "size", "grade"])
        for i in range(n):
            w.writerow(["" if rng.random() < 0.1 else f"{a[i]:.4f}", colors[c[i]],
                        "NA" if rng.random() < 0.1 else f"{b[i]:.4f}", sizes[s[i]], label[i]])


def test_init_writes_a_config_that_trains_on_the_raw_table(tmp_path, cli, monkeypatch):
    write_table(tmp_path / "grades.csv")
    monkeypatch.chdir(tmp_path)
    result = cli("init", "grades.csv")
    assert result.exit_code == 0, result.output
    assert "wrote grades.yaml" in result.stdout
    text = (tmp_path / "grades.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["data"] == {"dataset": "csv", "path": "grades.csv", "label_column": "grade",
                              "split": {"val": 0.15, "test": 0.15}, "normalize": "standard",
                              "impute": "mean"}
    assert config["loss"] == "cross_entropy" and config["model"]["layers"][-1] == {
        "dense": {"units": "classes"}}
    assert "#   color: categorical (3 categories)" in text
    assert "#   height: numeric, " in text and " missing" in text
    assert "# label grade: 3 classes: high, low, mid" in text
    trained = cli("train", "grades.yaml", "--out", "runs", "--no-progress", "--epochs", "30")
    assert trained.exit_code == 0, trained.output
    accuracy = float(trained.stdout.split("test_accuracy ")[1].split()[0])
    assert accuracy > 0.75
    (run,) = (tmp_path / "runs").iterdir()
    with open(tmp_path / "raw.csv", "w", newline="") as f:
        csv.writer(f).writerows([["height", "color", "weight", "size"],
                                 ["1.5", "red", "", "S"], ["", "blue", "-1", "L"],
                                 ["-2", "violet", "NA", "M"]])
    predicted = cli("predict", run, "raw.csv")
    assert predicted.exit_code == 0, predicted.output
    lines = predicted.stdout.strip().splitlines()
    assert lines[0].startswith("class,label,") and len(lines) == 4
    assert lines[1].split(",")[1] == "high"  # tall, red, small: clearly high
    assert lines[2].split(",")[1] == "low"
    assert all(line.split(",")[1] in {"high", "low", "mid"} for line in lines[1:])


def test_init_for_an_npz_and_refusals(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.savez("reg.npz", x=np.zeros((10, 3)), y=np.linspace(0, 1, 10), side=np.ones((10, 2)))
    assert cli("init", "reg.npz", "-o", "sub/reg.yaml").exit_code == 2  # no such folder
    (tmp_path / "sub").mkdir()
    result = cli("init", "reg.npz", "-o", "sub/reg.yaml")
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((tmp_path / "sub/reg.yaml").read_text())
    assert config["data"]["path"] == "../reg.npz" and config["loss"].startswith("mse")
    assert "further arrays (model inputs via inputs: [...]): side" in \
        (tmp_path / "sub/reg.yaml").read_text()
    again = cli("init", "reg.npz", "-o", "sub/reg.yaml")
    assert again.exit_code == 2 and "exists; pass --force" in again.stderr
    assert cli("init", "reg.npz", "-o", "sub/reg.yaml", "--force").exit_code == 0
    (tmp_path / "notes.md").write_text("x")
    bad = cli("init", "notes.md")
    assert bad.exit_code == 2 and "reads a .csv (or .tsv) or an .npz file" in bad.stderr
