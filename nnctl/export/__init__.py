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
                 batch: int | None = None, level: str = "ops", optimizer: bool = False) -> str:
    """The training graph of `config` (forward and loss; with `backward`, the gradients too;
    with `optimizer`, the gradients and the optimizer's first update of every parameter), or
    with level "layers" one box per layer."""
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
    if backward or optimizer:
        from nnctl.autodiff import grad
        params = builder.params
        grads = dict(zip(params, grad(loss, list(params.values()))))
        for name, g in grads.items():
            outputs[f"grad {name}"] = g.node
    trained = None
    if optimizer:
        trained = list(outputs.values())
        outputs.update(_update_outputs(config, params, grads))
    view = GraphView.of(outputs, [loss.node], trained)
    if fmt == "dot":
        return to_dot(view, config.name)
    if fmt == "mermaid":
        from nnctl.export.mermaid import to_mermaid
        return to_mermaid(view, config.name)
    return to_json(view, config.name, batch=batch, backward_included=backward or optimizer,
                   optimizer_included=optimizer)


def _update_outputs(config: Config, params: dict, grads: dict) -> dict:
    """"new <param>" and "new <optimizer>.<slot>[<param>]" for every parameter: the config's
    optimizer's first step (bias corrections of step 1, optimizer.lr) as graph nodes."""
    import numpy as np

    from nnctl.optim import make_optimizer

    opt = make_optimizer(config.spec.optimizer, np)
    outputs = {}
    for name, p in params.items():
        new_p, new_state = opt.graph_step(name, p, grads[name], step=1)
        outputs[f"new {name}"] = new_p.node
        for slot, t in new_state.items():
            outputs[f"new {opt.graph_name}.{slot}[{name}]"] = t.node
    return outputs


__all__ = ["FORMATS", "GraphView", "PassesExport", "export_graph", "export_passes", "to_dot",
           "to_json"]
