"""The graph as Graphviz DOT: one node per op labelled with op and output shape; inputs,
parameters, constants, gradient ops and the optimizer's update styled apart; forward nodes
grouped by layer."""

from __future__ import annotations

from nnctl.export.graph_view import GraphView, by_layer, style_of

STYLE = {
    "input": 'shape=ellipse, style=filled, fillcolor="#E0E0E0"',
    "parameter": 'shape=box, style="filled,rounded", fillcolor="#ADD8E6"',
    "constant": 'shape=plaintext, fontcolor="#606060"',
    "random": 'shape=ellipse, style="filled,dashed", fillcolor="#FFF3C4"',
    "op": 'shape=box, style=filled, fillcolor="#C9DAF8"',
    "backward": 'shape=box, style=filled, fillcolor="#FCE5CD"',
    "update": 'shape=box, style=filled, fillcolor="#D9D2E9"',
    "state": 'shape=ellipse, style=filled, fillcolor="#D9D2E9"',
    "output": 'shape=doubleoctagon, style=filled, fillcolor="#D9EAD3"',
    "layer": 'shape=box, style="filled,rounded", fillcolor="#C9DAF8"',
}


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped + '"'


def _label(node, shape_text: str) -> str:
    if node.op == "constant":
        v = node.value
        return f"{v:g}" if isinstance(v, float) else (str(v) if isinstance(v, int) else
                                                       f"const {shape_text}")
    title = node.name or node.op
    if node.op == "random":
        title = f"bernoulli p={node.attrs['p']:g}"
    return f"{title}\n{shape_text}"


def to_dot(view: GraphView, title: str = "nnctl") -> str:
    lines = [f"digraph {_quote(title)} {{", "  rankdir=TB;",
             '  node [fontname="Helvetica", fontsize=10];',
             '  edge [color="#555555", arrowsize=0.6];']
    def statement(node) -> str:
        shape_text = "[" + ", ".join(map(str, node.aval.shape)) + "]"
        return (f"  n{view.ids[node]} [label={_quote(_label(node, shape_text))}, "
                f"{STYLE[style_of(view, node)]}];")
    clusters, body = by_layer(view, statement)
    for k, (scope, stmts) in enumerate(clusters.items()):
        lines.append(f"  subgraph cluster_{k} {{")
        lines.append(f"    label={_quote(scope)}; style=rounded; color=\"#999999\";")
        lines.extend("  " + s for s in stmts)
        lines.append("  }")
    lines.extend(body)
    for node in view.graph.nodes:
        for inp in node.inputs:
            lines.append(f"  n{view.ids[inp]} -> n{view.ids[node]};")
    for k, (name, node) in enumerate(zip(view.output_names, view.graph.outputs)):
        lines.append(f"  out{k} [label={_quote(name)}, {STYLE['output']}];")
        lines.append(f"  n{view.ids[node]} -> out{k};")
    used = {style_of(view, n) for n in view.graph.nodes} | {"output"}
    lines.extend(_legend([k for k in STYLE if k in used]))
    lines.append("}")
    return "\n".join(lines) + "\n"


LEGEND = {"input": "data input", "parameter": "parameter", "constant": "constant",
          "random": "random mask (dropout)", "op": "forward op", "backward": "gradient op",
          "update": "optimizer update op", "state": "optimizer state (before the step)",
          "output": "graph output", "layer": "layer"}


def _legend(kinds: list[str]) -> list[str]:
    """A boxed key to the node styles the drawing uses."""
    lines = ["  subgraph cluster_legend {",
             '    label="legend"; style=dashed; color="#999999"; fontsize=9;']
    for k in kinds:
        lines.append(f"    legend_{k} [label={_quote(LEGEND[k])}, {STYLE[k]}];")
    for a, b in zip(kinds, kinds[1:]):
        lines.append(f"    legend_{a} -> legend_{b} [style=invis];")
    lines.append("  }")
    return lines


def layers_to_dot(rows: list[dict], title: str = "nnctl") -> str:
    """One box per layer (name, type, output shape per sample, parameters) from
    nnctl.export.layers_view.layer_rows; the graph people draw by hand."""
    lines = [f"digraph {_quote(title)} {{", "  rankdir=TB;",
             '  node [fontname="Helvetica", fontsize=10];',
             '  edge [color="#555555", arrowsize=0.6];']
    ids = {row["name"]: f"l{k}" for k, row in enumerate(rows)}
    for row in rows:
        shape = "[" + ", ".join(map(str, row["shape"])) + "]"
        label = f"{row['name']}: {row['type']}\n{shape}"
        if row["params"]:
            label += f"\n{row['params']:,} params"
        style = STYLE["input"] if row["type"] == "input" else STYLE["layer"]
        lines.append(f"  {ids[row['name']]} [label={_quote(label)}, {style}];")
    for row in rows:
        for src in row["inputs"]:
            lines.append(f"  {ids[src]} -> {ids[row['name']]};")
    lines.extend(_legend(["input", "layer"]))
    lines.append("}")
    return "\n".join(lines) + "\n"
