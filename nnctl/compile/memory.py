"""Liveness: when each value is last read, so the plan can drop it, and the peak it needs."""

from __future__ import annotations

from nnctl.graph.ir import Graph


def last_uses(graph: Graph, keep: set) -> dict:
    """node -> index of the last op node (in graph order) that reads it; nodes in `keep`
    (the outputs) and leaves are never released."""
    position = {node: i for i, node in enumerate(graph.nodes)}
    last = {}
    for node in graph.nodes:
        for inp in node.inputs:
            last[inp] = max(last.get(inp, -1), position[node])
    return {n: i for n, i in last.items() if n not in keep and not n.is_leaf}


def peak_bytes(graph: Graph, keep: set) -> int:
    """Bytes of op results alive at once at the worst point of one run (leaves excluded:
    inputs and parameters are resident anyway)."""
    release_at: dict[int, list] = {}
    for node, i in last_uses(graph, keep).items():
        release_at.setdefault(i, []).append(node)
    live = peak = 0
    for i, node in enumerate(graph.nodes):
        if not node.is_leaf:
            live += node.aval.nbytes
            peak = max(peak, live)
        for dead in release_at.get(i, ()):
            live -= dead.aval.nbytes
    return peak
