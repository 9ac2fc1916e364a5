"""Layers that attend from one sequence to another: the transformer decoder block and the
global attention of recurrent sequence-to-sequence models (Luong et al. 2015, with Bahdanau's
additive score).

Both read two inputs, [queries, memory]: the decoder's sequence [batch, time, features] and
the encoder's output [batch, steps, memory features], each with its padding mask. The memory's
mask hides its padded steps (their attention weight is exactly 0); the output has the queries'
time axis and keeps their mask.
"""

from __future__ import annotations

from nnctl.errors import ShapeError
from nnctl.graph import Tensor
from nnctl.graph.tensor import concat
from nnctl.layers.attention import Block, MultiHeadAttention, key_mask_scores
from nnctl.layers.base import Layer, register_layer, require_sequence
from nnctl.layers.dense import Dense
from nnctl.layers.dropout import Dropout
from nnctl.layers.norm import LayerNorm


def queries_and_memory(layer: Layer, x, mask) -> tuple[Tensor, Tensor, Tensor | None,
                                                      Tensor | None]:
    """(queries, memory, their masks) from a two-input layer's arguments, or a ShapeError
    naming the layer when it was given one input or sequences that do not fit together."""
    if not isinstance(x, list) or len(x) != 2:
        got = f"{len(x)} inputs" if isinstance(x, list) else "one input"
        raise ShapeError(f"{layer.kind} reads two inputs [queries, memory] (name them in "
                         f"'inputs'), got {got}", scope=layer.name)
    query, memory = x
    require_sequence(layer, query)
    require_sequence(layer, memory)
    if query.shape[0] != memory.shape[0] or query.dtype != memory.dtype:
        raise ShapeError(f"the memory {list(memory.shape)} ({memory.dtype}) does not match the "
                         f"queries {list(query.shape)} ({query.dtype}) in batch and dtype",
                         scope=layer.name)
    query_mask, memory_mask = mask if mask is not None else (None, None)
    return query, memory, query_mask, memory_mask


@register_layer
class TransformerDecoder(Block):
    """One post-norm decoder block, as PyTorch's TransformerDecoderLayer (norm_first=False,
    relu), on inputs [x [batch, time, features], memory [batch, steps, memory features]]:

        x = layer_norm(x + dropout(causal_self_attention(x)))          keys: x's real steps
        x = layer_norm(x + dropout(attention(x, memory)))              keys: memory's real steps
        x = layer_norm(x + dropout(dense(relu(dense(x, ff_units)) -> dropout, features)))

    Position t attends to positions <= t of x (tgt_mask causal) and to every real step of the
    memory. Sub-layers (their parameters are this layer's): `name.self_attn`, `name.norm1`,
    `name.cross_attn`, `name.norm2`, `name.ff1`, `name.ff2`, `name.norm3`; PyTorch's
    self_attn / multihead_attn take in_proj_weight = concat(weight_q, weight_k, weight_v)^T,
    out_proj.weight = weight_o^T; linear1 = ff1, linear2 = ff2 (weight transposed);
    norm1..3 weight = gamma, bias = beta. The attention weights get the same dropout.
    """

    kind = "transformer_decoder"
    takes_mask = True

    def __init__(self, name: str, heads: int, ff_units: int, dropout: float = 0.1):
        super().__init__(name)
        self.heads, self.ff_units, self.rate = heads, ff_units, dropout

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.heads, spec.ff_units, spec.dropout)

    def build(self, x, rng) -> None:
        query, _, _, _ = queries_and_memory(self, x, None)
        n, features = self.name, query.shape[-1]
        self.self_attn = MultiHeadAttention(f"{n}.self_attn", self.heads, None, True, self.rate)
        self.cross_attn = MultiHeadAttention(f"{n}.cross_attn", self.heads, None, False,
                                             self.rate)
        self.norm1, self.norm2, self.norm3 = (LayerNorm(f"{n}.norm{i}") for i in (1, 2, 3))
        self.ff1 = Dense(f"{n}.ff1", self.ff_units, "relu")
        self.ff2 = Dense(f"{n}.ff2", features)
        self.drop = Dropout(f"{n}.dropout", self.rate)
        self.rng = rng  # the sub-layers build on their first call, in forward

    def forward(self, x, training: bool, mask=None) -> Tensor:
        x, memory, x_mask, memory_mask = queries_and_memory(self, x, mask)
        a = self.sub(self.self_attn, x, training, x_mask)
        x = self.sub(self.norm1, x + self.sub(self.drop, a, training), training)
        c = self.sub(self.cross_attn, [x, memory], training, [x_mask, memory_mask])
        x = self.sub(self.norm2, x + self.sub(self.drop, c, training), training)
        f = self.sub(self.drop, self.sub(self.ff1, x, training), training)
        f = self.sub(self.ff2, f, training)
        return self.sub(self.norm3, x + self.sub(self.drop, f, training), training)


SCORES = ("dot", "general", "additive")


@register_layer
class Attention(Layer):
    """Global attention (Luong, Pham & Manning 2015) on inputs [queries h [batch, time, H]
    (decoder states), memory s [batch, steps, M] (encoder states)]:

        score(h_t, s_j) = h_t . s_j                    dot (H == M)
                        = h_t W s_j                    general, W [H, M]
                        = v . tanh(h_t W_q + s_j W_m)  additive (Bahdanau et al. 2015),
                                                       W_q [H, A], W_m [M, A], v [A]
        a_t = softmax_j(score(h_t, s_j))     over the memory's real steps (padding: weight 0)
        c_t = sum_j a_tj s_j                 the context [batch, time, M]
        y_t = tanh([c_t; h_t] W_c)           the attentional hidden state, W_c [M + H, units]

    Parameters: `name.weight` (general) or `name.weight_query`, `name.weight_memory`,
    `name.v` (additive), and `name.weight_c`; Glorot uniform, no biases (as in the papers).
    `units` defaults to H, `score_units` (A) to H.
    """

    kind = "attention"
    takes_mask = True

    def __init__(self, name: str, score: str = "general", units: int | None = None,
                 score_units: int | None = None):
        super().__init__(name)
        if score not in SCORES:
            raise ShapeError(f"score must be one of {', '.join(SCORES)}, got {score!r}",
                             scope=name)
        self.score, self.units, self.score_units = score, units, score_units

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.score, spec.units, spec.score_units)

    def build(self, x, rng) -> None:
        query, memory, _, _ = queries_and_memory(self, x, None)
        h, m, dtype = query.shape[-1], memory.shape[-1], query.dtype
        if self.score == "dot" and h != m:
            raise ShapeError(f"score 'dot' needs queries and memory of the same features, got "
                             f"{h} and {m} (use score 'general' or 'additive')", scope=self.name)
        if self.score == "general":
            self.w = self.add_param("weight", (h, m), "glorot_uniform", rng, dtype)
        elif self.score == "additive":
            a = self.score_units = self.score_units or h
            self.w_query = self.add_param("weight_query", (h, a), "glorot_uniform", rng, dtype)
            self.w_memory = self.add_param("weight_memory", (m, a), "glorot_uniform", rng, dtype)
            # a vector: glorot over (a, 1) keeps it the scale of a one-output dense layer
            self.v = self.add_param("v", (a,), "glorot_uniform", rng, dtype, fan=(a, 1))
        self.units = self.units or h
        self.w_c = self.add_param("weight_c", (m + h, self.units), "glorot_uniform", rng, dtype)

    def scores(self, query: Tensor, memory: Tensor) -> Tensor:
        """score(h_t, s_j) for every pair: [batch, time, steps]."""
        if self.score == "dot":
            return query @ memory.mT
        if self.score == "general":
            return (query @ self.w) @ memory.mT
        batch, time, _ = query.shape
        steps, a = memory.shape[1], self.score_units
        # [batch, time, 1, A] + [batch, 1, steps, A]: every (t, j) pair, then v . tanh(.)
        hidden = ((query @ self.w_query).reshape(batch, time, 1, a)
                  + (memory @ self.w_memory).reshape(batch, 1, steps, a)).tanh()
        return (hidden @ self.v.reshape(a, 1)).reshape(batch, time, steps)

    def forward(self, x, training: bool, mask=None) -> Tensor:
        query, memory, _, memory_mask = queries_and_memory(self, x, mask)
        scores = self.scores(query, memory)
        if memory_mask is not None:
            scores = scores + key_mask_scores(memory_mask, 1)
        context = scores.softmax(-1) @ memory
        return (concat([context, query], axis=-1) @ self.w_c).tanh()
