"""Token embeddings (a lookup table) and sinusoidal positional encodings."""

from __future__ import annotations

from nnctl.errors import ShapeError
from nnctl.graph import Tensor
from nnctl.layers.base import Layer, register_layer
from nnctl.layers.init import sinusoidal_table


@register_layer
class Embedding(Layer):
    """y[..., :] = table[id]: integer ids [batch, ...] -> vectors [batch, ..., dim]. The
    gradient scatters (sums) into the rows that were looked up."""

    kind = "embedding"

    def __init__(self, name, dim, vocab, dtype="float32"):
        super().__init__(name)
        self.dim, self.vocab, self.dtype = dim, vocab, dtype

    @classmethod
    def from_spec(cls, spec, name, hints):
        vocab = spec.vocab
        # ids of a further input (a categorical column, say) have a vocabulary of their own
        reads = (spec.inputs or [None])[0]
        seen = hints.get("input_vocab", {}).get(reads, hints.get("vocab"))
        if vocab == "auto":
            vocab = seen
            if vocab is None:
                raise ShapeError("vocab: auto needs integer token ids as input, but the data's "
                                 "features are not integers", scope=name)
        if seen is not None and vocab < seen:
            raise ShapeError(f"vocab {vocab} is too small: the data has token ids up to "
                             f"{seen - 1}; use vocab: auto or at least {seen}", scope=name)
        return cls(name, spec.dim, vocab, hints.get("dtype", "float32"))

    def build(self, x: Tensor, rng) -> None:
        if x.dtype not in ("int32", "int64"):
            raise ShapeError(f"embedding needs integer token ids, got {x.dtype} input",
                             scope=self.name)
        self.table = self.add_param("table", (self.vocab, self.dim), "normal", rng, self.dtype)

    def forward(self, x: Tensor, training: bool) -> Tensor:
        return self.table.take(x)

    def output_mask(self, x, mask, out):
        return mask  # token ids [B, T] -> vectors [B, T, dim]: the same steps are real


@register_layer
class PositionalEncoding(Layer):
    """x + PE, with PE[t, 2i] = sin(t / 10000^(2i/d)), PE[t, 2i+1] = cos(...), on input
    [batch, time, features]."""

    kind = "positional_encoding"

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name)

    def forward(self, x: Tensor, training: bool) -> Tensor:
        if x.ndim != 3:
            raise ShapeError(f"positional_encoding needs input [batch, time, features], got "
                             f"{list(x.shape)}", scope=self.name)
        return x + Tensor(sinusoidal_table(x.shape[1], x.shape[2], x.dtype))
