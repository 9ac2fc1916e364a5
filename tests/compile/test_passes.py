"""Compile passes, each tested alone (STYLE R6): Graph -> new Graph, input graph untouched."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.compile.passes import (PASSES, eliminate_common_subexpressions, eliminate_dead_code,
                                  fold_constants, run_passes)
from nnctl.graph.ir import Graph
from nnctl.graph.tensor import Tensor, input_placeholder, random_bernoulli


def _ops(graph: Graph) -> list[str]:
    return [n.op for n in graph.nodes]


def test_pass_order():
    assert [p.__name__ for p in PASSES] == ["fold_constants", "eliminate_common_subexpressions",
                                           "eliminate_dead_code"]


def test_fold_constants_turns_a_constant_subexpression_into_one_constant():
    x = input_placeholder("x", (3,), "float64")
    c = (Tensor(2.0) * Tensor(3.0)).exp()
    y = x + c
    graph = Graph([y.node])
    assert _ops(graph) == ["input", "constant", "constant", "mul", "exp", "add"]
    folded = fold_constants(graph)
    assert _ops(folded) == ["input", "constant", "add"]
    assert folded.nodes[1].value == pytest.approx(math.exp(6.0), rel=1e-15)
    assert folded.nodes[0] is x.node  # leaves are kept as they are
    assert folded.outputs[0] is not y.node and folded.outputs[0].aval == y.node.aval
    assert _ops(graph) == ["input", "constant", "constant", "mul", "exp", "add"]  # untouched


def test_fold_constants_leaves_symbolic_ops_alone():
    x = input_placeholder("x", (3,), "float64")
    y = x.exp().sin()
    graph = Graph([y.node])
    folded = fold_constants(graph)
    assert folded.nodes == graph.nodes


def test_cse_merges_identical_exp_nodes():
    x = input_placeholder("x", (3,), "float64")
    e1, e2 = x.exp(), x.exp()
    y = e1 + e2
    graph = Graph([y.node])
    assert _ops(graph) == ["input", "exp", "exp", "add"]
    merged = eliminate_common_subexpressions(graph)
    assert _ops(merged) == ["input", "exp", "add"]
    add = merged.outputs[0]
    assert add.inputs[0] is add.inputs[1] is e1.node
    assert len(graph) == 4  # the input graph is not modified


def test_cse_merges_whole_chains_and_equal_scalar_constants():
    x = input_placeholder("x", (3,), "float64")
    y = (x * 2.0).sin() + (x * 2.0).sin()
    merged = eliminate_common_subexpressions(Graph([y.node]))
    assert _ops(merged) == ["input", "constant", "mul", "sin", "add"]


def test_cse_keeps_different_attrs_random_draws_and_array_constants_apart():
    x = input_placeholder("x", (2, 3), "float64")
    sums = x.sum(axis=0).sum() + x.sum(axis=1).sum()
    masks = random_bernoulli((2, 3), 0.5, "float64") + random_bernoulli((2, 3), 0.5, "float64")
    arrays = Tensor(np.ones((2, 3))) * x + Tensor(np.ones((2, 3))) * x
    for y, n_ops in ((sums, 5), (masks, 1), (arrays, 3)):
        graph = Graph([y.node])
        assert len(eliminate_common_subexpressions(graph)) == len(graph)
        assert len(graph.op_nodes) == n_ops


def test_cse_keeps_signed_zeros_apart():
    # regression: scalar constants were keyed by value, and 0.0 == -0.0
    x = input_placeholder("x", (2,), "float64")
    plan = compile_graph([1.0 / (x * 0.0), 1.0 / (x * -0.0)], [x], get_backend("cpu"))
    with np.errstate(divide="ignore"):
        pos, neg = plan([np.ones(2)])
    np.testing.assert_array_equal(pos, [np.inf, np.inf])
    np.testing.assert_array_equal(neg, [-np.inf, -np.inf])


def test_dce_drops_an_unused_branch():
    x = input_placeholder("x", (3,), "float64")
    used = x.exp()
    unused = (x.sin() * 4.0).cos()
    graph = Graph([used.node, unused.node])
    graph.outputs = (used.node,)  # the second output is no longer wanted
    assert len(graph) == 6
    pruned = eliminate_dead_code(graph)
    assert _ops(pruned) == ["input", "exp"]
    assert pruned.outputs == (used.node,)
    assert unused.node not in pruned.users


def test_run_passes_reports_node_counts():
    x = input_placeholder("x", (3,), "float64")
    y = x.exp() + x.exp() + (Tensor(1.0) + Tensor(2.0))
    graph, stats = run_passes(Graph([y.node]))
    assert stats == [("fold_constants", 8, 6), ("eliminate_common_subexpressions", 6, 5),
                     ("eliminate_dead_code", 5, 5)]
    assert _ops(graph) == ["input", "exp", "add", "constant", "add"]
