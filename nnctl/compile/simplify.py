"""Algebraic simplification: rewrites that give bitwise the same values with less work.

Most targets come from the vjps: `sum_to` is a sum with keepdims and a reshape, a mean's
gradient is a broadcast scaled by 1/n, the seed of a scalar loss is a constant 1, a
transpose's gradient is another transpose. Every rule keeps the node's shape and dtype
(`rewrite` asserts it). The one liberty: x + 0.0 -> x keeps a -0.0 where the sum would
give +0.0 (equal as numbers).
"""

from __future__ import annotations

from nnctl.compile.rewrite import Rewrite, apply_rules, is_scalar, make
from nnctl.graph.ir import Graph, Node
from nnctl.ops.registry import broadcast_shapes

ARITHMETIC = ("add", "sub", "mul", "div")
REDUCTIONS = ("sum", "mean", "max")


def _identity(node: Node, ctx: Rewrite):
    """x*1, 1*x, x+0, 0+x, x-0, x/1 -> x (when x alone already has the result's aval)."""
    a, b = node.inputs
    unit = 1.0 if node.op in ("mul", "div") else 0.0
    if is_scalar(b, unit) and a.aval == node.aval:
        return {"mul": "x*1", "add": "x+0", "sub": "x-0", "div": "x/1"}[node.op], a
    if node.op in ("mul", "add") and is_scalar(a, unit) and b.aval == node.aval:
        return {"mul": "1*x", "add": "0+x"}[node.op], b
    return None


def _implicit_broadcast(node: Node, ctx: Rewrite):
    """op(broadcast_to(y), x) -> op(y, x) when x alone already gives the result's shape:
    arithmetic broadcasts on its own, without the materialised (or strided) operand."""
    for i, inp in enumerate(node.inputs):
        if inp.op != "broadcast_to":
            continue
        y, other = inp.inputs[0], node.inputs[1 - i]
        if broadcast_shapes(y.aval.shape, other.aval.shape) == node.aval.shape:
            inputs = (y, other) if i == 0 else (other, y)
            return f"{node.op}(broadcast_to(y), x) -> {node.op}(y, x)", make(node.op, inputs, node)
    return None


def _scalar_into_broadcast(node: Node, ctx: Rewrite):
    """op(broadcast_to(s), c) -> broadcast_to(op(s, c)) for a scalar constant c: the
    arithmetic runs on the small array (a mean's gradient g/n is the usual one)."""
    for i, inp in enumerate(node.inputs):
        c = node.inputs[1 - i]
        if inp.op != "broadcast_to" or c.aval.shape != () or not _known(c):
            continue
        s = inp.inputs[0]
        small = make(node.op, (s, c) if i == 0 else (c, s), node)
        return (f"{node.op}(broadcast_to(s), c) -> broadcast_to({node.op}(s, c))",
                make("broadcast_to", (small,), node, shape=node.aval.shape))
    return None


def _known(node: Node) -> bool:
    return node.op == "constant" or (not node.is_leaf and node.value is not None)


def _neg_neg(node: Node, ctx: Rewrite):
    (x,) = node.inputs
    return ("neg(neg(x)) -> x", x.inputs[0]) if x.op == "neg" else None


def _minus_neg(node: Node, ctx: Rewrite):
    """x + neg(y) -> x - y and x - neg(y) -> x + y (IEEE defines x - y as x + (-y))."""
    a, b = node.inputs
    if b.op != "neg":
        return None
    other = "sub" if node.op == "add" else "add"
    return f"x {'+' if node.op == 'add' else '-'} neg(y) -> x {'-' if other == 'sub' else '+'} y", \
        make(other, (a, b.inputs[0]), node)


def _reduce_neg(node: Node, ctx: Rewrite):
    """sum(neg(x)) -> neg(sum(x)) (also mean): the negation runs on the reduced, smaller array
    (a `sub`'s gradient is (-g).sum_to(shape))."""
    (x,) = node.inputs
    if x.op != "neg" or not ctx.single_use(x):
        return None
    return (f"{node.op}(neg(x)) -> neg({node.op}(x))",
            make("neg", (make(node.op, x.inputs, node, **node.attrs),), node))


def _transpose(node: Node, ctx: Rewrite):
    """transpose(x, identity) -> x; transpose(transpose(x, a), b) -> transpose(x, a∘b)."""
    (x,) = node.inputs
    axes = tuple(node.attrs["axes"])
    if axes == tuple(range(len(axes))):
        return "transpose(x, identity) -> x", x
    if x.op == "transpose":
        inner = x.attrs["axes"]
        composed = tuple(inner[a] for a in axes)
        if composed == tuple(range(len(composed))):
            return "transpose(transpose(x)) -> x", x.inputs[0]
        return ("transpose(transpose(x)) -> transpose(x)",
                make("transpose", x.inputs, node, axes=composed))
    return None


def _reshape(node: Node, ctx: Rewrite):
    """reshape(x) to x's own shape -> x; reshape(reshape(x)) -> reshape(x); and
    reshape(sum(x, keepdims=True)) dropping exactly the kept axes -> sum(x) (sum_to's tail)."""
    (x,) = node.inputs
    if x.aval.shape == node.aval.shape:
        return "reshape(x) to its shape -> x", x
    if x.op == "reshape":
        inner = x.inputs[0]
        if inner.aval.shape == node.aval.shape:
            return "reshape(reshape(x)) -> x", inner
        return ("reshape(reshape(x)) -> reshape(x)",
                make("reshape", (inner,), node, shape=node.aval.shape))
    if x.op in REDUCTIONS and x.attrs.get("keepdims") and ctx.single_use(x):
        attrs = dict(x.attrs, keepdims=False)
        dropped = make(x.op, x.inputs, node, **attrs)
        if dropped.aval == node.aval:
            return f"reshape({x.op}(x, keepdims)) -> {x.op}(x)", dropped
    return None


def _broadcast(node: Node, ctx: Rewrite):
    """broadcast_to(x) to x's own shape -> x; broadcast_to(broadcast_to(x)) -> one."""
    (x,) = node.inputs
    if x.aval.shape == node.aval.shape:
        return "broadcast_to(x) to its shape -> x", x
    if x.op == "broadcast_to":
        return ("broadcast_to(broadcast_to(x)) -> broadcast_to(x)",
                make("broadcast_to", x.inputs, node, shape=node.aval.shape))
    return None


def _sub_one_hot(node: Node, ctx: Rewrite):
    """x - one_hot(labels) -> sub_one_hot(x, labels): the softmax cross-entropy gradient
    subtracts 1 at each label, not a dense one-hot it first has to build (bitwise the same:
    x - 0 is x)."""
    a, b = node.inputs
    if b.op != "one_hot" or b.aval != node.aval or a.aval != node.aval:
        return None
    return "x - one_hot(labels) -> sub_one_hot(x, labels)", make("sub_one_hot", (a, b.inputs[0]),
                                                                node)


def _softmax_xent_grad(node: Node, ctx: Rewrite):
    """sub_one_hot(softmax(x), labels) * s -> softmax_xent_grad(x, labels, s) for a 0-d s:
    the cross-entropy gradient in one kernel (the same calls in the same order: bitwise)."""
    for i, inp in enumerate(node.inputs):
        s = node.inputs[1 - i]
        if inp.op != "sub_one_hot" or s.aval.shape != () or s.aval.dtype != node.aval.dtype \
                or inp.aval != node.aval or not ctx.single_use(inp):
            continue
        soft, labels = inp.inputs
        axis = soft.attrs.get("axis", -1) if soft.op == "softmax" else None
        if axis is None or axis % soft.aval.ndim != soft.aval.ndim - 1 or \
                not ctx.single_use(soft):
            continue
        return ("sub_one_hot(softmax(x), labels) * s -> softmax_xent_grad(x, labels, s)",
                make("softmax_xent_grad", (soft.inputs[0], labels, s), node))
    return None


def _unit_reduction(node: Node, ctx: Rewrite):
    """sum/mean/max over axes of size 1 (or over no axis) -> x, or a reshape of x."""
    (x,) = node.inputs
    axis = node.attrs.get("axis")
    axes = range(x.aval.ndim) if axis is None else axis
    if any(x.aval.shape[a] != 1 for a in axes):
        return None
    if x.aval.shape == node.aval.shape:
        return f"{node.op} over size-1 axes -> x", x
    return (f"{node.op} over size-1 axes -> reshape(x)",
            make("reshape", (x,), node, shape=node.aval.shape))


RULES = {
    "mul": [_identity, _softmax_xent_grad, _implicit_broadcast, _scalar_into_broadcast],
    "div": [_identity, _implicit_broadcast, _scalar_into_broadcast],
    "add": [_identity, _minus_neg, _implicit_broadcast, _scalar_into_broadcast],
    "sub": [_identity, _minus_neg, _sub_one_hot, _implicit_broadcast, _scalar_into_broadcast],
    "neg": [_neg_neg],
    "transpose": [_transpose],
    "reshape": [_reshape],
    "broadcast_to": [_broadcast],
    "sum": [_unit_reduction, _reduce_neg],
    "mean": [_unit_reduction, _reduce_neg],
    "max": [_unit_reduction],
}


def simplify_algebra(graph: Graph) -> Graph:
    """Apply RULES bottom-up until none fires; each rewrite is noted as (pattern, scope)."""
    return apply_rules(graph, RULES)
