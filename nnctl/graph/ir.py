"""The graph IR: immutable nodes with static shapes, and a Graph of the nodes that reach its outputs.

A node is a leaf (`input` fed per batch, `parameter` fed from the model's weights, `constant`
with a baked value, `random` drawn from the backend's RNG every run) or an op from the
registry applied to other nodes. Compile passes build new nodes instead of editing old ones.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
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


@dataclass(frozen=True, eq=False)
class Node:
    """One value in the graph. Identity is the node object itself (hash by id)."""

    op: str
    inputs: tuple[Node, ...]
    attrs: dict[str, Any]
    aval: Aval
    name: str = ""
    scope: str = ""
    value: Any = None  # constants; also eager results, so a Tensor made from data computes at once
    id: int = field(default_factory=lambda: next(_ids))

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
    """The nodes that reach `outputs`, in topological order, with each node's users.

    Building a Graph from its outputs is itself dead-code elimination: nothing that does not
    reach an output is ever visited.
    """

    def __init__(self, outputs: Sequence[Node]):
        self.outputs: tuple[Node, ...] = tuple(outputs)
        self.nodes: tuple[Node, ...] = tuple(toposort(self.outputs))
        self.users: dict[Node, list[Node]] = {n: [] for n in self.nodes}
        for node in self.nodes:
            for inp in node.inputs:
                if node not in self.users[inp]:
                    self.users[inp].append(node)

    def leaves(self, kind: str) -> list[Node]:
        return [n for n in self.nodes if n.op == kind]

    @property
    def op_nodes(self) -> list[Node]:
        return [n for n in self.nodes if not n.is_leaf]

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        return f"<Graph {len(self.nodes)} nodes, {len(self.outputs)} outputs>"
