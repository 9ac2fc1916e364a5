"""A graph task only the edges' features tell (gine), trained end to end from a graphs_jsonl
file: gine learns it, gin (the same model blind to edge features) stays near chance, and
predict reads the edge features of new graphs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnctl.backend import get_backend
from nnctl.config import load_config
from nnctl.train.inference import predict_run
from nnctl.train.trainer import Trainer

CONFIG = """\
seed: 0
data: {dataset: graphs_jsonl, path: g.jsonl}
model:
  inputs: [adjacency, edge_features]
  layers:
    - gine: {name: g1, units: 16, inputs: [input, adjacency, edge_features]}
    - graph_pool: max
    - dense: {units: classes}
loss: cross_entropy
optimizer: {name: adam, lr: 0.02}
train: {epochs: 25, batch_size: 32, dtype: float64}
"""


def write_graphs(path: Path, count: int, seed: int) -> None:
    """Paths of 4-7 nodes, node features all 1, one feature per edge in [0, 1), except that
    half of the graphs (label 1) have one edge with feature 3: structure and nodes are the
    same in both classes."""
    rng = np.random.default_rng(seed)
    lines = []
    for k in range(count):
        n = int(rng.integers(4, 8))
        edges = [[i, i + 1] for i in range(n - 1)]
        features = rng.random(n - 1)
        if k % 2:
            features[rng.integers(n - 1)] = 3.0
        lines.append({"nodes": [[1.0]] * n, "edges": edges,
                      "edge_features": [[float(f)] for f in features], "label": k % 2})
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")


def train(tmp_path: Path, text: str, out=None) -> tuple[Trainer, dict]:
    (tmp_path / "c.yaml").write_text(text)
    trainer = Trainer(load_config(tmp_path / "c.yaml"), get_backend("cpu"), out=out)
    return trainer, trainer.fit()


def test_gine_learns_what_only_edge_features_tell(tmp_path):
    write_graphs(tmp_path / "g.jsonl", 400, 0)
    _, with_edges = train(tmp_path, CONFIG)
    blind = CONFIG.replace("inputs: [adjacency, edge_features]", "inputs: [adjacency]").replace(
        "gine: {name: g1, units: 16, inputs: [input, adjacency, edge_features]}",
        "gin: {name: g1, units: 16, inputs: [input, adjacency]}")
    _, without = train(tmp_path, blind)
    assert with_edges["test_accuracy"] > 0.95
    assert without["test_accuracy"] < 0.7  # the same paths, node features and counts


def test_predict_reads_edge_features(tmp_path):
    write_graphs(tmp_path / "g.jsonl", 200, 1)
    trainer, _ = train(tmp_path, CONFIG.replace("epochs: 25", "epochs: 2"), tmp_path / "runs")
    (run,) = (tmp_path / "runs").iterdir()
    write_graphs(tmp_path / "new.jsonl", 5, 2)
    assert predict_run(run, tmp_path / "new.jsonl", tmp_path / "p.npz",
                       get_backend("cpu")) == 5
    from nnctl.data.graphs import read_graphs_jsonl, to_dataset
    data = to_dataset(read_graphs_jsonl(str(tmp_path / "new.jsonl"), labelled=False), "n",
                      True)
    with np.load(tmp_path / "p.npz") as p:
        for g in range(5):
            n = int(data.x_len[g])
            out = trainer.forward_arrays([data.x[g:g + 1, :n], np.ones((1, n)),
                                          data.extra["adjacency"][g:g + 1, :n, :n],
                                          data.extra["edge_features"][g:g + 1, :n, :n]])
            z = np.exp(out - out.max())
            np.testing.assert_allclose(p["probabilities"][g], (z / z.sum())[0], rtol=1e-12)
