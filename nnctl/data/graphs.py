"""Graph data: graphs_npz and graphs_jsonl files, and the generated graph_cycles task.

Every kind gives dense, padded graphs (the layout nnctl.layers.graph reads):

    x          float [G, Nmax, F]      node features, zero rows after each graph's nodes
    x_len      int64 [G]               node counts (the trainer's node mask and buckets)
    y          int64 [G]               a label per graph, or [G, Nmax] a label per node
                                       (0 at padded nodes, which the node mask leaves out)
    extra["adjacency"]  float [G, Nmax, Nmax]   A[i, j] = 1 for an edge j -> i
    extra["edge_features"]  float [G, Nmax, Nmax, D]   the edge j -> i's features at [i, j]
                                       (only for data with edge features; the gine layer)

info["trim"] = {"adjacency": (1, 2)} (and edge_features) tells the batcher to cut both node
axes of a batch's adjacency to the batch's padded node count, as it cuts x. Self loops in the
data are dropped (the layers add their own where their equations have one) and an edge listed
twice is one edge. With `undirected` (the default) every edge also gets its reverse.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnctl.data.dataset import Dataset
from nnctl.data.kinds import register_loader
from nnctl.data.text import read_utf8
from nnctl.errors import DataError

ADJACENCY = "adjacency"  # the model input name layers read the adjacency by
EDGE_FEATURES = "edge_features"  # ... and the edge features by (gine), where the data has them


class Graph:
    """One graph as read: features [n, F], edges [E, 2] (source, target), and a label (int)
    or node labels [n]."""

    def __init__(self, features: np.ndarray, edges: np.ndarray, label=None, node_labels=None,
                 edge_features: np.ndarray | None = None):
        self.features, self.edges = features, edges
        self.label, self.node_labels = label, node_labels
        self.edge_features = edge_features  # [E, D], one row per edge, or None


def check_edges(graph: Graph, which: str, where: str) -> None:
    """DataError naming the graph and its first edge with a node index out of range."""
    n = len(graph.features)
    bad = np.flatnonzero(((graph.edges < 0) | (graph.edges >= n)).any(axis=1))
    if len(bad):
        k = int(bad[0])
        source, target = (int(v) for v in graph.edges[k])
        raise DataError(f"{which}: edge {k} ({source} -> {target}) names a node outside 0..{n - 1} "
                        f"(the graph has {n} nodes)", path=where)


def to_dataset(graphs: list[Graph], name: str, undirected: bool, info: dict | None = None,
               where: str | None = None) -> Dataset:
    """The padded arrays of `graphs` (see the module docstring); all graph labels or all node
    labels."""
    if not graphs:
        raise DataError("no graphs", path=where)
    node_level = graphs[0].node_labels is not None
    unlabelled = all(g.label is None and g.node_labels is None for g in graphs)
    if not unlabelled and any((g.node_labels is not None) != node_level for g in graphs):
        raise DataError("some graphs have a label, others node labels; use one kind",
                        path=where)
    count, width = len(graphs), graphs[0].features.shape[1]
    n_max = max(len(g.features) for g in graphs)
    x = np.zeros((count, n_max, width))
    adjacency = np.zeros((count, n_max, n_max))
    y = np.zeros((count, n_max) if node_level else count, dtype=np.int64)
    for i, g in enumerate(graphs):
        n = len(g.features)
        x[i, :n] = g.features
        source, target = g.edges[:, 0], g.edges[:, 1]
        adjacency[i, target, source] = 1.0  # messages flow from source to target
        if undirected:
            adjacency[i, source, target] = 1.0
        adjacency[i, np.arange(n), np.arange(n)] = 0.0  # the layers add their own self loops
        if node_level:
            y[i, :n] = g.node_labels
        elif not unlabelled:  # graphs to predict for: labels 0
            y[i] = g.label
    x_len = np.array([len(g.features) for g in graphs], dtype=np.int64)
    extra, trim = {ADJACENCY: adjacency}, {ADJACENCY: (1, 2)}
    with_features = [g.edge_features is not None for g in graphs]
    if any(with_features):
        if not all(with_features):
            raise DataError(f"graph {with_features.index(False)} has no edge features, "
                            "others have; give every graph's edges features", path=where)
        extra[EDGE_FEATURES] = edge_feature_array(graphs, n_max, undirected)
        trim[EDGE_FEATURES] = (1, 2)
    info = {**(info or {}), "trim": trim}
    return Dataset(x, y, name, x_len=x_len, info=info, extra=extra)


def edge_feature_array(graphs: list[Graph], n_max: int, undirected: bool) -> np.ndarray:
    """[G, n_max, n_max, D]: the features of edge j -> i at [g, i, j], 0 where there is no
    edge. With `undirected`, the reverse of an edge gets its features unless the reverse is
    listed itself; an edge listed twice keeps its last features; self loops are dropped."""
    width = max(g.edge_features.shape[1] for g in graphs)  # 0 for a graph without edges
    out = np.zeros((len(graphs), n_max, n_max, width))
    for i, g in enumerate(graphs):
        if not len(g.edges):
            continue
        source, target = g.edges[:, 0], g.edges[:, 1]
        if undirected:
            out[i, source, target] = g.edge_features
        out[i, target, source] = g.edge_features
        n = len(g.features)
        out[i, np.arange(n), np.arange(n)] = 0.0
    return out


def check_edge_features(values, edges: int, width: int | None, where: str) -> np.ndarray:
    """Edge features as [E, D] floats (a 1-D array is one feature per edge), finite, one row
    per edge, of `width` features where a width is already known."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError("edge features must be numbers", path=where) from None
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or len(array) != edges:
        raise DataError(f"edge features must be one row per edge ({edges}), got shape "
                        f"{list(array.shape)}", path=where)
    if width is not None and array.shape[1] != width:
        raise DataError(f"edges have {array.shape[1]} features, others {width}", path=where)
    if not np.isfinite(array).all():
        raise DataError("edge features hold NaN or Inf", path=where)
    return array


def check_labels(labels: np.ndarray, what: str, where: str) -> np.ndarray:
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any():
        raise DataError(f"{what} must be non-negative integers (class ids), got "
                        f"{labels.dtype} values", path=where)
    return labels.astype(np.int64)


# ---- graphs_npz -------------------------------------------------------------------------------

def read_graphs_npz(path: str, labelled: bool = True) -> list[Graph]:
    """Graphs from an .npz file: node_features [total_nodes, F] (the graphs' nodes one graph
    after another), node_counts [G], edges int [2, total_edges] (row 0 sources, row 1
    targets, indices local to each graph; the graphs' edges one graph after another),
    edge_counts [G], and labels [G] or node_labels [total_nodes] (`labelled=False`: graphs
    to predict for, labels optional and ignored)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read as .npz: {err}", path=path) from None
    missing = [k for k in ("node_features", "node_counts", "edges", "edge_counts")
               if k not in arrays]
    if not labelled:
        arrays = {k: v for k, v in arrays.items() if k not in ("labels", "node_labels")}
    if missing or (labelled and ("labels" in arrays) == ("node_labels" in arrays)):
        need = ", ".join(missing) if missing else "exactly one of labels and node_labels"
        raise DataError(f"missing {need} (found: {', '.join(sorted(arrays)) or 'no arrays'})",
                        path=path)
    features = np.asarray(arrays["node_features"], dtype=np.float64)
    counts = check_labels(arrays["node_counts"], "node_counts", path)
    edges, edge_counts = arrays["edges"], check_labels(arrays["edge_counts"], "edge_counts", path)
    if features.ndim == 1:
        features = features[:, None]
    if features.ndim != 2:
        raise DataError(f"node_features must be [total_nodes, features], got shape "
                        f"{list(features.shape)}", path=path)
    if edges.ndim != 2 or edges.shape[0] != 2 or not np.issubdtype(edges.dtype, np.integer):
        raise DataError(f"edges must be integers [2, total_edges], got {edges.dtype} of shape "
                        f"{list(edges.shape)}", path=path)
    if counts.ndim != 1 or len(counts) != len(edge_counts):
        raise DataError(f"node_counts ({len(counts)}) and edge_counts ({len(edge_counts)}) "
                        "must give one count per graph", path=path)
    if counts.sum() != len(features):
        raise DataError(f"node_counts add up to {counts.sum()}, but node_features has "
                        f"{len(features)} rows", path=path)
    if edge_counts.sum() != edges.shape[1]:
        raise DataError(f"edge_counts add up to {edge_counts.sum()}, but edges has "
                        f"{edges.shape[1]} columns", path=path)
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        raise DataError(f"graph {empty[0]} has no nodes", path=path)
    node_level = "node_labels" in arrays
    labels = check_labels(arrays["node_labels" if node_level else "labels"],
                          "node_labels" if node_level else "labels", path) if labelled else \
        np.zeros(len(counts), np.int64)
    if len(labels) != (len(features) if node_level else len(counts)):
        raise DataError(f"{len(labels)} {'node_labels' if node_level else 'labels'} for "
                        f"{len(features) if node_level else len(counts)} "
                        f"{'nodes' if node_level else 'graphs'}", path=path)
    node_starts = np.concatenate([[0], np.cumsum(counts)])
    edge_starts = np.concatenate([[0], np.cumsum(edge_counts)])
    edge_features = check_edge_features(arrays[EDGE_FEATURES], edges.shape[1], None, path) \
        if EDGE_FEATURES in arrays else None
    graphs = []
    for g in range(len(counts)):
        nodes = slice(node_starts[g], node_starts[g + 1])
        graph = Graph(features[nodes], edges[:, edge_starts[g]:edge_starts[g + 1]].T.astype(
            np.int64), None if node_level or not labelled else int(labels[g]),
            labels[nodes] if node_level else None)
        if edge_features is not None:
            graph.edge_features = edge_features[edge_starts[g]:edge_starts[g + 1]]
        check_edges(graph, f"graph {g}", path)
        graphs.append(graph)
    return graphs


@register_loader("graphs_npz")
def load_graphs_npz(spec, seed: int, dtype: str) -> Dataset:
    """`dataset: graphs_npz`: the file's graphs, padded (see the module docstring)."""
    return to_dataset(read_graphs_npz(spec.path), Path(spec.path).stem, spec.undirected,
                      where=spec.path)


# ---- graphs_jsonl -----------------------------------------------------------------------------

def read_graphs_jsonl(path: str, labelled: bool = True) -> list[Graph]:
    """Graphs from a JSON-lines file, one object per line (blank lines skipped):
    {"nodes": [[f, ...], ...], "edges": [[source, target], ...], "label": k} or, for node
    classification, "node_labels": [k, ...] instead of "label" (`labelled=False`: graphs to
    predict for, labels optional and ignored)."""
    graphs, width = [], None
    for number, line in enumerate(read_utf8(path).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        graph = parse_graph_line(line, where, labelled)
        if width is None:
            width, first = graph.features.shape[1], number
            edge_width = None if graph.edge_features is None else graph.edge_features.shape[1]
        elif graph.features.shape[1] != width:
            raise DataError(f"nodes have {graph.features.shape[1]} features, but line {first}'s "
                            f"have {width}", path=where)
        else:
            have = None if graph.edge_features is None else graph.edge_features.shape[1]
            if (have is None) != (edge_width is None) or (have and edge_width and
                                                          have != edge_width):
                raise DataError(f"edges have {'no' if have is None else have} features, but "
                                f"line {first}'s have "
                                f"{'no' if edge_width is None else edge_width}", path=where)
            edge_width = edge_width or have  # 0: the first graph had no edges
        graphs.append(graph)
    if not graphs:
        raise DataError("no graphs (the file has no JSON lines)", path=path)
    return graphs


def parse_graph_line(line: str, where: str, labelled: bool = True) -> Graph:
    """One graph from one JSON line, with a one-line DataError (file:line) for each mistake."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"not JSON: {err.msg} (column {err.colno})", path=where) from None
    if not isinstance(obj, dict) or "nodes" not in obj:
        raise DataError('expected an object with "nodes", "edges" and "label" or '
                        '"node_labels"', path=where)
    nodes = obj["nodes"]
    if not isinstance(nodes, list) or not nodes:
        raise DataError("the graph has no nodes", path=where)
    widths = {len(f) if isinstance(f, list) else -1 for f in nodes}
    if -1 in widths:
        raise DataError('"nodes" must be a list of feature lists, e.g. [[1.0], [0.5]]',
                        path=where)
    if len(widths) > 1:
        raise DataError(f"ragged node features: nodes have {sorted(widths)} features",
                        path=where)
    try:
        features = np.array(nodes, dtype=np.float64).reshape(len(nodes), -1)
    except (TypeError, ValueError):
        raise DataError("node features must be numbers", path=where) from None
    edges = obj.get("edges", [])
    if not isinstance(edges, list) or not all(
            isinstance(e, list) and len(e) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) for v in e) for e in edges):
        raise DataError('"edges" must be a list of [source, target] node indices (integers)',
                        path=where)
    graph = Graph(features, np.array(edges, dtype=np.int64).reshape(-1, 2))
    check_edges(graph, "the graph", where)
    if EDGE_FEATURES in obj:
        values = obj[EDGE_FEATURES]
        if not isinstance(values, list) or not all(isinstance(v, (list, int, float))
                                                   and not isinstance(v, bool) for v in values):
            raise DataError('"edge_features" must be a list with one feature list (or '
                            'number) per edge', path=where)
        if len({len(v) if isinstance(v, list) else 0 for v in values}) > 1:
            raise DataError("ragged edge features: edges have different feature counts",
                            path=where)
        graph.edge_features = np.zeros((0, 0)) if not values else \
            check_edge_features(values, len(graph.edges), None, where)
    if not labelled:
        return graph
    if ("label" in obj) == ("node_labels" in obj):
        raise DataError('give the graph exactly one of "label" and "node_labels"', path=where)
    if "label" in obj:
        label = obj["label"]
        if not isinstance(label, int) or isinstance(label, bool) or label < 0:
            raise DataError(f'"label" must be a non-negative integer, got {label!r}', path=where)
        graph.label = label
    else:
        labels = obj["node_labels"]
        if not isinstance(labels, list) or len(labels) != len(nodes) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in labels):
            raise DataError(f'"node_labels" must be {len(nodes)} non-negative integers, one '
                            "per node", path=where)
        graph.node_labels = np.array(labels, dtype=np.int64)
    return graph


@register_loader("graphs_jsonl")
def load_graphs_jsonl(spec, seed: int, dtype: str) -> Dataset:
    """`dataset: graphs_jsonl`: the file's graphs, padded (see the module docstring)."""
    return to_dataset(read_graphs_jsonl(spec.path), Path(spec.path).stem, spec.undirected,
                      where=spec.path)


# ---- graph_cycles -----------------------------------------------------------------------------

CYCLE_CLASSES = ["tree", "one_cycle"]


def random_tree(n: int, rng: np.random.Generator) -> np.ndarray:
    """Edges [n - 1, 2] of a uniformly random labelled tree on n nodes (a random Pruefer
    sequence decoded)."""
    code = rng.integers(0, n, size=n - 2)
    degree = np.ones(n, dtype=np.int64)
    np.add.at(degree, code, 1)
    edges = []
    for v in code:
        leaf = int(np.flatnonzero(degree == 1)[0])
        edges.append((leaf, int(v)))
        degree[leaf] -= 1
        degree[v] -= 1
    last = np.flatnonzero(degree == 1)
    edges.append((int(last[0]), int(last[1])))
    return np.array(edges, dtype=np.int64)


def make_graph_cycles(samples: int, min_nodes: int, max_nodes: int, seed: int,
                      features: str = "ones", width: int = 8) -> Dataset:
    """Half the graphs (alternating labels, shuffled) are random trees, the others random
    trees plus one edge between two nodes not yet adjacent, which closes exactly one cycle
    (of length 3 or more). Graphs come in pairs, a tree and a one-cycle graph with the same
    node count (uniform in [min_nodes, max_nodes]), so both classes have the same node count
    histogram. Node features say nothing about the graph: [1.0] at every node (`ones`), or
    `width` independent standard normal numbers per node (`noise`). A model that looks at
    each node alone sees only the node count (and noise), which says nothing about the class;
    one that passes messages sees degrees (a tree on n nodes has n - 1 edges, a one-cycle
    graph n). GCN's symmetric normalisation all but hides degrees from constant features
    (each node's output is sum_j (A + I)_ij / sqrt(d_i d_j) ~ 0.98 in both classes), while
    the norm of its average over noise vectors falls with the degree (~ 1 / sqrt(d_i))."""
    rng = np.random.default_rng(seed)
    noise = np.random.default_rng([seed, 1])  # its own stream: the same graphs either way
    graphs, n = [], 0
    for i in range(samples):
        label = i % 2
        if not label:  # a new pair
            n = int(rng.integers(min_nodes, max_nodes + 1))
        edges = random_tree(n, rng)
        if label:
            adjacent = np.zeros((n, n), dtype=bool)
            adjacent[edges[:, 0], edges[:, 1]] = adjacent[edges[:, 1], edges[:, 0]] = True
            free = np.argwhere(np.triu(~adjacent, 1))  # non-edges, i < j
            extra = free[rng.integers(len(free))]
            edges = np.vstack([edges, extra[None]])
        x = np.ones((n, 1)) if features == "ones" else noise.normal(size=(n, width))
        graphs.append(Graph(x, edges, label))
    order = rng.permutation(samples)
    return to_dataset([graphs[i] for i in order], "graph_cycles", undirected=True,
                      info={"labels": list(CYCLE_CLASSES)})


@register_loader("graph_cycles")
def load_graph_cycles(spec, seed: int, dtype: str) -> Dataset:
    """`dataset: graph_cycles`: generated trees vs one-cycle graphs, seeded by the config's
    seed."""
    return make_graph_cycles(spec.samples, spec.min_nodes, spec.max_nodes, seed,
                             spec.node_features, spec.feature_width)
