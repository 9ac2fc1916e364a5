"""Inverted dropout: while training, zero each element with probability `rate` and scale the
rest by 1/(1 - rate), so evaluation needs no rescaling."""

from __future__ import annotations

from nnctl.graph import Tensor, random_bernoulli
from nnctl.layers.base import Layer, register_layer


@register_layer
class Dropout(Layer):
    kind = "dropout"

    def __init__(self, name: str, rate: float):
        super().__init__(name)
        self.rate = rate

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.rate)

    def forward(self, x: Tensor, training: bool) -> Tensor:
        if not training or self.rate == 0:
            return x
        keep = 1.0 - self.rate
        return x * random_bernoulli(x.shape, keep, x.dtype) * (1.0 / keep)
