"""The graph as JSON for other tools; docs/export.md gives the schema."""

from __future__ import annotations

import json

from nnctl.export.graph_view import GraphView, kind, plain

FORMAT_VERSION = 1


def to_json(view: GraphView, title: str = "nnctl", **meta) -> str:
    nodes = []
    for node in view.graph.nodes:
        entry = {
            "id": view.ids[node],
            "kind": kind(node),
            "op": node.op,
            "name": node.name,
            "scope": node.scope,
            "shape": list(node.aval.shape),
            "dtype": node.aval.dtype,
            "attrs": plain(node.attrs),
            "inputs": [view.ids[i] for i in node.inputs],
            "backward": node in view.backward,
            "update": node in view.update,
        }
        if node.op == "constant" and isinstance(node.value, (int, float)):
            entry["value"] = node.value
        nodes.append(entry)
    edges = [[view.ids[i], view.ids[n]] for n in view.graph.nodes for i in n.inputs]
    outputs = [{"name": name, "id": view.ids[node]}
               for name, node in zip(view.output_names, view.graph.outputs)]
    doc = {"format": "nnctl-graph", "version": FORMAT_VERSION, "title": title, **meta,
           "nodes": nodes, "edges": edges, "outputs": outputs}
    return json.dumps(doc, indent=1) + "\n"
