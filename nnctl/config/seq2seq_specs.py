"""Config specs of the seq2seq layers and data kinds (registered into the vocabulary)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nnctl.config.layer_specs import LayerSpec, fraction, positive, register_layer_spec
from nnctl.config.validate import Context, choice, field, optional


class _TwoInputs:
    """A layer that reads [queries, memory]: both must be named in `inputs`."""

    max_inputs: ClassVar[int] = 2

    def validate(self, path, ctx: Context) -> None:
        # three or more are refused by the model's check of max_inputs
        if len(self.inputs or ()) < 2:
            ctx.error(path + ("inputs",), f"{self.kind} reads two inputs [queries, memory] "
                                          "(e.g. inputs: [decoder, encoder])")


@dataclass(frozen=True, kw_only=True)
class TransformerDecoderSpec(_TwoInputs, LayerSpec):
    kind: ClassVar[str] = "transformer_decoder"
    heads: int = field(positive, doc="attention heads; the first input's features must be "
                                     "divisible by it")
    ff_units: int = field(positive, doc="hidden units of the feed-forward part (relu)")
    dropout: float = field(fraction, 0.1, "dropout on the attention weights and after the "
                           "attention and feed-forward parts, while training")


@dataclass(frozen=True, kw_only=True)
class AttentionSpec(_TwoInputs, LayerSpec):
    kind: ClassVar[str] = "attention"
    score: str = field(choice("dot", "general", "additive"), "general",
                       "score of a query h and a memory step s: dot h.s, general h W s "
                       "(Luong), additive v.tanh(h Wq + s Wm) (Bahdanau)")
    units: int | None = field(optional(positive), None, "output features of tanh([context; "
                              "query] W_c) (default: the queries' features)")
    score_units: int | None = field(optional(positive), None, "hidden size of the additive "
                                    "score (default: the queries' features)")


for _spec in (TransformerDecoderSpec, AttentionSpec):
    register_layer_spec(_spec)
