"""The numerics pass: composed formulas that overflow, underflow or cancel, rewritten into the
fused ops that compute the same function stably.

    log(sigmoid(x))          -> -softplus(-x)      log(sigmoid) is -inf once sigmoid rounds to 0
    log(1 - sigmoid(x))      -> -softplus(x)       1 - sigmoid(x) cancels to 0 for large x
    log(1 + exp(x))          -> softplus(x)        exp overflows for x > 88 (float32)
    log(softmax(x, a))       -> log_softmax(x, a)
    log(sum(exp(x), axes))   -> logsumexp(x, axes)
    exp(x) / sum(exp(x), a)  -> softmax(x, a)
    1 / (1 + exp(-x))        -> sigmoid(x)
    log(exp(x))              -> x
    exp(log(x))              -> x                  NOTE: assumes x > 0 (else log gives NaN)
    sqrt(x * x), sqrt(x^2)   -> abs(x)             x * x overflows for |x| > 1.8e19 (float32)

Each rewrite is noted as (pattern, layer scope): run_passes returns them and
`nnctl export-graph --passes` prints them. The results are equal where the original formula
is finite (and the rewritten one is finite where it was not).
"""

from __future__ import annotations

from nnctl.compile.rewrite import Rewrite, apply_rules, is_scalar, make
from nnctl.graph.ir import Graph, Node


def _neg(x: Node, like: Node) -> Node:
    return make("neg", (x,), like)


def _log(node: Node, ctx: Rewrite):
    (x,) = node.inputs
    if x.op == "sigmoid":
        z = x.inputs[0]
        return ("log(sigmoid(x)) -> -softplus(-x)",
                _neg(make("softplus", (_neg(z, node),), node), node))
    if x.op == "softmax":
        return ("log(softmax(x)) -> log_softmax(x)",
                make("log_softmax", x.inputs, node, **x.attrs))
    if x.op == "exp":
        return "log(exp(x)) -> x", x.inputs[0]
    if x.op == "sum" and x.inputs[0].op == "exp":
        return ("log(sum(exp(x))) -> logsumexp(x)",
                make("logsumexp", x.inputs[0].inputs, node, **x.attrs))
    if x.op == "sub" and is_scalar(x.inputs[0], 1.0) and x.inputs[1].op == "sigmoid" \
            and x.inputs[1].aval == x.aval:
        return ("log(1 - sigmoid(x)) -> -softplus(x)",
                _neg(make("softplus", x.inputs[1].inputs, node), node))
    if x.op == "add":
        for e, one in (x.inputs, reversed(x.inputs)):
            if e.op == "exp" and e.aval == x.aval and is_scalar(one, 1.0):
                return "log(1 + exp(x)) -> softplus(x)", make("softplus", e.inputs, node)
    return None


def _exp(node: Node, ctx: Rewrite):
    (x,) = node.inputs
    if x.op == "log":
        return "exp(log(x)) -> x", x.inputs[0]
    return None


def _sqrt(node: Node, ctx: Rewrite):
    (x,) = node.inputs
    if x.op == "mul" and x.inputs[0] is x.inputs[1]:
        return "sqrt(x*x) -> abs(x)", make("abs", x.inputs[:1], node)
    if x.op == "pow" and x.attrs["exponent"] == 2:
        return "sqrt(x^2) -> abs(x)", make("abs", x.inputs, node)
    return None


def _div(node: Node, ctx: Rewrite):
    a, b = node.inputs
    # 1 / (1 + exp(-x))
    if is_scalar(a, 1.0) and b.op == "add" and b.aval == node.aval:
        for e, one in (b.inputs, reversed(b.inputs)):
            if e.op == "exp" and e.inputs[0].op == "neg" and e.aval == node.aval \
                    and is_scalar(one, 1.0):
                return ("1/(1 + exp(-x)) -> sigmoid(x)",
                        make("sigmoid", e.inputs[0].inputs, node))
    # exp(x) / sum(exp(x), axis, keepdims=True) over one axis
    if a.op == "exp" and b.op == "sum" and b.inputs[0].op == "exp" and \
            b.inputs[0].inputs[0] is a.inputs[0] and b.attrs.get("keepdims") and \
            b.attrs.get("axis") is not None and len(b.attrs["axis"]) == 1 and \
            a.aval == node.aval:
        return ("exp(x)/sum(exp(x)) -> softmax(x)",
                make("softmax", a.inputs, node, axis=b.attrs["axis"][0]))
    return None


RULES = {"log": [_log], "exp": [_exp], "sqrt": [_sqrt], "div": [_div]}


def stabilize_numerics(graph: Graph) -> Graph:
    """Rewrite the unstable patterns above; each rewrite is noted as (pattern, scope)."""
    return apply_rules(graph, RULES)
