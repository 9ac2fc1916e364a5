"""Multi-head self-attention and the transformer encoder block.

Attention (Vaswani et al. 2017), on input [batch, time, features]:

    Q, K, V = x Wq + bq, x Wk + bk, x Wv + bv          each [batch, time, dim]
    per head: A = softmax(Q K^T / sqrt(dim / heads))  [batch, heads, time, time]
    y = concat_heads(A V) Wo + bo                       [batch, time, dim]

The heads are one batched matmul on [batch, heads, time, dim / heads] (reshape, then
transpose). A causal layer adds -1e9 to the scores of later positions, so position t attends
only to positions <= t; the softmax weights there are exactly 0.
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


@register_layer
class MultiHeadAttention(Layer):
    """Self-attention with `heads` heads over `dim` features (default: the input's).

    Parameters: weight_q, weight_k, weight_v [features, dim], weight_o [dim, dim] (Glorot
    uniform) and bias_q, bias_k, bias_v, bias_o [dim] (zeros), like PyTorch's
    in_proj_weight rows (transposed) and out_proj.
    """

    kind = "multi_head_attention"

    def __init__(self, name: str, heads: int, dim: int | None = None, causal: bool = False,
                 dropout: float = 0.0):
        super().__init__(name)
        self.heads, self.dim, self.causal = heads, dim, causal
        self.dropout = Dropout(f"{name}.dropout", dropout)  # on the attention weights

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.heads, spec.dim, spec.causal, spec.dropout)

    def build(self, x: Tensor, rng) -> None:
        require_sequence(self, x)
        features = x.shape[-1]
        d = self.dim = self.dim or features
        if d % self.heads:
            raise ShapeError(f"dim ({d}) must be divisible by heads ({self.heads})",
                             scope=self.name)
        self.w = {p: self.add_param(f"weight_{p}", (features, d), "glorot_uniform", rng,
                                    x.dtype) for p in "qkv"}
        self.w["o"] = self.add_param("weight_o", (d, d), "glorot_uniform", rng, x.dtype)
        self.b = {p: self.add_param(f"bias_{p}", (d,), "zeros", rng, x.dtype) for p in "qkvo"}

    def forward(self, x: Tensor, training: bool) -> Tensor:
        batch, time, _ = x.shape
        heads, d_head = self.heads, self.dim // self.heads

        def project(p: str) -> Tensor:  # [batch, heads, time, d_head]
            y = x @ self.w[p] + self.b[p]
            return y.reshape(batch, time, heads, d_head).transpose(0, 2, 1, 3)

        q, k, v = project("q"), project("k"), project("v")
        scores = (q @ k.mT) * (1.0 / math.sqrt(d_head))
        if self.causal:
            scores = scores + causal_mask(time, x.dtype)
        weights = self.dropout(scores.softmax(-1), training)
        y = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, time, self.dim)
        return y @ self.w["o"] + self.b["o"]


@register_layer
class TransformerEncoder(Layer):
    """One post-norm encoder block, as PyTorch's TransformerEncoderLayer (norm_first=False,
    relu):

        x = layer_norm(x + dropout(attention(x)))
        x = layer_norm(x + dropout(dense(relu(dense(x, ff_units)) -> dropout, features)))

    Built from the attention, dense, layer-norm and dropout layers, named `name.attn`,
    `name.norm1`, `name.ff1`, `name.ff2`, `name.norm2`; their parameters are this layer's
    (e.g. `name.attn.weight_q`, `name.ff1.weight`). The attention weights get the same
    dropout, as in PyTorch.
    """

    kind = "transformer_encoder"

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

    def sub(self, layer: Layer, x: Tensor, training: bool) -> Tensor:
        """Call a sub-layer and adopt its parameters, state and state updates."""
        y = layer(x, training, self.rng)
        self.params.update(layer.params)
        self.states.update(layer.states)
        self.initial.update(layer.initial)
        self.updates.update(layer.updates)
        return y

    def forward(self, x: Tensor, training: bool) -> Tensor:
        a = self.sub(self.attn, x, training)
        x = self.sub(self.norm1, x + self.sub(self.drop, a, training), training)
        f = self.sub(self.drop, self.sub(self.ff1, x, training), training)
        f = self.sub(self.ff2, f, training)
        return self.sub(self.norm2, x + self.sub(self.drop, f, training), training)
