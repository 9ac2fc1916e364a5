"""Config specs of the graph neural networks: the message-passing layers (gcn, sage, gin, gat),
the graph_pool readout, and the graph data kinds (graphs_npz, graphs_jsonl, graph_cycles),
registered into the config vocabulary. Their loaders live in nnctl.data.graphs (config sits
below data in the layering; the nnctl.data package imports that module, which registers
them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nnctl.config.layer_specs import LayerSpec, positive, register_layer_spec
from nnctl.config.schema import _DataCommon, register_dataset_spec
from nnctl.config.validate import (Context, boolean, choice, field, integer, number,
                                   string)


@dataclass(frozen=True, kw_only=True)
class MessagePassingSpec(LayerSpec):
    """Keys gcn, sage, gin and gat share. They read `inputs: [node features, adjacency]`
    (adjacency: the model input a graph data kind supplies, declared in `model.inputs`)."""

    max_inputs: ClassVar[int] = 2
    units: int = field(positive, doc="output features per node")

    def validate(self, path, ctx: Context) -> None:
        if self.inputs is not None and len(self.inputs) != 2:
            ctx.error(path + ("inputs",), f"{self.kind} reads [node features, adjacency], "
                                          f"got {len(self.inputs)} input(s)")


@dataclass(frozen=True, kw_only=True)
class GCNSpec(MessagePassingSpec):
    kind: ClassVar[str] = "gcn"
    bias: bool = field(boolean, True, "add a learned bias")


@dataclass(frozen=True, kw_only=True)
class SAGESpec(MessagePassingSpec):
    kind: ClassVar[str] = "sage"
    bias: bool = field(boolean, True, "add a learned bias")


@dataclass(frozen=True, kw_only=True)
class GINSpec(MessagePassingSpec):
    kind: ClassVar[str] = "gin"
    eps: float = field(number(), 0.0, "weight 1 + eps of a node's own features in its sum")
    train_eps: bool = field(boolean, False, "learn eps (starting from `eps`)")


@dataclass(frozen=True, kw_only=True)
class GINESpec(GINSpec):
    """gin with edge features: `inputs: [node features, adjacency, edge_features]`."""

    kind: ClassVar[str] = "gine"
    max_inputs: ClassVar[int] = 3

    def validate(self, path, ctx: Context) -> None:
        if self.inputs is not None and len(self.inputs) != 3:
            ctx.error(path + ("inputs",), f"gine reads [node features, adjacency, "
                                          f"edge_features], got {len(self.inputs)} input(s)")


@dataclass(frozen=True, kw_only=True)
class GATSpec(MessagePassingSpec):
    kind: ClassVar[str] = "gat"
    heads: int = field(positive, 1, "attention heads, each with `units` features")
    concat: bool = field(boolean, True, "concatenate the heads (heads * units features) "
                                        "instead of averaging them (units features)")
    bias: bool = field(boolean, True, "add a learned bias")


@dataclass(frozen=True, kw_only=True)
class GraphPoolSpec(LayerSpec):
    kind: ClassVar[str] = "graph_pool"
    shorthand: ClassVar[str] = "mode"
    mode: str = field(choice("sum", "mean", "max"), "sum",
                      "reduce the real nodes' features to one vector per graph")


_NORMALIZE = field(choice("standard", "minmax", "none"), "none",
                   "node feature scaling fitted on the training split, per padded node "
                   "position (so none by default: it would move padded nodes' zeros)")
_UNDIRECTED = field(boolean, True, "add the reverse of every edge (an undirected graph)")


@dataclass(frozen=True, kw_only=True)
class GraphsNpzData(_DataCommon):
    dataset: str = field(string, "graphs_npz", "graphs in a NumPy .npz file: node_features, "
                                               "node_counts, edges, edge_counts, and labels "
                                               "or node_labels (docs/graphs.md)")
    path: str = field(string, doc="the file; a relative path is relative to the config file")
    normalize: str = _NORMALIZE
    undirected: bool = _UNDIRECTED


@dataclass(frozen=True, kw_only=True)
class GraphsJsonlData(_DataCommon):
    dataset: str = field(string, "graphs_jsonl", "graphs in a JSON-lines file, one per line: "
                                                 "{\"nodes\": [[features], ...], \"edges\": "
                                                 "[[source, target], ...], \"label\": k} or "
                                                 "\"node_labels\": [k, ...]")
    path: str = field(string, doc="the file; a relative path is relative to the config file")
    normalize: str = _NORMALIZE
    undirected: bool = _UNDIRECTED


@dataclass(frozen=True, kw_only=True)
class GraphCyclesData(_DataCommon):
    dataset: str = field(string, "graph_cycles", "generated graphs: random trees (label 0) "
                                                 "vs the same with one extra edge, so exactly "
                                                 "one cycle (label 1), same node counts, "
                                                 "uninformative node features")
    samples: int = field(integer(min=10, what="an integer >= 10"), 2000, "graphs in all")
    min_nodes: int = field(integer(min=4, what="an integer >= 4"), 8, "the smallest graph")
    max_nodes: int = field(integer(min=4, max=256, what="an integer in [4, 256]"), 16,
                           "the largest graph")
    node_features: str = field(choice("ones", "noise"), "ones",
                               "ones: the feature 1 at every node; noise: feature_width "
                               "standard normal numbers per node, drawn independently")
    feature_width: int = field(positive, 8, "features per node with node_features: noise")
    normalize: str = _NORMALIZE

    def validate(self, path, ctx: Context) -> None:
        super().validate(path, ctx)
        if self.min_nodes > self.max_nodes:
            ctx.error(path + ("min_nodes",), f"min_nodes ({self.min_nodes}) is above "
                                             f"max_nodes ({self.max_nodes})")


for _spec in (GCNSpec, SAGESpec, GINSpec, GINESpec, GATSpec, GraphPoolSpec):
    register_layer_spec(_spec)
for _spec in (GraphsNpzData, GraphsJsonlData, GraphCyclesData):
    register_dataset_spec(_spec)
