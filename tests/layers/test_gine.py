"""gine (GIN with edge features) on dense padded graphs, against PyTorch Geometric's GINEConv
in float64 (outputs, node-feature, edge-feature and every parameter gradient, rtol 1e-10),
and a padded batch against each graph alone (rtol 1e-12)."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.errors import ShapeError
from nnctl.graph.tensor import Tensor, input_placeholder
from nnctl.layers.graph import GINE

CPU = get_backend("cpu")
SIZES, PADDED, FEATURES, EDGE_DIM, UNITS = (5, 1, 4), 6, 3, 2, 4
TOL = {"rtol": 1e-10, "atol": 1e-12}


def graphs(seed):
    """Directed edges [E, 2] (source, target) with features [E, D]; the 1-node graph has
    none."""
    rng = np.random.default_rng(seed)
    out = []
    for n in SIZES:
        pairs = np.array([(s, t) for s in range(n) for t in range(n) if s != t],
                         np.int64).reshape(-1, 2)
        edges = pairs[rng.random(len(pairs)) < 0.5]
        out.append((edges, rng.normal(size=(len(edges), EDGE_DIM))))
    return out


def padded(batch, seed):
    """x [B, 6, F] with junk at padded nodes, A [B, 6, 6], E [B, 6, 6, D] with junk where
    there is no edge (the adjacency must keep it out), node mask [B, 6]."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(SIZES), PADDED, FEATURES))
    a = np.zeros((len(SIZES), PADDED, PADDED))
    e = 30.0 + rng.random(size=(len(SIZES), PADDED, PADDED, EDGE_DIM))
    mask = (np.arange(PADDED)[None] < np.array(SIZES)[:, None]).astype(np.float64)
    for b, (edges, features) in enumerate(batch):
        a[b, edges[:, 1], edges[:, 0]] = 1.0
        e[b, edges[:, 1], edges[:, 0]] = features
    x[mask == 0] = 50.0
    return x, a, e, mask


def run(layer, x, a, e, mask, seed, params=None):
    """(y, dx, de, {param: grad}) for loss = sum(y * seed), compiled."""
    xp = input_placeholder("x", x.shape, "float64")
    ap = input_placeholder("adjacency", a.shape, "float64")
    ep = input_placeholder("edge_features", e.shape, "float64")
    feeds, values, masks = [xp, ap, ep], [x, a, e], [None, None, None]
    if mask is not None:
        masks[0] = input_placeholder("mask", mask.shape, "float64")
        feeds.append(masks[0])
        values.append(mask)
    y = layer([xp, ap, ep], False, np.random.default_rng(0), mask=masks)
    names = list(layer.params)
    grads = grad((y * Tensor(seed)).sum(), [xp, ep, *layer.params.values()])
    plan = compile_graph([y, *grads], [*feeds, *layer.params.values()], CPU)
    params = params or layer.initial
    out = [np.array(v) for v in plan([*values, *[params[k] for k in names]])]
    return out[0], out[1], out[2], dict(zip(names, out[3:]))


@pytest.mark.parametrize("train_eps", [True, False])
def test_matches_pytorch_geometric_gineconv(train_eps):
    torch = pytest.importorskip("torch")
    nn = pytest.importorskip("torch_geometric.nn")
    rng = np.random.default_rng(4)
    batch = graphs(2)
    x, a, e, mask = padded(batch, 3)
    mlp = torch.nn.Sequential(torch.nn.Linear(FEATURES, UNITS), torch.nn.ReLU(),
                              torch.nn.Linear(UNITS, UNITS))
    theirs = nn.GINEConv(mlp, eps=0.25, train_eps=train_eps, edge_dim=EDGE_DIM).double()
    with torch.no_grad():
        theirs.eps.fill_(0.25)
        for lin in (mlp[0], mlp[2], theirs.lin):
            lin.weight.copy_(torch.tensor(rng.normal(size=tuple(lin.weight.shape))))
            lin.bias.copy_(torch.tensor(rng.normal(size=tuple(lin.bias.shape))))
    mapping = {"edge.weight": theirs.lin.weight.T, "edge.bias": theirs.lin.bias,
               "mlp1.weight": mlp[0].weight.T, "mlp1.bias": mlp[0].bias,
               "mlp2.weight": mlp[2].weight.T, "mlp2.bias": mlp[2].bias}
    if train_eps:
        mapping["eps"] = theirs.eps
    params = {f"g.{k}": v.detach().numpy().copy().reshape(-1) if k == "eps" else
              v.detach().numpy().copy() for k, v in mapping.items()}
    seed = rng.normal(size=(len(SIZES), PADDED, UNITS)) * mask[..., None]
    layer = GINE("g", UNITS, 0.25, train_eps)
    y, dx, de, dparams = run(layer, x, a, e, mask, seed, params)
    assert set(dparams) == set(params)
    names = {"edge.weight": "lin.weight", "edge.bias": "lin.bias", "mlp1.weight": "nn.0.weight",
             "mlp1.bias": "nn.0.bias", "mlp2.weight": "nn.2.weight", "mlp2.bias": "nn.2.bias",
             "eps": "eps"}
    expected = {k: 0.0 for k in params}
    for b, (n, (edges, features)) in enumerate(zip(SIZES, batch)):
        xt = torch.tensor(x[b, :n], requires_grad=True)
        et = torch.tensor(features, requires_grad=True)
        theirs.zero_grad()
        out = theirs(xt, torch.tensor(edges.T.copy(), dtype=torch.long), et)
        (out * torch.tensor(seed[b, :n])).sum().backward()
        np.testing.assert_allclose(y[b, :n], out.detach().numpy(), **TOL)
        np.testing.assert_allclose(dx[b, :n], xt.grad.numpy(), **TOL)
        if len(edges):
            np.testing.assert_allclose(de[b, edges[:, 1], edges[:, 0]], et.grad.numpy(), **TOL)
        assert np.all(dx[b, n:] == 0.0)
        g = {k: p.grad for k, p in theirs.named_parameters()}
        for ours, their in names.items():
            if f"g.{ours}" in expected:
                v = g[their].numpy()
                expected[f"g.{ours}"] = expected[f"g.{ours}"] + (v.T if v.ndim == 2 else v)
    # no edge, no gradient: the junk entries of E get exactly 0
    assert np.all(de[a == 0] == 0.0)
    for k, v in expected.items():
        np.testing.assert_allclose(dparams[k], v, err_msg=k, **TOL)
        assert np.abs(v).max() > 1e-3, k


def test_padded_batch_equals_graphs_one_at_a_time():
    batch = graphs(5)
    x, a, e, mask = padded(batch, 6)
    seed = np.random.default_rng(7).normal(size=(len(SIZES), PADDED, UNITS)) * mask[..., None]
    layer = GINE("g", UNITS, 0.1, True)
    y, dx, de, dparams = run(layer, x, a, e, mask, seed)
    total = {k: 0.0 for k in dparams}
    for b, n in enumerate(SIZES):
        yb, dxb, deb, db = run(GINE("g", UNITS, 0.1, True), x[b:b + 1, :n], a[b:b + 1, :n, :n],
                               e[b:b + 1, :n, :n], None, seed[b:b + 1, :n], layer.initial)
        np.testing.assert_allclose(y[b, :n], yb[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dx[b, :n], dxb[0], rtol=1e-12, atol=1e-14)
        total = {k: total[k] + db[k] for k in total}
    for k in total:
        np.testing.assert_allclose(dparams[k], total[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_two_inputs_or_mismatched_edges_are_clear_shape_errors():
    x = input_placeholder("x", (2, 4, 3), "float64")
    a = input_placeholder("a", (2, 4, 4), "float64")
    with pytest.raises(ShapeError, match="gine needs inputs: \\[node features, adjacency, "
                                         "edge features\\]"):
        GINE("g", 4)([x, a], False, np.random.default_rng(0), mask=[None, None])
    e = input_placeholder("e", (2, 5, 5, 2), "float64")
    with pytest.raises(ShapeError, match="edge features \\[2, 5, 5, 2\\] do not match 4 nodes"):
        GINE("g", 4)([x, a, e], False, np.random.default_rng(0), mask=[None, None, None])
