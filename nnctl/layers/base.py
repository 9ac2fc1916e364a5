"""Layer: emits Tensor ops and owns parameters. No layer writes a derivative.

Parameters are created on the first call, when the input shape is known (as Keras's build),
as symbolic parameter tensors; their initial values are drawn once and kept in `initial`.
A layer may also own state (batch norm's running statistics): non-trainable tensors fed like
parameters, whose new values a training-mode call leaves in `updates`.
"""

from __future__ import annotations

from nnctl.errors import ShapeError
from nnctl.graph import Node, Tensor, name_scope, parameter
from nnctl.layers.init import INITIALIZERS, fans
from nnctl.ops.registry import Aval

LAYER_TYPES: dict[str, type] = {}


def require_float_input(layer: "Layer", x: Tensor) -> None:
    if x.dtype not in ("float32", "float64"):
        raise ShapeError(f"{layer.kind} needs float input, got {x.dtype} (token ids need an "
                         "embedding layer first)", scope=layer.name)


def require_sequence(layer: "Layer", x: Tensor) -> None:
    """Recurrent and attention layers read float [batch, time, features]."""
    if x.ndim != 3:
        raise ShapeError(f"{layer.kind} needs input [batch, time, features], got "
                         f"{list(x.shape)}", scope=layer.name)
    require_float_input(layer, x)


def register_layer(cls):
    """Make a Layer class the implementation of the config's layer type `cls.kind`."""
    LAYER_TYPES[cls.kind] = cls
    return cls


class Layer:
    kind = ""
    merge = False  # merge layers are called with a list of tensors
    # A layer that reads a padding mask sets this and takes `forward(x, training, mask=None)`:
    # mask is [batch, time] in the model's float dtype, 1 at real steps and 0 at padding (a
    # list of such, or None, for a merge layer), or None when the input has no padding.
    takes_mask = False

    def __init__(self, name: str):
        self.name = name
        self.params: dict[str, Tensor] = {}   # full name -> trainable parameter
        self.states: dict[str, Tensor] = {}   # full name -> non-trainable state
        self.initial: dict[str, object] = {}  # full name -> host array
        self.updates: dict[str, Tensor] = {}  # full state name -> its new value (training)
        self.built = False

    @classmethod
    def from_spec(cls, spec, name: str, hints: dict) -> "Layer":
        """The layer a config spec describes; `hints` holds facts about the data
        ("classes", "vocab") for specs that ask for them."""
        raise NotImplementedError

    def add_param(self, local: str, shape: tuple[int, ...], init: str, rng, dtype: str,
                  fan: tuple[int, int] | None = None) -> Tensor:
        full = f"{self.name}.{local}"
        self.params[full] = parameter(full, shape, dtype)
        self.initial[full] = INITIALIZERS[init](rng, shape, dtype, *(fan or fans(shape)))
        return self.params[full]

    def add_state(self, local: str, shape: tuple[int, ...], init: str, rng, dtype: str) -> Tensor:
        full = f"{self.name}.{local}"
        node = Node("parameter", (), {"trainable": False}, Aval(tuple(shape), dtype), name=full,
                    scope=self.name)
        self.states[full] = Tensor(node=node)
        self.initial[full] = INITIALIZERS[init](rng, shape, dtype, 1, 1)
        return self.states[full]

    def update_state(self, state: Tensor, value: Tensor) -> None:
        self.updates[state.node.name] = value

    def build(self, x, rng) -> None:
        """Create parameters for an input like `x`; layers without parameters do nothing."""

    def forward(self, x, training: bool):
        raise NotImplementedError

    def output_mask(self, x, mask, out):
        """The padding mask of this layer's output, given its input's (`mask` as forward gets
        it). By default a mask passes through a layer that keeps the batch and time axes
        ([B, T, ...] in, [B, T, ...] out, same rank); a layer that reduces or reshapes time
        (pooling over time, a recurrent layer's last state, flatten) drops it. Merge layers
        pass on the first input's mask."""
        if isinstance(x, list):  # a merge, or a layer given extra inputs: the first input's
            x, mask = x[0], (mask or [None])[0]
        if mask is None or out.ndim != x.ndim or out.ndim < 2:
            return None
        return mask if tuple(out.shape[:2]) == tuple(x.shape[:2]) else None

    def __call__(self, x, training: bool = False, rng=None, mask=None):
        with name_scope(self.name):
            if not self.built:
                self.build(x, rng)
                self.built = True
            self.updates = {}
            if self.takes_mask:
                return self.forward(x, training, mask=mask)
            return self.forward(x, training)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
