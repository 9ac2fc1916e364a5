"""The paths from a parameter to the loss drawn as DOT (`nnctl explain --diagram`): the ops
on the paths highlighted, each path edge labelled with the local derivative (vjp rule) it
applies and the size of the gradient that crosses it; the other inputs of those ops shown
small and grey for context, the rest of the graph left out."""

from __future__ import annotations

from nnctl.export.dot import _quote

PATH_NODE = 'shape=box, style="filled,bold", fillcolor="#F4CCCC", color="#CC0000", penwidth=2'
PARAM_NODE = 'shape=box, style="filled,rounded,bold", fillcolor="#ADD8E6", color="#CC0000", ' \
             'penwidth=2'
CONTEXT_NODE = 'shape=box, style="filled,rounded", fillcolor="#F3F3F3", fontcolor="#808080", ' \
               'color="#BBBBBB", fontsize=8'
PATH_EDGE = 'color="#CC0000", penwidth=2, fontcolor="#CC0000", fontsize=9'


def paths_dot(param, loss, paths: list[list[tuple]], rules: list[list[str]],
              flows: list[list[float]] | None, title: str) -> str:
    """`paths[k]` is path k's edges (consumer node, input index) from `param` up to `loss`;
    `rules[k]` their vjp rules; `flows[k]` the norm of the gradient arriving at each
    consumer along that path (or None)."""
    on_path = {param}
    crossing: dict[tuple, tuple[str, list[float]]] = {}  # edge -> (rule, |g| per path)
    for k, edges in enumerate(paths):
        below = param
        for j, (node, index) in enumerate(edges):
            on_path.add(node)
            rule, sizes = crossing.setdefault((below, node, index), (rules[k][j], []))
            if flows is not None:
                sizes.append(flows[k][j])
            below = node
    ids: dict = {}
    context = []
    for node in sorted(on_path, key=lambda n: n.id):
        for inp in node.inputs:
            if inp not in on_path and inp not in context:
                context.append(inp)
    for n, node in enumerate(sorted(on_path | set(context), key=lambda n: n.id)):
        ids[node] = f"n{n}"
    lines = [f"digraph {_quote(title)} {{", "  rankdir=BT;",
             '  node [fontname="Helvetica", fontsize=10];',
             '  edge [color="#BBBBBB", arrowsize=0.6];']
    clusters: dict[str, list[str]] = {}
    for node in ids:
        shape = "[" + ", ".join(map(str, node.aval.shape)) + "]"
        if node is param:
            text, style = f"{node.name}\n{shape}", PARAM_NODE
        elif node is loss:
            text, style = f"loss: {node.op}\n{shape}", PATH_NODE
        elif node in on_path:
            text, style = f"{node.op}\n{shape}", PATH_NODE
        else:
            text = f"{node.value:g}" if node.op == "constant" and \
                isinstance(node.value, float) else f"{node.name or node.op}\n{shape}"
            style = CONTEXT_NODE
        stmt = f"  {ids[node]} [label={_quote(text)}, {style}];"
        scope = node.scope.split("/")[0] if node.scope else ""
        clusters.setdefault(scope, []).append(stmt)
    for k, (scope, stmts) in enumerate(clusters.items()):
        if not scope:
            lines.extend(stmts)
            continue
        lines.append(f"  subgraph cluster_{k} {{")
        lines.append(f"    label={_quote(scope)}; style=rounded; color=\"#999999\";")
        lines.extend("  " + s for s in stmts)
        lines.append("  }")
    for node in ids:
        if node not in on_path:
            continue
        for index, inp in enumerate(node.inputs):
            if (inp, node, index) in crossing:
                rule, sizes = crossing[(inp, node, index)]
                text = rule + ("\n|g| " + ", ".join(f"{v:.3g}" for v in sizes) if sizes else "")
                lines.append(f"  {ids[inp]} -> {ids[node]} [label={_quote(text)}, {PATH_EDGE}];")
            else:
                lines.append(f"  {ids[inp]} -> {ids[node]};")
    lines += ["  subgraph cluster_legend {",
              '    label="legend"; style=dashed; color="#999999"; fontsize=9;',
              f"    legend_param [label=\"the parameter\", {PARAM_NODE}];",
              f"    legend_path [label=\"op on a path to the loss\", {PATH_NODE}];",
              f"    legend_other [label=\"its other inputs\", {CONTEXT_NODE}];",
              "    legend_param -> legend_path [label=\"vjp rule\\n|g| arriving\", "
              f"{PATH_EDGE}];",
              "  }", "}"]
    return "\n".join(lines) + "\n"
