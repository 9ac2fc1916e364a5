"""A finished run's model as a self-contained inference graph, for the exports that run it
elsewhere (ONNX, the NumPy runner): evaluation mode (dropout gone, batch norm on its running
statistics), the run's input normalisation as the graph's first ops, so the graph takes the
same raw rows as `nnctl predict`, and the compile passes applied (constants folded, common
subexpressions shared, dead nodes gone). Sequences are padded to the run's longest length;
the batch stays symbolic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnctl.compile.passes import eliminate_common_subexpressions, eliminate_dead_code, \
    fold_constants
from nnctl.compile.rewrite import make, rewrite
from nnctl.compile.simplify import simplify_algebra
from nnctl.graph.ir import Graph, Node
from nnctl.ops.registry import Aval, Dim, resolve

# what the inference graph goes through: the passes that keep it a graph of table ops (the
# training-only ones, conv columns and weight-gradient batching, have nothing to do here)
INFERENCE_PASSES = (fold_constants, simplify_algebra, eliminate_common_subexpressions,
                    eliminate_dead_code)
# for ONNX: the same without merging common subexpressions, which may join nodes of two
# layers (two recurrent layers' identical mask slices) and so blur the layer a node belongs
# to; ONNX Runtime merges them itself when it loads the model
LAYERWISE_PASSES = (fold_constants, simplify_algebra, eliminate_dead_code)


@dataclass
class InferenceGraph:
    graph: Graph                      # outputs: (the model's output,)
    inputs: list[Node]                # the data the graph is fed, in feed order
    weights: dict[str, np.ndarray]    # parameter and state node name -> value (host)
    normalised: bool                  # whether x goes through the run's normaliser first
    classification: bool              # the output holds one score per class (last axis)
    dtype: str                        # the run's float dtype
    layers: dict = field(default_factory=dict)  # layer name -> the model's layer object

    @property
    def output(self) -> Node:
        return self.graph.outputs[0]


def inference_graph(trainer, passes=INFERENCE_PASSES) -> InferenceGraph:
    """The run's forward graph for exports; `trainer` holds the run's config, data
    information and weights (nnctl.train.inference.load_run)."""
    outputs, feeds = trainer.builder.forward_step()
    out = outputs[0].node
    n_data = len(feeds) - len(trainer.param_names) - len(trainer.state_names)
    inputs = [t.node for t in feeds[:n_data]]
    splits = trainer.splits
    normaliser = None if splits.vocab is not None else splits.normalizer
    normalised = normaliser is not None and normaliser.method != "none"
    graph = Graph([out])
    if normalised:
        graph, inputs = _normalise_first(graph, inputs, normaliser)
    graph = Graph(graph.outputs)
    for transform in passes:
        graph = transform(graph)
    values = trainer.weights()
    weights = {n.name: np.asarray(values[n.name]) for n in graph.nodes
               if n.op == "parameter"}
    model = trainer.builder.model
    return InferenceGraph(graph, inputs, weights, normalised, trainer.classification,
                          trainer.spec.train.dtype, dict(zip(model.names, model.layers)))


def _normalise_first(graph: Graph, inputs: list[Node], normaliser):
    """`graph` with the model input x replaced by (raw - offset) / scale of a new input raw
    of the same shape: what `nnctl predict` does to the rows before the model sees them."""
    x = inputs[0]
    raw = Node("input", (), {}, x.aval, name=x.name)
    dtype = x.aval.dtype
    offset = Node("constant", (), {}, _aval(normaliser.offset, dtype), name="input_offset",
                  value=normaliser.offset.astype(dtype))
    scale = Node("constant", (), {}, _aval(normaliser.scale, dtype), name="input_scale",
                 value=normaliser.scale.astype(dtype))
    normalised = make("div", [make("sub", [raw, offset], raw), scale], raw)

    def visit(node: Node, ctx) -> Node:
        return normalised if node is x else node
    return rewrite(graph, visit), [raw, *inputs[1:]]


def _aval(value: np.ndarray, dtype: str) -> Aval:
    return Aval(tuple(value.shape), dtype)


def sample_inputs(trainer, graph: InferenceGraph, batch: int, split: str = "test"
                  ) -> list[np.ndarray]:
    """The first `batch` samples of a split as the graph takes them (raw rows, sequences
    padded with zeros to the graph's length), repeated where the split is smaller."""
    from nnctl.data.batching import batch_arrays
    data = getattr(trainer.splits, split)
    if len(data) == 0:
        data = trainer.splits.train
    idx = np.arange(batch) % len(data)
    arrays = batch_arrays(data, idx, trainer.spec.train.pad_multiple, trainer.spec.train.dtype,
                          trainer.builder.extra_names)
    arrays = arrays[:1] + arrays[2:]  # no labels
    if graph.normalised:
        norm = trainer.splits.normalizer
        arrays[0] = arrays[0] * norm.scale + norm.offset
    out = []
    for array, node in zip(arrays, graph.inputs):
        shape = resolve(node.aval.shape, {"B": batch})
        pad = [(0, want - have) for have, want in zip(array.shape, shape)]
        out.append(np.pad(array, pad).astype(node.aval.dtype))
    return out


def reference_output(trainer, graph: InferenceGraph, arrays: list[np.ndarray]) -> np.ndarray:
    """nnctl's own forward (the plan `predict` runs) on the raw inputs `arrays`."""
    arrays = list(arrays)
    if graph.normalised:
        arrays[0] = trainer.splits.normalizer.apply(arrays[0]).astype(graph.inputs[0].aval.dtype)
    return np.asarray(trainer.forward_arrays(arrays))


INFERENCE_FORMAT = "nnctl-inference"
INFERENCE_VERSION = 1


def to_inference_json(graph: InferenceGraph, title: str, labels=None) -> str:
    """The inference graph as JSON for the dependency-free runner (nnctl/runner.py; schema in
    docs/runner.md): nodes in topological order, each with its op, attributes, inputs (node
    ids), shape ("B" for the batch) and dtype; constants carry their values, parameters
    their names in the run's weights file."""
    import json

    from nnctl.export.graph_view import plain
    ids = {node: k for k, node in enumerate(graph.graph.nodes)}
    nodes = []
    for node in graph.graph.nodes:
        entry = {"id": ids[node], "op": node.op, "name": node.name, "scope": node.scope,
                 "shape": [str(d) if isinstance(d, Dim) else d for d in node.aval.shape],
                 "dtype": node.aval.dtype, "inputs": [ids[i] for i in node.inputs],
                 "attrs": plain({k: _plain_dims(v) for k, v in node.attrs.items()})}
        if node.op == "constant":
            value = np.asarray(node.value.get() if hasattr(node.value, "get") else node.value)
            entry["value"] = value.tolist()
        nodes.append(entry)
    doc = {"format": INFERENCE_FORMAT, "version": INFERENCE_VERSION, "title": title,
           "inputs": [{"name": n.name, "id": ids[n]} for n in graph.inputs],
           "output": ids[graph.output], "classification": graph.classification,
           "labels": None if labels is None else [str(v) for v in labels],
           "weights": sorted(graph.weights), "nodes": nodes}
    return json.dumps(doc, indent=None, separators=(",", ":")) + "\n"


def _plain_dims(value):
    """Attributes with each symbolic size written "B" or "k*B"."""
    if isinstance(value, Dim):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_plain_dims(v) for v in value]
    return value
