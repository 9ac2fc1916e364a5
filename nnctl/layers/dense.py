"""Fully connected layer: y = f(x W + b), on the last axis (so [batch, time, features] works)."""

from __future__ import annotations

from nnctl.errors import ShapeError
from nnctl.graph import Tensor
from nnctl.layers.activation import ACTIVATIONS
from nnctl.layers.base import Layer, register_layer, require_float_input


def resolve_init(init: str, activation: str) -> str:
    # He initialisation keeps relu activations' variance; Glorot suits the symmetric ones
    if init != "auto":
        return init
    return "he_uniform" if activation == "relu" else "glorot_uniform"


@register_layer
class Dense(Layer):
    kind = "dense"

    def __init__(self, name: str, units: int, activation: str = "linear", init: str = "auto",
                 bias: bool = True):
        super().__init__(name)
        self.units, self.activation, self.bias = units, activation, bias
        self.init = resolve_init(init, activation)

    @classmethod
    def from_spec(cls, spec, name, hints):
        units = spec.units
        if units == "classes":
            units = hints.get("classes")
            if units is None:
                raise ShapeError("units: classes needs class labels, but the data has "
                                 "regression targets", scope=name)
        return cls(name, units, spec.activation, spec.init, spec.bias)

    def build(self, x: Tensor, rng) -> None:
        if x.ndim < 2:
            raise ShapeError(f"dense needs input [batch, features], got {list(x.shape)}",
                             scope=self.name)
        require_float_input(self, x)
        self.w = self.add_param("weight", (x.shape[-1], self.units), self.init, rng, x.dtype)
        self.b = self.add_param("bias", (self.units,), "zeros", rng, x.dtype) if self.bias else None

    def forward(self, x: Tensor, training: bool) -> Tensor:
        y = x @ self.w
        if self.b is not None:
            y = y + self.b
        return ACTIVATIONS[self.activation](y)
