"""Image layers on [batch, channels, height, width]: conv2d and the two poolings."""

from __future__ import annotations

from nnctl.errors import ShapeError
from nnctl.graph import Tensor, apply
from nnctl.layers.activation import ACTIVATIONS
from nnctl.layers.base import Layer, register_layer, require_float_input
from nnctl.layers.dense import resolve_init


def _need_image(layer: Layer, x: Tensor) -> None:
    if x.ndim != 4:
        raise ShapeError(f"{layer.kind} needs input [batch, channels, height, width], got "
                         f"{list(x.shape)}; a reshape layer such as 'reshape: [1, 8, 8]' "
                         "makes images from flat features", scope=layer.name)


@register_layer
class Conv2d(Layer):
    kind = "conv2d"

    def __init__(self, name, filters, kernel, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                 groups=1, activation="linear", init="auto", bias=True):
        super().__init__(name)
        self.filters, self.kernel, self.stride = filters, tuple(kernel), tuple(stride)
        self.dilation, self.groups, self.activation = tuple(dilation), groups, activation
        self.padding = padding
        self.init, self.bias = resolve_init(init, activation), bias

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.filters, spec.kernel, spec.stride, spec.padding, spec.dilation,
                   spec.groups, spec.activation, spec.init, spec.bias)

    def _padding(self) -> tuple[int, int]:
        if self.padding == "valid":
            return (0, 0)
        if self.padding == "same":
            span = [d * (k - 1) for d, k in zip(self.dilation, self.kernel)]
            if any(s % 2 for s in span):
                raise ShapeError("padding 'same' needs an odd (dilated) kernel size",
                                 scope=self.name)
            return (span[0] // 2, span[1] // 2)
        return tuple(self.padding)

    def build(self, x: Tensor, rng) -> None:
        _need_image(self, x)
        require_float_input(self, x)
        channels = x.shape[1]
        if channels % self.groups:
            raise ShapeError(f"input channels ({channels}) must be divisible by groups "
                             f"({self.groups})", scope=self.name)
        kh, kw = self.kernel
        per_group = channels // self.groups
        fan_in, fan_out = per_group * kh * kw, self.filters // self.groups * kh * kw
        self.w = self.add_param("weight", (self.filters, per_group, kh, kw), self.init, rng,
                                x.dtype, fan=(fan_in, fan_out))
        self.b = (self.add_param("bias", (self.filters,), "zeros", rng, x.dtype)
                  if self.bias else None)

    def forward(self, x: Tensor, training: bool) -> Tensor:
        y = apply("conv2d", x, self.w, stride=self.stride, padding=self._padding(),
                  dilation=self.dilation, groups=self.groups)
        if self.b is not None:
            y = y + self.b.reshape(1, self.filters, 1, 1)
        return ACTIVATIONS[self.activation](y)


class _Pool2d(Layer):
    op = ""

    def __init__(self, name, kernel, stride=None, padding=(0, 0)):
        super().__init__(name)
        self.kernel, self.padding = tuple(kernel), tuple(padding)
        self.stride = tuple(stride) if stride else self.kernel

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.kernel, spec.stride, spec.padding)

    def forward(self, x: Tensor, training: bool) -> Tensor:
        _need_image(self, x)
        return apply(self.op, x, kernel=self.kernel, stride=self.stride, padding=self.padding)


@register_layer
class MaxPool2d(_Pool2d):
    kind = op = "max_pool2d"


@register_layer
class AvgPool2d(_Pool2d):
    kind = op = "avg_pool2d"
