"""stabilize_numerics alone: each unstable pattern becomes its stable form, with the same
values where the original is finite, finite values where it overflowed, and a report."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from nnctl.compile.numerics import stabilize_numerics
from nnctl.compile.passes import eliminate_dead_code
from nnctl.compile.rewrite import collect_rewrites
from nnctl.graph.ir import Graph, name_scope
from nnctl.graph.tensor import input_placeholder

from tests.compile.test_passes import evaluate


def _x(shape=(3, 4)):
    return input_placeholder("x", shape, "float64")


CASES = [  # (build, pattern, stable ops, x values)
    (lambda x: x.sigmoid().log(), "log(sigmoid(x)) -> -softplus(-x)", {"neg": 2, "softplus": 1},
     (-3.0, 3.0)),
    (lambda x: (1.0 - x.sigmoid()).log(), "log(1 - sigmoid(x)) -> -softplus(x)",
     {"neg": 1, "softplus": 1}, (-3.0, 3.0)),
    (lambda x: (1.0 + x.exp()).log(), "log(1 + exp(x)) -> softplus(x)", {"softplus": 1},
     (-3.0, 3.0)),
    (lambda x: (x.exp() + 1.0).log(), "log(1 + exp(x)) -> softplus(x)", {"softplus": 1},
     (-3.0, 3.0)),
    (lambda x: x.softmax(-1).log(), "log(softmax(x)) -> log_softmax(x)", {"log_softmax": 1},
     (-3.0, 3.0)),
    (lambda x: x.exp().sum(axis=1, keepdims=True).log(), "log(sum(exp(x))) -> logsumexp(x)",
     {"logsumexp": 1}, (-3.0, 3.0)),
    (lambda x: x.exp() / x.exp().sum(axis=1, keepdims=True), "exp(x)/sum(exp(x)) -> softmax(x)",
     {"softmax": 1}, (-3.0, 3.0)),
    (lambda x: 1.0 / (1.0 + (-x).exp()), "1/(1 + exp(-x)) -> sigmoid(x)", {"sigmoid": 1},
     (-3.0, 3.0)),
    (lambda x: x.exp().log(), "log(exp(x)) -> x", {}, (-3.0, 3.0)),
    (lambda x: x.log().exp(), "exp(log(x)) -> x", {}, (0.5, 3.0)),  # x > 0 assumed
    (lambda x: (x * x).sqrt(), "sqrt(x*x) -> abs(x)", {"abs": 1}, (-3.0, 3.0)),
    (lambda x: (x ** 2).sqrt(), "sqrt(x^2) -> abs(x)", {"abs": 1}, (-3.0, 3.0)),
]


@pytest.mark.parametrize("build, pattern, ops, bounds", CASES, ids=[c[1] for c in CASES])
def test_pattern_is_rewritten_to_the_same_values(build, pattern, ops, bounds):
    x = _x()
    with name_scope("head"):
        y = build(x)
    graph = Graph([y.node])
    with collect_rewrites() as log:
        out = eliminate_dead_code(stabilize_numerics(graph))
    assert log == [(pattern, "head")]
    assert Counter(n.op for n in out.op_nodes) == Counter(ops)
    assert out.outputs[0].aval == graph.outputs[0].aval
    feeds = {x.node: np.random.default_rng(1).uniform(*bounds, size=(3, 4))}
    want, got = evaluate(graph, feeds)[0], evaluate(out, feeds)[0]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("build, pattern", [
    (lambda x: x.sigmoid().log(), "log(sigmoid"),
    (lambda x: (1.0 - x.sigmoid()).log(), "log(1 - sigmoid"),
    (lambda x: (1.0 + x.exp()).log(), "log(1 + exp"),
    (lambda x: x.softmax(-1).log(), "log(softmax"),
    (lambda x: x.exp().sum(axis=1).log(), "log(sum(exp"),
    (lambda x: (x * x).sqrt(), "sqrt(x*x"),
])
def test_stable_form_is_finite_where_the_formula_overflows(build, pattern):
    x = input_placeholder("x", (2, 3), "float32")
    graph = Graph([build(x).node])
    feeds = {x.node: np.array([[-200.0, 0.5, 200.0], [1e20, -1e20, 3.0]], "float32")}
    with np.errstate(all="ignore"):
        before = evaluate(graph, feeds)[0]
        after = evaluate(stabilize_numerics(graph), feeds)[0]
    assert not np.isfinite(before).all()
    assert np.isfinite(after).all() and after.dtype == np.float32


def test_nothing_to_rewrite_leaves_the_graph_as_it_is():
    x = _x()
    graph = Graph([(x.exp() + x.log()).sqrt().node])
    with collect_rewrites() as log:
        out = stabilize_numerics(graph)
    assert log == [] and out.nodes == graph.nodes


def test_sigmoid_read_elsewhere_stays():
    x = _x()
    s = x.sigmoid()
    graph = Graph([(s.log() + s).node])
    out = eliminate_dead_code(stabilize_numerics(graph))
    assert Counter(n.op for n in out.op_nodes) == Counter(
        {"sigmoid": 1, "softplus": 1, "neg": 2, "add": 1})
