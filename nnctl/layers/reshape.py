"""Reshape each sample; the batch axis is kept."""

from __future__ import annotations

from nnctl.graph import Tensor
from nnctl.layers.base import Layer


class Reshape(Layer):
    def __init__(self, name: str, shape: list[int]):
        super().__init__(name)
        self.shape = tuple(shape)

    def forward(self, x: Tensor, training: bool) -> Tensor:
        return x.reshape((x.shape[0],) + self.shape)
