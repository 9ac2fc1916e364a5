"""Compile passes, each tested alone (STYLE R6): Graph -> new Graph, input graph untouched,
(a) the same results in float64 before and after, (b) the effect in nodes and bytes."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.compile.passes import (PASSES, PassStat, cse_key, eliminate_common_subexpressions,
                                  eliminate_dead_code, fold_constants, result_bytes, run_passes)
from nnctl.compile.numerics import stabilize_numerics
from nnctl.compile.rewrite import collect_rewrites
from nnctl.graph.ir import Graph, Node
from nnctl.graph.tensor import Tensor, constant, input_placeholder, random_bernoulli
from nnctl.ops.registry import REGISTRY, Aval

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# The graph-to-graph rewrites; fuse_elementwise (last in PASSES when nnctl/compile/fusion.py
# is there) makes nodes that are not registry ops, and is tested with its kernels.
REWRITES = tuple(p for p in PASSES if p.__name__ != "fuse_elementwise")
# passes whose results may differ by float round-off (one GEMM sums in another order)
ROUND_OFF = {"batch_weight_gradients": 1e-9, "share_conv_columns": 1e-9}
CORE = (fold_constants, PASSES[1], stabilize_numerics, eliminate_common_subexpressions,
        eliminate_dead_code)


def _ops(graph: Graph) -> list[str]:
    return [n.op for n in graph.nodes]


def _count(graph: Graph) -> Counter:
    return Counter(n.op for n in graph.nodes)


def evaluate(graph: Graph, feeds: dict) -> list:
    """Run `graph` node by node with NumPy: leaves from `feeds` (inputs, parameters, random
    masks, keyed by node), constants from their values. The reference for every pass."""
    values = {}
    for node in graph.nodes:
        if node.op == "constant":
            values[node] = np.asarray(node.value, dtype=node.aval.dtype)
        elif node.is_leaf:
            values[node] = feeds[node]
        else:
            values[node] = REGISTRY[node.op].forward(np, *(values[i] for i in node.inputs),
                                                     **node.attrs)
    return [np.asarray(values[o]) for o in graph.outputs]


def random_feeds(graph: Graph, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    feeds = {}
    for node in graph.nodes:
        shape, dtype = node.aval.shape, node.aval.dtype
        if node.op == "random":
            feeds[node] = (rng.random(shape) < node.attrs["p"]).astype(dtype)
        elif node.op in ("input", "parameter"):
            feeds[node] = rng.integers(0, 3, shape).astype(dtype) if "int" in dtype else \
                rng.uniform(0.5, 1.5, shape).astype(dtype) * rng.choice([-1, 1], shape)
    return feeds


def assert_same_results(before: Graph, after: Graph, feeds: dict | None = None, rtol=0.0):
    """Same outputs, shapes and dtypes; bitwise unless `rtol` allows round-off. Round-off
    is relative to the terms summed, not to the sum: a gradient that is zero in theory (a
    bias before batch norm) comes out as +-1e-16 noise in any order, so the allowance has
    an absolute part, rtol times the largest output value."""
    feeds = feeds if feeds is not None else random_feeds(before)
    with np.errstate(all="ignore"):
        want, got = evaluate(before, feeds), evaluate(after, feeds)
    scale = max((float(np.nanmax(np.abs(w), initial=0)) for w in want
                 if np.issubdtype(np.asarray(w).dtype, np.floating)), default=0.0)
    for w, g, node in zip(want, got, after.outputs):
        assert g.shape == w.shape == node.aval.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * scale)


def assert_same_compiled(before: Graph, after: Graph, feeds: list[Tensor], values: list):
    """The same check through compile_graph(..., passes=()) on the NumPy backend."""
    backend = get_backend("cpu")
    run = [compile_graph([Tensor(node=o) for o in g.outputs], feeds, backend, passes=())(values)
           for g in (before, after)]
    for w, g in zip(*run):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


# ---- the list -------------------------------------------------------------------------------

def test_pass_order():
    names = [p.__name__ for p in PASSES]
    core = ["fold_constants", "simplify_algebra", "stabilize_numerics",
            "eliminate_common_subexpressions", "eliminate_dead_code"]
    assert [n for n in names if n in core] == core  # in this order, others may sit between
    assert names[:2] == core[:2] and names[-2:] in (core[-2:], [core[-1], "fuse_elementwise"])


# ---- dead-code elimination ------------------------------------------------------------------

def test_dce_drops_what_a_rewrite_bypassed_and_nothing_else():
    x = input_placeholder("x", (3,), "float64")
    y = (x * 1.0).exp()
    graph = Graph([y.node])
    with collect_rewrites():
        simplified = PASSES[1](graph)  # simplify_algebra: exp(x * 1) -> exp(x)
    assert _ops(simplified) == ["input", "constant", "exp"]  # the constant 1 is now unread
    assert simplified.users[simplified.nodes[1]] == []
    pruned = eliminate_dead_code(simplified)
    assert _ops(pruned) == ["input", "exp"] and pruned.outputs == simplified.outputs
    assert eliminate_dead_code(pruned).nodes == pruned.nodes  # nothing left to remove
    assert_same_results(graph, pruned)


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


# ---- constant folding -----------------------------------------------------------------------

def test_fold_constants_turns_a_constant_subexpression_into_one_constant():
    x = input_placeholder("x", (3,), "float64")
    c = (Tensor(2.0) * Tensor(3.0)).exp()
    y = x + c
    graph = Graph([y.node])
    assert _ops(graph) == ["input", "constant", "constant", "mul", "exp", "add"]
    folded = fold_constants(graph)
    assert _ops(eliminate_dead_code(folded)) == ["input", "constant", "add"]
    const = folded.outputs[0].inputs[1]
    assert const.op == "constant" and const.value == pytest.approx(math.exp(6.0), rel=1e-15)
    assert folded.nodes[0] is x.node  # leaves are kept as they are
    assert folded.outputs[0] is not y.node and folded.outputs[0].aval == y.node.aval
    assert _ops(graph) == ["input", "constant", "constant", "mul", "exp", "add"]  # untouched
    assert result_bytes(folded) < result_bytes(graph)
    assert_same_results(graph, folded)


def test_fold_constants_computes_subgraphs_that_have_no_eager_value():
    # nodes built by a rewrite carry no value: folding computes them, transitively
    two = Node("constant", (), {}, Aval((2,), "float32"), value=np.array([1.0, 4.0], "float32"))
    s = Node("sqrt", (two,), {}, Aval((2,), "float32"))
    t = Node("mul", (s, s), {}, Aval((2,), "float32"))
    x = input_placeholder("x", (2,), "float32")
    y = Node("add", (x.node, t), {}, Aval((2,), "float32"))
    graph = Graph([y])
    folded = eliminate_dead_code(fold_constants(graph))
    assert _ops(folded) == ["input", "constant", "add"]
    value = folded.nodes[1].value
    assert value.dtype == np.float32 and value.tolist() == [1.0, 4.0]
    assert_same_results(graph, folded)


def test_fold_constants_keeps_scalar_broadcasts_and_symbolic_ops():
    x = input_placeholder("x", (300, 300), "float64")
    zeros = constant(0.0, "float64").broadcast_to((300, 300))  # eager, but a view at run time
    y = x.exp().sin() + zeros
    graph = Graph([y.node])
    folded = fold_constants(graph)
    assert folded.nodes == graph.nodes
    assert [n.op for n in folded.nodes if n.op == "broadcast_to"] == ["broadcast_to"]


# ---- common subexpressions ------------------------------------------------------------------

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
    assert result_bytes(merged) == result_bytes(graph) - 24
    assert_same_results(graph, merged)


def test_cse_merges_whole_chains_equal_constants_and_swapped_operands():
    x = input_placeholder("x", (3,), "float64")
    w = input_placeholder("w", (3,), "float64")
    y = (x * 2.0).sin() + (x * 2.0).sin() + (x * w) * (w * x)
    graph = Graph([y.node])
    merged = eliminate_common_subexpressions(graph)
    assert _count(merged) == Counter({"input": 2, "constant": 1, "mul": 3, "sin": 1, "add": 2})
    assert_same_results(graph, merged)


def test_cse_keys_are_values_not_reprs():
    x = input_placeholder("x", (2, 3), "float64")
    a, b = x.sum(axis=(0,), keepdims=True).node, x.sum(axis=[0], keepdims=True).node
    assert cse_key(a) == cse_key(b) and hash(cse_key(a)) == hash(cse_key(b))
    arr = Tensor(np.ones((2, 3), "float32")).node
    assert cse_key(arr) == cse_key(Tensor(np.ones((2, 3), "float32")).node)
    assert cse_key(arr) != cse_key(Tensor(np.ones((3, 2), "float32")).node)  # shape counts
    assert cse_key(arr) != cse_key(Tensor(np.ones((2, 3), "float64")).node)  # dtype counts
    big = Tensor(np.ones(5000)).node
    assert cse_key(big) is None and cse_key(x.node) is None


def test_cse_keeps_different_attrs_random_draws_and_big_constants_apart():
    x = input_placeholder("x", (2, 3), "float64")
    sums = x.sum(axis=0).sum() + x.sum(axis=1).sum()
    masks = random_bernoulli((2, 3), 0.5, "float64") + random_bernoulli((2, 3), 0.5, "float64")
    big = input_placeholder("b", (50, 50), "float64")
    arrays = Tensor(np.ones((50, 50))) * big + Tensor(np.ones((50, 50))) * big
    for y, n_ops in ((sums, 5), (masks, 1), (arrays, 3)):
        graph = Graph([y.node])
        assert len(eliminate_common_subexpressions(graph)) == len(graph)
        assert len(graph.op_nodes) == n_ops


def test_cse_merges_small_array_constants_by_value():
    x = input_placeholder("x", (2, 3), "float64")
    y = Tensor(np.ones((2, 3))) * x + Tensor(np.ones((2, 3))) * x
    merged = eliminate_common_subexpressions(Graph([y.node]))
    assert _count(merged) == Counter({"input": 1, "constant": 1, "mul": 1, "add": 1})


def test_cse_keeps_signed_zeros_apart():
    # regression: scalar constants were keyed by value, and 0.0 == -0.0
    x = input_placeholder("x", (2,), "float64")
    plan = compile_graph([1.0 / (x * 0.0), 1.0 / (x * -0.0)], [x], get_backend("cpu"))
    with np.errstate(divide="ignore"):
        pos, neg = plan([np.ones(2)])
    np.testing.assert_array_equal(pos, [np.inf, np.inf])
    np.testing.assert_array_equal(neg, [-np.inf, -np.inf])


# ---- run_passes -----------------------------------------------------------------------------

def test_run_passes_reports_nodes_bytes_and_rewrites():
    x = input_placeholder("x", (3,), "float64")
    y = (x.exp() + x.exp() + (Tensor(1.0) + Tensor(2.0))).sigmoid().log()
    stages = []
    graph, stats = run_passes(Graph([y.node]), CORE,
                              on_stage=lambda name, g: stages.append((name, len(g))))
    assert all(isinstance(s, PassStat) for s in stats)
    assert [(s.name, s.nodes_before, s.nodes_after) for s in stats] == [
        ("fold_constants", 10, 10), ("simplify_algebra", 10, 10), ("stabilize_numerics", 10, 12),
        ("eliminate_common_subexpressions", 12, 11), ("eliminate_dead_code", 11, 8)]
    assert stats[0].bytes_before - stats[0].bytes_after == 8  # 1.0 + 2.0 folded
    assert stats[2].rewrites == (("log(sigmoid(x)) -> -softplus(-x)", ""),)
    assert stages[0] == ("input", 10) and stages[-1] == ("eliminate_dead_code", 8)
    assert _ops(graph) == ["input", "exp", "add", "constant", "add", "neg", "softplus", "neg"]


# ---- the whole list on the shipped configs: same results, fewer nodes -----------------------

def _training_graph(name: str, batch: int = 4):
    from nnctl.config import load_config
    from nnctl.step import prepare
    config = load_config(CONFIGS / f"{name}.yaml", ["train.dtype=float64"])
    _, builder = prepare(config)
    outputs, _ = builder.training_step(batch)
    return Graph([t.node for t in outputs])


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn", "digits_residual", "seq_lstm",
                                  "chars_transformer"])
def test_every_pass_alone_and_all_together_keep_a_training_step(name):
    graph = _training_graph(name)
    feeds = random_feeds(graph)
    for p in REWRITES:
        with collect_rewrites():
            assert_same_results(graph, p(graph), feeds, rtol=ROUND_OFF.get(p.__name__, 0.0))
    optimised, stats = run_passes(graph, REWRITES)
    assert_same_results(graph, optimised, feeds, rtol=max(ROUND_OFF.values()))
    assert len(optimised) < len(graph)
    # fewer bytes written, but for the convolutions' column matrices, which share_conv_columns
    # adds on purpose (memory for two GEMMs BLAS threads well: conv_columns.py)
    lean, _ = run_passes(graph, tuple(p for p in REWRITES if p.__name__ != "share_conv_columns"))
    assert result_bytes(lean) < result_bytes(graph)
    dce = next(s for s in stats if s.name == "eliminate_dead_code")
    assert dce.nodes_after < dce.nodes_before  # it removes what the rewrites bypassed
