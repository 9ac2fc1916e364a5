"""Graph -> Graph passes over the whole training step, run in the order of `PASSES`.

Each pass builds new nodes rather than editing old ones, keeps every node's aval, and is
tested on its own for unchanged results and for its effect (tests/compile/test_passes.py).
Rewrites leave the nodes they bypass in the graph; `eliminate_dead_code` removes them, so the
node counts per pass say what each one did.

    fold_constants              ops whose inputs are all constants become one constant
    simplify_algebra            x*1, x+0, neg(neg x), transpose/reshape chains, broadcasts ...
    join_slice_gradients        (scatter.py) the gradients of a value's slices as one concat
    batch_weight_gradients      (gemm.py) sums of a_i^T @ b_i as one GEMM
    share_conv_columns          (conv_columns.py) conv2d and its weight gradient on one im2col
    stabilize_numerics          log(sigmoid x) -> -softplus(-x), log(softmax) -> log_softmax ...
    eliminate_common_subexpressions   same op, same inputs, same attrs: computed once
    eliminate_dead_code         drop what no output needs
    fuse_elementwise            (nnctl/compile/fusion.py, when present) elementwise chains
"""

from __future__ import annotations

import importlib.util
from typing import Callable, NamedTuple

from nnctl.compile.conv_columns import share_conv_columns
from nnctl.compile.gemm import batch_weight_gradients
from nnctl.compile.numerics import stabilize_numerics
from nnctl.compile.scatter import join_slice_gradients
from nnctl.compile.rewrite import (SMALL_CONSTANT, Rewrite, collect_rewrites, constant_value,
                                   host, note, rewrite)
from nnctl.compile.simplify import simplify_algebra
from nnctl.graph.ir import Graph, Node
from nnctl.ops.registry import REGISTRY

# An op on constants is not folded when its result would be bigger than this many elements
# and bigger than its inputs: a baked array costs memory and transfer every plan, while
# computing it from small constants costs one cheap kernel.
FOLD_LIMIT = 4096


def _folded(node: Node, inputs: tuple[Node, ...]):
    """The value of `node` computed from its constant inputs on the host (NumPy)."""
    import numpy as np

    value = constant_value(node)
    if value is None:
        args = [host(i.value) for i in inputs]
        value = REGISTRY[node.op].forward(np, *args, **node.attrs)
    value = np.asarray(value, dtype=node.aval.dtype)
    # NOTE: scalars stay Python numbers, like `constant()` makes them (backend-neutral)
    return value.item() if value.shape == () else value


def fold_constants(graph: Graph) -> Graph:
    """Replace every op whose inputs are all constants by a constant leaf, transitively (a
    whole constant subgraph becomes one constant). Its value is the eager one when the node
    has it, else computed once here with NumPy. `broadcast_to` is never folded: a broadcast
    scalar is a view at run time, and baking it would store the whole array; nor is an op whose
    result is much bigger than its inputs (FOLD_LIMIT)."""
    def visit(node: Node, ctx: Rewrite) -> Node:
        if node.is_leaf or node.op == "broadcast_to" or \
                not all(i.op == "constant" for i in node.inputs):
            return node
        size = node.aval.size
        if not isinstance(size, int) or (
                size > FOLD_LIMIT and size > sum(i.aval.size for i in node.inputs)):
            return node
        note(f"fold {node.op}", node)
        return Node("constant", (), {}, node.aval, name=node.name, scope=node.scope,
                    value=_folded(node, node.inputs))
    return rewrite(graph, visit)


# Ops whose result does not depend on the order of their two inputs (bitwise, in IEEE).
COMMUTATIVE = frozenset({"add", "mul", "maximum", "minimum"})


def cse_key(node: Node):
    """A hashable key that two nodes share exactly when they compute the same value, or None
    for a node that is never merged (inputs, parameters, random draws, big constants)."""
    if node.op == "constant":
        if node.attrs or not isinstance(node.aval.size, int) or node.aval.size > SMALL_CONSTANT:
            return None  # requires_grad leaves are distinct; big arrays cost more to compare
        import numpy as np
        # NOTE: compared as bytes: keeps -0.0 apart from 0.0 and merges equal NaNs
        raw = np.asarray(host(node.value), dtype=node.aval.dtype).tobytes()
        return ("constant", node.aval.dtype, node.aval.shape, raw)
    if node.is_leaf:
        return None
    ids = tuple(i.id for i in node.inputs)
    if node.op in COMMUTATIVE:
        ids = tuple(sorted(ids))
    try:
        hash(node.attrs)
    except TypeError:  # an unhashable attribute value (an array): never merged
        return None
    return (node.op, ids, node.attrs)


def eliminate_common_subexpressions(graph: Graph) -> Graph:
    """Merge nodes that compute the same op on the same inputs with the same attributes
    (vjps recompute what the forward pass has, such as the transposed weights of an unrolled
    RNN), and equal small constants. Keys are canonical values (frozen attrs, constant bytes),
    never reprs; `add` and `mul` match with their inputs swapped."""
    seen: dict = {}

    def visit(node: Node, ctx: Rewrite) -> Node:
        key = cse_key(node)
        if key is None:
            return node
        first = seen.setdefault(key, node)
        if first is not node:
            note(f"merge {node.op}", node)
        return first
    return rewrite(graph, visit)


def eliminate_dead_code(graph: Graph) -> Graph:
    """Keep only the nodes some output needs: walking backwards, a node is live if it is an
    output or one of its users is live. Removes what the rewrites before it bypassed."""
    users = graph.users
    live = set(graph.outputs)
    for node in reversed(graph.nodes):
        if node not in live and any(u in live for u in users[node]):
            live.add(node)
    return Graph(graph.outputs, [n for n in graph.nodes if n in live])


PASSES: tuple[Callable[[Graph], Graph], ...] = (
    fold_constants,
    simplify_algebra,
    join_slice_gradients,
    batch_weight_gradients,
    share_conv_columns,
    stabilize_numerics,
    eliminate_common_subexpressions,
    eliminate_dead_code,
)

# ---- the slot for elementwise fusion -------------------------------------------------------
# `fuse_elementwise(graph) -> Graph` lives in nnctl/compile/fusion.py and runs last, on the
# cleaned graph. Imported only when the module exists, so a checkout without it still compiles;
# fusion.py should take its helpers from nnctl.compile.rewrite (not from here: no cycle).
if importlib.util.find_spec("nnctl.compile.fusion") is not None:
    from nnctl.compile import fusion as _fusion

    if hasattr(_fusion, "fuse_elementwise"):
        PASSES = PASSES + (_fusion.fuse_elementwise,)


class PassStat(NamedTuple):
    """What one pass did: node counts and bytes of op results before and after, and the
    (pattern, scope) rewrites it noted ("fold exp", "merge matmul", "x*1", ...)."""

    name: str
    nodes_before: int
    nodes_after: int
    bytes_before: int
    bytes_after: int
    rewrites: tuple[tuple[str, str], ...] = ()


def result_bytes(graph: Graph) -> int:
    """Sum of the sizes of all op results (leaves excluded): what running the graph writes."""
    total = 0
    for node in graph.nodes:
        if not node.is_leaf:
            n = node.aval.nbytes
            total += n if isinstance(n, int) else 0  # a symbolic size is not counted
    return total


def run_passes(graph: Graph, passes=PASSES,
               on_stage: Callable[[str, Graph], None] | None = None
               ) -> tuple[Graph, list[PassStat]]:
    """Apply `passes` in order; also return one PassStat per pass. `on_stage(name, graph)` is
    called with the input graph ("input") and after each pass (export-graph --passes)."""
    stats = []
    if on_stage is not None:
        on_stage("input", graph)
    for p in passes:
        before, bytes_before = len(graph), result_bytes(graph)
        with collect_rewrites() as log:
            graph = p(graph)
        stats.append(PassStat(p.__name__, before, len(graph), bytes_before, result_bytes(graph),
                              tuple(log)))
        if on_stage is not None:
            on_stage(p.__name__, graph)
    return graph, stats
