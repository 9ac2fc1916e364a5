"""Config specs of the video layers (conv3d, max_pool3d, avg_pool3d, time_distributed,
permute, select_frame) and data kinds (frames_npz, moving_shapes), registered into the
vocabulary. Their loaders live in nnctl.data.video (config sits below data in the layering,
so it cannot import them; the nnctl.data package imports that module, which registers
them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nnctl.config.layer_specs import (ACTIVATIONS, INITS, LAYERS, LayerSpec, positive,
                                      register_layer_spec)
from nnctl.config.schema import _DataCommon, register_dataset_spec
from nnctl.config.validate import (Context, Invalid, boolean, choice, field, got, integer,
                                   number, one_of, optional, single_key, string)


def _triple(what: str, minimum: int):
    """An int, or a list of three ints (frames, height, width), each >= minimum -> a tuple
    of three."""
    def check(v, path, ctx):
        if isinstance(v, int) and not isinstance(v, bool) and v >= minimum:
            return (v, v, v)
        if (isinstance(v, list) and len(v) == 3 and all(
                isinstance(x, int) and not isinstance(x, bool) and x >= minimum for x in v)):
            return tuple(v)
        raise Invalid(f"expected {what} (an integer, or a list of three: frames, height, "
                      f"width), got {got(v)}")
    return check


# ---- layers ------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Conv3dSpec(LayerSpec):
    kind: ClassVar[str] = "conv3d"
    filters: int = field(positive, doc="output channels")
    kernel: tuple = field(_triple("a positive kernel size", 1),
                          doc="kernel frames, height and width")
    stride: tuple = field(_triple("a positive stride", 1), (1, 1, 1), "step between windows")
    padding: tuple | str = field(one_of(choice("same", "valid"), _triple("a padding >= 0", 0),
                                        what="'same', 'valid', or a padding"),
                                 (0, 0, 0), "zeros added on each side; 'same' keeps frames, "
                                            "height and width")
    dilation: tuple = field(_triple("a positive dilation", 1), (1, 1, 1),
                            "spacing of kernel taps")
    groups: int = field(positive, 1, "split channels into groups (depthwise: groups = channels)")
    activation: str = field(choice(*ACTIVATIONS), "linear", "applied after the convolution")
    init: str = field(choice(*INITS), "auto", "weight initialiser")
    bias: bool = field(boolean, True, "add a learned bias per filter")

    def validate(self, path, ctx: Context) -> None:
        if self.padding == "same" and self.stride != (1, 1, 1):
            ctx.error(path + ("padding",), "padding 'same' needs stride 1")
        if self.filters % self.groups:
            ctx.error(path + ("groups",), f"filters ({self.filters}) must be divisible by "
                                          f"groups ({self.groups})")


@dataclass(frozen=True, kw_only=True)
class Pool3dSpec(LayerSpec):
    shorthand: ClassVar[str] = "kernel"
    kernel: tuple = field(_triple("a positive window size", 1),
                          doc="window frames, height and width")
    stride: tuple | None = field(optional(_triple("a positive stride", 1)), None,
                                 "step between windows (default: the window size)")
    padding: tuple = field(_triple("a padding >= 0", 0), (0, 0, 0), "padding on each side")

    def validate(self, path, ctx: Context) -> None:
        if any(2 * p > k for p, k in zip(self.padding, self.kernel)):
            # else a window could hold padding only
            ctx.error(path + ("padding",), f"padding {list(self.padding)} must be at most half "
                                           f"the window {list(self.kernel)}")


@dataclass(frozen=True, kw_only=True)
class MaxPool3dSpec(Pool3dSpec):
    kind: ClassVar[str] = "max_pool3d"


@dataclass(frozen=True, kw_only=True)
class AvgPool3dSpec(Pool3dSpec):
    kind: ClassVar[str] = "avg_pool3d"


@dataclass(frozen=True, kw_only=True)
class TimeDistributedSpec(LayerSpec):
    kind: ClassVar[str] = "time_distributed"
    # LAYERS is the live table: layer types registered later (recurrent, audio, ...) count
    layer: object = field(single_key(LAYERS, "layer"),
                          doc="the layer applied to each frame, written as in the model's "
                              "layer list (e.g. 'conv2d: {filters: 8, kernel: 3}')")

    def validate(self, path, ctx: Context) -> None:
        inner = self.layer
        if inner is None:  # its own errors are reported already
            return
        where = path + ("layer", inner.kind)
        if inner.merge or inner.max_inputs > 1:
            ctx.error(where, f"{inner.kind} reads several inputs; time_distributed applies "
                             "a one-input layer to each frame")
        for key in ("name", "inputs"):
            if getattr(inner, key) is not None:
                ctx.error(where + (key,), f"the wrapped layer has no {key} of its own; set "
                                          f"it on the time_distributed layer")


def _dims(v, path, ctx):
    if (isinstance(v, list) and v and all(isinstance(d, int) and not isinstance(d, bool)
                                          for d in v)
            and sorted(v) == list(range(1, len(v) + 1))):
        return tuple(v)
    raise Invalid(f"expected an order of the axes after the batch axis, counted from 1 "
                  f"(e.g. [2, 1, 3, 4]), got {got(v)}")


@dataclass(frozen=True, kw_only=True)
class PermuteSpec(LayerSpec):
    kind: ClassVar[str] = "permute"
    shorthand: ClassVar[str] = "dims"
    dims: tuple = field(_dims, doc="output axis i is input axis dims[i]; axes counted from 1, "
                                   "the batch axis stays first")


@dataclass(frozen=True, kw_only=True)
class SelectFrameSpec(LayerSpec):
    kind: ClassVar[str] = "select_frame"
    shorthand: ClassVar[str] = "index"
    index: int = field(integer(), 0, "the frame (axis 1) to keep; negative: from the end")


for _spec in (Conv3dSpec, MaxPool3dSpec, AvgPool3dSpec, TimeDistributedSpec, PermuteSpec,
              SelectFrameSpec):
    register_layer_spec(_spec)


# ---- data --------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class FramesNpzData(_DataCommon):
    dataset: str = field(string, "frames_npz",
                         "an .npz of frame stacks (short videos) and their labels")
    path: str = field(string, doc="the file; a relative path is relative to the config file")
    x_key: str = field(string, "x", "array of frame stacks [N, frames, channels, height, "
                                    "width], floats")
    y_key: str = field(string, "y", "array of class labels [N]")
    # per-feature scaling would scale each pixel of each frame on its own
    normalize: str = field(choice("standard", "minmax", "none"), "none",
                           "feature scaling fitted on the training split (none for video)")


@dataclass(frozen=True, kw_only=True)
class MovingShapesData(_DataCommon):
    dataset: str = field(string, "moving_shapes",
                         "generated: a small shape drifting up, down, left or right across "
                         "noisy frames; the label is the direction")
    samples: int = field(integer(min=8, what="an integer >= 8"), 2000, "clips in all")
    frames: int = field(integer(min=2, what="an integer >= 2"), 8, "frames per clip")
    size: int = field(integer(min=6, what="an integer >= 6"), 12, "frame height and width")
    max_speed: int = field(positive, 2, "pixels per frame, drawn from 1..max_speed per clip")
    noise: float = field(number(0.0), 0.3, "standard deviation of the gaussian pixel noise "
                                           "(the shape is 1.0 on a 0.0 background)")
    normalize: str = field(choice("standard", "minmax", "none"), "none",
                           "feature scaling fitted on the training split (none for video)")


register_dataset_spec(FramesNpzData)
register_dataset_spec(MovingShapesData)
