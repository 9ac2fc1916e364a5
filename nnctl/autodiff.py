"""Reverse-mode automatic differentiation over the graph.

`grad` walks the graph backwards from the outputs and asks each op for its vjp. The vjps are
written with Tensor ops, so the gradients are new graph nodes: they can be compiled with the
forward pass, exported, and differentiated again (gradients of gradients).
"""

from __future__ import annotations

from typing import Sequence

from nnctl.errors import NnctlError
from nnctl.graph.ir import name_scope, toposort
from nnctl.graph.tensor import Tensor, constant, set_backward
from nnctl.ops.registry import FLOAT_DTYPES, REGISTRY


def grad(outputs: Sequence[Tensor] | Tensor, wrt: Sequence[Tensor] | Tensor,
         grad_outputs: Sequence[Tensor] | None = None) -> list[Tensor]:
    """Gradients of sum(grad_outputs[i] * outputs[i]) with respect to each tensor in `wrt`.

    A scalar output is seeded with 1; a non-scalar output needs its seed in `grad_outputs`
    (the vector of a vector-Jacobian product). Contributions over all paths are summed. A
    `wrt` tensor the outputs do not depend on gets zeros.

        >>> x1, x2 = Tensor(2.0), Tensor(3.0)
        >>> dx1, dx2 = grad(x1 * x2 + x1.sin(), [x1, x2])   # 3 + cos 2, 2
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    wrt = [wrt] if isinstance(wrt, Tensor) else list(wrt)
    seeds = _seeds(outputs, grad_outputs)

    order = toposort([t.node for t in outputs])
    # Only nodes that depend on some `wrt` need a gradient: a forward sweep marks them.
    needed = {t.node for t in wrt}
    for node in order:
        if any(inp in needed for inp in node.inputs):
            needed.add(node)

    grads: dict = {}
    for out, seed in zip(outputs, seeds):
        _accumulate(grads, out.node, seed)
    for node in reversed(order):
        if node.is_leaf or node not in grads or node not in needed:
            continue
        op = REGISTRY[node.op]
        inputs = [Tensor(node=n) for n in node.inputs]
        with name_scope(f"grad({node.scope or node.op})"):
            input_grads = op.vjp(grads[node], Tensor(node=node), *inputs, **node.attrs)
        if len(input_grads) != len(inputs):
            raise NnctlError(f"vjp of {op.name} returned {len(input_grads)} gradients "
                             f"for {len(inputs)} inputs")
        for inp, g in zip(node.inputs, input_grads):
            if g is None or inp not in needed:
                continue
            if g.shape != inp.aval.shape:
                raise NnctlError(f"vjp of {op.name} gave a gradient of shape {list(g.shape)} "
                                 f"for an input of shape {list(inp.aval.shape)}")
            _accumulate(grads, inp, g)

    return [grads[t.node] if t.node in grads else zeros_like(t) for t in wrt]


def leaf_gradients(output: Tensor, grad_output=None) -> dict:
    """{leaf node: gradient as a host array} for every leaf of `output`'s graph made with
    requires_grad=True: what Tensor.backward() stores in `.grad`."""
    leaves = [n for n in toposort([output.node]) if n.attrs.get("requires_grad")]
    grads = grad([output], [Tensor(node=n) for n in leaves],
                 None if grad_output is None else [grad_output])
    return {leaf: g.numpy() for leaf, g in zip(leaves, grads)}


set_backward(leaf_gradients)  # Tensor.backward() calls it; graph never imports autodiff


def zeros_like(t: Tensor) -> Tensor:
    return constant(0.0, t.dtype).broadcast_to(t.shape)


def _accumulate(grads: dict, node, g: Tensor) -> None:
    grads[node] = grads[node] + g if node in grads else g


def _seeds(outputs: list[Tensor], grad_outputs) -> list[Tensor]:
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    if len(grad_outputs) != len(outputs):
        raise NnctlError(f"got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    seeds = []
    for out, seed in zip(outputs, grad_outputs):
        if out.dtype not in FLOAT_DTYPES:
            raise NnctlError(f"cannot differentiate {out!r}: it is not a float tensor")
        if seed is None:
            if out.shape != ():
                raise NnctlError(f"output of shape {list(out.shape)} is not a scalar: "
                                 "pass its gradient in grad_outputs")
            seed = constant(1.0, out.dtype)
        elif not isinstance(seed, Tensor):
            seed = Tensor(seed, dtype=out.dtype)
        if seed.shape != out.shape:
            raise NnctlError(f"grad_output of shape {list(seed.shape)} does not match output "
                             f"of shape {list(out.shape)}")
        seeds.append(seed)
    return seeds
