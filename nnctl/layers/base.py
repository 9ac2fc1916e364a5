"""Layer: emits Tensor ops and owns parameters. No layer writes a derivative.

Parameters are created on the first call, when the input shape is known (as Keras's build),
as symbolic parameter tensors; their initial values are drawn once and kept in `initial`.
"""

from __future__ import annotations

from nnctl.graph import Tensor, name_scope, parameter
from nnctl.layers.init import INITIALIZERS


class Layer:
    def __init__(self, name: str):
        self.name = name
        self.params: dict[str, Tensor] = {}   # full name -> symbolic parameter
        self.initial: dict[str, object] = {}  # full name -> host array
        self.built = False

    def add_param(self, local: str, shape: tuple[int, ...], init: str, rng, dtype: str) -> Tensor:
        full = f"{self.name}.{local}"
        self.params[full] = parameter(full, shape, dtype)
        self.initial[full] = INITIALIZERS[init](rng, shape, dtype)
        return self.params[full]

    def build(self, x: Tensor, rng) -> None:
        """Create parameters for an input like `x`; layers without parameters do nothing."""

    def forward(self, x: Tensor, training: bool) -> Tensor:
        raise NotImplementedError

    def __call__(self, x: Tensor, training: bool = False, rng=None) -> Tensor:
        with name_scope(self.name):
            if not self.built:
                self.build(x, rng)
                self.built = True
            return self.forward(x, training)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
