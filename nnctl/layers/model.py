"""build_model: a ModelSpec -> a Model, the layers in order with their parameters."""

from __future__ import annotations

from nnctl.config.schema import (ActivationSpec, DenseSpec, DropoutSpec, ModelSpec,
                                 ReshapeSpec)
from nnctl.errors import ShapeError
from nnctl.graph import Tensor
from nnctl.layers.activation import Activation
from nnctl.layers.base import Layer
from nnctl.layers.dense import Dense
from nnctl.layers.dropout import Dropout
from nnctl.layers.reshape import Reshape


def _make(spec, name: str) -> Layer:
    if isinstance(spec, DenseSpec):
        return Dense(name, spec.units, spec.activation, spec.init, spec.bias)
    if isinstance(spec, ActivationSpec):
        return Activation(name, spec.function)
    if isinstance(spec, DropoutSpec):
        return Dropout(name, spec.rate)
    if isinstance(spec, ReshapeSpec):
        return Reshape(name, spec.shape)
    raise TypeError(f"no layer for {type(spec).__name__}")


class LayerError(ShapeError):
    """A ShapeError raised inside the model, knowing which layer (index) it came from."""

    def __init__(self, err: ShapeError, index: int, layer: Layer):
        super().__init__(err.detail, op=err.op, scope=layer.name)
        self.index, self.layer = index, layer


class Model:
    """A stack of layers. Calling it emits the forward graph; parameters are shared between
    calls (the training graph and the evaluation graph use the same ones)."""

    def __init__(self, layers: list[Layer], rng):
        self.layers, self.rng = layers, rng

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        for i, layer in enumerate(self.layers):
            try:
                x = layer(x, training, self.rng)
            except LayerError:
                raise
            except ShapeError as err:
                raise LayerError(err, i, layer) from None
        return x

    @property
    def params(self) -> dict[str, Tensor]:
        return {k: v for layer in self.layers for k, v in layer.params.items()}

    @property
    def initial(self) -> dict:
        return {k: v for layer in self.layers for k, v in layer.initial.items()}


def build_model(spec: ModelSpec, rng) -> Model:
    """The layers of `spec`; `rng` (a NumPy Generator) draws the initial weights on first call."""
    return Model([_make(s, name) for s, name in zip(spec.layers, spec.layer_names())], rng)
