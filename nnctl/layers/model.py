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
        self.output_mask = None  # the output's padding mask, from the last call

    def __call__(self, x: Tensor | dict, training: bool = False, masks: dict | None = None,
                 trace: dict | None = None) -> Tensor:
        """The output for input `x` (or a dict of named inputs: 'input', 'decoder_input'),
        each with its padding mask in `masks` (by input name; absent: no padding). Masks flow
        with the values (Layer.output_mask) to the layers that read them. `trace`, if given,
        receives every layer's output by name (summary reads it)."""
        values = dict(x) if isinstance(x, dict) else {MODEL_INPUT: x}
        mask_of = {n: (masks or {}).get(n) for n in values}
        for i in self.order:
            layer = self.layers[i]
            args = [values[n] for n in self.inputs[i]]
            arg_masks = [mask_of[n] for n in self.inputs[i]]
            several = layer.merge or len(args) > 1  # a merge, or extra inputs (state, memory)
            arg, mask = (args, arg_masks) if several else (args[0], arg_masks[0])
            try:
                out = layer(arg, training, self.rng, mask=mask)
                mask_of[self.names[i]] = layer.output_mask(arg, mask, out)
            except LayerError:
                raise
            except ShapeError as err:
                raise LayerError(err, i, layer.name) from None
            values[self.names[i]] = out
        if trace is not None:
            trace.update(values)
        self.output_mask = mask_of[self.names[self.output]]
        return values[self.names[self.output]]

    def layer_named(self, name: str) -> Layer:
        return self.layers[self.names.index(name)]

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
    layers: list = []
    names = spec.layer_names()
    for i, (s, name) in enumerate(zip(spec.layers, names)):
        if s.shares is not None:  # the original's object, filled in below
            layers.append(None)
            continue
        try:
            layers.append(LAYER_TYPES[s.kind].from_spec(s, name, hints))
        except ShapeError as err:
            raise LayerError(err, i, name) from None
    # a sharing layer is the original layer called again: the same parameters (and names),
    # so their gradients from every call add up
    layers = [layer if layer is not None else layers[names.index(s.shares)]
              for layer, s in zip(layers, spec.layers)]
    return Model(spec, layers, rng)
