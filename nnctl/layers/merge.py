"""Layers that join the outputs of several layers: add (residual connections) and concat."""

from __future__ import annotations

from nnctl.errors import ShapeError
from nnctl.graph import Tensor
from nnctl.layers.base import Layer, register_layer


@register_layer
class Add(Layer):
    kind = "add"
    merge = True

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name)

    def forward(self, xs: list[Tensor], training: bool) -> Tensor:
        shapes = {x.shape for x in xs}
        if len(shapes) != 1:
            raise ShapeError("add needs inputs of one shape, got "
                             + ", ".join(str(list(x.shape)) for x in xs), scope=self.name)
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


@register_layer
class Concat(Layer):
    kind = "concat"
    merge = True

    def __init__(self, name: str, axis: int = -1):
        super().__init__(name)
        self.axis = axis

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.axis)

    def forward(self, xs: list[Tensor], training: bool) -> Tensor:
        from nnctl.graph.tensor import concat
        return concat(xs, axis=self.axis)

    def output_mask(self, xs, masks, out):
        """Sequences joined in time (axis 1) join their masks, in order; an input without a
        mask leaves the output without one. Along other axes: the first input's mask."""
        if out.ndim < 3 or self.axis % out.ndim != 1:
            return super().output_mask(xs, masks, out)
        masks = list(masks or [None] * len(xs))
        if any(m is None for m in masks):
            return None
        from nnctl.graph.tensor import concat
        return concat(masks, axis=1)
