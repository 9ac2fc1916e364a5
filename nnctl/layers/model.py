"""build_model: a ModelSpec -> a Model, a DAG of layers with their parameters and state."""

from __future__ import annotations

from nnctl.config.layer_specs import MODEL_INPUT, ModelSpec
from nnctl.errors import ShapeError
from nnctl.graph import Tensor
from nnctl.layers.base import LAYER_TYPES, Layer


class LayerError(ShapeError):
    """A ShapeError raised inside the model, knowing which layer (index) it came from."""

    def __init__(self, err: ShapeError, index: int, layer_name: str):
        super().__init__(err.detail, op=err.op, scope=layer_name)
        self.index = index


class Model:
    """Layers wired as the spec says. Calling it emits the forward graph; parameters are
    shared between calls (the training graph and the evaluation graph use the same ones)."""

    def __init__(self, spec: ModelSpec, layers: list[Layer], rng):
        self.layers, self.rng = layers, rng
        self.names = spec.layer_names()
        self.inputs = spec.layer_inputs()
        self.order = spec.order()
        self.output = spec.output_index()

    def __call__(self, x: Tensor, training: bool = False) -> Tensor:
        values = {MODEL_INPUT: x}
        for i in self.order:
            layer = self.layers[i]
            args = [values[n] for n in self.inputs[i]]
            try:
                values[self.names[i]] = layer(args if layer.merge else args[0], training,
                                              self.rng)
            except LayerError:
                raise
            except ShapeError as err:
                raise LayerError(err, i, layer.name) from None
        return values[self.names[self.output]]

    @property
    def params(self) -> dict[str, Tensor]:
        """Trainable parameters, by full name (layer.param)."""
        return {k: v for layer in self.layers for k, v in layer.params.items()}

    @property
    def states(self) -> dict[str, Tensor]:
        """Non-trainable state (running statistics), by full name."""
        return {k: v for layer in self.layers for k, v in layer.states.items()}

    @property
    def updates(self) -> dict[str, Tensor]:
        """New state values from the last training-mode call, by state name."""
        return {k: v for layer in self.layers for k, v in layer.updates.items()}

    @property
    def initial(self) -> dict:
        return {k: v for layer in self.layers for k, v in layer.initial.items()}


def build_model(spec: ModelSpec, rng, hints: dict | None = None) -> Model:
    """The layers of `spec`; `rng` (a NumPy Generator) draws the initial weights on first
    call. `hints` are facts about the data some layers ask for: "classes", "vocab", "dtype"."""
    hints = hints or {}
    layers = []
    for i, (s, name) in enumerate(zip(spec.layers, spec.layer_names())):
        try:
            layers.append(LAYER_TYPES[s.kind].from_spec(s, name, hints))
        except ShapeError as err:
            raise LayerError(err, i, name) from None
    return Model(spec, layers, rng)
