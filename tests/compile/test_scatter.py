"""join_slice_gradients: the gradients of slices, joined into one concat or stack."""

from __future__ import annotations

from collections import Counter

import numpy as np

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.compile.passes import eliminate_dead_code
from nnctl.compile.rewrite import collect_rewrites
from nnctl.compile.scatter import join_slice_gradients
from nnctl.graph.ir import Graph
from nnctl.graph.tensor import input_placeholder, parameter
from nnctl.ops.registry import Dim

CPU = get_backend("cpu")


def _gates_over_time(batch=Dim("B"), steps=5, units=3):
    """An LSTM-like use of slices: one product for every step, four gates per step."""
    x = input_placeholder("x", (batch, steps, 4), "float64")
    w = parameter("w", (4, 4 * units), "float64")
    xw = (x.reshape(-1, 4) @ w).reshape(batch, steps, -1)
    total = None
    for t in range(steps):
        z = xw[:, t]
        gates = [z[:, i * units:(i + 1) * units] for i in (2, 0, 3, 1)]  # any order
        h = gates[0].sigmoid() * gates[1].tanh() + gates[2] * gates[3]
        total = h if total is None else total + h * (t + 1.0)
    loss = total.sum()
    return loss, grad(loss, [w]), x, w


def _ops(graph):
    return Counter(n.op for n in graph.nodes)


def test_scatters_of_gates_and_of_steps_become_concats_and_a_stack():
    loss, (gw,), x, w = _gates_over_time()
    graph = Graph([loss.node, gw.node])
    with collect_rewrites() as log:
        joined = eliminate_dead_code(join_slice_gradients(graph))
    before, after = _ops(graph), _ops(joined)
    assert before["scatter_index"] == 5 * 4 + 5 and before["add"] >= 5 * 3 + 4
    assert after["scatter_index"] == 0  # every piece found its place in a join
    assert after["stack"] + after["concat"] <= 5 + 2
    assert any("scatters of adjacent slices" in p for p, _ in log)
    # fewer bytes written: no zero-filled whole-shape arrays per piece
    bytes_of = lambda g: sum(n.aval.at({"B": 8}).nbytes for n in g.nodes if not n.is_leaf)
    assert bytes_of(joined) < 0.55 * bytes_of(graph)


def test_joined_gradients_are_bitwise_the_same():
    loss, grads, x, w = _gates_over_time(batch=6)
    feeds = [np.random.default_rng(0).normal(size=(6, 5, 4)),
             np.random.default_rng(1).normal(size=(4, 12))]
    plain = compile_graph([loss, *grads], [x, w], CPU, passes=())(feeds)
    joined = compile_graph([loss, *grads], [x, w], CPU, passes=(join_slice_gradients,))(feeds)
    for a, b in zip(plain, joined):
        np.testing.assert_array_equal(a, b)


def test_overlapping_or_gapped_slices_are_left_alone():
    x = input_placeholder("x", (6,), "float64")
    loss = (x[0:2].sin() * x[1:3].cos()).sum() + x[4:6].exp().sum()  # overlap, then a gap
    (g,) = grad(loss, [x])
    graph = Graph([g.node])
    joined = eliminate_dead_code(join_slice_gradients(graph))
    assert _ops(joined)["scatter_index"] == _ops(graph)["scatter_index"] == 3


def test_a_long_recurrence_joins_its_step_gradients_into_one_flat_concat():
    """The LSTM layer over 32 steps: joining the gradients of its steps' input slices step
    after step nests concats; flattening them needs each inner concat to be read once, which
    only counts readers the outputs still depend on (a sweep leaves the nodes it bypassed
    until DCE). After the passes no concat reads a concat along its own axis."""
    from nnctl.compile.passes import PASSES, run_passes
    from nnctl.layers.recurrent import LSTM
    x = input_placeholder("x", (Dim("B"), 32, 3), "float64")
    layer = LSTM("l", 4)
    loss = layer(x, False, np.random.default_rng(0)).sum()
    grads = grad(loss, list(layer.params.values()))
    graph, _ = run_passes(Graph([loss.node] + [g.node for g in grads]), PASSES)
    for node in graph.nodes:
        if node.op == "concat":
            axis = node.attrs["axis"] % node.aval.ndim
            assert not any(i.op == "concat" and i.attrs["axis"] % i.aval.ndim == axis
                           for i in node.inputs), node
