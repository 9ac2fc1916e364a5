"""Export a model's graph: DOT for Graphviz, JSON for tools."""

from __future__ import annotations

from nnctl.config import Config
from nnctl.export.dot import layers_to_dot, to_dot
from nnctl.export.graph_view import GraphView
from nnctl.export.json_export import to_json
from nnctl.export.passes import PassesExport, export_passes
from nnctl.step import prepare

FORMATS = ("dot", "json", "mermaid")
LEVELS = ("ops", "layers")


def export_graph(config: Config, fmt: str = "dot", backward: bool = False,
                 batch: int | None = None, level: str = "ops") -> str:
    """The training graph of `config` (forward and loss; with `backward`, the gradients too),
    or with level "layers" one box per layer."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    splits, builder = prepare(config)
    if level == "layers":
        import json

        from nnctl.export.layers_view import layer_rows
        from nnctl.export.mermaid import layers_to_mermaid
        rows = layer_rows(builder)
        if fmt == "json":
            return json.dumps({"config": config.name, "layers": rows}, indent=1) + "\n"
        return (layers_to_dot if fmt == "dot" else layers_to_mermaid)(rows, config.name)
    batch = batch or config.spec.train.batch_size
    feeds, out = builder.build(batch, training=True)
    loss, _ = builder.objective(feeds, out)
    outputs = {"loss": loss.node}
    if backward:
        from nnctl.autodiff import grad
        params = builder.params
        for name, g in zip(params, grad(loss, list(params.values()))):
            outputs[f"grad {name}"] = g.node
    view = GraphView.of(outputs, [loss.node])
    if fmt == "dot":
        return to_dot(view, config.name)
    if fmt == "mermaid":
        from nnctl.export.mermaid import to_mermaid
        return to_mermaid(view, config.name)
    return to_json(view, config.name, batch=batch, backward_included=backward)


__all__ = ["FORMATS", "GraphView", "PassesExport", "export_graph", "export_passes", "to_dot",
           "to_json"]
