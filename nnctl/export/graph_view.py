"""What both exporters share: node numbering in topological order, kinds, forward/backward."""

from __future__ import annotations

from dataclasses import dataclass

from nnctl.graph.ir import Graph, Node, toposort


@dataclass
class GraphView:
    graph: Graph
    ids: dict            # node -> small int, in topological order (diffable output)
    backward: set        # nodes that only the gradient computation needs
    output_names: list   # one name per graph output

    @classmethod
    def of(cls, outputs: dict[str, Node], forward: list[Node]) -> "GraphView":
        graph = Graph(list(outputs.values()))
        forward_nodes = set(toposort(forward))
        backward = {n for n in graph.nodes if n not in forward_nodes}
        return cls(graph, {n: i for i, n in enumerate(graph.nodes)}, backward, list(outputs))


def kind(node: Node) -> str:
    return node.op if node.is_leaf else "op"


def plain(value):
    """Attributes as JSON-friendly values (tuples become lists)."""
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value
