"""`nnctl predict` on a graph model: new graphs from a .jsonl or an .npz in the graphs_npz
layout (labels optional), padded as in training, per-graph classes (and per-node classes for
a node classifier), the same outputs as the trained model's forward, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nnctl.backend import get_backend
from nnctl.config import load_config
from nnctl.data.graphs import read_graphs_jsonl, to_dataset
from nnctl.errors import DataError
from nnctl.train.inference import predict_run
from nnctl.train.trainer import Trainer

GRAPHS = """\
seed: 0
data: {dataset: graph_cycles, samples: 200}
model:
  inputs: [adjacency]
  layers:
    - gin: {name: gin1, units: 8, inputs: [input, adjacency]}
    - graph_pool: sum
    - dense: {units: classes}
loss: cross_entropy
optimizer: {name: adam, lr: 0.01}
train: {epochs: 2, batch_size: 16, dtype: float64}
"""

PATH = [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]]
NEW = [
    {"nodes": [[1.0]] * 6, "edges": PATH},
    {"nodes": [[1.0]] * 6, "edges": PATH + [[5, 0]], "label": 1},  # a label is ignored
    {"nodes": [[1.0]] * 3, "edges": [[0, 1]]},
]


def train(tmp_path: Path, text: str = GRAPHS) -> tuple[Trainer, Path]:
    (tmp_path / "c.yaml").write_text(text)
    trainer = Trainer(load_config(tmp_path / "c.yaml"), get_backend("cpu"),
                      out=tmp_path / "runs")
    trainer.fit()
    (run,) = (tmp_path / "runs").iterdir()
    return trainer, run


def expected_probabilities(trainer: Trainer, path: Path) -> np.ndarray:
    """Each graph alone through the trained model (no padding: batch 1, its own nodes)."""
    rows = []
    for graph in read_graphs_jsonl(str(path), labelled=False):
        data = to_dataset([graph], "one", True)
        out = trainer.forward_arrays([data.x, np.ones((1, data.x.shape[1])),
                                      data.extra["adjacency"]])
        z = np.exp(out - out.max(-1, keepdims=True))
        rows.append(z / z.sum(-1, keepdims=True))
    return np.concatenate(rows)


def test_graphs_from_jsonl_and_npz_give_the_models_outputs(tmp_path):
    trainer, run = train(tmp_path)
    new = tmp_path / "new.jsonl"
    new.write_text("\n".join(json.dumps(g) for g in NEW) + "\n")
    assert predict_run(run, new, tmp_path / "p.npz", get_backend("cpu")) == 3
    with np.load(tmp_path / "p.npz") as p:
        np.testing.assert_allclose(p["probabilities"], expected_probabilities(trainer, new),
                                   rtol=1e-12)
        assert list(p["label"]) == [["tree", "one_cycle"][c] for c in p["class"]]
    # the same graphs in the npz layout, without labels
    np.savez(tmp_path / "new.npz", node_features=np.ones(15), node_counts=[6, 6, 3],
             edges=np.array(PATH + PATH + [[5, 0]] + [[0, 1]]).T, edge_counts=[5, 6, 1])
    assert predict_run(run, tmp_path / "new.npz", tmp_path / "q.npz", get_backend("cpu")) == 3
    with np.load(tmp_path / "p.npz") as p, np.load(tmp_path / "q.npz") as q:
        np.testing.assert_array_equal(p["probabilities"], q["probabilities"])
    assert predict_run(run, new, tmp_path / "p.csv", get_backend("cpu")) == 3
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "class,label,p0,p1" and len(lines) == 4


@pytest.mark.parametrize("name, content, message", [
    ("wide.jsonl", '{"nodes": [[1.0, 2.0]], "edges": []}\n',
     "nodes have 2 features; the model was trained on 1"),
    ("bad.jsonl", '{"nodes": [[1.0], [1.0]], "edges": [[0, 2]]}\n',
     "bad.jsonl:1: the graph: edge 0 (0 -> 2) names a node outside 0..1"),
    ("empty.jsonl", '{"nodes": [], "edges": []}\n', "empty.jsonl:1: the graph has no nodes"),
    ("graphs.txt", "x\n", "a graph model predicts for graphs in a .jsonl or .npz file"),
])
def test_bad_graph_files_are_one_line(tmp_path, name, content, message):
    _, run = train(tmp_path, GRAPHS.replace("epochs: 2", "epochs: 1"))
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError) as info:
        predict_run(run, tmp_path / name, tmp_path / "p.npz", get_backend("cpu"))
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "p.npz").exists()


def test_a_node_classifier_predicts_every_node(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(60):  # a node's class: whether it has a neighbour (isolated nodes are 0)
        n = int(rng.integers(3, 7))
        edges = [[int(a), int(b)] for a, b in rng.integers(0, n, (2, 2)) if a != b]
        touched = {v for e in edges for v in e}
        lines.append({"nodes": [[1.0]] * n, "edges": edges,
                      "node_labels": [int(v in touched) for v in range(n)]})
    (tmp_path / "nodes.jsonl").write_text("\n".join(json.dumps(g) for g in lines) + "\n")
    text = GRAPHS.replace("{dataset: graph_cycles, samples: 200}",
                          "{dataset: graphs_jsonl, path: nodes.jsonl}").replace(
        "    - graph_pool: sum\n", "")
    trainer, run = train(tmp_path, text)
    new = tmp_path / "new.jsonl"
    new.write_text("\n".join(json.dumps(g) for g in NEW) + "\n")
    predict_run(run, new, tmp_path / "p.npz", get_backend("cpu"))
    with np.load(tmp_path / "p.npz") as p:
        assert p["class"].shape == (3, 6) and p["probabilities"].shape == (3, 6, 2)
        np.testing.assert_array_equal(p["nodes"], [6, 6, 3])
        data = to_dataset(read_graphs_jsonl(str(new), labelled=False), "new", True)
        out = trainer.forward_arrays([data.x, (np.arange(6) < data.x_len[:, None]) * 1.0,
                                      data.extra["adjacency"]])
        np.testing.assert_array_equal(p["class"][2, :3], out[2, :3].argmax(-1))
        np.testing.assert_array_equal(p["class"][0], out[0].argmax(-1))
