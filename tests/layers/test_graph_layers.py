"""Graph layers (gcn, sage, gin, gat, graph_pool) on dense padded graphs.

PyTorch Geometric's sparse layers (GCNConv, SAGEConv, GINConv, GATConv) are the oracle: the
same graphs (directed edges, isolated nodes, sizes 1 to 7 padded to 8) and the same weights in
float64; outputs at the real nodes, the node-feature gradient and every parameter gradient
agree to rtol 1e-10. A padded batch of graphs gives the results of each graph run alone
without padding (rtol 1e-12), and padded nodes get exactly zero gradient.

Weight mapping (nnctl <- PyG, weights transposed: nnctl's are [in, out]):
    gcn   weight <- lin.weight.T, bias <- bias
    sage  weight_neigh <- lin_l.weight.T, bias <- lin_l.bias, weight_self <- lin_r.weight.T
    gin   mlp1.weight/bias <- nn[0].weight.T/bias, mlp2.* <- nn[2].*, eps <- eps
    gat   weight <- lin.weight.T, att_src/att_dst [heads, units] <- att_src/att_dst[0], bias
"""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.errors import ShapeError
from nnctl.graph.tensor import Tensor, input_placeholder
from nnctl.layers.graph import GAT, GCN, GIN, SAGE, GraphPool

CPU = get_backend("cpu")
SIZES, PADDED, FEATURES, UNITS = (5, 7, 1, 6), 8, 3, 4
TOL = {"rtol": 1e-10, "atol": 1e-12}


def random_graphs(seed=0):
    """Directed edge lists [E, 2] (source, target) without self loops or repeats; node 0 of
    the 5-node graph, the 1-node graph and two nodes of the 7-node graph are isolated."""
    rng = np.random.default_rng(seed)
    graphs = []
    for n in SIZES:
        pairs = [(s, t) for s in range(n) for t in range(n) if s != t]
        keep = rng.random(len(pairs)) < 0.35
        edges = np.array([p for p, k in zip(pairs, keep) if k], dtype=np.int64).reshape(-1, 2)
        isolated = {5: [0], 7: [2, 5]}.get(n, [])
        edges = edges[~np.isin(edges, isolated).any(axis=1)]
        graphs.append(edges)
    return graphs


def padded(graphs, seed=0):
    """x [B, 8, F] (junk in padded rows: they must not matter), adjacency [B, 8, 8] with
    A[i, j] = 1 for j -> i, node mask [B, 8], and an output seed zero at padded nodes."""
    rng = np.random.default_rng(seed + 1)
    batch = len(SIZES)
    x = rng.normal(size=(batch, PADDED, FEATURES))
    adjacency = np.zeros((batch, PADDED, PADDED))
    mask = (np.arange(PADDED)[None] < np.array(SIZES)[:, None]).astype(np.float64)
    for b, edges in enumerate(graphs):
        adjacency[b, edges[:, 1], edges[:, 0]] = 1.0
    x[mask == 0] = 50.0 + rng.random(size=(int((mask == 0).sum()), FEATURES))
    return x, adjacency, mask


def run_nnctl(layer, xv, av, mv, seed, params=None):
    """(y, dloss/dx, {param: dloss/dparam}) for loss = sum(y * seed), compiled, with `params`
    (default the initial values); mv None runs without a node mask."""
    x = input_placeholder("x", xv.shape, "float64")
    a = input_placeholder("adjacency", av.shape, "float64")
    feeds, values = [x, a], [xv, av]
    mask = None
    if mv is not None:
        mask = input_placeholder("mask", mv.shape, "float64")
        feeds.append(mask)
        values.append(mv)
    y = layer([x, a], False, np.random.default_rng(0), mask=[mask, None])
    names = list(layer.params)
    grads = grad((y * Tensor(seed)).sum(), [x, *layer.params.values()])
    plan = compile_graph([y, *grads], [*feeds, *layer.params.values()], CPU)
    params = params or layer.initial
    out = plan([*values, *[params[k] for k in names]])
    return np.array(out[0]), np.array(out[1]), {k: np.array(v) for k, v in zip(names, out[2:])}


# ---- PyG oracles ---------------------------------------------------------------------------

def pyg_layer(kind, rng, heads=2, concat=True, train_eps=True):
    """A float64 PyG layer with random weights (biases too, so they are checked), and the
    nnctl parameter values that make ours the same function."""
    torch = pytest.importorskip("torch")
    nn = pytest.importorskip("torch_geometric.nn")

    def rand(*shape):
        return torch.tensor(rng.normal(size=shape))

    with torch.no_grad():
        if kind == "gcn":
            layer = nn.GCNConv(FEATURES, UNITS).double()
            layer.lin.weight.copy_(rand(UNITS, FEATURES))
            layer.bias.copy_(rand(UNITS))
            ours = {"weight": layer.lin.weight.T, "bias": layer.bias}
        elif kind == "sage":
            layer = nn.SAGEConv(FEATURES, UNITS, aggr="mean").double()
            for lin in (layer.lin_l, layer.lin_r):
                lin.weight.copy_(rand(UNITS, FEATURES))
            layer.lin_l.bias.copy_(rand(UNITS))
            ours = {"weight_self": layer.lin_r.weight.T, "weight_neigh": layer.lin_l.weight.T,
                    "bias": layer.lin_l.bias}
        elif kind == "gin":
            mlp = torch.nn.Sequential(torch.nn.Linear(FEATURES, UNITS), torch.nn.ReLU(),
                                      torch.nn.Linear(UNITS, UNITS))
            layer = nn.GINConv(mlp, eps=0.3, train_eps=train_eps).double()
            layer.eps.fill_(0.3)  # set in float32 before .double(), a buffer when not trained
            for lin in (mlp[0], mlp[2]):
                lin.weight.copy_(rand(*lin.weight.shape))
                lin.bias.copy_(rand(*lin.bias.shape))
            ours = {"mlp1.weight": mlp[0].weight.T, "mlp1.bias": mlp[0].bias,
                    "mlp2.weight": mlp[2].weight.T, "mlp2.bias": mlp[2].bias}
            if train_eps:
                ours["eps"] = layer.eps
        else:
            layer = nn.GATConv(FEATURES, UNITS, heads=heads, concat=concat,
                               add_self_loops=True, dropout=0.0).double()
            layer.lin.weight.copy_(rand(heads * UNITS, FEATURES))
            layer.att_src.copy_(rand(1, heads, UNITS))
            layer.att_dst.copy_(rand(1, heads, UNITS))
            layer.bias.copy_(rand(*layer.bias.shape))
            ours = {"weight": layer.lin.weight.T, "att_src": layer.att_src[0],
                    "att_dst": layer.att_dst[0], "bias": layer.bias}
    return layer, ours


def torch_param_grads(layer, ours_names):
    """PyG's parameter gradients under nnctl's names and layouts."""
    g = {n: p.grad for n, p in layer.named_parameters()}
    if "lin_l.weight" in g:
        return {"weight_self": g["lin_r.weight"].T, "weight_neigh": g["lin_l.weight"].T,
                "bias": g["lin_l.bias"]}
    if "nn.0.weight" in g:
        out = {"mlp1.weight": g["nn.0.weight"].T, "mlp1.bias": g["nn.0.bias"],
               "mlp2.weight": g["nn.2.weight"].T, "mlp2.bias": g["nn.2.bias"]}
        if "eps" in g:
            out["eps"] = g["eps"]
        return out
    if "att_src" in g:
        return {"weight": g["lin.weight"].T, "att_src": g["att_src"][0],
                "att_dst": g["att_dst"][0], "bias": g["bias"]}
    return {"weight": g["lin.weight"].T, "bias": g["bias"]}


def ours_for(kind, heads=2, concat=True, train_eps=True):
    return {"gcn": lambda: GCN("g", UNITS), "sage": lambda: SAGE("g", UNITS),
            "gin": lambda: GIN("g", UNITS, 0.3, train_eps),
            "gat": lambda: GAT("g", UNITS, heads, concat)}[kind]()


CASES = [("gcn", {}), ("sage", {}), ("gin", {"train_eps": True}), ("gin", {"train_eps": False}),
         ("gat", {"heads": 2, "concat": True}), ("gat", {"heads": 3, "concat": False}),
         ("gat", {"heads": 1, "concat": True})]


@pytest.mark.parametrize("kind,options", CASES)
def test_matches_pytorch_geometric(kind, options):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    graphs = random_graphs(3)
    xv, av, mv = padded(graphs)
    theirs, mapping = pyg_layer(kind, rng, **options)
    layer = ours_for(kind, **options)
    out_units = UNITS * options.get("heads", 1) if options.get("concat", True) else UNITS
    seed = rng.normal(size=(len(SIZES), PADDED, out_units)) * mv[..., None]
    params = {f"g.{k}": v.detach().numpy().copy() for k, v in mapping.items()}
    y, dx, dparams = run_nnctl(layer, xv, av, mv, seed, params)
    assert set(dparams) == set(params)
    expected_dparams = {k: 0.0 for k in params}
    for b, (n, edges) in enumerate(zip(SIZES, graphs)):
        x = torch.tensor(xv[b, :n], requires_grad=True)
        edge_index = torch.tensor(edges.T.copy(), dtype=torch.long)
        theirs.zero_grad()
        out = theirs(x, edge_index)
        (out * torch.tensor(seed[b, :n])).sum().backward()
        np.testing.assert_allclose(y[b, :n], out.detach().numpy(), err_msg=f"{kind} y[{b}]",
                                   **TOL)
        np.testing.assert_allclose(dx[b, :n], x.grad.numpy(), err_msg=f"{kind} dx[{b}]", **TOL)
        assert np.all(dx[b, n:] == 0.0), "padded nodes must get no gradient"
        for k, v in torch_param_grads(theirs, mapping).items():
            expected_dparams[f"g.{k}"] = expected_dparams[f"g.{k}"] + v.numpy()
    for k, v in expected_dparams.items():
        np.testing.assert_allclose(dparams[k], v, err_msg=f"{kind} d{k}", **TOL)
        assert np.abs(v).max() > 1e-3, f"{k}'s gradient is too small to test anything"


@pytest.mark.parametrize("kind,options", CASES)
def test_padded_batch_equals_graphs_one_at_a_time(kind, options):
    """Float64, rtol 1e-12: the batch padded to 8 nodes against each graph alone, unpadded
    and without a mask (no PyG needed)."""
    rng = np.random.default_rng(11)
    graphs = random_graphs(5)
    xv, av, mv = padded(graphs, 5)
    layer = ours_for(kind, **options)
    out_units = UNITS * options.get("heads", 1) if options.get("concat", True) else UNITS
    seed = rng.normal(size=(len(SIZES), PADDED, out_units)) * mv[..., None]
    y, dx, dparams = run_nnctl(layer, xv, av, mv, seed)
    total = {k: 0.0 for k in dparams}
    for b, n in enumerate(SIZES):
        alone = ours_for(kind, **options)
        yb, dxb, db = run_nnctl(alone, xv[b:b + 1, :n], av[b:b + 1, :n, :n], None,
                                seed[b:b + 1, :n], layer.initial)
        np.testing.assert_allclose(y[b, :n], yb[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dx[b, :n], dxb[0], rtol=1e-12, atol=1e-14)
        assert np.all(dx[b, n:] == 0.0)
        total = {k: total[k] + db[k] for k in total}
    for k in total:
        np.testing.assert_allclose(dparams[k], total[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_gcn_by_hand_on_a_path():
    """A path 0 - 1 - 2, one feature, weight 1: degrees with self loops 2, 3, 2, so
    y_0 = x_0 / 2 + x_1 / sqrt(6), y_1 = x_0 / sqrt(6) + x_1 / 3 + x_2 / sqrt(6)."""
    av = np.zeros((1, 3, 3))
    av[0, [0, 1, 1, 2], [1, 0, 2, 1]] = 1.0
    xv = np.array([[[1.0], [2.0], [4.0]]])
    layer = GCN("g", 1)
    y, _, _ = run_nnctl(layer, xv, av, None, np.ones((1, 3, 1)),
                        {"g.weight": np.ones((1, 1)), "g.bias": np.zeros(1)})
    s6 = np.sqrt(6.0)
    np.testing.assert_allclose(y[0, :, 0], [0.5 + 2 / s6, 1 / s6 + 2 / 3 + 4 / s6,
                                            2 / s6 + 2.0], rtol=1e-14)


POOL = {"sum": lambda v: v.sum(0), "mean": lambda v: v.mean(0), "max": lambda v: v.max(0)}


@pytest.mark.parametrize("mode", POOL)
def test_graph_pool_reads_real_nodes_only(mode):
    """Junk (+50) in padded nodes changes nothing; gradients: 1 (sum), 1/n (mean), 1 at the
    argmax (max), exactly 0 at padded nodes."""
    xv, _, mv = padded(random_graphs(0), 2)
    x = Tensor(xv)
    y = GraphPool("p", mode)(x, False, mask=Tensor(mv))
    seed = np.random.default_rng(3).normal(size=y.shape)
    (dx,) = grad((y * Tensor(seed)).sum(), [x])
    dx = dx.numpy()
    for b, n in enumerate(SIZES):
        np.testing.assert_allclose(y.numpy()[b], POOL[mode](xv[b, :n]), rtol=1e-14)
        expected = np.zeros((PADDED, FEATURES))
        if mode == "max":
            expected[xv[b, :n].argmax(0), np.arange(FEATURES)] = seed[b]
        else:
            expected[:n] = seed[b] / (n if mode == "mean" else 1)
        np.testing.assert_allclose(dx[b], expected, rtol=1e-14, atol=0)


def test_one_input_is_a_clear_shape_error():
    with pytest.raises(ShapeError, match=r"gcn needs inputs: \[node features, adjacency\]"):
        GCN("g", 4)(Tensor(np.zeros((2, 3, 4))), False, np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"does not match 3 nodes"):
        SAGE("s", 4)([Tensor(np.zeros((2, 3, 4))), Tensor(np.zeros((2, 4, 4)))], False,
                     np.random.default_rng(0))
