"""Sums of products, as one product: the weight gradient of a weight used at every step.

A recurrent layer multiplies h_(t-1) by the same Wh at every step, so reverse-mode AD gives
Wh's gradient as a sum over steps of h_(t-1)^T @ dz_t: T small GEMMs (inner size = the batch)
and T - 1 additions of the whole gradient. Stacking the operands makes it one GEMM with an
inner size of batch * T, which BLAS runs near its peak:

    a1^T @ b1 + a2^T @ b2 + ...  ->  concat(a1, a2, ...)^T @ concat(b1, b2, ...)

The sum is the same up to float round-off (BLAS accumulates in another order).
"""

from __future__ import annotations

from nnctl.compile.rewrite import Rewrite, apply_rules, make
from nnctl.graph.ir import Graph, Node


def _only_reader(node: Node, ctx: Rewrite) -> bool:
    return ctx.single_use(node) or node not in ctx.origin


def _products(node: Node, ctx: Rewrite, found: list) -> bool:
    """The (a, b) of every a^T @ b a tree of adds sums (False when anything else is in it)."""
    for inp in node.inputs:
        if not _only_reader(inp, ctx) or inp.aval != node.aval:
            return False
        if inp.op == "add":
            if not _products(inp, ctx, found):
                return False
            continue
        if inp.op != "matmul":
            return False
        at, b = inp.inputs
        if at.op != "transpose" or at.aval.ndim != 2 or tuple(at.attrs["axes"]) != (1, 0) \
                or b.aval.ndim != 2:
            return False
        found.append((at.inputs[0], b))
    return True


def _pieces(nodes: list, ctx: Rewrite) -> list:
    """Operands to stack, with a stack this pass built before taken apart (no nesting)."""
    out = []
    for n in nodes:
        if n.op == "concat" and n.attrs["axis"] == 0 and n not in ctx.origin:
            out.extend(n.inputs)
        else:
            out.append(n)
    return out


def _one_gemm(node: Node, ctx: Rewrite):
    found: list = []
    if node.aval.ndim != 2 or not _products(node, ctx, found) or len(found) < 2:
        return None
    a = make("concat", _pieces([p[0] for p in found], ctx), node, axis=0)
    b = make("concat", _pieces([p[1] for p in found], ctx), node, axis=0)
    product = make("matmul", (make("transpose", (a,), node, axes=(1, 0)), b), node)
    return f"sum of {len(found)} a^T @ b -> one GEMM", product


def batch_weight_gradients(graph: Graph) -> Graph:
    """Sums of a_i^T @ b_i become one GEMM over the stacked operands (see the module)."""
    return apply_rules(graph, {"add": [_one_gemm]})
