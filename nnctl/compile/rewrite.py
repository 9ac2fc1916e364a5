"""The machinery every Graph -> Graph pass shares: a bottom-up rewrite that keeps node order,
new-node construction through the op's own `infer`, constant inspection, and the log of what
a pass rewrote (pattern, layer scope).

A rewrite never changes what a node computes as seen from outside: its replacement has the
same aval (shape and dtype), and `rewrite` asserts it.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator

from nnctl.graph.ir import Graph, Node
from nnctl.ops.registry import REGISTRY

# (pattern, scope) pairs noted by the passes while a `collect_rewrites()` block is open.
_log: contextvars.ContextVar[list | None] = contextvars.ContextVar("rewrites", default=None)

# Array constants up to this many elements are inspected (is it all ones?) and compared by
# value in CSE; bigger ones cost more to compare than merging them saves.
SMALL_CONSTANT = 1024


def note(pattern: str, node: Node) -> None:
    """Record that `pattern` was rewritten at `node` (its layer scope is what is reported)."""
    log = _log.get()
    if log is not None:
        log.append((pattern, node.scope))


@contextlib.contextmanager
def collect_rewrites() -> Iterator[list[tuple[str, str]]]:
    """Collect the (pattern, scope) pairs that passes note inside the block.

        >>> with collect_rewrites() as log:
        ...     graph = stabilize_numerics(graph)
        >>> log   # [("log(softmax(x)) -> log_softmax(x)", "head"), ...]
    """
    log: list[tuple[str, str]] = []
    token = _log.set(log)
    try:
        yield log
    finally:
        _log.reset(token)


class Rewrite:
    """What a visit function sees besides the node: whether a node has a single reader."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.origin: dict[Node, Node] = {}  # rebuilt node -> the node of `graph` it stands for
        self.outputs = set(graph.outputs)
        self._live_users: dict | None = None

    def single_use(self, node: Node) -> bool:
        """Whether `node` has exactly one reader (an output counts as a reader), so a rule
        that absorbs it leaves it dead instead of computing it twice. A node built during
        this rewrite is not known yet: False (the next sweep sees it)."""
        old = self.origin.get(node)
        if old is None:
            return False
        return len(self.live_users.get(old, ())) + (old in self.outputs) == 1

    @property
    def live_users(self) -> dict:
        """node -> its readers that the outputs still depend on: an earlier sweep leaves the
        nodes it bypassed in the graph (DCE removes them later), and they read nothing that
        counts."""
        if self._live_users is None:
            live, stack = set(), list(self.graph.outputs)
            while stack:
                node = stack.pop()
                if node not in live:
                    live.add(node)
                    stack.extend(node.inputs)
            self._live_users = {n: [u for u in us if u in live]
                                for n, us in self.graph.users.items()}
        return self._live_users


def rewrite(graph: Graph, visit: Callable[[Node, Rewrite], Node]) -> Graph:
    """Rebuild `graph` bottom-up: each node gets its rewritten inputs, then `visit` may return a
    replacement (same aval; new nodes it built are added in topological order).

    Every rebuilt node is kept, in the original order, even when nothing reads it any more:
    removing those is `eliminate_dead_code`'s job, which then counts them.
    """
    ctx = Rewrite(graph)
    mapping: dict[Node, Node] = {}
    kept: dict[Node, None] = {}  # insertion-ordered set

    def keep(root: Node) -> None:
        stack = [(root, False)]
        while stack:  # NOTE: iterative; only nodes a visit just built are walked
            node, expanded = stack.pop()
            if node in kept:
                continue
            if expanded:
                kept[node] = None
                continue
            stack.append((node, True))
            stack.extend((i, False) for i in reversed(node.inputs) if i not in kept)

    for node in graph.nodes:
        inputs = tuple(mapping[i] for i in node.inputs)
        new = node if inputs == node.inputs else node.with_inputs(inputs)
        ctx.origin[new] = node
        out = visit(new, ctx)
        if out is not new:
            assert out.aval == node.aval, (
                f"a rewrite changed {node!r} ({node.scope}) into {out!r}: avals differ")
        mapping[node] = out
        keep(out)
    return Graph([mapping[o] for o in graph.outputs], list(kept))


def make(op: str, inputs: tuple[Node, ...] | list[Node], like: Node, **attrs) -> Node:
    """A new `op` node on `inputs`, its aval from the op's `infer`, in `like`'s layer scope."""
    aval = REGISTRY[op].infer(*(i.aval for i in inputs), **attrs)
    return Node(op, tuple(inputs), attrs, aval, scope=like.scope)


def host(value):
    """A constant's value on the host (CuPy arrays are copied back)."""
    return value.get() if hasattr(value, "get") else value


def constant_value(node: Node):
    """The value of a constant, or of an op computed eagerly from constants; else None."""
    if node.op == "constant" or (not node.is_leaf and node.value is not None):
        return host(node.value)
    return None


def scalar_of(node: Node) -> float | None:
    """The one number every element of `node` holds, when that is known before running: a
    constant (or eager value) whose elements are all equal, seen through broadcast_to."""
    import numpy as np

    while node.op == "broadcast_to":
        node = node.inputs[0]
    value = constant_value(node)
    if value is None or not isinstance(node.aval.size, int) or node.aval.size > SMALL_CONSTANT \
            or node.aval.size == 0:
        return None
    flat = np.asarray(value).reshape(-1)
    first = flat[0]
    if not (flat == first).all():
        return None
    return first.item()


def is_scalar(node: Node, number: float) -> bool:
    value = scalar_of(node)
    return value is not None and value == number


# A rule looks at one node (its inputs already rewritten) and returns (pattern, replacement)
# or None. Rules are grouped by the op of the node they match.
Rule = Callable[[Node, Rewrite], "tuple[str, Node] | None"]


def apply_rules(graph: Graph, rules: dict[str, list[Rule]], sweeps: int = 4) -> Graph:
    """Rewrite `graph` bottom-up with `rules` (op name -> rules) until none fires. A node a
    rule built is matched again at once, so chains collapse in one sweep; another sweep runs
    only when something fired (a bypassed node's readers changed)."""
    for _ in range(sweeps):
        fired = False

        def visit(node: Node, ctx: Rewrite) -> Node:
            nonlocal fired
            for _ in range(16):  # a bound, not a budget: each rule makes the graph smaller
                hit = None
                for rule in rules.get(node.op, ()):
                    hit = rule(node, ctx)
                    if hit is not None:
                        break
                if hit is None:
                    return node
                pattern, replacement = hit
                note(pattern, node)
                fired = True
                node = replacement
            return node
        graph = rewrite(graph, visit)
        if not fired:
            break
    return graph
