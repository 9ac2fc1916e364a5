"""Reshape and flatten each sample; the batch axis is kept."""

from __future__ import annotations

import math

from nnctl.errors import ShapeError
from nnctl.graph import Tensor
from nnctl.layers.base import Layer, register_layer


@register_layer
class Reshape(Layer):
    kind = "reshape"

    def __init__(self, name: str, shape: list[int]):
        super().__init__(name)
        self.shape = tuple(shape)

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.shape)

    def forward(self, x: Tensor, training: bool) -> Tensor:
        have, want = math.prod(x.shape[1:]), math.prod(self.shape)
        if have != want:
            raise ShapeError(f"cannot reshape each sample of shape {list(x.shape[1:])} "
                             f"({have} values) to {list(self.shape)} ({want} values)",
                             scope=self.name)
        return x.reshape((x.shape[0],) + self.shape)


@register_layer
class Flatten(Layer):
    kind = "flatten"

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name)

    def forward(self, x: Tensor, training: bool) -> Tensor:
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))
