"""Elementwise fusion: connected elementwise ops become one "fused" node, run as one kernel.

`fuse_elementwise(graph)` groups elementwise nodes (Op.kind == "elementwise" with a `scalar`
lowering) greedily from the outputs back: a node joins its users' group when all its users
are in that one group and it is not a graph output; otherwise it starts a group of its own.
A group of two or more becomes one node `fused(*external inputs)` whose attrs hold a
`Program` (kernels/expr.py): the statements from each op's `scalar` lowering, in graph order,
reading the external inputs x0, x1, ... and the 0-d float constants as literals. Inputs may
broadcast against the output (a bias row, a [B, 1] per-row scalar, a 0-d scalar, a
per-channel [1, C, 1, 1]); the program records, per input, the output dims it varies along.
The fused node keeps the aval, name and scope of the group's output node. A lone elementwise
op stays as it is.

"fused" is not a registry op: the plan asks `fused_kernel(node, xp)` for its kernel.
"""

from __future__ import annotations

import contextlib
import contextvars
import math

from nnctl.compile.kernels import make_kernel
from nnctl.compile.kernels.expr import Program, lit
from nnctl.graph.ir import Graph, Node
from nnctl.ops.registry import ELEMENTWISE, FLOAT_DTYPES, REGISTRY

FUSED = "fused"


# float16 (mixed precision's compute dtype, nnctl/graph/precision.py) is fused only for the
# GPU (`half_fusion`, which compile_graph enters for CUDA), whose generator computes a
# float16 chain in float32 registers and rounds once (kernels/cuda.py, as PyTorch's fused
# kernels do). On the CPU numba has no half type, so float16 ops run as their own ufuncs.
FUSED_DTYPES = tuple(d for d in FLOAT_DTYPES if d != "float16")
_HALF = contextvars.ContextVar("nnctl_fuse_float16", default=False)


@contextlib.contextmanager
def half_fusion(enabled: bool = True):
    """Inside it, float16 elementwise chains fuse too (for a backend that generates them)."""
    token = _HALF.set(bool(enabled))
    try:
        yield
    finally:
        _HALF.reset(token)


def fusable(node: Node) -> bool:
    """An elementwise op node with a scalar lowering, a float32 or float64 result (float16
    inside half_fusion) and no float input of another dtype (where's condition), so that
    a group computes in one dtype."""
    if node.is_leaf or node.op not in REGISTRY:
        return False
    op = REGISTRY[node.op]
    dtype = node.aval.dtype
    dtypes = FUSED_DTYPES + (("float16",) if _HALF.get() else ())
    return (op.kind == ELEMENTWISE and callable(getattr(op, "scalar", None))
            and dtype in dtypes
            and all(i.aval.dtype == dtype for i in node.inputs
                    if i.aval.dtype in FLOAT_DTYPES))


def _literal(node: Node) -> str | None:
    """A 0-d float constant as a literal of the expression language, else None."""
    if node.op != "constant" or node.aval.shape != () or node.aval.dtype not in FLOAT_DTYPES:
        return None
    try:
        value = float(node.value)
    except (TypeError, ValueError):
        return None
    return lit(value) if math.isfinite(value) else None


def groups(graph: Graph) -> dict[Node, list[Node]]:
    """The fusion groups of `graph`: output node -> its members in graph order (the output
    last), groups of one included."""
    users, outputs = graph.users, set(graph.outputs)
    root: dict[Node, Node] = {}
    for node in reversed(graph.nodes):
        if not fusable(node):
            continue
        roots = {root.get(u) for u in users[node]}
        if node not in outputs and len(roots) == 1 and None not in roots:
            root[node] = roots.pop()  # every user is in one group: join it
        else:
            root[node] = node
    members: dict[Node, list[Node]] = {}
    for node in graph.nodes:
        if node in root:
            members.setdefault(root[node], []).append(node)
    return members


def program_of(members: list[Node]) -> tuple[Program, list[Node]]:
    """The Program of one group (members in graph order, output last) and its external
    inputs in the order of the program's x0, x1, ..."""
    out = members[-1]
    names: dict[Node, str] = {}
    inputs: list[Node] = []
    index: dict[Node, int] = {}
    body = []
    for i, node in enumerate(members):
        args = []
        for inp in node.inputs:
            if inp in names:
                args.append(names[inp])
                continue
            literal = _literal(inp)
            if literal is not None:
                args.append(literal)
                continue
            if inp not in index:
                index[inp] = len(inputs)
                inputs.append(inp)
            args.append(f"x{index[inp]}")
        names[node] = f"t{i}"
        body.append((names[node], REGISTRY[node.op].scalar(*args, **node.attrs)))
    ndim = len(out.aval.shape)
    masks = []
    for inp in inputs:
        shape = inp.aval.shape
        lead = ndim - len(shape)
        masks.append(tuple(d >= lead and shape[d - lead] != 1 for d in range(ndim)))
    program = Program(input_dtypes=tuple(i.aval.dtype for i in inputs),
                      input_masks=tuple(masks), body=tuple(body), result=names[out],
                      dtype=out.aval.dtype, ndim=ndim, ops=tuple(n.op for n in members))
    return program, inputs


def fuse_elementwise(graph: Graph) -> Graph:
    """Replace each group of two or more connected elementwise nodes by one fused node."""
    fused = {r: m for r, m in groups(graph).items() if len(m) > 1}
    if not fused:
        return graph
    interior = {n for r, m in fused.items() for n in m if n is not r}
    mapping: dict[Node, Node] = {}
    nodes: list[Node] = []
    for node in graph.nodes:
        if node in interior:
            continue
        if node in fused:
            program, inputs = program_of(fused[node])
            new = Node(FUSED, tuple(mapping[i] for i in inputs), {"program": program},
                       node.aval, name=node.name, scope=node.scope)
        else:
            inputs = tuple(mapping[i] for i in node.inputs)
            changed = any(a is not b for a, b in zip(inputs, node.inputs))
            new = node.with_inputs(inputs) if changed else node
        mapping[node] = new
        nodes.append(new)
    return Graph([mapping[o] for o in graph.outputs], nodes)


_kernels: dict = {}


def fused_kernel(node: Node, xp):
    """The kernel of a fused node: `kernel(out, *input_arrays) -> out`, writing into `out`
    (C-contiguous, of the node's shape at run time), or allocating it when `out` is None.
    Generated with numba when xp is NumPy and the JIT is on, else ufunc calls on xp; one
    kernel per distinct program, shared by every node that runs it."""
    from nnctl import jit
    program = node.attrs["program"]
    key = (program, getattr(xp, "__name__", id(xp)), jit.enabled())
    kernel = _kernels.get(key)
    if kernel is None:
        kernel = _kernels[key] = make_kernel(program, xp)
    return kernel
