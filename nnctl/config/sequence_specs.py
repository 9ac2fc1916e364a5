"""Config specs of the recurrent, attention and sequence-pooling layers (registered into the
layer vocabulary)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nnctl.config.layer_specs import LayerSpec, fraction, positive, register_layer_spec
from nnctl.config.validate import Context, boolean, choice, field, optional


@dataclass(frozen=True, kw_only=True)
class RecurrentSpec(LayerSpec):
    """Keys rnn, lstm and gru share. `inputs: [sequence, state]` starts the recurrence from
    the state [batch, units] (lstm: also [batch, 2 * units], h_0 and c_0) instead of zeros."""

    max_inputs: ClassVar[int] = 2
    units: int = field(positive, doc="size of the hidden state h")
    return_sequences: bool = field(boolean, False, "output h at every step [batch, time, units] "
                                   "instead of the last h [batch, units]")
    layers: int = field(positive, 1, "stacked recurrent layers, each reading the sequence of "
                        "the one below")
    bias: bool = field(boolean, True, "add learned gate biases")


@dataclass(frozen=True, kw_only=True)
class RNNSpec(RecurrentSpec):
    kind: ClassVar[str] = "rnn"


@dataclass(frozen=True, kw_only=True)
class LSTMSpec(RecurrentSpec):
    kind: ClassVar[str] = "lstm"


@dataclass(frozen=True, kw_only=True)
class GRUSpec(RecurrentSpec):
    kind: ClassVar[str] = "gru"


@dataclass(frozen=True, kw_only=True)
class MultiHeadAttentionSpec(LayerSpec):
    kind: ClassVar[str] = "multi_head_attention"
    max_inputs: ClassVar[int] = 2  # [queries, memory]: cross-attention
    heads: int = field(positive, doc="attention heads; dim must be divisible by it")
    dim: int | None = field(optional(positive), None,
                            "features of queries, keys, values and the output (default: the "
                            "input's features)")
    causal: bool = field(boolean, False, "position t attends only to positions <= t")
    dropout: float = field(fraction, 0.0, "dropout on the attention weights while training")

    def validate(self, path, ctx: Context) -> None:
        if self.dim is not None and self.dim % self.heads:
            ctx.error(path + ("dim",), f"dim ({self.dim}) must be divisible by heads "
                                       f"({self.heads})")


@dataclass(frozen=True, kw_only=True)
class TransformerEncoderSpec(LayerSpec):
    kind: ClassVar[str] = "transformer_encoder"
    heads: int = field(positive, doc="attention heads; the input's features must be "
                                     "divisible by it")
    ff_units: int = field(positive, doc="hidden units of the feed-forward part (relu)")
    dropout: float = field(fraction, 0.1, "dropout on the attention weights and after the "
                           "attention and feed-forward parts, while training")
    causal: bool = field(boolean, False, "position t attends only to positions <= t")


@dataclass(frozen=True, kw_only=True)
class SequencePoolSpec(LayerSpec):
    kind: ClassVar[str] = "sequence_pool"
    mode: str = field(choice("mean", "max", "last"), "mean",
                      "mean, max or last over the real (unpadded) steps: [batch, time, "
                      "features] -> [batch, features]")


for _spec in (RNNSpec, LSTMSpec, GRUSpec, MultiHeadAttentionSpec, TransformerEncoderSpec,
              SequencePoolSpec):
    register_layer_spec(_spec)
