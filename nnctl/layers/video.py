"""Video layers: 3-D convolution and pooling on [batch, channels, frames, height, width]
(PyTorch's layout), a wrapper that applies any layer to each frame of [batch, frames, ...],
and two small shape layers (permute the per-sample axes; pick one frame).

No new op: conv3d is one conv2d over frames folded into the batch axis, its kernel's time
taps stacked into the channel axis; the 3-D poolings are a 2-D pooling over each frame
followed by a 2-D pooling over time (a [frames, height*width] image). So every gradient
comes from the existing ops' derivatives, first and second order, and export-graph draws
each step.
"""

from __future__ import annotations

import numpy as np

from nnctl.errors import ShapeError
from nnctl.graph import Tensor, apply, constant
from nnctl.layers.activation import ACTIVATIONS
from nnctl.layers.base import LAYER_TYPES, Layer, register_layer, require_float_input
from nnctl.layers.dense import resolve_init


def _need_volume(layer: Layer, x: Tensor) -> None:
    if x.ndim != 5:
        raise ShapeError(f"{layer.kind} needs input [batch, channels, frames, height, width], "
                         f"got {list(x.shape)}; frames stored [batch, frames, channels, height, "
                         "width] become that with 'permute: [2, 1, 3, 4]'", scope=layer.name)
    require_float_input(layer, x)


def _triple(v) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(v)


class _ChannelsFirst(Layer):
    """Axis 1 is channels, not time: a [batch, time] padding mask does not describe the
    output."""

    def output_mask(self, x, mask, out):
        return None


@register_layer
class Conv3d(_ChannelsFirst):
    """y[b, f, t, i, j] = act(bias[f] + sum over c in f's group, (u, v, w) < kernel of
    w[f, c, u, v, w] * x_padded[b, c, t*st + u*dt, i*sh + v*dh, j*sw + w*dw]),
    as torch.nn.functional.conv3d (cross-correlation).

    Weights are [filters, channels / groups, kt, kh, kw] (PyTorch's layout). padding 'same'
    (stride 1) pads dilation*(kernel-1) zeros along each axis, the odd one after, so frames,
    height and width are kept; 'valid' pads nothing.

    Computed as one conv2d: the kt frames each output frame reads (x_padded[:, :, t*st + u*dt]
    for u < kt, gathered by a matmul with a constant 0/1 matrix over the frame axis) are put
    next to the channels, [B*T', C*kt, H, W], and convolved with the weights viewed as
    [filters, C/groups*kt, kh, kw]; (c, u) is channel c*kt + u, so a group's channels stay
    together and groups carry over unchanged."""

    kind = "conv3d"

    def __init__(self, name, filters, kernel, stride=1, padding=0, dilation=1, groups=1,
                 activation="linear", init="auto", bias=True):
        super().__init__(name)
        self.filters, self.kernel, self.stride = filters, _triple(kernel), _triple(stride)
        self.padding = padding if isinstance(padding, str) else _triple(padding)
        self.dilation, self.groups = _triple(dilation), groups
        self.activation, self.init, self.bias = activation, resolve_init(init, activation), bias

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.filters, spec.kernel, spec.stride, spec.padding, spec.dilation,
                   spec.groups, spec.activation, spec.init, spec.bias)

    def _pads(self) -> list[tuple[int, int]]:
        """Zeros (before, after) along frames, height and width."""
        if self.padding == "valid":
            return [(0, 0)] * 3
        if self.padding == "same":
            spans = [d * (k - 1) for d, k in zip(self.dilation, self.kernel)]
            return [(s // 2, s - s // 2) for s in spans]
        return [(p, p) for p in self.padding]

    def build(self, x: Tensor, rng) -> None:
        _need_volume(self, x)
        channels = x.shape[1]
        if channels % self.groups or self.filters % self.groups:
            raise ShapeError(f"input channels ({channels}) and filters ({self.filters}) must "
                             f"be divisible by groups ({self.groups})", scope=self.name)
        per_group, taps = channels // self.groups, self.kernel[0] * self.kernel[1] * self.kernel[2]
        fan_in, fan_out = per_group * taps, self.filters // self.groups * taps
        self.w = self.add_param("weight", (self.filters, per_group, *self.kernel), self.init,
                                rng, x.dtype, fan=(fan_in, fan_out))
        self.b = (self.add_param("bias", (self.filters,), "zeros", rng, x.dtype)
                  if self.bias else None)

    def forward(self, x: Tensor, training: bool) -> Tensor:
        _need_volume(self, x)
        (kt, kh, kw), (st, sh, sw), (dt, dh, dw) = self.kernel, self.stride, self.dilation
        (pt, pt_after), (ph, ph_after), (pw, pw_after) = self._pads()
        batch, channels, height, width = x.shape[0], x.shape[1], x.shape[3], x.shape[4]
        for name, size, k, d, pad in (("frames", x.shape[2], kt, dt, pt + pt_after),
                                      ("height", height, kh, dh, ph + ph_after),
                                      ("width", width, kw, dw, pw + pw_after)):
            reach = d * (k - 1) + 1
            if size + pad < reach:
                raise ShapeError(f"the input's {name} ({size}, padded {size + pad}) are fewer "
                                 f"than the (dilated) kernel's reach {reach}", scope=self.name)
        select, frames = _frame_taps(x.shape[2], kt, st, dt, pt, pt_after)
        # every output frame's kt input frames, zeros where they fall in the padding:
        # [B, C, H, W, T] @ [T, kt*T'] -> [B, C, H, W, kt, T'] -> [B*T', C*kt, H, W]
        cols = x.transpose(0, 1, 3, 4, 2) @ constant(select, x.dtype)
        cols = cols.reshape(batch, channels, height, width, kt, frames)
        cols = cols.transpose(0, 5, 1, 4, 2, 3).reshape(batch * frames, channels * kt,
                                                         height, width)
        w = self.w.reshape(self.filters, self.w.shape[1] * kt, kh, kw)
        # conv2d pads symmetrically: an uneven 'same' (even span) pads the larger side on
        # both and drops the one extra window at the start (stride is 1 there)
        y = apply("conv2d", cols, w, stride=(sh, sw), padding=(ph_after, pw_after),
                  dilation=(dh, dw), groups=self.groups)  # [B*T', F, H', W']
        if ph != ph_after or pw != pw_after:
            y = y[:, :, ph_after - ph:, pw_after - pw:]
        y = y.reshape(batch, frames, self.filters, y.shape[2], y.shape[3])
        y = y.transpose(0, 2, 1, 3, 4)
        if self.b is not None:
            y = y + self.b.reshape(1, self.filters, 1, 1, 1)
        return ACTIVATIONS[self.activation](y)


def _frame_taps(length: int, kernel: int, stride: int, dilation: int, before: int,
                after: int) -> tuple[np.ndarray, int]:
    """A 0/1 matrix [length, kernel * out] whose column (u, t) picks input frame
    t*stride + u*dilation - before (all zeros where that falls in the padding), and `out`,
    the number of output frames. A matmul with it gathers and pads the frames in one op,
    without a pad op on the batch's symbolic axis."""
    out = (length + before + after - dilation * (kernel - 1) - 1) // stride + 1
    select = np.zeros((length, kernel, out))
    for u in range(kernel):
        for t in range(out):
            s = t * stride + u * dilation - before
            if 0 <= s < length:
                select[s, u, t] = 1.0
    return select.reshape(length, kernel * out), out


class _Pool3d(_ChannelsFirst):
    """Pooling over (frames, height, width) windows as two 2-D poolings: each frame's
    (height, width) windows first (frames folded into the channel axis), then windows of
    frames (a [frames, height*width] image per channel). A max of maxima and a mean of equal
    sized means (padding counted as zeros) are the 3-D window's max and mean."""

    op = ""

    def __init__(self, name, kernel, stride=None, padding=0):
        super().__init__(name)
        self.kernel, self.padding = _triple(kernel), _triple(padding)
        self.stride = _triple(stride) if stride else self.kernel

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.kernel, spec.stride, spec.padding)

    def forward(self, x: Tensor, training: bool) -> Tensor:
        _need_volume(self, x)
        (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = self.kernel, self.stride, self.padding
        for axis, name in ((2, "frames"), (3, "height"), (4, "width")):
            k, p = self.kernel[axis - 2], self.padding[axis - 2]
            if x.shape[axis] + 2 * p < k:
                raise ShapeError(f"the input's {name} ({x.shape[axis]}, padded "
                                 f"{x.shape[axis] + 2 * p}) are fewer than the window ({k})",
                                 scope=self.name)
        b, c, t = x.shape[:3]
        if (kh, kw, sh, sw, ph, pw) != (1, 1, 1, 1, 0, 0):
            x = x.reshape(b, c * t, x.shape[3], x.shape[4])
            x = apply(self.op, x, kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw))
            x = x.reshape(b, c, t, x.shape[2], x.shape[3])
        if (kt, st, pt) == (1, 1, 0):
            return x
        h, w = x.shape[3], x.shape[4]
        y = apply(self.op, x.reshape(b, c, t, h * w), kernel=(kt, 1), stride=(st, 1),
                  padding=(pt, 0))
        return y.reshape(b, c, y.shape[2], h, w)


@register_layer
class MaxPool3d(_Pool3d):
    """y[b, c, t, i, j] = max of x over the window at (t*st - pt, i*sh - ph, j*sw - pw) of
    size kernel (padding never wins), as torch.nn.functional.max_pool3d."""

    kind = "max_pool3d"
    op = "max_pool2d"


@register_layer
class AvgPool3d(_Pool3d):
    """y[b, c, t, i, j] = mean of x over the window at (t*st - pt, i*sh - ph, j*sw - pw),
    padding counted as zeros, as torch.nn.functional.avg_pool3d (count_include_pad=True)."""

    kind = "avg_pool3d"
    op = "avg_pool2d"


@register_layer
class TimeDistributed(Layer):
    """y[:, t] = layer(x[:, t]) for every frame t of x [batch, frames, ...], with one set of
    weights shared by all frames (Keras's TimeDistributed).

    The frames are folded into the batch axis, [B, T, ...] -> [B*T, ...], the inner layer
    runs once on that, and its output is unfolded, [B*T, ...] -> [B, T, ...]. The inner
    layer is named `name.<its type>`; its parameters and state are this layer's
    (e.g. `name.conv2d.weight`). A padding mask on the frames passes through."""

    kind = "time_distributed"

    def __init__(self, name: str, inner: Layer):
        super().__init__(name)
        self.inner = inner

    @classmethod
    def from_spec(cls, spec, name, hints):
        inner = spec.layer
        return cls(name, LAYER_TYPES[inner.kind].from_spec(inner, f"{name}.{inner.kind}", hints))

    def build(self, x: Tensor, rng) -> None:
        if x.ndim < 3:
            raise ShapeError(f"time_distributed needs input [batch, frames, ...] with at least "
                             f"one axis per frame, got {list(x.shape)}", scope=self.name)
        self.rng = rng  # the inner layer builds on its first call, in forward

    def forward(self, x: Tensor, training: bool) -> Tensor:
        batch, frames = x.shape[:2]
        y = self.inner(x.reshape((batch * frames,) + tuple(x.shape[2:])), training, self.rng)
        self.params.update(self.inner.params)
        self.states.update(self.inner.states)
        self.initial.update(self.inner.initial)
        self.updates.update(self.inner.updates)
        return y.reshape((batch, frames) + tuple(y.shape[1:]))

    def output_mask(self, x, mask, out):
        return mask if mask is not None and tuple(out.shape[:2]) == tuple(x.shape[:2]) else None


@register_layer
class Permute(Layer):
    """Reorder each sample's axes: y[b, ...] = x[b, ...] transposed so that output axis i is
    input axis dims[i] (axes counted from 1, the batch axis 0 stays first), as Keras's
    Permute. E.g. dims [2, 1, 3, 4] turns frames [B, T, C, H, W] into [B, C, T, H, W]."""

    kind = "permute"

    def __init__(self, name: str, dims):
        super().__init__(name)
        self.dims = tuple(dims)

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.dims)

    def forward(self, x: Tensor, training: bool) -> Tensor:
        if x.ndim - 1 != len(self.dims):
            raise ShapeError(f"dims {list(self.dims)} reorder {len(self.dims)} axes, but each "
                             f"sample of {list(x.shape)} has {x.ndim - 1}", scope=self.name)
        return x.transpose((0,) + self.dims)

    def output_mask(self, x, mask, out):
        return mask if self.dims[0] == 1 else None  # time (axis 1) stayed in place


@register_layer
class SelectFrame(Layer):
    """y = x[:, index]: one frame of [batch, frames, ...] (negative: from the end). A model
    that reads one frame cannot see motion: the single-frame baseline of a video task."""

    kind = "select_frame"

    def __init__(self, name: str, index: int = 0):
        super().__init__(name)
        self.index = index

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.index)

    def forward(self, x: Tensor, training: bool) -> Tensor:
        if x.ndim < 2 or not -x.shape[1] <= self.index < x.shape[1]:
            raise ShapeError(f"no frame {self.index} in input {list(x.shape)} (frames are "
                             "axis 1)", scope=self.name)
        return x[:, self.index]
