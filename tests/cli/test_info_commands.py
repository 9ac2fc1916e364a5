"""`nnctl summary`, `nnctl plot` and `nnctl datasets` through the CLI: exit codes and content."""

import json

import numpy as np
import pytest
import yaml

from conftest import CONFIGS

PNG = b"\x89PNG\r\n\x1a\n"


def test_summary_of_digits_cnn(cli):
    result = cli("summary", CONFIGS / "digits_cnn.yaml")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "digits_cnn: input [-, 64] float32" in out
    for row in ("reshape_0", "conv2d_1", "batch_norm_2", "max_pool2d_11", "dense_14"):
        assert row in out
    assert "[-, 32, 8, 8]" in out and "[-, 10]" in out
    assert "total parameters: 31,146" in out
    assert "trainable: 30,890" in out
    assert "non-trainable: 256 (layer state)" in out
    assert "parameter memory: 124,584 B (121.7 KiB) float32" in out
    assert "activation memory per sample: " in out
    assert "\x1b[" not in out  # plain off a terminal


def test_summary_json_and_dag_inputs(cli):
    result = cli("summary", CONFIGS / "digits_residual.yaml", "--json")
    assert result.exit_code == 0, result.stderr
    s = json.loads(result.stdout)
    assert s["totals"]["params"] == sum(r["params"] for r in s["layers"])
    table = cli("summary", CONFIGS / "digits_residual.yaml").stdout
    assert "residual <- stem, branch_out" in table


def test_summary_of_a_bad_config_is_exit_2(cli, tmp_path):
    result = cli("summary", tmp_path / "nothing.yaml")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "nothing.yaml" in result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "data": {"dataset": "spirals"},
        "model": {"layers": [{"dense": {"units": 3}}]},  # spirals has 2 classes
        "loss": "cross_entropy", "optimizer": {"name": "sgd", "lr": 0.1},
        "train": {"epochs": 1, "batch_size": 16}}))
    result = cli("summary", bad)
    assert result.exit_code == 2 and "expected [2]" in result.stderr


def test_plot_a_trained_run(cli, tmp_path):
    pytest.importorskip("matplotlib")
    assert cli("train", CONFIGS / "spirals.yaml", "--epochs", "3",
               "--out", tmp_path).exit_code == 0
    (run,) = tmp_path.iterdir()
    (run / "confusion.json").write_text(json.dumps({"labels": ["a", "b"],
                                                    "matrix": [[40, 3], [5, 52]]}))
    result = cli("plot", run)
    assert result.exit_code == 0, result.stderr
    names = sorted(p.name for p in (run / "plots").iterdir())
    assert names == ["accuracy.png", "confusion.png", "loss.png"]
    for name in names:
        assert (run / "plots" / name).read_bytes()[:8] == PNG
        assert f"wrote {run / 'plots' / name}" in result.stdout


def test_plot_without_metrics_is_exit_2(cli, tmp_path):
    result = cli("plot", tmp_path)
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'metrics.jsonl'}: no metrics.jsonl: not a " \
                            "run folder, or no epoch finished\n"


def test_plot_without_matplotlib_is_exit_2(cli, tmp_path, monkeypatch):
    import sys
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 0.5}\n')
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = cli("plot", tmp_path)
    assert result.exit_code == 2
    assert ("nnctl plot needs matplotlib: pip install matplotlib (the nnctl[plot] extra; in a "
            "source checkout: pip install -e '.[plot]')") in result.stderr


def test_datasets_lists_every_data_set(cli):
    from nnctl.config.schema import DATASETS
    result = cli("datasets")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for name in DATASETS:  # every dataset a config accepts is listed
        assert f"dataset: {name}" in out, name
    assert "1,797 samples" in out and "CC BY 4.0" in out and "SCOWL" in out
    assert "20,000 words" in out and "generated" in out and "missing" not in out


def test_datasets_json_agrees_with_the_shipped_files(cli):
    result = cli("datasets", "--json")
    assert result.exit_code == 0, result.stderr
    entries = {e["name"]: e for e in json.loads(result.stdout)}
    from nnctl.config.schema import DATASETS
    assert set(entries) == set(DATASETS)  # every entry is a name a config accepts, and back
    assert {e["kind"] for e in entries.values()} == {"file", "generator", "loader"}
    assert entries["digits"]["available"] and entries["words"]["available"]
    with np.load(entries["digits"]["path"]) as d:
        assert d["x"].shape == (1797, 64) and len(np.unique(d["y"])) == 10
    words = open(entries["words"]["path"]).read().split()
    assert len(words) == 20_000
    from nnctl.data import load_words
    assert len(load_words()[0]) == 5_816
