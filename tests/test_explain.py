"""`nnctl explain`: the paths from the loss back to a parameter, each edge's vjp rule, and
each path's contribution; the contributions sum to the gradient autodiff computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.config import load_config
from nnctl.explain import explain

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_an_mlp_has_one_path_with_each_layers_rules():
    r = explain(load_config(CONFIGS / "spirals.yaml"), "dense_0.weight")
    assert len(r["paths"]) == 1
    assert r["paths"][0]["edges"] == [
        "matmul in dense_0 (input 1): A^T @ g", "add in dense_0 (input 0): g",
        "tanh in dense_0 (input 0): g * (1 - y^2)", "matmul in dense_1 (input 0): g @ B^T",
        "add in dense_1 (input 0): g", "tanh in dense_1 (input 0): g * (1 - y^2)",
        "matmul in dense_2 (input 0): g @ B^T", "add in dense_2 (input 0): g",
        "cross_entropy (input 0): g * (softmax(z) - onehot(labels)) / n"]
    np.testing.assert_allclose(r["sum"], r["autodiff"], rtol=1e-12, atol=1e-15)
    assert np.abs(r["autodiff"]).max() > 1e-3


@pytest.mark.parametrize("config, param, at_least", [
    ("digits_residual.yaml", "stem.weight", 3),   # the skip connection and batch norm's
    ("digits_residual.yaml", "branch.bias", 2),   # mean and variance both branch
    ("digits_siamese.yaml", "left1.weight", 2),   # a shared layer: both towers
])
def test_the_paths_sum_to_the_autodiff_gradient(config, param, at_least):
    r = explain(load_config(CONFIGS / config), param, batch=6)
    assert len(r["paths"]) >= at_least
    np.testing.assert_allclose(r["sum"], r["autodiff"], rtol=1e-10, atol=1e-14)
    # every path contributes something of its own, and they are not all the same
    norms = [p["norm"] for p in r["paths"]]
    assert max(norms) > 0 and len(set(np.round(norms, 12))) > 1
    assert all(p["edges"][-1].startswith(("cross_entropy", "mean", "mul", "div", "sum",
                                          "add", "neg", "sub")) for p in r["paths"])


def test_the_command_prints_paths_and_the_check(tmp_path):
    result = CliRunner().invoke(app, ["explain", str(CONFIGS / "spirals.yaml"),
                                      "dense_0.weight"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("dense_0.weight [2, 64]: 1 path to the loss (batch 4, initial "
                          "weights, float64)")
    assert "  -> tanh in dense_0 (input 0): g * (1 - y^2)" in out and "  -> loss" in out
    difference = float(out.rsplit("max difference ", 1)[1])
    assert difference < 1e-12
    bad = CliRunner().invoke(app, ["explain", str(CONFIGS / "spirals.yaml"), "dense_0.wieght"])
    assert bad.exit_code == 2
    assert "no parameter 'dense_0.wieght' (did you mean 'dense_0.weight'?)" in bad.stderr


def test_gradient_arriving_along_the_path():
    """|g| per edge: the seed 1 at the loss; an add passes g on unchanged (so the op below it
    receives the same |g|), a tanh changes it."""
    r = explain(load_config(CONFIGS / "spirals.yaml"), "dense_0.weight")
    (path,) = r["paths"]
    flow, edges = path["flow"], path["edges"]
    assert len(flow) == len(edges) and flow[-1] == 1.0
    for k in range(len(edges) - 1):
        if edges[k + 1].startswith("add "):
            assert flow[k] == pytest.approx(flow[k + 1], rel=1e-12)
        if edges[k + 1].startswith("tanh "):
            assert abs(flow[k] - flow[k + 1]) > 1e-6 * flow[k + 1]


def test_diagram_highlights_every_path_edge(tmp_path):
    out = tmp_path / "paths.dot"
    result = CliRunner().invoke(app, ["explain", str(CONFIGS / "digits_residual.yaml"),
                                      "branch.bias", "--batch", "3", "--diagram", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    r = explain(load_config(CONFIGS / "digits_residual.yaml"), "branch.bias", batch=3)
    distinct = {(id(n), i) for p in r["paths"] for n, i in p["graph_edges"]}
    assert len(r["paths"]) >= 2 and len(distinct) > 10
    # every distinct (consumer, input) edge on a path drawn highlighted once, plus the legend's
    assert text.count('penwidth=2, fontcolor="#CC0000"') == len(distinct) + 1
    assert 'label="branch.bias\\n[128]"' in text and "g * step(x)" in text
    assert "|g| " in text and "cluster_legend" in text


def test_diagram_and_values_errors(tmp_path):
    bad = CliRunner().invoke(app, ["explain", str(CONFIGS / "spirals.yaml"), "dense_0.weight",
                                   "--diagram", str(tmp_path / "x.pdf")])
    assert bad.exit_code == 2 and "expected a .dot, .svg or .png file" in bad.stderr
    run = tmp_path / "run"
    run.mkdir()
    np.savez(run / "weights.npz", **{"dense_0.weight": np.zeros((3, 3))})
    bad = CliRunner().invoke(app, ["explain", str(CONFIGS / "spirals.yaml"), "dense_0.weight",
                                   "--values", str(run)])
    assert bad.exit_code == 2
    assert "do not belong to this config's model (dense_0.weight" in bad.stderr
