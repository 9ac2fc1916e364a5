"""The graph IR: toposort order and determinism, depth, users, scopes, immutability."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nnctl.errors import ShapeError
from nnctl.graph.ir import Graph, Node, current_scope, name_scope, toposort
from nnctl.graph.tensor import Tensor, input_placeholder, parameter


def _small():
    a = input_placeholder("a", (3,), "float64")
    b = input_placeholder("b", (3,), "float64")
    c = a + b
    d = c * a
    e = d.exp()
    return a, b, c, d, e


def test_toposort_exact_order_inputs_first():
    a, b, c, d, e = _small()
    assert toposort([e.node]) == [a.node, b.node, c.node, d.node, e.node]


def test_toposort_puts_every_node_after_its_inputs_and_each_once():
    x = input_placeholder("x", (2, 2), "float64")
    w = parameter("w", (2, 2), "float64")
    h = (x @ w).tanh()
    outs = [(h * h).sum(), (h + x).mean(), h.max()]
    order = toposort([o.node for o in outs])
    position = {n: i for i, n in enumerate(order)}
    assert len(position) == len(order)
    for n in order:
        assert all(position[i] < position[n] for i in n.inputs)
    assert order.count(h.node) == 1
    assert set(o.node for o in outs) <= set(order)


def test_toposort_is_deterministic():
    a, b, c, d, e = _small()
    first = toposort([e.node, c.node])
    assert toposort([e.node, c.node]) == first
    # the same structure built again sorts into the same op sequence
    a2, b2, c2, d2, e2 = _small()
    assert [n.op for n in toposort([e2.node, c2.node])] == [n.op for n in first]
    # input order decides: b before a when b is the first input
    f = b2 + a2
    assert toposort([f.node])[:2] == [b2.node, a2.node]


def test_deep_chain_without_recursion_error():
    x = input_placeholder("x", (2,), "float64")
    y = x
    for _ in range(5000):
        y = y.sin()
    order = toposort([y.node])
    assert len(order) == 5001
    assert order[0] is x.node and order[-1] is y.node
    graph = Graph([y.node])
    assert len(graph) == 5001 and len(graph.op_nodes) == 5000


def test_users_map():
    a, b, c, d, e = _small()
    g = Graph([e.node])
    assert g.users[a.node] == [c.node, d.node]
    assert g.users[b.node] == [c.node]
    assert g.users[c.node] == [d.node]
    assert g.users[e.node] == []
    x = input_placeholder("x", (3,), "float64")
    sq = x * x
    assert Graph([sq.node]).users[x.node] == [sq.node]  # listed once though read twice


def test_graph_nodes_and_op_nodes():
    x = input_placeholder("x", (2, 3), "float64")
    w = parameter("w", (3, 4), "float64")
    y = (x @ w) * 2.0
    g = Graph([y.node])
    assert [n.op for n in g.nodes] == ["input", "parameter", "matmul", "constant", "mul"]
    assert [n.op for n in g.op_nodes] == ["matmul", "mul"]
    assert g.outputs == (y.node,)
    assert repr(g) == "<Graph 5 nodes, 1 outputs>"


def test_nodes_are_frozen_and_with_inputs_makes_a_new_node():
    a, b, c, d, e = _small()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.node.op = "sub"
    n2 = c.node.with_inputs([b.node, a.node])
    assert n2 is not c.node and n2.id != c.node.id
    assert n2.inputs == (b.node, a.node) and n2.op == "add" and n2.aval == c.node.aval
    assert c.node.inputs == (a.node, b.node)
    assert a.node.is_leaf and not c.node.is_leaf
    assert len({a.node, b.node, c.node, n2}) == 4  # hashed by identity


def test_name_scope_nests_and_resets():
    assert current_scope() == ""
    with name_scope("model"):
        with name_scope("dense_1"):
            assert current_scope() == "model/dense_1"
            y = input_placeholder("x", (2,), "float64").exp()
        assert current_scope() == "model"
    assert current_scope() == ""
    assert y.node.scope == "model/dense_1"
    with pytest.raises(RuntimeError):
        with name_scope("broken"):
            raise RuntimeError("boom")
    assert current_scope() == ""


def test_shape_error_names_the_scope_and_op():
    x = input_placeholder("x", (2, 3), "float64")
    w = Tensor(np.ones((4, 5)))
    with name_scope("dense_1"):
        with pytest.raises(ShapeError) as info:
            x @ w
    err = info.value
    assert err.scope == "dense_1" and err.op == "matmul"
    assert str(err) == ("layer dense_1 / op matmul: matmul of [2, 3] and [4, 5]: "
                        "inner sizes 3 and 4 differ")
    assert err.exit_code == 2


def test_shape_error_from_an_axis_names_the_scope():
    with name_scope("pool"):
        with pytest.raises(ShapeError) as info:
            input_placeholder("x", (2, 3), "float64").sum(axis=5)
    assert str(info.value) == "layer pool: axis 5 is out of range for a 2-D input"


def test_node_repr_names_the_node():
    x = input_placeholder("features", (2, 3), "float32")
    assert repr(x.node) == f"<features #{x.node.id} float32[2, 3]>"
    assert isinstance(x.node, Node)


def test_graph_with_explicit_nodes_keeps_unused_ones_and_checks_the_order():
    a, b, c, d, e = _small()
    g = Graph([c.node], nodes=[a.node, b.node, c.node, d.node])  # d reaches no output
    assert g.nodes == (a.node, b.node, c.node, d.node) and g.users[d.node] == []
    with pytest.raises(ValueError, match="before one of its inputs"):
        Graph([c.node], nodes=[a.node, c.node, b.node])
    with pytest.raises(ValueError, match="repeated"):
        Graph([c.node], nodes=[a.node, b.node, c.node, c.node])
    with pytest.raises(ValueError, match="not among the nodes"):
        Graph([e.node], nodes=[a.node, b.node, c.node])


def test_node_attrs_are_frozen_hashable_and_still_read_like_a_dict():
    x = input_placeholder("x", (2, 3), "float64")
    node = Node("pad", (x.node,), {"pad_width": [[0, 1], [2, 0]], "meta": {"k": [1]}},
                x.node.aval)
    assert node.attrs["pad_width"] == ((0, 1), (2, 0))
    assert node.attrs["meta"]["k"] == (1,) and dict(**node.attrs)["meta"] == {"k": (1,)}
    assert node.attrs == {"pad_width": ((0, 1), (2, 0)), "meta": {"k": (1,)}}
    with pytest.raises(TypeError):
        node.attrs["pad_width"] = ()
    with pytest.raises(TypeError):
        node.attrs["meta"]["k"] = 2
    same = Node("pad", (x.node,), {"meta": {"k": (1,)}, "pad_width": ((0, 1), (2, 0))},
                x.node.aval)
    assert hash(same.attrs) == hash(node.attrs) and same.attrs == node.attrs
    assert x.sum(axis=0).node.attrs.get("keepdims") is False


def test_node_value_is_read_only():
    data = np.arange(3.0)
    t = Tensor(data)
    with pytest.raises(ValueError):
        t.node.value[0] = 5.0
    data[1] = 7.0  # the caller's array is not copied and stays writable: documented
    assert t.node.value[1] == 7.0
    assert (t * 2.0).node.value.flags.writeable is False  # eager results too
