"""Graph neural network layers on dense, padded graphs: gcn, sage, gin, gine, gat, and the
graph_pool readout.

A batch of graphs is node features H [batch, nodes, features] (padded with zero rows to the
batch's largest graph), a node mask m [batch, nodes] (1 at real nodes, 0 at padding: the
padding mask of issue 9, from the node counts) and a dense adjacency A [batch, nodes, nodes]
with A[i, j] = 1 when there is an edge j -> i (messages flow from j to i; an undirected graph
is symmetric). Padded nodes have no edges, so no real node ever reads one, and a batch of
graphs gives, at the real nodes, exactly the outputs of each graph run alone. The outputs at
padded nodes are finite values that mean nothing; the node mask (passed through unchanged)
makes the layers after ignore them.

Dense rather than a disjoint union with a graph-id vector: a compiled plan has static shapes
whose only symbolic size is the batch, and a union's node count changes every batch, while a
padded node axis reuses the padding, bucketing and mask machinery (one plan per padded node
count). The price is O(nodes^2) memory per graph, which small graphs (tens of nodes) afford.

Every message-passing layer reads `inputs: [node features, adjacency]`; the equations match
PyTorch Geometric's sparse layers (GCNConv, SAGEConv, GINConv, GATConv) and its dense family.
"""

from __future__ import annotations

import numpy as np

from nnctl.errors import ShapeError
from nnctl.graph import Tensor
from nnctl.layers.base import Layer, register_layer, require_float_input
from nnctl.layers.dense import Dense

# Added to the score of a pair that is not an edge before a softmax, or to a padded node's
# value before a max: exp underflows to exactly 0, and a padded entry's gradient is an exact 0.
NOT_AN_EDGE = -1e9


def split_graph(layer: Layer, x, mask) -> tuple[Tensor, Tensor, Tensor | None]:
    """(node features [B, N, F], adjacency [B, N, N], node mask [B, N] or None) from a
    message-passing layer's inputs [features, adjacency] and their masks."""
    if not isinstance(x, list) or len(x) != 2:
        raise ShapeError(f"{layer.kind} needs inputs: [node features, adjacency] (the "
                         "adjacency is the model input 'adjacency' of a graph data kind)",
                         scope=layer.name)
    h, adjacency = x
    node_mask = (mask or [None])[0]
    if h.ndim != 3:
        raise ShapeError(f"{layer.kind} needs node features [batch, nodes, features], got "
                         f"{list(h.shape)}", scope=layer.name)
    require_float_input(layer, h)
    nodes = h.shape[1]
    if tuple(adjacency.shape[1:]) != (nodes, nodes):
        raise ShapeError(f"{layer.kind}: the adjacency {list(adjacency.shape)} does not match "
                         f"{nodes} nodes (expected [batch, {nodes}, {nodes}])", scope=layer.name)
    if adjacency.dtype != h.dtype:
        raise ShapeError(f"{layer.kind}: the adjacency is {adjacency.dtype}, the node features "
                         f"{h.dtype}", scope=layer.name)
    return h, adjacency, node_mask


def with_self_loops(adjacency: Tensor, node_mask: Tensor | None) -> Tensor:
    """A + I on the real nodes only (a padded node gets no self loop, so it stays without
    edges: a zero row and column)."""
    nodes = adjacency.shape[-1]
    eye = Tensor(np.eye(nodes, dtype=adjacency.dtype))
    if node_mask is None:
        return adjacency + eye
    return adjacency + node_mask.reshape(*node_mask.shape, 1) * eye


def column(v: Tensor) -> Tensor:
    """[B, N] -> [B, N, 1], to scale each node's row of features."""
    return v.reshape(*v.shape, 1)


class MessagePassing(Layer):
    """Shared plumbing: two inputs, the node mask of the first, output [B, N, units] keeping
    that mask (the default output_mask does, given a list)."""

    takes_mask = True

    def build(self, x, rng) -> None:
        h, _, _ = split_graph(self, x, None)
        self.build_params(h.shape[-1], h.dtype, rng)

    def build_params(self, features: int, dtype: str, rng) -> None:
        raise NotImplementedError

    def forward(self, x, training: bool, mask=None) -> Tensor:
        return self.propagate(*split_graph(self, x, mask))

    def propagate(self, h: Tensor, adjacency: Tensor, node_mask: Tensor | None) -> Tensor:
        raise NotImplementedError


@register_layer
class GCN(MessagePassing):
    """Graph convolution (Kipf & Welling), as PyG's GCNConv:

        H' = D^-1/2 (A + I) D^-1/2 H W + b,    D_ii = sum_j (A + I)_ij

    The self loops go on the real nodes only; the degree counts a node's incoming edges plus
    its self loop. Parameters: weight [features, units] (PyG lin.weight transposed), bias
    [units]."""

    kind = "gcn"

    def __init__(self, name: str, units: int, bias: bool = True):
        super().__init__(name)
        self.units, self.bias = units, bias

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.units, spec.bias)

    def build_params(self, features, dtype, rng):
        self.w = self.add_param("weight", (features, self.units), "glorot_uniform", rng, dtype)
        self.b = self.add_param("bias", (self.units,), "zeros", rng, dtype) if self.bias else None

    def propagate(self, h, adjacency, node_mask):
        looped = with_self_loops(adjacency, node_mask)
        # a padded node has degree 0; 1 there keeps D^-1/2 finite (its row of A + I is 0)
        scale = column(looped.sum(-1).maximum(1.0) ** -0.5)
        y = scale * (looped @ (scale * (h @ self.w)))
        return y + self.b if self.b is not None else y


@register_layer
class SAGE(MessagePassing):
    """GraphSAGE with mean aggregation, as PyG's SAGEConv(aggr="mean"):

        H'_i = H_i W_self + (1 / |N(i)|) sum_{j in N(i)} H_j W_neigh + b

    N(i) are the nodes with an edge j -> i; a node without any aggregates 0. Parameters:
    weight_self [features, units] (PyG lin_r.weight transposed), weight_neigh [features,
    units] (lin_l.weight transposed), bias [units] (lin_l.bias)."""

    kind = "sage"

    def __init__(self, name: str, units: int, bias: bool = True):
        super().__init__(name)
        self.units, self.bias = units, bias

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.units, spec.bias)

    def build_params(self, features, dtype, rng):
        shape = (features, self.units)
        self.w_self = self.add_param("weight_self", shape, "glorot_uniform", rng, dtype)
        self.w_neigh = self.add_param("weight_neigh", shape, "glorot_uniform", rng, dtype)
        self.b = self.add_param("bias", (self.units,), "zeros", rng, dtype) if self.bias else None

    def propagate(self, h, adjacency, node_mask):
        mean = (adjacency @ h) / column(adjacency.sum(-1).maximum(1.0))
        y = mean @ self.w_neigh + h @ self.w_self
        return y + self.b if self.b is not None else y


@register_layer
class GIN(MessagePassing):
    """Graph isomorphism network layer, as PyG's GINConv with nn = Linear, ReLU, Linear:

        H' = relu(((1 + eps) H + A H) W1 + b1) W2 + b2

    (A H)_i sums the features of the nodes with an edge into i. eps is 0 and fixed, or a
    learned scalar (`train_eps`, starting at `eps`). Parameters: mlp1.weight [features,
    units], mlp1.bias, mlp2.weight [units, units], mlp2.bias (PyG's nn[0] and nn[2], weights
    transposed), and eps [1] when trained."""

    kind = "gin"

    def __init__(self, name: str, units: int, eps: float = 0.0, train_eps: bool = False):
        super().__init__(name)
        self.units, self.eps0, self.train_eps = units, eps, train_eps

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.units, spec.eps, spec.train_eps)

    def build_params(self, features, dtype, rng):
        self.mlp1 = Dense(f"{self.name}.mlp1", self.units, "relu")
        self.mlp2 = Dense(f"{self.name}.mlp2", self.units)
        self.rng = rng  # the sub-layers build on their first call, in propagate
        if self.train_eps:
            self.eps = self.add_param("eps", (1,), "zeros", rng, dtype)
            self.initial[self.eps.node.name] = np.full((1,), self.eps0, dtype=dtype)
        else:
            self.eps = self.eps0

    def propagate(self, h, adjacency, node_mask):
        z = h * (1.0 + self.eps) + adjacency @ h
        return self.sub(self.mlp2, self.sub(self.mlp1, z))

    def sub(self, layer: Dense, x: Tensor) -> Tensor:
        """Call a sub-layer and adopt its parameters (`name.mlp1.weight`, ...)."""
        y = layer(x, False, self.rng)
        self.params.update(layer.params)
        self.initial.update(layer.initial)
        return y


@register_layer
class GINE(GIN):
    """GIN with edge features, as PyG's GINEConv(nn, edge_dim=D) with nn = Linear, ReLU,
    Linear:

        H'_i = mlp((1 + eps) H_i + sum_{j in N(i)} relu(H_j + E_ij W_e + b_e))

    E [batch, nodes, nodes, D] holds the features of the edge j -> i at [i, j] (the graph
    kinds' model input 'edge_features'); the sum runs over the edges (A_ij = 1), so entries
    without an edge never count. Reads `inputs: [node features, adjacency, edge features]`.
    Parameters: edge.weight [D, features], edge.bias [features] (PyG's lin, transposed), then
    gin's."""

    kind = "gine"

    def build(self, x, rng) -> None:
        h, _, _, _ = split_edges(self, x, None)
        self.build_params(h.shape[-1], h.dtype, rng)

    def build_params(self, features, dtype, rng):
        super().build_params(features, dtype, rng)
        self.edge = Dense(f"{self.name}.edge", features)

    def forward(self, x, training: bool, mask=None) -> Tensor:
        h, adjacency, edge_features, node_mask = split_edges(self, x, mask)
        # [B, N, N, F]: the message from j to i, from j's features and the edge's
        messages = (self.sub(self.edge, edge_features) + h.reshape(
            *h.shape[:1], 1, *h.shape[1:])).relu()
        summed = (messages * adjacency.reshape(*adjacency.shape, 1)).sum(2)
        z = h * (1.0 + self.eps) + summed
        return self.sub(self.mlp2, self.sub(self.mlp1, z))


def split_edges(layer: Layer, x, mask) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """split_graph for a layer that also reads edge features [B, N, N, D]."""
    if not isinstance(x, list) or len(x) != 3:
        raise ShapeError(f"{layer.kind} needs inputs: [node features, adjacency, edge "
                         "features] (model inputs 'adjacency' and 'edge_features' of a graph "
                         "data kind with edge features)", scope=layer.name)
    h, adjacency, node_mask = split_graph(layer, x[:2], (mask or [None])[:1])
    edges = x[2]
    nodes = h.shape[1]
    if edges.ndim != 4 or tuple(edges.shape[1:3]) != (nodes, nodes):
        raise ShapeError(f"{layer.kind}: edge features {list(edges.shape)} do not match "
                         f"{nodes} nodes (expected [batch, {nodes}, {nodes}, features])",
                         scope=layer.name)
    if edges.dtype != h.dtype:
        raise ShapeError(f"{layer.kind}: the edge features are {edges.dtype}, the node "
                         f"features {h.dtype}", scope=layer.name)
    return h, adjacency, edges, node_mask


@register_layer
class GAT(MessagePassing):
    """Graph attention (Velickovic et al.), as PyG's GATConv(add_self_loops=True, dropout=0):

        Z = H W  split into heads:  z_i^h [units]
        e_ij^h = leaky_relu(a_dst^h . z_i^h + a_src^h . z_j^h, 0.2)   for j in N(i) + {i}
        alpha_ij^h = softmax over j of e_ij^h    (a masked softmax: -1e9 where (A + I)_ij = 0)
        H'_i = concat_h sum_j alpha_ij^h z_j^h + b    (or the mean over heads, concat: false)

    Parameters: weight [features, heads * units] (PyG lin.weight transposed; head h is
    columns h * units ... (h + 1) * units - 1), att_src and att_dst [heads, units] (PyG's
    [1, heads, units]), bias [heads * units] or [units]."""

    kind = "gat"

    def __init__(self, name: str, units: int, heads: int = 1, concat: bool = True,
                 bias: bool = True):
        super().__init__(name)
        self.units, self.heads, self.concat, self.bias = units, heads, concat, bias

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.units, spec.heads, spec.concat, spec.bias)

    def build_params(self, features, dtype, rng):
        heads, units = self.heads, self.units
        self.w = self.add_param("weight", (features, heads * units), "glorot_uniform", rng, dtype)
        self.att_src = self.add_param("att_src", (heads, units), "glorot_uniform", rng, dtype)
        self.att_dst = self.add_param("att_dst", (heads, units), "glorot_uniform", rng, dtype)
        out = heads * units if self.concat else units
        self.b = self.add_param("bias", (out,), "zeros", rng, dtype) if self.bias else None

    def propagate(self, h, adjacency, node_mask):
        batch, nodes, _ = h.shape
        heads, units = self.heads, self.units
        z = (h @ self.w).reshape(batch, nodes, heads, units).transpose(0, 2, 1, 3)  # [B,H,N,U]
        source = (z * self.att_src.reshape(heads, 1, units)).sum(-1)  # [B, H, N]: a_src . z_j
        target = (z * self.att_dst.reshape(heads, 1, units)).sum(-1)  # a_dst . z_i
        scores = (target.reshape(batch, heads, nodes, 1)
                  + source.reshape(batch, heads, 1, nodes)).leaky_relu(0.2)
        # an edge listed twice, or a self loop already in A, is still one edge (0/1 entries)
        edges = with_self_loops(adjacency, node_mask).minimum(1.0)
        scores = scores + ((1.0 - edges) * NOT_AN_EDGE).reshape(batch, 1, nodes, nodes)
        y = scores.softmax(-1) @ z  # [B, H, N, U]
        if self.concat:
            y = y.transpose(0, 2, 1, 3).reshape(batch, nodes, heads * units)
        else:
            y = y.mean(1)
        return y + self.b if self.b is not None else y


@register_layer
class GraphPool(Layer):
    """Readout: one vector per graph from node features [batch, nodes, features], over the
    real nodes (node mask m, 1 at real nodes):

        sum:   y = sum_i m_i h_i
        mean:  y = sum_i m_i h_i / max(sum_i m_i, 1)
        max:   y = max_i (h_i + (m_i - 1) * 1e9)     exact at real values

    Without a mask, the plain sum, mean and max over the nodes. The output [batch, features]
    has no node axis, so no mask."""

    kind = "graph_pool"
    takes_mask = True
    modes = ("sum", "mean", "max")

    def __init__(self, name: str, mode: str = "sum"):
        super().__init__(name)
        if mode not in self.modes:
            raise ValueError(f"graph_pool mode must be one of {self.modes}, got {mode!r}")
        self.mode = mode

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.mode)

    def build(self, x, rng) -> None:
        if not isinstance(x, Tensor) or x.ndim != 3:
            shape = list(x.shape) if isinstance(x, Tensor) else f"{len(x)} inputs"
            raise ShapeError(f"graph_pool needs node features [batch, nodes, features], got "
                             f"{shape}", scope=self.name)
        require_float_input(self, x)

    def forward(self, x: Tensor, training: bool, mask=None) -> Tensor:
        if mask is None:
            return {"sum": x.sum, "mean": x.mean, "max": x.max}[self.mode](1)
        m = column(mask)
        if self.mode == "sum":
            return (x * m).sum(1)
        if self.mode == "mean":
            return (x * m).sum(1) / mask.sum(1, keepdims=True).maximum(1.0)
        return (x + (m - 1) * -NOT_AN_EDGE).max(1)

    def output_mask(self, x, mask, out):
        return None  # the nodes are pooled away
