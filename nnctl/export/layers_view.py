"""The model at the level of its layers: one row per model input and per layer, with what it
reads, its output shape per sample and its parameter count (export-graph --level layers)."""

from __future__ import annotations

import numpy as np


def layer_rows(builder, batch: int = 1) -> list[dict]:
    """[{name, type, inputs, shape, params}] in the model's order, inputs first."""
    feeds, out = builder.build(batch, training=False)
    values = feeds.layer_outputs
    model = builder.model
    used = {n for names in model.inputs for n in names}
    rows = [{"name": name, "type": "input", "inputs": [], "params": 0,
             "shape": ["-", *t.shape[1:]]}
            for name, t in feeds.inputs.items() if name in used]
    counted: set[int] = set()
    for i in model.order:
        layer, name = model.layers[i], model.names[i]
        params = 0
        if id(layer) not in counted:  # a shared layer's parameters count at the original
            counted.add(id(layer))
            params = sum(int(np.prod(t.shape)) for t in layer.params.values())
        rows.append({"name": name, "type": layer.kind, "inputs": list(model.inputs[i]),
                     "shape": ["-", *values[name].shape[1:]], "params": params})
    return rows
