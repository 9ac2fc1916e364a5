"""The elementwise fusion pass alone (STYLE R6): which nodes it groups, what the fused node
holds, and that running the fused graph gives the unfused graph's values."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.compile.fusion import FUSED, fuse_elementwise, fused_kernel, groups
from nnctl.graph.ir import Graph, Node, name_scope
from nnctl.graph.tensor import Tensor, input_placeholder
from nnctl.ops.registry import REGISTRY, Aval


def run_graph(graph: Graph, feeds: dict) -> list:
    """Evaluate `graph` node by node (fused nodes through fused_kernel); feeds: node -> array."""
    values = {}
    for node in graph.nodes:
        if node in feeds:
            values[node] = feeds[node]
        elif node.op == "constant":
            values[node] = np.asarray(node.value, dtype=node.aval.dtype)
        elif node.op == FUSED:
            values[node] = fused_kernel(node, np)(None, *[values[i] for i in node.inputs])
        else:
            values[node] = REGISTRY[node.op].forward(np, *[values[i] for i in node.inputs],
                                                     **node.attrs)
    return [values[o] for o in graph.outputs]


def _ops(graph: Graph) -> list[str]:
    return [n.op for n in graph.nodes if not n.is_leaf]


def _check_same_values(graph, fused, leaves, seed=0):
    rng = np.random.default_rng(seed)
    feeds = {t.node: rng.uniform(-2, 2, t.shape).astype(t.dtype) for t in leaves}
    for a, b in zip(run_graph(graph, feeds), run_graph(fused, feeds)):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


def test_a_chain_becomes_one_node_with_the_output_aval_name_and_scope():
    x = input_placeholder("x", (4, 3), "float64")
    b = input_placeholder("b", (3,), "float64")
    with name_scope("dense_1"):
        y = ((x + b) * 2.0).tanh()
    graph = Graph([y.node])
    fused = fuse_elementwise(graph)
    assert _ops(graph) == ["add", "mul", "tanh"]
    assert _ops(fused) == [FUSED]
    node = fused.outputs[0]
    assert node.aval == y.node.aval and node.scope == "dense_1"
    assert node.inputs == (x.node, b.node)  # the 0-d constant 2.0 became a literal
    program = node.attrs["program"]
    assert program.body == (("t0", "(x0 + x1)"), ("t1", "(t0 * 2.0)"), ("t2", "tanh(t1)"))
    assert program.input_masks == ((True, True), (False, True))
    assert program.ops == ("add", "mul", "tanh")
    assert hash(node.attrs) == hash(node.attrs)  # attrs stay hashable (CSE keys on them)
    assert _ops(graph) == ["add", "mul", "tanh"]  # the input graph is untouched
    _check_same_values(graph, fused, [x, b])


def test_a_value_read_outside_the_group_stays_a_separate_output():
    x = input_placeholder("x", (4, 3), "float64")
    w = input_placeholder("w", (3, 3), "float64")
    h = (x * 0.5).exp()  # read by the matmul and by the add below
    y = (h @ w) + h.sin()
    graph = Graph([y.node])
    fused = fuse_elementwise(graph)
    assert _ops(fused) == [FUSED, "matmul", FUSED]
    first, _, last = [n for n in fused.nodes if not n.is_leaf]
    assert first.attrs["program"].ops == ("mul", "exp")
    assert last.attrs["program"].ops == ("sin", "add")
    assert last.inputs[0] is first  # the exp is computed once and read by both
    _check_same_values(graph, fused, [x, w])


def test_a_graph_output_is_never_absorbed_and_a_lone_op_stays():
    x = input_placeholder("x", (5,), "float64")
    h = x.exp()
    y = h * 3.0
    z = x.sum().sin()  # a lone elementwise op after a reduction
    graph = Graph([h.node, y.node, z.node])
    fused = fuse_elementwise(graph)
    assert _ops(fused) == ["exp", "mul", "sum", "sin"]  # nothing to fuse: no group of two
    assert fuse_elementwise(Graph([x.exp().node])).outputs[0].op == "exp"


def test_shared_interior_values_and_diamonds_fuse_into_one_program():
    x = input_placeholder("x", (2, 3), "float64")
    t = x.sigmoid()
    y = t * (1.0 - t) + t.relu()  # t has three readers, all in the group
    fused = fuse_elementwise(Graph([y.node]))
    assert _ops(fused) == [FUSED]
    assert fused.outputs[0].attrs["program"].ops.count("sigmoid") == 1
    _check_same_values(Graph([y.node]), fused, [x])


@pytest.mark.parametrize("shapes", [
    ((8, 4), (4,)),  # a bias row
    ((8, 4), (8, 1)),  # per-row scalars from a keepdims reduction
    ((8, 4), ()),  # a 0-d input
    ((2, 3, 4, 5), (1, 3, 1, 1)),  # per-channel
    ((3, 1), (1, 4)),  # both broadcast
])
def test_inputs_broadcast_against_the_output(shapes):
    a = input_placeholder("a", shapes[0], "float32")
    b = input_placeholder("b", shapes[1], "float32")
    y = (a - b).exp() * b + a.maximum(b)
    graph = Graph([y.node])
    fused = fuse_elementwise(graph)
    assert _ops(fused) == [FUSED]
    rng = np.random.default_rng(3)
    feeds = {t.node: rng.uniform(-2, 2, t.shape).astype("float32") for t in (a, b)}
    out, = run_graph(fused, feeds)
    expected, = run_graph(graph, feeds)
    assert out.dtype == np.float32 and out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=2e-6, atol=1e-6)


def test_array_constants_stay_inputs_and_reductions_end_a_group():
    x = input_placeholder("x", (4, 3), "float64")
    c = Tensor(np.arange(3.0))
    s = (x * c + 1.0).sum(axis=1, keepdims=True)
    y = (x - s).exp() / 2.0
    graph = Graph([y.node])
    fused = fuse_elementwise(graph)
    assert _ops(fused) == [FUSED, "sum", FUSED]
    first = next(n for n in fused.nodes if n.op == FUSED)
    assert [i.op for i in first.inputs] == ["input", "constant"]
    _check_same_values(graph, fused, [x])


def test_masks_come_from_ranks_and_static_ones_only():
    class B:  # a symbolic batch size: equal only to itself, never 1
        def __eq__(self, other):
            return other is self

        def __hash__(self):
            return 7

    batch = B()
    x = Tensor(node=Node("input", (), {}, Aval((batch, 4), "float64"), name="x"))
    r = Tensor(node=Node("input", (), {}, Aval((batch, 1), "float64"), name="r"))
    y = (x * r).tanh() + 1.0
    node = fuse_elementwise(Graph([y.node])).outputs[0]
    assert node.attrs["program"].input_masks == ((True, True), (True, False))
    assert node.aval.shape[0] is batch


def test_groups_of_an_unfusable_graph_are_empty():
    x = input_placeholder("x", (3, 3), "float64")
    graph = Graph([(x @ x).sum().node])
    assert groups(graph) == {}
    assert fuse_elementwise(graph) is graph
