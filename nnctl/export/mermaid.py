"""The graph as Mermaid (a flowchart docs render as a picture): ops or whole layers, the
node kinds as classes with the DOT export's colours, forward nodes grouped by layer."""

from __future__ import annotations

from nnctl.export.graph_view import GraphView, by_layer, style_of

COLOURS = {"input": "#E0E0E0", "parameter": "#ADD8E6", "constant": "#F5F5F5",
           "random": "#FFF3C4", "op": "#C9DAF8", "backward": "#FCE5CD", "update": "#D9D2E9",
           "state": "#D9D2E9", "output": "#D9EAD3", "layer": "#C9DAF8"}


def _text(text: str) -> str:
    return text.replace('"', "'").replace("\n", "<br/>")


def _classes() -> list[str]:
    return [f"  classDef {k} fill:{c},stroke:#555555" for k, c in COLOURS.items()]


def to_mermaid(view: GraphView, title: str = "nnctl") -> str:
    lines = [f"%% {title}: the training graph (nnctl export-graph --format mermaid)",
             "flowchart TB"]
    def statement(node) -> str:
        label = node.name or node.op
        if node.op == "constant":
            v = node.value
            label = f"{v:g}" if isinstance(v, float) else "const"
        return (f'  n{view.ids[node]}["{_text(label)}<br/>{list(node.aval.shape)}"]'
                f":::{style_of(view, node)}")
    clusters, body = by_layer(view, statement)
    for k, (scope, stmts) in enumerate(clusters.items()):
        lines.append(f'  subgraph c{k}["{_text(scope)}"]')
        lines.extend("  " + s for s in stmts)
        lines.append("  end")
    lines.extend(body)
    for node in view.graph.nodes:
        for inp in node.inputs:
            lines.append(f"  n{view.ids[inp]} --> n{view.ids[node]}")
    for k, (name, node) in enumerate(zip(view.output_names, view.graph.outputs)):
        lines.append(f'  out{k}(["{_text(name)}"]):::output')
        lines.append(f"  n{view.ids[node]} --> out{k}")
    return "\n".join(lines + _classes()) + "\n"


def layers_to_mermaid(layers: list[dict], title: str = "nnctl") -> str:
    """One box per layer (name, type, output shape, parameters) from `layer_rows`."""
    lines = [f"%% {title}: the model's layers (nnctl export-graph --level layers)",
             "flowchart TB"]
    names = {}
    for k, row in enumerate(layers):
        names[row["name"]] = f"l{k}"
        label = f"{row['name']}: {row['type']}<br/>{row['shape']}"
        if row["params"]:
            label += f"<br/>{row['params']:,} params"
        style = "input" if row["type"] == "input" else "layer"
        lines.append(f'  l{k}["{_text(label)}"]:::{style}')
    for row in layers:
        for src in row["inputs"]:
            lines.append(f"  {names[src]} --> {names[row['name']]}")
    return "\n".join(lines + _classes()) + "\n"
