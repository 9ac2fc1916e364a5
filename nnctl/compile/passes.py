"""Graph -> Graph passes over the whole training step, run in the order of `PASSES`.

Each pass builds new nodes rather than editing old ones, and is tested on its own.
"""

from __future__ import annotations

from typing import Callable

from nnctl.graph.ir import Graph, Node


def rewrite(graph: Graph, visit: Callable[[Node], Node]) -> Graph:
    """Rebuild `graph` bottom-up: each node gets its rewritten inputs, then `visit` may replace it."""
    mapping: dict[Node, Node] = {}
    for node in graph.nodes:
        inputs = tuple(mapping[i] for i in node.inputs)
        if any(a is not b for a, b in zip(inputs, node.inputs)):
            node_ = node.with_inputs(inputs)
        else:
            node_ = node
        mapping[node] = visit(node_)
    return Graph([mapping[o] for o in graph.outputs])


def fold_constants(graph: Graph) -> Graph:
    """An op whose inputs are all constants was already computed when it was built (eager
    evaluation); keep that value as a constant leaf instead of recomputing it every step."""
    def visit(node: Node) -> Node:
        if node.is_leaf or node.value is None:
            return node
        return Node("constant", (), {}, node.aval, name=node.name, scope=node.scope,
                    value=node.value)
    return rewrite(graph, visit)


def _key(node: Node):
    if node.op == "constant":
        if node.aval.shape != () or node.attrs:
            return None  # array constants: comparing values costs more than it saves
        return ("constant", node.aval.dtype, repr(node.value))  # repr keeps -0.0 apart from 0.0
    if node.is_leaf:
        return None  # inputs, parameters and random draws are distinct by identity
    return (node.op, tuple(i.id for i in node.inputs), repr(sorted(node.attrs.items())))


def eliminate_common_subexpressions(graph: Graph) -> Graph:
    """Merge nodes that compute the same op on the same inputs with the same attributes
    (vjps recompute things the forward pass has, such as softmax inside cross-entropy)."""
    seen: dict = {}

    def visit(node: Node) -> Node:
        key = _key(node)
        if key is None:
            return node
        return seen.setdefault(key, node)
    return rewrite(graph, visit)


def eliminate_dead_code(graph: Graph) -> Graph:
    """Keep only what reaches an output. A Graph is built by walking back from its outputs,
    so rebuilding it drops every node that earlier passes left unused."""
    return Graph(graph.outputs)


PASSES: tuple[Callable[[Graph], Graph], ...] = (
    fold_constants,
    eliminate_common_subexpressions,
    eliminate_dead_code,
)


def run_passes(graph: Graph, passes=PASSES) -> tuple[Graph, list[tuple[str, int, int]]]:
    """Apply `passes` in order; also return (pass name, nodes before, nodes after) for each."""
    stats = []
    for p in passes:
        before = len(graph)
        graph = p(graph)
        stats.append((p.__name__, before, len(graph)))
    return graph, stats
