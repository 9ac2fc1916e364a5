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
