"""simplify_algebra alone: each rule on a small graph, same values (bitwise), fewer ops, and
the (pattern, scope) it notes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from nnctl.compile.passes import eliminate_dead_code, result_bytes
from nnctl.compile.rewrite import collect_rewrites
from nnctl.compile.simplify import simplify_algebra
from nnctl.graph.ir import Graph, name_scope
from nnctl.graph.tensor import Tensor, constant, input_placeholder

from tests.compile.test_passes import assert_same_compiled, assert_same_results


def _simplify(y: Tensor):
    graph = Graph([y.node])
    with collect_rewrites() as log:
        out = eliminate_dead_code(simplify_algebra(graph))
    assert_same_results(graph, out)
    assert out.outputs[0].aval == graph.outputs[0].aval
    return graph, out, [p for p, _ in log]


def _ops(graph: Graph) -> Counter:
    return Counter(n.op for n in graph.nodes if not n.is_leaf)


X = input_placeholder("x", (4, 3), "float64")


@pytest.mark.parametrize("expr, pattern", [
    (lambda x: x * 1.0, "x*1"), (lambda x: 1.0 * x, "1*x"), (lambda x: x + 0.0, "x+0"),
    (lambda x: 0.0 + x, "0+x"), (lambda x: x - 0.0, "x-0"), (lambda x: x / 1.0, "x/1"),
    (lambda x: -(-x), "neg(neg(x)) -> x"),
    (lambda x: x * Tensor(np.ones((4, 3))), "x*1"),
    (lambda x: x * constant(1.0, "float64").broadcast_to((4, 3)), "x*1"),
])
def test_identities_vanish(expr, pattern):
    graph, out, log = _simplify(expr(X).exp())
    assert log == [pattern] and _ops(out) == Counter({"exp": 1})


def test_identity_that_would_change_the_shape_is_kept():
    y = input_placeholder("y", (3,), "float64") * Tensor(np.ones((4, 3)))  # 1 broadcasts y
    graph, out, log = _simplify(y)
    assert log == [] and _ops(out) == Counter({"mul": 1})


def test_transpose_chains():
    x = input_placeholder("x", (2, 3, 4), "float64")
    _, out, log = _simplify(x.transpose(1, 0, 2).transpose(1, 0, 2).exp())
    assert log == ["transpose(transpose(x)) -> x"] and _ops(out) == Counter({"exp": 1})
    _, out, log = _simplify(x.transpose(1, 2, 0).transpose(1, 2, 0))
    assert log == ["transpose(transpose(x)) -> transpose(x)"]
    assert _ops(out) == Counter({"transpose": 1}) and out.outputs[0].attrs["axes"] == (2, 0, 1)
    _, out, log = _simplify(x.transpose(0, 1, 2).exp())
    assert log == ["transpose(x, identity) -> x"]


def test_reshape_chains_and_same_shape_broadcasts():
    x = input_placeholder("x", (2, 3, 4), "float64")
    _, out, log = _simplify(x.reshape(6, 4).reshape(24).reshape(4, 6))
    assert _ops(out) == Counter({"reshape": 1}) and out.outputs[0].attrs["shape"] == (4, 6)
    _, out, log = _simplify(x.reshape(6, 4).reshape(2, 3, 4).exp())
    assert log == ["reshape(reshape(x)) -> x"] and _ops(out) == Counter({"exp": 1})
    same = Tensor(node=X.node).apply("broadcast_to", shape=(4, 3)).exp()
    _, out, log = _simplify(same)
    assert log == ["broadcast_to(x) to its shape -> x"] and _ops(out) == Counter({"exp": 1})


def test_sum_to_becomes_one_sum():
    g = input_placeholder("g", (8, 5), "float64")
    graph, out, log = _simplify(g.sum_to((5,)))  # sum(keepdims) + reshape: a bias gradient
    assert log == ["reshape(sum(x, keepdims)) -> sum(x)"]
    assert _ops(graph) == Counter({"sum": 1, "reshape": 1}) and _ops(out) == Counter({"sum": 1})
    assert out.outputs[0].attrs == {"axis": (0,), "keepdims": False}


def test_reductions_over_size_one_axes():
    x = input_placeholder("x", (4, 1, 3), "float64")
    _, out, log = _simplify(x.sum(axis=1, keepdims=True).exp())
    assert log == ["sum over size-1 axes -> x"] and _ops(out) == Counter({"exp": 1})
    _, out, log = _simplify(x.mean(axis=1))
    assert log == ["mean over size-1 axes -> reshape(x)"] and _ops(out) == Counter({"reshape": 1})
    _, out, log = _simplify(x.max(axis=(0, 1)))
    assert log == [] and _ops(out) == Counter({"max": 1})


def test_scalar_broadcasts_shrink():
    # a mean's gradient: broadcast_to(g) * (1/n), then read by a full-size op
    g = input_placeholder("g", (4, 1), "float64")
    h = input_placeholder("h", (4, 3), "float64")
    y = g.broadcast_to((4, 3)) * 0.25 * h
    graph, out, log = _simplify(y)
    assert log == ["mul(broadcast_to(s), c) -> broadcast_to(mul(s, c))",
                   "mul(broadcast_to(y), x) -> mul(y, x)"]
    assert _ops(out) == Counter({"mul": 2})
    assert result_bytes(out) == result_bytes(graph) - 2 * 12 * 8 + 4 * 8


def test_negations_move_to_the_smaller_side():
    x = input_placeholder("x", (4, 3), "float64")
    w = input_placeholder("w", (4, 3), "float64")
    _, out, log = _simplify((-x).sum(axis=0))
    assert log == ["sum(neg(x)) -> neg(sum(x))"]
    assert [n.aval.shape for n in out.nodes if n.op == "neg"] == [(3,)]
    _, out, log = _simplify(w + (-x))
    assert log == ["x + neg(y) -> x - y"] and _ops(out) == Counter({"sub": 1})
    _, out, log = _simplify(w - (-x))
    assert log == ["x - neg(y) -> x + y"] and _ops(out) == Counter({"add": 1})


def test_rewrites_are_noted_with_the_layer_scope():
    with name_scope("dense_0"):
        y = X * 1.0
    with collect_rewrites() as log:
        simplify_algebra(Graph([y.exp().node]))
    assert log == [("x*1", "dense_0")]


def test_cross_entropy_gradient_scaling_is_one_scalar_and_compiles_the_same():
    from nnctl.autodiff import grad
    from nnctl.compile.passes import PASSES, run_passes
    logits = input_placeholder("logits", (4, 3), "float64")
    labels = input_placeholder("labels", (4,), "int64")
    (dx,) = grad(logits.cross_entropy(labels), [logits])
    rewrites = tuple(p for p in PASSES if p.__name__ != "fuse_elementwise")
    graph, _ = run_passes(Graph([dx.node]), rewrites)
    # and (softmax - one_hot(labels)) * s is one op: no dense one-hot, one kernel
    assert _ops(graph) == Counter({"softmax_xent_grad": 1})
    scale = graph.outputs[0].inputs[2]
    assert scale.op == "constant" and scale.value == 0.25  # seed 1 * (1/n), folded
    values = [np.random.default_rng(0).normal(size=(4, 3)), np.array([0, 2, 1, 2])]
    assert_same_compiled(Graph([dx.node]), graph, [logits, labels], values)
    # a label outside [0, classes) subtracts nothing, as the one-hot it replaces
    assert_same_compiled(Graph([dx.node]), graph, [logits, labels],
                         [values[0], np.array([0, -1, 3, 2])])
