"""What both exporters share: node numbering in topological order, kinds, and which part of
the step a node belongs to (forward, backward, the optimizer's update)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from nnctl.graph.ir import Graph, Node, toposort


@dataclass
class GraphView:
    graph: Graph
    ids: dict            # node -> small int, in topological order (diffable output)
    backward: set        # nodes that only the gradient computation needs
    output_names: list   # one name per graph output
    update: set = field(default_factory=set)  # the optimizer's nodes: after the gradients

    @classmethod
    def of(cls, outputs: dict[str, Node], forward: list[Node],
           trained: list[Node] | None = None) -> "GraphView":
        """`forward`: the nodes of the forward pass and loss; `trained`: with the optimizer's
        update drawn, what it reads (loss and gradients), so every node beyond them is
        the update's."""
        graph = Graph(list(outputs.values()))
        forward_nodes = set(toposort(forward))
        update = set() if trained is None else set(graph.nodes) - set(toposort(trained))
        backward = {n for n in graph.nodes if n not in forward_nodes and n not in update}
        return cls(graph, {n: i for i, n in enumerate(graph.nodes)}, backward, list(outputs),
                   update)

    @classmethod
    def of_graph(cls, graph: Graph, names: list[str], forward: list[Node]) -> "GraphView":
        """A view of `graph` as it is (nodes no output reads included: a pass's result before
        dead-code elimination), its outputs named by `names`."""
        forward_nodes = set(toposort(forward))
        backward = {n for n in graph.nodes if n not in forward_nodes}
        return cls(graph, {n: i for i, n in enumerate(graph.nodes)}, backward, list(names))


def kind(node: Node) -> str:
    return node.op if node.is_leaf else "op"


def style_of(view: GraphView, node: Node) -> str:
    """The drawing style: a leaf's kind, "op", "backward" for a gradient op, "update" for an
    op of the optimizer's update and "state" for the optimizer state it reads."""
    if node in view.update:
        if node.op == "input":
            return "state"
        return kind(node) if node.is_leaf else "update"
    return "backward" if node in view.backward and not node.is_leaf else kind(node)


def by_layer(view: GraphView, statement) -> tuple[dict[str, list[str]], list[str]]:
    """statement(node) for every node, grouped by the layer of its forward scope (clusters in
    first-seen order), and the rest (leaves outside layers, gradient ops) apart. The
    optimizer's update is one cluster per parameter (scope "adam/dense_0.weight"), its state
    inputs in it."""
    clusters: dict[str, list[str]] = {}
    body: list[str] = []
    for node in view.graph.nodes:
        if node in view.update:
            readers = view.graph.users[node]
            scope = node.scope or (readers[0].scope if readers else "")
        else:
            scope = node.scope.split("/")[0] if node.scope and node not in view.backward else ""
        (clusters.setdefault(scope, []) if scope else body).append(statement(node))
    return clusters, body


def plain(value):
    """Attributes as JSON-friendly values (tuples become lists, frozen attrs plain dicts, any
    other object, such as a fused node's program, its text)."""
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
