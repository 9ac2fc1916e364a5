"""Mixed precision as a graph transform: which ops compute in float16, which stay float32, and
`autocast`, which rewrites a float32 forward graph so, by inserting `cast` ops (nnctl/ops/cast.py).

The model is built in float32 as always; `autocast(roots)` then rewrites the forward graph
that computes `roots` (the model output, the layer-state updates) op by op after one table,
POLICY, and gives each root back in its own dtype. Reverse-mode AD over the rewritten graph
does the rest: a float16 matmul's vjp is float16 matmuls, and the vjp of the cast of a float32
master weight is the cast of its gradient back to float32. Layers know nothing of precision.

Why a transform and not a compute dtype threaded through the layers (Keras's layer policies):
one table in one module decides for every layer, present and future, and the float32 step is
untouched. It follows PyTorch autocast's lists and its widest-type rule, with Keras's autocast
variables for the weights:

    float16   the compute-bound ops, whose float16 kernels are the reason for all this
              (tensor cores): matmul and convolution. Their float inputs are cast down.
    float32   the float32 islands: what overflows, underflows or accumulates many terms in
              float16 (max 65504, 3 decimal digits): sums and means (batch-norm and
              layer-norm statistics: 3000 activations of 30 sum to inf in float16), softmax,
              log-softmax, logsumexp, the losses, exp, log, pow, sqrt, softplus. Their float
              inputs are cast up.
    follow    every other op (elementwise, movement, max, pooling): it runs in the widest
              dtype among its inputs that the policy has decided (float16 next to float32 is
              float32, PyTorch's promotion). Inputs the policy has not reached, leaves and
              what is computed from leaves alone (a parameter, a reshaped bias, a constant,
              a dropout mask, a padding mask), take that dtype: Keras's autocast variables,
              so that `x @ W + b` stays float16 instead of promoting on its float32 bias.

`where`'s condition keeps its dtype (a float condition means "nonzero", which a cast to
float16 could flush to zero). Integer and bool values are never cast. The step builder casts
the model output back to float32 and builds the loss on it, so the loss is float32 whatever
the table says (nnctl/step.py).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from nnctl.graph.ir import Node, toposort
from nnctl.graph.tensor import Tensor, apply
from nnctl.ops.registry import FLOAT_DTYPES, Aval

HALF, FLOAT32, FOLLOW = "half", "float32", "follow"

# op -> HALF or FLOAT32; every op not listed follows its inputs (FOLLOW)
POLICY: dict[str, str] = {
    # compute-bound: float16 kernels (cuBLAS / cuDNN accumulate in float32)
    **dict.fromkeys(("matmul", "conv2d", "conv2d_grad_input", "conv2d_grad_weight"), HALF),
    # accumulate many terms: a float16 sum overflows at 65504
    **dict.fromkeys(("sum", "mean", "logsumexp"), FLOAT32),
    # the loss's ops (the loss itself is built on the float32 output anyway)
    **dict.fromkeys(("softmax", "log_softmax", "cross_entropy", "softmax_xent_grad"),
                    FLOAT32),
    # overflow or lose the small end in float16 (exp(11.1) > 65504; log near 0)
    **dict.fromkeys(("exp", "log", "pow", "sqrt", "softplus"), FLOAT32),
    # a count (batch norm's n / (n - 1) for a symbolic batch): float16 holds integers
    # exactly up to 2048 and none past 65504; its input is the cast a mean made already
    "numel": FLOAT32,
}

# inputs an op reads for something other than their value, left in their own dtype
KEEP_DTYPE: dict[str, tuple[int, ...]] = {"where": (0,)}

COMPUTE_DTYPES = ("float16",)  # what `autocast` computes the HALF ops in (see docs)


def policy(op: str) -> str:
    """HALF, FLOAT32 or FOLLOW for an op name."""
    return POLICY.get(op, FOLLOW)


def _widest(dtypes) -> str:
    return max(dtypes, key=lambda d: Aval((), d).itemsize)


class _Autocast:
    """One rewrite: the new node of every old one, and the casts made (one per value and
    dtype, so a weight read by several ops, or at every step of an RNN, is cast once and its
    gradient cast back once)."""

    def __init__(self, compute: str):
        if compute not in COMPUTE_DTYPES:
            raise ValueError(f"mixed precision computes in {', '.join(COMPUTE_DTYPES)}, "
                             f"not {compute!r}")
        self.compute = compute
        self.new: dict[Node, Node] = {}
        self.decided: set[Node] = set()  # new nodes whose dtype the policy chose
        self.casts: dict[tuple[Node, str], Node] = {}

    def cast(self, node: Node, dtype: str, scope: str) -> Node:
        if node.aval.dtype == dtype:
            return node
        key = (node, dtype)
        if key not in self.casts:
            if node.op == "constant" and node.value is not None and \
                    not node.attrs.get("requires_grad"):  # (an eager leaf keeps its gradient)
                self.casts[key] = _restated(node, dtype)
            else:
                self.casts[key] = _make("cast", (node,), {"dtype": dtype}, scope=scope)
        return self.casts[key]

    def target(self, node: Node, floats: list[int], inputs: list[Node]) -> str | None:
        """The dtype `node` computes in, or None where the policy has not reached it."""
        kind = policy(node.op)
        if kind == HALF:
            return self.compute
        if kind == FLOAT32:
            return "float32"
        decided = [inputs[i].aval.dtype for i in floats if inputs[i] in self.decided]
        return _widest(decided) if decided else None

    def visit(self, node: Node) -> None:
        if node.is_leaf:
            self.new[node] = node
            return
        inputs = [self.new[i] for i in node.inputs]
        keep = KEEP_DTYPE.get(node.op, ())
        floats = [k for k, i in enumerate(inputs)
                  if i.aval.dtype in FLOAT_DTYPES and k not in keep]
        dtype = self.target(node, floats, inputs)
        if dtype is not None:
            for k in floats:
                inputs[k] = self.cast(inputs[k], dtype, node.scope)
        if all(a is b for a, b in zip(inputs, node.inputs)):
            new = node
        else:
            new = _make(node.op, inputs, node.attrs, name=node.name, scope=node.scope)
        self.new[node] = new
        if dtype is not None:
            self.decided.add(new)


def _restated(node: Node, dtype: str) -> Node:
    """A constant in another dtype, saturated at its finite range: the -1e9 of an attention
    mask is -65504 in float16 (which exp() still sends to 0), not -inf (which makes a fully
    masked row NaN, and which the trainer's search for the first non-finite op would
    report), so inf keeps meaning an overflow. A Python number stays a Python number."""
    import numpy as np

    top = float(np.finfo(dtype).max)
    value = node.value
    if isinstance(value, (int, float)):
        value = float(value) if math.isnan(value) else min(max(float(value), -top), top)
    else:
        value = value.clip(-top, top).astype(dtype)
    return Node("constant", (), node.attrs, Aval(node.aval.shape, dtype), name=node.name,
                scope=node.scope, value=value)


def _make(op: str, inputs, attrs, name: str = "", scope: str = "") -> Node:
    """The node op(*inputs, **attrs) named and scoped as given, computed at once where its
    inputs have values (eager tensors), as every Tensor op is."""
    node = apply(op, *(Tensor(node=i) for i in inputs), **attrs).node
    return dataclasses.replace(node, name=name, scope=scope)  # (the node made: held nowhere)


def autocast(roots: Sequence[Tensor], compute: str = "float16") -> list[Tensor]:
    """`roots` computed in mixed precision after POLICY, each given back in its own dtype
    (cast back where its last op computes in another). The graph is rewritten, not edited:
    the original nodes are untouched, and nodes the policy leaves as they are are shared."""
    rewrite = _Autocast(compute)
    for node in toposort([t.node for t in roots]):
        rewrite.visit(node)
    out = []
    for t in roots:
        new = rewrite.new[t.node]
        out.append(Tensor(node=rewrite.cast(new, t.dtype, t.node.scope)))
    return out


def dtypes_by_op(outputs: Sequence[Tensor]) -> dict[str, set[str]]:
    """op name -> the dtypes its nodes compute in, over the graph of `outputs` (what the
    tests and `nnctl explain`-like reports read to see the policy applied)."""
    seen: dict[str, set[str]] = {}
    for node in toposort([t.node for t in outputs]):
        if not node.is_leaf:
            seen.setdefault(node.op, set()).add(node.aval.dtype)
    return seen
