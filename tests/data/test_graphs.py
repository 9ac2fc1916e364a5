"""Graph data kinds: graphs_npz and graphs_jsonl read into dense padded arrays, their one-line
errors, and the generated graph_cycles task (trees vs one-cycle graphs)."""

from __future__ import annotations

import json
from collections import deque
from types import SimpleNamespace

import numpy as np
import pytest

from nnctl.data.batching import batch_arrays
from nnctl.data.graphs import (load_graphs_jsonl, load_graphs_npz, make_graph_cycles,
                               random_tree)
from nnctl.errors import DataError

# three graphs: a directed triangle 0->1->2->0 with a self loop on 1 (dropped) and a repeated
# edge; a single node; an edge 0 -> 1 plus an isolated node 2
FEATURES = [[[1.0, 0.0], [2.0, 1.0], [3.0, 0.5]], [[4.0, 4.0]],
            [[5.0, 1.0], [6.0, 2.0], [7.0, 3.0]]]
EDGES = [[[0, 1], [1, 2], [2, 0], [1, 1], [0, 1]], [], [[0, 1]]]
LABELS = [1, 0, 2]


def write_npz(path, features=FEATURES, edges=EDGES, node_labels=False, **override):
    arrays = {
        "node_features": np.concatenate([np.array(f) for f in features]),
        "node_counts": np.array([len(f) for f in features]),
        "edges": np.concatenate([np.array(e, dtype=np.int64).reshape(-1, 2) for e in edges]).T,
        "edge_counts": np.array([len(e) for e in edges]),
    }
    if node_labels:
        arrays["node_labels"] = np.arange(sum(len(f) for f in features)) % 2
    else:
        arrays["labels"] = np.array(LABELS)
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return str(path)


def write_jsonl(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line)
                              for line in lines) + "\n")
    return str(path)


def jsonl_lines(node_labels=False):
    lines = []
    for f, e, k in zip(FEATURES, EDGES, LABELS):
        line = {"nodes": f, "edges": e}
        if node_labels:
            line["node_labels"] = [i % 2 for i in range(len(f))]
        else:
            line["label"] = k
        lines.append(line)
    return lines


def spec(path, undirected=True):
    return SimpleNamespace(path=path, undirected=undirected)


def check_padded(data, undirected):
    assert data.x.shape == (3, 3, 2) and data.x.dtype == np.float64
    np.testing.assert_array_equal(data.x_len, [3, 1, 3])
    np.testing.assert_array_equal(data.x[1], [[4, 4], [0, 0], [0, 0]])  # zero padding
    np.testing.assert_array_equal(data.x[2], FEATURES[2])
    a = data.extra["adjacency"]
    assert a.shape == (3, 3, 3)
    # A[i, j] = 1 for j -> i; the self loop 1 -> 1 is dropped, the repeated 0 -> 1 is one edge
    directed = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=float)
    np.testing.assert_array_equal(a[0], directed + directed.T if undirected else directed)
    assert not a[1].any()
    expected = np.zeros((3, 3))
    expected[1, 0] = 1
    if undirected:
        expected[0, 1] = 1
    np.testing.assert_array_equal(a[2], expected)
    assert data.info["trim"] == {"adjacency": (1, 2)}


@pytest.mark.parametrize("undirected", [True, False])
def test_npz_and_jsonl_give_the_same_padded_graphs(tmp_path, undirected):
    npz = load_graphs_npz(spec(write_npz(tmp_path / "g.npz"), undirected), 0, "float64")
    jsonl = load_graphs_jsonl(spec(write_jsonl(tmp_path / "g.jsonl", jsonl_lines()),
                                   undirected), 0, "float64")
    for data in (npz, jsonl):
        check_padded(data, undirected)
        np.testing.assert_array_equal(data.y, LABELS)
        assert data.y.dtype == np.int64
    np.testing.assert_array_equal(npz.extra["adjacency"], jsonl.extra["adjacency"])


def test_node_labels_are_per_node_and_zero_at_padding(tmp_path):
    npz = load_graphs_npz(spec(write_npz(tmp_path / "g.npz", node_labels=True)), 0, "float64")
    jsonl = load_graphs_jsonl(spec(write_jsonl(tmp_path / "g.jsonl", jsonl_lines(True))), 0,
                              "float64")
    np.testing.assert_array_equal(npz.y, [[0, 1, 0], [1, 0, 0], [0, 1, 0]])  # running index % 2
    np.testing.assert_array_equal(jsonl.y, [[0, 1, 0], [0, 0, 0], [0, 1, 0]])


def test_a_batch_cuts_the_adjacency_to_its_padded_node_count(tmp_path):
    data = load_graphs_npz(spec(write_npz(tmp_path / "g.npz")), 0, "float64")
    x, y, x_mask, adjacency = batch_arrays(data, np.array([1]), 1, "float64",
                                           extra=("adjacency",))
    assert x.shape == (1, 1, 2) and adjacency.shape == (1, 1, 1)
    np.testing.assert_array_equal(x_mask, [[1.0]])
    x, y, x_mask, adjacency = batch_arrays(data, np.array([1, 2]), 1, "float64",
                                           extra=("adjacency",))
    assert adjacency.shape == (2, 3, 3)
    np.testing.assert_array_equal(x_mask, [[1, 0, 0], [1, 1, 1]])


# ---- errors: one line naming the file (and the line of a JSONL file) -----------------------

def test_npz_edge_out_of_range_names_the_graph_and_edge(tmp_path):
    path = write_npz(tmp_path / "g.npz", edges=[[[0, 1], [1, 2]], [], [[0, 3]]])
    with pytest.raises(DataError) as err:
        load_graphs_npz(spec(path), 0, "float64")
    assert str(err.value) == (f"{path}: graph 2: edge 0 (0 -> 3) names a node outside 0..2 "
                              "(the graph has 3 nodes)")


def test_npz_negative_edge_index(tmp_path):
    path = write_npz(tmp_path / "g.npz", edges=[[[0, -1]], [], []])
    with pytest.raises(DataError, match=r"graph 0: edge 0 \(0 -> -1\) names a node outside"):
        load_graphs_npz(spec(path), 0, "float64")


def test_npz_graph_without_nodes(tmp_path):
    path = write_npz(tmp_path / "g.npz", features=[FEATURES[0], np.zeros((0, 2)), FEATURES[2]])
    with pytest.raises(DataError, match=r"g.npz: graph 1 has no nodes$"):
        load_graphs_npz(spec(path), 0, "float64")


@pytest.mark.parametrize("override,message", [
    ({"edge_counts": np.array([5, 0, 2])}, "edge_counts add up to 7, but edges has 6 columns"),
    ({"node_counts": np.array([3, 1, 2])}, "node_counts add up to 6, but node_features has 7"),
    ({"labels": None}, "missing exactly one of labels and node_labels"),
    ({"edge_counts": None}, "missing edge_counts"),
    ({"labels": np.array([0.5, 1, 2])}, "labels must be non-negative integers"),
])
def test_npz_layout_errors(tmp_path, override, message):
    path = write_npz(tmp_path / "g.npz", **override)
    with pytest.raises(DataError, match=message):
        load_graphs_npz(spec(path), 0, "float64")


@pytest.mark.parametrize("line,message", [
    ({"nodes": [[1.0], [2.0]], "edges": [[0, 2]], "label": 0},
     r":2: the graph: edge 0 \(0 -> 2\) names a node outside 0..1 \(the graph has 2 nodes\)"),
    ({"nodes": [], "edges": [], "label": 0}, r":2: the graph has no nodes$"),
    ({"nodes": [[1.0, 2.0], [3.0]], "edges": [], "label": 0},
     r":2: ragged node features: nodes have \[1, 2\] features$"),
    ({"nodes": [[1.0, 2.0]], "edges": [], "label": 0},
     r":2: nodes have 2 features, but line 1's have 1$"),
    ("{\"nodes\": [[1.0]], ", r":2: not JSON: "),
    ({"nodes": [[1.0]], "edges": [[0, "a"]], "label": 0}, r":2: \"edges\" must be a list"),
    ({"nodes": [[1.0]], "edges": []}, r":2: give the graph exactly one of"),
    ({"nodes": [[1.0]], "edges": [], "node_labels": [0, 1]},
     r":2: \"node_labels\" must be 1 non-negative integers"),
])
def test_jsonl_errors_name_the_line(tmp_path, line, message):
    path = write_jsonl(tmp_path / "g.jsonl", [{"nodes": [[0.0]], "edges": [], "label": 1}, line])
    with pytest.raises(DataError, match=message) as err:
        load_graphs_jsonl(spec(path), 0, "float64")
    assert str(err.value).startswith(f"{path}:2: ") and "\n" not in str(err.value)


def test_jsonl_label_and_node_labels_mixed_across_lines(tmp_path):
    lines = jsonl_lines()
    lines[1] = {"nodes": [[1.0, 1.0]], "edges": [], "node_labels": [0]}
    with pytest.raises(DataError, match="some graphs have a label, others node labels"):
        load_graphs_jsonl(spec(write_jsonl(tmp_path / "g.jsonl", lines)), 0, "float64")


# ---- edge features ----------------------------------------------------------------------

# features per edge of EDGES, in order (the self loop's and the repeat's included)
EDGE_FEATURES = [[[1.0], [2.0], [3.0], [9.0], [4.0]], [], [[5.0]]]


@pytest.mark.parametrize("undirected", [True, False])
def test_edge_features_from_npz_and_jsonl_sit_at_their_edges(tmp_path, undirected):
    npz = write_npz(tmp_path / "g.npz", edge_features=np.concatenate(
        [np.array(f).reshape(-1, 1) for f in EDGE_FEATURES]))
    lines = jsonl_lines()
    for line, f in zip(lines, EDGE_FEATURES):
        line["edge_features"] = f
    jsonl = write_jsonl(tmp_path / "g.jsonl", lines)
    a = load_graphs_npz(spec(npz, undirected), 0, "float64")
    b = load_graphs_jsonl(spec(jsonl, undirected), 0, "float64")
    e = a.extra["edge_features"]
    np.testing.assert_array_equal(e, b.extra["edge_features"])
    assert e.shape == (3, 3, 3, 1)
    assert a.info["trim"] == {"adjacency": (1, 2), "edge_features": (1, 2)}
    # edge j -> i at [i, j]: 0 -> 1 listed twice keeps the last (4), 1 -> 2 is 2, 2 -> 0 is 3;
    # the self loop 1 -> 1 is dropped
    expected = np.zeros((3, 3))
    if undirected:  # reverses, unless the reverse is listed itself
        expected[0, 1], expected[1, 2], expected[2, 0] = 4.0, 2.0, 3.0
    expected[1, 0], expected[2, 1], expected[0, 2] = 4.0, 2.0, 3.0
    np.testing.assert_array_equal(e[0, ..., 0], expected)
    assert not e[1].any()
    assert e[2, 1, 0, 0] == 5.0 and e[2, 0, 1, 0] == (5.0 if undirected else 0.0)
    # every feature sits on an edge of the adjacency
    assert np.all((e[..., 0] != 0) <= (a.extra["adjacency"] != 0))


@pytest.mark.parametrize("edit, message", [
    (lambda lines: lines[0].update(edge_features=[[1.0]]),
     r"g.jsonl:1: edge features must be one row per edge \(5\), got shape \[1, 1\]"),
    (lambda lines: lines[2].update(edge_features=[[1.0, 2.0]]),
     r"g.jsonl:3: edges have 2 features, but line 1's have 1"),
    (lambda lines: lines[2].pop("edge_features"),
     r"g.jsonl:3: edges have no features, but line 1's have 1"),
    (lambda lines: lines[0].update(edge_features=[[1.0], [2.0, 3.0], [1.0], [1.0], [1.0]]),
     r"g.jsonl:1: ragged edge features"),
    (lambda lines: lines[0].update(edge_features="x"),
     r'g.jsonl:1: "edge_features" must be a list'),
])
def test_edge_feature_mistakes_name_the_line(tmp_path, edit, message):
    lines = jsonl_lines()
    for line, f in zip(lines, EDGE_FEATURES):
        line["edge_features"] = f
    edit(lines)
    path = write_jsonl(tmp_path / "g.jsonl", lines)
    with pytest.raises(DataError, match=message) as err:
        load_graphs_jsonl(spec(path), 0, "float64")
    assert "\n" not in str(err.value)


def test_npz_edge_features_must_match_the_edges(tmp_path):
    path = write_npz(tmp_path / "g.npz", edge_features=np.ones((4, 2)))
    with pytest.raises(DataError, match=r"edge features must be one row per edge \(6\)"):
        load_graphs_npz(spec(path), 0, "float64")
    path = write_npz(tmp_path / "h.npz", edge_features=np.full(6, np.nan))
    with pytest.raises(DataError, match="edge features hold NaN or Inf"):
        load_graphs_npz(spec(path), 0, "float64")


# ---- graph_cycles -------------------------------------------------------------------------

def connected(adjacency: np.ndarray, n: int) -> bool:
    seen, todo = {0}, deque([0])
    while todo:
        for j in np.flatnonzero(adjacency[todo.popleft(), :n]):
            if int(j) not in seen:
                seen.add(int(j))
                todo.append(int(j))
    return len(seen) == n


def test_random_tree_is_a_spanning_tree():
    rng = np.random.default_rng(0)
    for n in (2, 3, 9, 16):
        edges = random_tree(n, rng)
        a = np.zeros((n, n))
        a[edges[:, 0], edges[:, 1]] = a[edges[:, 1], edges[:, 0]] = 1
        assert len(edges) == n - 1 and a.sum() == 2 * (n - 1) and connected(a, n)


def test_graph_cycles_trees_and_one_cycle_graphs():
    data = make_graph_cycles(400, 8, 16, seed=3)
    a, n = data.extra["adjacency"], data.x_len
    assert data.x.shape == (400, 16, 1) and data.info["labels"] == ["tree", "one_cycle"]
    np.testing.assert_array_equal(np.bincount(data.y), [200, 200])
    assert n.min() == 8 and n.max() == 16
    np.testing.assert_array_equal(a, a.transpose(0, 2, 1))  # undirected
    assert not np.einsum("gii->g", a).any()  # no self loops
    edges = a.sum((1, 2)) / 2
    np.testing.assert_array_equal(edges, n - 1 + data.y)  # a tree n - 1 edges, one cycle n
    for g in range(400):
        assert connected(a[g], n[g]) and not a[g, n[g]:].any() and not a[g, :, n[g]:].any()
        np.testing.assert_array_equal(data.x[g, :, 0], np.arange(16) < n[g])
    # node counts alone say nothing: both classes have the same node count histogram
    per_class = [np.bincount(n[data.y == k], minlength=17) for k in (0, 1)]
    np.testing.assert_array_equal(per_class[0], per_class[1])


def test_graph_cycles_is_seeded():
    a, b = make_graph_cycles(50, 8, 12, seed=1), make_graph_cycles(50, 8, 12, seed=1)
    c = make_graph_cycles(50, 8, 12, seed=2)
    np.testing.assert_array_equal(a.extra["adjacency"], b.extra["adjacency"])
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x_len, c.x_len)


def test_graph_cycles_noise_features_are_standard_normal_at_real_nodes_only():
    data = make_graph_cycles(200, 8, 16, seed=4, features="noise", width=5)
    ones = make_graph_cycles(200, 8, 16, seed=4)
    assert data.x.shape == (200, 16, 5)
    real = np.arange(16)[None] < data.x_len[:, None]
    assert not data.x[~real].any()
    values = data.x[real]
    assert abs(values.mean()) < 0.05 and abs(values.std() - 1) < 0.05
    np.testing.assert_array_equal(data.x_len, ones.x_len)  # the same graph sizes and labels
    np.testing.assert_array_equal(data.y, ones.y)
