"""Convolutions in a training step as GEMMs on one column matrix.

conv2d(x, w) and its weight gradient conv2d_grad_weight(x, g) each lay out the same columns
of x (im2col: every kernel offset of every output pixel). In a training step both read the
same x, so this pass lowers the pair to

    cols = im2col(x)                          [C*KH*KW, N*OH*OW], computed once (CSE joins
                                              the two rewrites' identical nodes)
    y    = (w2 @ cols) seen as [N, O, OH, OW] one GEMM, its long side every position of
                                              every image (BLAS splits it across threads;
                                              the per-image GEMMs of conv2d's own kernel
                                              were 64 small ones a second thread did not help)
    dw   = g2 @ cols^T                        one GEMM, as conv2d_grad_weight's own kernel

with w2 = w as [O, C*KH*KW] and g2 = g as [O, N*OH*OW]. The price is memory: the columns
live from the forward to the backward pass (the memory plan counts them; 9 MB for the
benchmark CNN's two convolutions at batch 64). y is a transposed view; the elementwise
kernel that reads it next (bias, activation) writes the usual layout. Grouped convolutions
and a conv2d without its weight gradient (inference, a frozen layer) keep their own kernels.
The input gradient keeps conv2d_grad_input's kernel: as col2im(w2^T @ g2) it was measured no
faster (the GEMM gains what col2im's strided adds lose: 2.5 + 3.5 ms against 6-7 ms for the
benchmark's second conv at one thread), with 7 MB more in the arena.
The sums are the same up to float round-off (BLAS accumulates in another order).

Max pooling gets the same treatment where its backward was built with the argmax as a node
(nnctl/ops/pool.py, `argmax_in_graph`): a max_pool2d(x) whose step also computes
max_pool2d_index(x) becomes max_pool2d_take(x, index), so the window search runs once, in the
forward pass, and the gradient (max_pool2d_scatter) reuses it; CSE joins the two index nodes.
The value at the first maximum is the maximum, so the result is the same bits. The default
graph (the CPU's: max_pool2d_grad searches again, inside its numba loop) has no index node,
and this rule leaves it alone.
"""

from __future__ import annotations

from nnctl.compile.rewrite import Rewrite, apply_rules, make
from nnctl.graph.ir import Graph, Node

GEOMETRY = ("stride", "padding", "dilation")
DEFAULTS = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1}


def _attrs(node: Node) -> dict:
    attrs = {**DEFAULTS, **node.attrs}
    return {k: (v, v) if isinstance(v, int) and k != "groups" else v for k, v in attrs.items()}


def _columns(x: Node, kernel, attrs: dict, like: Node) -> Node:
    return make("im2col", (x,), like, kernel=tuple(kernel),
                **{k: tuple(attrs[k]) for k in GEOMETRY})


def _weight_gradient_reads(x: Node, attrs: dict, ctx: Rewrite) -> bool:
    """Whether the step also computes conv2d_grad_weight of this x with this geometry."""
    old = ctx.origin.get(x, x)
    return any(u.op == "conv2d_grad_weight" and u.inputs[0] is old
               and {k: _attrs(u)[k] for k in (*GEOMETRY, "groups")}
               == {k: attrs[k] for k in (*GEOMETRY, "groups")}
               for u in ctx.live_users.get(old, ()))


def _forward(node: Node, ctx: Rewrite):
    x, w = node.inputs
    attrs = _attrs(node)
    if attrs["groups"] != 1 or not _weight_gradient_reads(x, attrs, ctx):
        return None
    o = w.aval.shape[0]
    n, _, oh, ow = node.aval.shape
    cols = _columns(x, w.aval.shape[2:], attrs, node)
    w2 = make("reshape", (w,), node, shape=(o, cols.aval.shape[0]))
    y2 = make("matmul", (w2, cols), node)
    y = make("transpose", (make("reshape", (y2,), node, shape=(o, n, oh, ow)),), node,
             axes=(1, 0, 2, 3))
    return "conv2d -> w @ im2col(x)", y


def _weight_gradient(node: Node, ctx: Rewrite):
    x, g = node.inputs
    attrs = _attrs(node)
    if attrs["groups"] != 1:
        return None
    weight_shape = tuple(node.attrs["weight_shape"])
    o = weight_shape[0]
    cols = _columns(x, weight_shape[2:], attrs, node)
    g2 = make("reshape", (make("transpose", (g,), node, axes=(1, 0, 2, 3)),), node,
              shape=(o, cols.aval.shape[1]))
    dw2 = make("matmul", (g2, make("transpose", (cols,), node, axes=(1, 0))), node)
    return "conv2d_grad_weight -> g @ im2col(x)^T", make("reshape", (dw2,), node,
                                                         shape=weight_shape)


def _pool_from_index(node: Node, ctx: Rewrite):
    (x,) = node.inputs
    old = ctx.origin.get(x, x)
    if not any(u.op == "max_pool2d_index" and u.inputs[0] is old and u.attrs == node.attrs
               for u in ctx.live_users.get(old, ())):
        return None
    index = make("max_pool2d_index", (x,), node, **node.attrs)
    return "max_pool2d -> take(x, max_pool2d_index(x))", make(
        "max_pool2d_take", (x, index), node, **node.attrs)


def share_conv_columns(graph: Graph) -> Graph:
    """conv2d and its weight gradient as GEMMs on one im2col of x, and a max_pool2d as a take
    at the argmax its backward computes anyway (see the module)."""
    return apply_rules(graph, {"conv2d": [_forward], "conv2d_grad_weight": [_weight_gradient],
                               "max_pool2d": [_pool_from_index]})
