"""Activation functions by name, and the layer that applies one."""

from __future__ import annotations

from nnctl.graph import Tensor
from nnctl.layers.base import Layer, register_layer

ACTIVATIONS = {
    "relu": Tensor.relu,
    "tanh": Tensor.tanh,
    "sigmoid": Tensor.sigmoid,
    "sin": Tensor.sin,
    "leaky_relu": Tensor.leaky_relu,  # slope 0.01
    "elu": Tensor.elu,
    "gelu": Tensor.gelu,  # the tanh approximation
    "softplus": Tensor.softplus,
    "linear": lambda x: x,
}


@register_layer
class Activation(Layer):
    kind = "activation"

    def __init__(self, name: str, function: str):
        super().__init__(name)
        self.function = function

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.function)

    def forward(self, x: Tensor, training: bool) -> Tensor:
        return ACTIVATIONS[self.function](x)
