"""Multi-head attention and the transformer encoder block.

Attention (Vaswani et al. 2017), queries from x [batch, time, features] and keys and values
from a memory m [batch, steps, memory features] (m = x: self-attention):

    Q, K, V = x Wq + bq, m Wk + bk, m Wv + bv          [batch, time or steps, dim]
    per head: A = softmax(Q K^T / sqrt(dim / heads) + M) [batch, heads, time, steps]
    y = concat_heads(A V) Wo + bo                       [batch, time, dim]

The heads are one batched matmul on [batch, heads, time, dim / heads] (reshape, then
transpose). M is 0 or MASKED (-1e9): a causal layer masks the scores of later positions, so
position t attends only to positions <= t, and a padding mask masks the padded keys; the
softmax weights there are exactly 0, so padding changes nothing at the real positions. A
padded query row still has real keys to attend to (the padding is at the end), so its output
is finite; the layers after mask it out.
"""

from __future__ import annotations

import math

from nnctl.errors import ShapeError
from nnctl.graph import Tensor
from nnctl.layers.base import Layer, register_layer, require_sequence
from nnctl.layers.dense import Dense
from nnctl.layers.dropout import Dropout
from nnctl.layers.norm import LayerNorm

MASKED = -1e9  # added to a masked score; exp underflows to exactly 0 in float32 and float64


def causal_mask(length: int, dtype: str) -> Tensor:
    """[length, length]: 0 where column <= row, MASKED above the diagonal."""
    return Tensor([[0.0 if j <= i else MASKED for j in range(length)] for i in range(length)],
                  dtype=dtype)


def key_mask_scores(mask: Tensor, lead_axes: int) -> Tensor:
    """What a padding mask [batch, steps] (1 real, 0 padding) adds to scores whose last axis
    is the key's: MASKED at padded keys, 0 at real ones, shaped [batch, 1 (x lead_axes),
    steps] to broadcast over the heads and the query axis. (1 - mask) * MASKED is exact:
    0 * MASKED = 0 and 1 * MASKED = MASKED."""
    batch, steps = mask.shape
    return ((1.0 - mask) * MASKED).reshape(batch, *(1,) * lead_axes, steps)


def split_inputs(layer: Layer, x, mask) -> tuple[Tensor, Tensor, Tensor | None]:
    """(queries, memory, the memory's padding mask) from a layer's input: [queries, memory]
    with their masks, or one sequence that is both (self-attention)."""
    if not isinstance(x, list):
        return x, x, mask
    if len(x) != 2:
        raise ShapeError(f"{layer.kind} reads [queries, memory], got {len(x)} inputs",
                         scope=layer.name)
    return x[0], x[1], (mask or [None, None])[1]


@register_layer
class MultiHeadAttention(Layer):
    """Attention with `heads` heads over `dim` features (default: the queries'). One input x:
    self-attention; two inputs [x, memory]: cross-attention, queries from x and keys and
    values from memory. Padded keys (the memory's padding mask) get weight exactly 0.

    Parameters: weight_q [features, dim], weight_k, weight_v [memory features, dim],
    weight_o [dim, dim] (Glorot uniform) and bias_q, bias_k, bias_v, bias_o [dim] (zeros):
    PyTorch's in_proj_weight = concat(weight_q, weight_k, weight_v)^T (rows in q, k, v order),
    in_proj_bias = concat(bias_q, bias_k, bias_v), out_proj.weight = weight_o^T,
    out_proj.bias = bias_o.
    """

    kind = "multi_head_attention"
    takes_mask = True

    def __init__(self, name: str, heads: int, dim: int | None = None, causal: bool = False,
                 dropout: float = 0.0):
        super().__init__(name)
        self.heads, self.dim, self.causal = heads, dim, causal
        self.dropout = Dropout(f"{name}.dropout", dropout)  # on the attention weights

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.heads, spec.dim, spec.causal, spec.dropout)

    def build(self, x, rng) -> None:
        query, memory, _ = split_inputs(self, x, None)
        require_sequence(self, query)
        require_sequence(self, memory)
        if memory.shape[0] != query.shape[0] or memory.dtype != query.dtype:
            raise ShapeError(f"memory {list(memory.shape)} ({memory.dtype}) does not match "
                             f"the queries {list(query.shape)} ({query.dtype}) in batch and "
                             "dtype", scope=self.name)
        if self.causal and memory is not query:
            raise ShapeError("causal masking is for self-attention (one input), not a "
                             "memory", scope=self.name)
        d = self.dim = self.dim or query.shape[-1]
        if d % self.heads:
            raise ShapeError(f"dim ({d}) must be divisible by heads ({self.heads})",
                             scope=self.name)
        fan_in = {"q": query.shape[-1], "k": memory.shape[-1], "v": memory.shape[-1]}
        self.w = {p: self.add_param(f"weight_{p}", (fan_in[p], d), "glorot_uniform", rng,
                                    query.dtype) for p in "qkv"}
        self.w["o"] = self.add_param("weight_o", (d, d), "glorot_uniform", rng, query.dtype)
        self.b = {p: self.add_param(f"bias_{p}", (d,), "zeros", rng, query.dtype)
                  for p in "qkvo"}

    def forward(self, x, training: bool, mask=None) -> Tensor:
        query, memory, key_mask = split_inputs(self, x, mask)
        return self.attend(query, memory, key_mask, training)

    def attend(self, query: Tensor, memory: Tensor, key_mask: Tensor | None,
               training: bool) -> Tensor:
        """The attention of `query` [batch, time, features] over `memory` [batch, steps,
        memory features] whose padded steps (key_mask 0) get weight 0. The one copy of the
        attention math: the encoder and decoder blocks call it through their sub-layers."""
        batch, time, _ = query.shape
        heads, d_head = self.heads, self.dim // self.heads

        def project(p: str, z: Tensor) -> Tensor:  # [batch, heads, time or steps, d_head]
            y = z @ self.w[p] + self.b[p]
            return y.reshape(batch, z.shape[1], heads, d_head).transpose(0, 2, 1, 3)

        q, k, v = project("q", query), project("k", memory), project("v", memory)
        scores = (q @ k.mT) * (1.0 / math.sqrt(d_head))
        if self.causal:
            scores = scores + causal_mask(time, query.dtype)
        if key_mask is not None:
            scores = scores + key_mask_scores(key_mask, 2)
        weights = self.dropout(scores.softmax(-1), training)
        y = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, time, self.dim)
        return y @ self.w["o"] + self.b["o"]


class Block(Layer):
    """A layer built from sub-layers (the transformer blocks): it calls them through `sub`
    and owns their parameters under their names (`name.attn.weight_q`, `name.ff1.weight`)."""

    def sub(self, layer: Layer, x, training: bool, mask=None) -> Tensor:
        """Call a sub-layer and adopt its parameters, state and state updates."""
        y = layer(x, training, self.rng, mask=mask)
        self.params.update(layer.params)
        self.states.update(layer.states)
        self.initial.update(layer.initial)
        self.updates.update(layer.updates)
        return y


@register_layer
class TransformerEncoder(Block):
    """One post-norm encoder block, as PyTorch's TransformerEncoderLayer (norm_first=False,
    relu):

        x = layer_norm(x + dropout(attention(x)))
        x = layer_norm(x + dropout(dense(relu(dense(x, ff_units)) -> dropout, features)))

    Built from the attention, dense, layer-norm and dropout layers, named `name.attn`,
    `name.norm1`, `name.ff1`, `name.ff2`, `name.norm2`; their parameters are this layer's
    (e.g. `name.attn.weight_q`, `name.ff1.weight`). The attention weights get the same
    dropout, as in PyTorch. With a padding mask, padded positions are masked as keys
    (PyTorch's src_key_padding_mask); every other part works position by position, so the
    real positions' outputs are those of the unpadded sequence.
    """

    kind = "transformer_encoder"
    takes_mask = True

    def __init__(self, name: str, heads: int, ff_units: int, dropout: float = 0.1,
                 causal: bool = False):
        super().__init__(name)
        self.heads, self.ff_units, self.rate, self.causal = heads, ff_units, dropout, causal

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.heads, spec.ff_units, spec.dropout, spec.causal)

    def build(self, x: Tensor, rng) -> None:
        require_sequence(self, x)
        n = self.name
        self.attn = MultiHeadAttention(f"{n}.attn", self.heads, None, self.causal, self.rate)
        self.norm1, self.norm2 = LayerNorm(f"{n}.norm1"), LayerNorm(f"{n}.norm2")
        self.ff1 = Dense(f"{n}.ff1", self.ff_units, "relu")
        self.ff2 = Dense(f"{n}.ff2", x.shape[-1])
        self.drop = Dropout(f"{n}.dropout", self.rate)
        self.rng = rng  # the sub-layers build on their first call, in forward

    def forward(self, x: Tensor, training: bool, mask=None) -> Tensor:
        a = self.sub(self.attn, x, training, mask)
        x = self.sub(self.norm1, x + self.sub(self.drop, a, training), training)
        f = self.sub(self.drop, self.sub(self.ff1, x, training), training)
        f = self.sub(self.ff2, f, training)
        return self.sub(self.norm2, x + self.sub(self.drop, f, training), training)
