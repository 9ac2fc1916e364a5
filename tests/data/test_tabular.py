"""Real tabular data (nnctl.data.tabular): string labels, categorical columns, gaps filled
from the training split, types inferred and overridable, one-line errors; and the CLI
round trip: train on the raw CSV, predict on raw rows, class names printed."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nnctl.data.tabular import encode_rows, load_table, train_rows
from nnctl.errors import DataError

HEADER = ["age", "color", "income", "size", "species"]


def make_table(path: Path, n: int = 400, seed: int = 0, gaps: float = 0.1) -> None:
    """Two numeric columns with `gaps` of their cells missing, two categorical ones, and a
    string label that depends on all four."""
    rng = np.random.default_rng(seed)
    colors, sizes = np.array(["red", "green", "blue"]), np.array(["S", "M", "L"])
    age, income = rng.normal(size=n), rng.normal(size=n)
    c, s = rng.integers(0, 3, n), rng.integers(0, 3, n)
    score = age + 1.5 * (c == 0) - 1.2 * (s == 2) + 0.5 * income
    label = np.where(score > 0.7, "setosa", np.where(score > -0.6, "versicolor", "virginica"))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i in range(n):
            w.writerow(["" if rng.random() < gaps else f"{age[i]:.4f}", colors[c[i]],
                        "NA" if rng.random() < gaps else f"{income[i]:.4f}", sizes[s[i]],
                        label[i]])


def spec(path, **kw):
    base = dict(path=str(path), label_column="species", header=None, delimiter=",",
                columns=None, impute="mean", fill=None,
                split=SimpleNamespace(val=0.15, test=0.15))
    base.update(kw)
    return SimpleNamespace(**base)


def rows_of(path):
    return list(csv.reader(open(path, newline="")))


def test_types_labels_and_one_hot_columns(tmp_path):
    make_table(tmp_path / "t.csv")
    data = load_table(spec(tmp_path / "t.csv"), 0, "float64")
    encoder = data.info["tabular"]
    assert [c.kind for c in encoder.columns] == ["numeric", "categorical", "numeric",
                                                 "categorical"]
    assert encoder.feature_names == ["age", "color=blue", "color=green", "color=red",
                                     "income", "size=L", "size=M", "size=S"]
    assert data.info["labels"] == ["setosa", "versicolor", "virginica"]
    rows = rows_of(tmp_path / "t.csv")[1:]
    names = data.info["labels"]
    assert [names[k] for k in data.y] == [r[4] for r in rows]
    x = data.x
    assert x.shape == (400, 8)
    for i, r in enumerate(rows[:50]):
        assert x[i, 1:4].tolist() == [float(r[1] == c) for c in ("blue", "green", "red")]
        if r[0]:
            assert x[i, 0] == pytest.approx(float(r[0]))


@pytest.mark.parametrize("impute", ["mean", "median", "most_frequent"])
def test_gaps_are_filled_from_the_training_split_only(tmp_path, impute):
    make_table(tmp_path / "t.csv", gaps=0.2)
    s = spec(tmp_path / "t.csv", impute=impute)
    data = load_table(s, 3, "float64")
    rows = rows_of(tmp_path / "t.csv")[1:]
    train = train_rows(data.y, s, 3)
    ages = np.array([float(rows[i][0]) for i in train if rows[i][0]])
    expected = {"mean": ages.mean(), "median": np.median(ages),
                "most_frequent": np.unique(ages)[np.argmax(np.unique(ages,
                                                                     return_counts=True)[1])]}
    gaps = [i for i, r in enumerate(rows) if not r[0]]
    assert len(gaps) > 40
    np.testing.assert_allclose(data.x[gaps, 0], expected[impute], rtol=1e-12)
    every = np.array([float(r[0]) for r in rows if r[0]])
    assert impute == "most_frequent" or not np.isclose(expected[impute],
                                                       {"mean": every.mean(),
                                                        "median": np.median(every)}[impute])


def test_constant_imputation_and_column_overrides(tmp_path):
    make_table(tmp_path / "t.csv")
    data = load_table(spec(tmp_path / "t.csv", columns={
        "age": {"impute": "constant", "fill": -9}, "size": {"type": "ignore"},
        "income": {"type": "categorical"}}), 0, "float64")
    enc = data.info["tabular"]
    assert [c.kind for c in enc.columns] == ["numeric", "categorical", "categorical", "ignore"]
    rows = rows_of(tmp_path / "t.csv")[1:]
    gaps = [i for i, r in enumerate(rows) if not r[0]]
    assert np.all(data.x[gaps, 0] == -9.0)
    assert not any(n.startswith("size") for n in enc.feature_names)


def test_unknown_categories_and_gaps_fire_no_column(tmp_path):
    make_table(tmp_path / "t.csv")
    data = load_table(spec(tmp_path / "t.csv"), 0, "float64")
    new = tmp_path / "new.csv"
    new.write_text("age,color,income,size\n0.5,purple,,XL\n,red,1.0,S\n")
    x, y, ids = encode_rows(data.info["tabular"], new, ",", data.info["labels"])
    assert ids == {}
    assert y is None and x.shape == (2, 8)
    assert x[0, 1:4].tolist() == [0, 0, 0] and x[0, 5:8].tolist() == [0, 0, 0]
    assert x[1, 3] == 1.0  # red
    assert x[0, 4] == data.info["tabular"].columns[2].value  # the income gap: the mean


@pytest.mark.parametrize("content, message", [
    ("a,b,label\n1,2,x\n3,abc,y\n5,1,x\n6,2,y\n",
     "line 3, column 2 (b): 'abc' is not a number, but the column's other cells are"),
    ("a,b,label\n1,u,x\n3,v,\n5,u,x\n6,v,y\n", "line 3: the label is missing"),
])
def test_mistakes_are_one_line(tmp_path, content, message):
    (tmp_path / "t.csv").write_text(content)
    with pytest.raises(DataError) as err:
        load_table(spec(tmp_path / "t.csv", label_column="label",
                        split=SimpleNamespace(val=0.25, test=0.25)), 0, "float64")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_table_of_numbers_is_left_to_the_plain_reader(tmp_path):
    (tmp_path / "n.csv").write_text("1,2,0\n3,4,1\n")
    assert load_table(spec(tmp_path / "n.csv", label_column=-1), 0, "float64") is None


@pytest.fixture
def cli():
    from typer.testing import CliRunner

    from nnctl.cli.app import app
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_train_predict_and_evaluate_on_raw_rows(tmp_path, cli):
    make_table(tmp_path / "t.csv", n=600)
    (tmp_path / "c.yaml").write_text(
        "seed: 0\ndata: {dataset: csv, path: t.csv, label_column: species}\n"
        "model:\n  layers:\n    - dense: {units: 32, activation: relu}\n"
        "    - dense: {units: classes}\nloss: cross_entropy\noptimizer: adam\n"
        "train: {epochs: 40}\nmetrics: [accuracy]\n")
    result = cli("train", tmp_path / "c.yaml", "--out", tmp_path / "runs", "--no-progress")
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    accuracy = float(result.stdout.split("test_accuracy ")[1].split()[0])
    assert accuracy > 0.75  # 10% of the strongest feature missing
    import json
    saved = json.loads((run / "data.json").read_text())
    assert saved["labels"] == ["setosa", "versicolor", "virginica"]
    assert [c["type"] for c in saved["tabular"]["columns"]] == [
        "numeric", "categorical", "numeric", "categorical"]
    rows = rows_of(tmp_path / "t.csv")
    with open(tmp_path / "raw.csv", "w", newline="") as f:
        csv.writer(f).writerows([r[:4] for r in rows[:11]] + [["", "purple", "?", "XXL"]])
    out = cli("predict", run, tmp_path / "raw.csv")
    assert out.exit_code == 0, out.output
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "class,label,p0,p1,p2" and len(lines) == 12
    assert {ln.split(",")[1] for ln in lines[1:]} <= {"setosa", "versicolor", "virginica"}
    evaluated = cli("evaluate", run, "--data", tmp_path / "t.csv")
    assert evaluated.exit_code == 0 and "data_accuracy" in evaluated.stdout
    assert "virginica" in evaluated.stdout  # the confusion matrix names the classes


def test_a_categorical_column_as_embedding_ids(tmp_path, cli):
    """encoding: embedding makes the column a model input of ids (0 unknown) that an
    embedding layer reads (vocab auto: its categories + 1); predict feeds raw rows the same
    way."""
    make_table(tmp_path / "t.csv", n=600)
    s = spec(tmp_path / "t.csv", columns={"color": {"encoding": "embedding"}})
    data = load_table(s, 0, "float64")
    assert data.info["input_vocab"] == {"color": 4}
    assert not any(n.startswith("color") for n in data.info["tabular"].feature_names)
    rows = rows_of(tmp_path / "t.csv")[1:]
    expected = [{"blue": 1, "green": 2, "red": 3}[r[1]] for r in rows]
    np.testing.assert_array_equal(data.extra["color"], expected)
    (tmp_path / "c.yaml").write_text(
        "seed: 0\ndata: {dataset: csv, path: t.csv, label_column: species,\n"
        "       columns: {color: {encoding: embedding}}}\n"
        "model:\n  inputs: [color]\n  layers:\n"
        "    - embedding: {name: color_vec, dim: 3, inputs: [color]}\n"
        "    - concat: {inputs: [input, color_vec]}\n"
        "    - dense: {units: 32, activation: relu}\n"
        "    - dense: {units: classes}\nloss: cross_entropy\noptimizer: adam\n"
        "train: {epochs: 40}\nmetrics: [accuracy]\n")
    result = cli("train", tmp_path / "c.yaml", "--out", tmp_path / "runs", "--no-progress")
    assert result.exit_code == 0, result.output
    assert float(result.stdout.split("test_accuracy ")[1].split()[0]) > 0.75
    (run,) = (tmp_path / "runs").iterdir()
    (tmp_path / "raw.csv").write_text("age,color,income,size\n1.5,red,,S\n0.1,violet,0,M\n")
    out = cli("predict", run, tmp_path / "raw.csv")
    assert out.exit_code == 0, out.output
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[1].split(",")[1] == "setosa"
