"""Liveness and the peak number of bytes a plan keeps alive."""

from __future__ import annotations

import numpy as np

from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.compile.memory import last_uses, peak_bytes
from nnctl.graph.ir import Graph
from nnctl.graph.tensor import input_placeholder


def test_peak_of_a_long_chain_is_two_buffers_and_the_plan_one_written_in_place():
    x = input_placeholder("x", (100,), "float64")
    y = x
    for _ in range(50):
        y = y.sin()
    graph = Graph([y.node])
    peak = peak_bytes(graph, {y.node})
    total = sum(n.aval.nbytes for n in graph.nodes)
    assert 0 < peak < total
    assert peak == 2 * 800  # a value and the one being computed from it
    plan = compile_graph([y], [x], get_backend("cpu"), passes=())
    assert plan.unplanned_peak_bytes() == peak
    # each sin overwrites its input, which dies there: one buffer (800 bytes, 64-aligned)
    assert plan.peak_bytes == 832 and len(plan.memory.in_place) == 49
    value = np.linspace(-1, 1, 100)
    expected = value
    for _ in range(50):
        expected = np.sin(expected)
    np.testing.assert_array_equal(plan([value])[0], expected)


def test_peak_counts_values_alive_together():
    x = input_placeholder("x", (10,), "float32")
    a, b = x.exp(), x.sin()
    c = a * b
    graph = Graph([c.node])
    assert peak_bytes(graph, {c.node}) == 3 * 40
    # an extra kept output stays alive to the end
    d = c.sum()
    g2 = Graph([d.node, a.node])
    assert peak_bytes(g2, {d.node, a.node}) == 3 * 40


def test_last_uses_skips_leaves_and_kept_outputs():
    x = input_placeholder("x", (4,), "float64")
    a = x.exp()
    b = a.sin()
    c = a * b
    graph = Graph([c.node])
    position = {n: i for i, n in enumerate(graph.nodes)}
    last = last_uses(graph, {c.node})
    assert last == {a.node: position[c.node], b.node: position[c.node]}
    assert x.node not in last and c.node not in last


def test_nbytes_by_dtype():
    assert input_placeholder("a", (3, 2), "float32").node.aval.nbytes == 24
    assert input_placeholder("b", (3, 2), "float64").node.aval.nbytes == 48
    assert input_placeholder("c", (5,), "int64").node.aval.nbytes == 40
    assert input_placeholder("d", (), "float64").node.aval.nbytes == 8


def test_pieces_of_a_leading_axis_concat_are_written_into_its_buffer():
    """concat(p1, p2, p3) along axis 0: each piece is stored as its slice of the concat's
    buffer, so the concat runs no step; right at the capacity and at a smaller batch (the
    pieces' offsets follow the batch), with the pieces read elsewhere too."""
    from nnctl.graph.tensor import concat
    from nnctl.ops.registry import Dim
    x = input_placeholder("x", (Dim("B"), 3), "float64")
    pieces = [(x * float(k)).tanh() for k in (1, 2, 3)]
    joined = concat(pieces, axis=0)
    outs = [joined.sum(axis=1), pieces[1].sum(axis=1)]
    plan = compile_graph(outs, [x], get_backend("cpu"), capacity={"B": 5})
    (node,) = plan.memory.joined
    assert node.op == "concat" and len(plan.memory.joined[node]) == 3
    for b in (5, 2, 5):
        v = np.random.default_rng(b).normal(size=(b, 3))
        ops = [plan.graph.nodes[s].op for _, _, s in plan.binding([v]).steps]
        assert "concat" not in ops
        a, c = plan([v])
        expected = np.concatenate([np.tanh(v * k) for k in (1, 2, 3)])
        np.testing.assert_allclose(a, expected.sum(axis=1), rtol=1e-15)
        np.testing.assert_allclose(c, np.tanh(v * 2.0).sum(axis=1), rtol=1e-15)


def test_a_concat_of_a_leaf_or_of_a_piece_written_in_place_copies_as_before():
    from nnctl.graph.tensor import concat
    x = input_placeholder("x", (2, 3), "float64")
    plan = compile_graph([concat([x, x.tanh()], axis=0) * 2.0], [x], get_backend("cpu"))
    assert not plan.memory.joined
    v = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(plan([v])[0], np.concatenate([v, np.tanh(v)]) * 2.0)
    # the concat written in place by its reader (* 2) while a piece is read after it
    pieces = [x.tanh(), (x * 2.0).tanh()]
    outs = [concat(pieces, axis=0) * 2.0, pieces[1].sum(axis=1)]
    plan = compile_graph(outs, [x], get_backend("cpu"))
    assert plan.memory.in_place and not plan.memory.joined
    a, b = plan([v])
    np.testing.assert_allclose(b, np.tanh(v * 2.0).sum(axis=1), rtol=1e-15)
    # a piece whose last reader overwrites it after the concat (x.sin() + 1 in place)
    s, t = x.sin(), x.cos()
    outs = [concat([s, t], axis=0).sum(axis=0), s + 1.0]
    plan = compile_graph(outs, [x], get_backend("cpu"), passes=())
    assert plan.memory.in_place and not plan.memory.joined
    a, b = plan([v])
    np.testing.assert_allclose(a, (np.sin(v).sum(0) + np.cos(v).sum(0)), rtol=1e-14)
    np.testing.assert_allclose(b, np.sin(v) + 1.0, rtol=1e-15)
