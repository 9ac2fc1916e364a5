"""The graph IR: immutable nodes with static shapes, and a Graph of the nodes that reach its outputs.

A node is a leaf (`input` fed per batch, `parameter` fed from the model's weights, `constant`
with a baked value, `random` drawn from the backend's RNG every run) or an op from the
registry applied to other nodes. Compile passes build new nodes instead of editing old ones.

A Node is immutable all the way down: its `attrs` are frozen at creation (a read-only mapping,
lists made tuples, dicts made `FrozenAttrs`), so they hash and compare by value, and a NumPy
`value` is kept as a read-only view (`node.value[...] = 0` raises). The view does not copy: an
array handed to `Tensor(array)` is still the caller's, and writing into it through another
name changes the constant (a CuPy value has no read-only flag and is not protected).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Sequence

from nnctl.ops.registry import Aval

LEAF_KINDS = ("input", "parameter", "constant", "random")

_ids = itertools.count()
_scope: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("scope", default=())


@contextlib.contextmanager
def name_scope(name: str) -> Iterator[None]:
    """Nodes created inside carry `name` in their scope, so errors and exports name the layer."""
    token = _scope.set(_scope.get() + (name,))
    try:
        yield
    finally:
        _scope.reset(token)


def current_scope() -> str:
    return "/".join(_scope.get())


def freeze(value):
    """`value` with every list and tuple made a tuple and every mapping a FrozenAttrs."""
    if isinstance(value, FrozenAttrs):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, Mapping):
        return FrozenAttrs(value)
    if isinstance(value, (set, frozenset)):
        return frozenset(freeze(v) for v in value)
    return value


class FrozenAttrs(Mapping):
    """A read-only, hashable mapping of op attributes: `attrs["axis"]`, `attrs.get(...)` and
    `**attrs` work as on a dict; assignment does not. Equal contents hash equal, which is what
    CSE keys on."""

    __slots__ = ("_items", "_hash")

    def __init__(self, items=()):
        self._items = {str(k): freeze(v) for k, v in dict(items).items()}
        self._hash = None

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        # NOTE: raises TypeError for an unhashable value (an array attribute); CSE skips those
        if self._hash is None:
            self._hash = hash(frozenset(self._items.items()))
        return self._hash

    def __repr__(self) -> str:
        return repr(self._items)


def _read_only(value):
    """A NumPy array as a read-only view (other values as they are)."""
    flags = getattr(value, "flags", None)
    if flags is not None and getattr(flags, "writeable", False) and hasattr(value, "view"):
        value = value.view()
        value.flags.writeable = False
    return value


@dataclass(frozen=True, eq=False)
class Node:
    """One value in the graph. Identity is the node object itself (hash by id). `attrs` is a
    FrozenAttrs and a NumPy `value` a read-only view, whatever was passed in."""

    op: str
    inputs: tuple[Node, ...]
    attrs: Mapping[str, Any]
    aval: Aval
    name: str = ""
    scope: str = ""
    value: Any = None  # constants; also eager results, so a Tensor made from data computes at once
    id: int = field(default_factory=lambda: next(_ids))

    def __post_init__(self):
        object.__setattr__(self, "attrs", freeze(self.attrs or {}))
        if self.value is not None:
            object.__setattr__(self, "value", _read_only(self.value))

    @property
    def is_leaf(self) -> bool:
        return self.op in LEAF_KINDS

    def with_inputs(self, inputs: Sequence[Node]) -> Node:
        return replace(self, inputs=tuple(inputs), id=next(_ids))

    def __repr__(self) -> str:
        label = self.name or self.op
        return f"<{label} #{self.id} {self.aval}>"


def toposort(outputs: Sequence[Node]) -> list[Node]:
    """Nodes reachable from `outputs`, every node after its inputs.

    Iterative (an unrolled RNN is deeper than Python's recursion limit) and deterministic:
    inputs are visited in order, so the same graph always sorts the same way.
    """
    order: list[Node] = []
    done: set[int] = set()
    for out in outputs:
        stack = [(out, False)]
        while stack:
            node, expanded = stack.pop()
            if node.id in done:
                continue
            if expanded:
                done.add(node.id)
                order.append(node)
                continue
            stack.append((node, True))
            for inp in reversed(node.inputs):
                if inp.id not in done:
                    stack.append((inp, False))
    return order


class Graph:
    """The nodes that compute `outputs`, in topological order, with each node's users.

    `Graph(outputs)` holds exactly the nodes that reach the outputs. A pass that rewrites a
    graph passes `nodes` too (every node it built, in topological order), so nodes that a
    rewrite left without users stay until `eliminate_dead_code` removes them and counts them.
    """

    def __init__(self, outputs: Sequence[Node], nodes: Sequence[Node] | None = None):
        self.outputs: tuple[Node, ...] = tuple(outputs)
        if nodes is None:
            self.nodes: tuple[Node, ...] = tuple(toposort(self.outputs))
        else:
            self.nodes = tuple(nodes)
            seen: set[Node] = set()
            for node in self.nodes:
                if node in seen or any(i not in seen for i in node.inputs):
                    raise ValueError(f"{node!r} is repeated or comes before one of its inputs")
                seen.add(node)
            missing = [o for o in self.outputs if o not in seen]
            if missing:
                raise ValueError(f"outputs {missing} are not among the nodes")

    @functools.cached_property
    def users(self) -> dict[Node, list[Node]]:
        """node -> the nodes that read it, each listed once, in graph order."""
        users: dict[Node, list[Node]] = {n: [] for n in self.nodes}
        for node in self.nodes:
            for inp in dict.fromkeys(node.inputs):
                users[inp].append(node)
        return users

    @property
    def op_nodes(self) -> list[Node]:
        return [n for n in self.nodes if not n.is_leaf]

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        return f"<Graph {len(self.nodes)} nodes, {len(self.outputs)} outputs>"
