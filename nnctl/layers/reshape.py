"""Reshape each sample; the batch axis is kept."""

from __future__ import annotations

import math

from nnctl.errors import ShapeError
from nnctl.graph import Tensor
from nnctl.layers.base import Layer


class Reshape(Layer):
    def __init__(self, name: str, shape: list[int]):
        super().__init__(name)
        self.shape = tuple(shape)

    def forward(self, x: Tensor, training: bool) -> Tensor:
        have, want = math.prod(x.shape[1:]), math.prod(self.shape)
        if have != want:
            raise ShapeError(f"cannot reshape each sample of shape {list(x.shape[1:])} "
                             f"({have} values) to {list(self.shape)} ({want} values)",
                             scope=self.name)
        return x.reshape((x.shape[0],) + self.shape)
