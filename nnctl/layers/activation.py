"""Activation functions by name, and the layer that applies one."""

from __future__ import annotations

from nnctl.graph import Tensor
from nnctl.layers.base import Layer

ACTIVATIONS = {
    "relu": Tensor.relu,
    "tanh": Tensor.tanh,
    "sigmoid": Tensor.sigmoid,
    "sin": Tensor.sin,
    "linear": lambda x: x,
}


class Activation(Layer):
    def __init__(self, name: str, function: str):
        super().__init__(name)
        self.function = function

    def forward(self, x: Tensor, training: bool) -> Tensor:
        return ACTIVATIONS[self.function](x)
