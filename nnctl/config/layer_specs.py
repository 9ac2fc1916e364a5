"""The model section's vocabulary: one spec per layer type, and the model as a DAG of layers.

A layer reads the previous layer's output unless it names its `inputs`; the merge layers
(`add`, `concat`) take two or more. Names are checked (unknown, repeated) and cycles refused
here, with file:line, before any layer is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from nnctl.config.validate import (Context, Invalid, boolean, choice, field, got, integer,
                                   list_of, number, one_of, optional, single_key, string,
                                   suggest)

ACTIVATIONS = ("relu", "tanh", "sigmoid", "sin", "leaky_relu", "elu", "gelu", "softplus",
               "linear")
INITS = ("auto", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal")
MODEL_INPUT = "input"  # the name that refers to the model's input in `inputs`
# the decoder's input of a sequence-to-sequence model: the target shifted right by one step
# (start token first), fed whole while training (teacher forcing), growing while decoding
DECODER_INPUT = "decoder_input"
MODEL_INPUTS = (MODEL_INPUT, DECODER_INPUT)

positive = integer(min=1)
fraction = number(0.0, 1.0, high_open=True, what="a fraction in [0, 1)")


def _pair(what: str, minimum: int):
    """An int, or a list of two ints, each >= minimum -> a tuple of two."""
    def check(v, path, ctx):
        if isinstance(v, int) and not isinstance(v, bool) and v >= minimum:
            return (v, v)
        if (isinstance(v, list) and len(v) == 2 and all(
                isinstance(x, int) and not isinstance(x, bool) and x >= minimum for x in v)):
            return tuple(v)
        raise Invalid(f"expected {what} (an integer or a list of two), got {got(v)}")
    return check


def _units(v, path, ctx):
    if v == "classes":
        return v
    if isinstance(v, str):
        raise Invalid(f"expected a positive integer or 'classes', got {got(v)}")
    return positive(v, path, ctx)


@dataclass(frozen=True, kw_only=True)
class LayerSpec:
    """Keys every layer has."""

    kind: ClassVar[str] = ""
    merge: ClassVar[bool] = False  # takes two or more inputs
    # a non-merge layer that may read more than one input (a recurrent layer's initial state,
    # an attention layer's memory) raises this; it is then called with a list when it has
    # more than one
    max_inputs: ClassVar[int] = 1
    name: str | None = field(optional(string), None, "layer name (default: <type>_<index>)")
    inputs: list | None = field(optional(list_of(string, min_len=1, what="a list of layer names")),
                                None, "names of the layers this one reads ('input': the model's "
                                      "input); default: the previous layer")
    shares: str | None = field(optional(string), None,
                               "use the parameters of this other layer (same type and settings): "
                               "one sub-network applied to several inputs (siamese models)")


@dataclass(frozen=True, kw_only=True)
class DenseSpec(LayerSpec):
    kind: ClassVar[str] = "dense"
    units: int | str = field(_units, doc="output features; 'classes' = the data's class count")
    activation: str = field(choice(*ACTIVATIONS), "linear", "applied after x W + b")
    init: str = field(choice(*INITS), "auto", "weight initialiser; auto = He for relu, else Glorot")
    bias: bool = field(boolean, True, "add a learned bias")


@dataclass(frozen=True, kw_only=True)
class ActivationSpec(LayerSpec):
    kind: ClassVar[str] = "activation"
    shorthand: ClassVar[str] = "function"
    function: str = field(choice(*ACTIVATIONS), doc="the elementwise function")


@dataclass(frozen=True, kw_only=True)
class DropoutSpec(LayerSpec):
    kind: ClassVar[str] = "dropout"
    shorthand: ClassVar[str] = "rate"
    rate: float = field(fraction, doc="probability of zeroing each element while training")


@dataclass(frozen=True, kw_only=True)
class ReshapeSpec(LayerSpec):
    kind: ClassVar[str] = "reshape"
    shorthand: ClassVar[str] = "shape"
    shape: list = field(list_of(positive, min_len=1, what="a list of positive integers"),
                        doc="new per-sample shape (the batch axis is kept)")


@dataclass(frozen=True, kw_only=True)
class FlattenSpec(LayerSpec):
    kind: ClassVar[str] = "flatten"


@dataclass(frozen=True, kw_only=True)
class Conv2dSpec(LayerSpec):
    kind: ClassVar[str] = "conv2d"
    filters: int = field(positive, doc="output channels")
    kernel: tuple = field(_pair("a positive kernel size", 1), doc="kernel height and width")
    stride: tuple = field(_pair("a positive stride", 1), (1, 1), "step between windows")
    padding: tuple | str = field(one_of(choice("same", "valid"), _pair("a padding >= 0", 0),
                                        what="'same', 'valid', or a padding"),
                                 (0, 0), "zeros added on each side; 'same' keeps H and W")
    dilation: tuple = field(_pair("a positive dilation", 1), (1, 1), "spacing of kernel taps")
    groups: int = field(positive, 1, "split channels into groups (depthwise: groups = channels)")
    activation: str = field(choice(*ACTIVATIONS), "linear", "applied after the convolution")
    init: str = field(choice(*INITS), "auto", "weight initialiser")
    bias: bool = field(boolean, True, "add a learned bias per filter")

    def validate(self, path, ctx: Context) -> None:
        if self.padding == "same" and self.stride != (1, 1):
            ctx.error(path + ("padding",), "padding 'same' needs stride 1")
        if self.filters % self.groups:
            ctx.error(path + ("groups",), f"filters ({self.filters}) must be divisible by "
                                          f"groups ({self.groups})")


@dataclass(frozen=True, kw_only=True)
class Pool2dSpec(LayerSpec):
    shorthand: ClassVar[str] = "kernel"
    kernel: tuple = field(_pair("a positive window size", 1), doc="window height and width")
    stride: tuple | None = field(optional(_pair("a positive stride", 1)), None,
                                 "step between windows (default: the window size)")
    padding: tuple = field(_pair("a padding >= 0", 0), (0, 0), "padding on each side")


@dataclass(frozen=True, kw_only=True)
class MaxPool2dSpec(Pool2dSpec):
    kind: ClassVar[str] = "max_pool2d"


@dataclass(frozen=True, kw_only=True)
class AvgPool2dSpec(Pool2dSpec):
    kind: ClassVar[str] = "avg_pool2d"


@dataclass(frozen=True, kw_only=True)
class BatchNormSpec(LayerSpec):
    kind: ClassVar[str] = "batch_norm"
    momentum: float = field(number(0.0, 1.0, low_open=True), 0.1,
                            "weight of each batch in the running statistics")
    eps: float = field(number(0.0, low_open=True), 1e-5, "added to the variance")
    affine: bool = field(boolean, True, "learn a scale and shift")


@dataclass(frozen=True, kw_only=True)
class LayerNormSpec(LayerSpec):
    kind: ClassVar[str] = "layer_norm"
    eps: float = field(number(0.0, low_open=True), 1e-5, "added to the variance")
    affine: bool = field(boolean, True, "learn a scale and shift")


@dataclass(frozen=True, kw_only=True)
class EmbeddingSpec(LayerSpec):
    kind: ClassVar[str] = "embedding"
    dim: int = field(positive, doc="size of each token's vector")
    vocab: int | str = field(one_of(choice("auto"), positive, what="a positive integer or 'auto'"),
                             "auto", "number of token ids; auto = the data's largest id + 1")


@dataclass(frozen=True, kw_only=True)
class PositionalEncodingSpec(LayerSpec):
    kind: ClassVar[str] = "positional_encoding"


@dataclass(frozen=True, kw_only=True)
class AddSpec(LayerSpec):
    kind: ClassVar[str] = "add"
    merge: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class ConcatSpec(LayerSpec):
    kind: ClassVar[str] = "concat"
    merge: ClassVar[bool] = True
    axis: int = field(integer(), -1, "the axis to join along, counting the batch axis as 0 "
                                      "(negative: from the end)")

    def validate(self, path, ctx: Context) -> None:
        if self.axis == 0:
            ctx.error(path + ("axis",), "concat cannot join along the batch axis (0); use 1 or "
                                        "more, or a negative axis such as -1")


LAYER_SPECS = [DenseSpec, ActivationSpec, DropoutSpec, ReshapeSpec, FlattenSpec, Conv2dSpec,
               MaxPool2dSpec, AvgPool2dSpec, BatchNormSpec, LayerNormSpec, EmbeddingSpec,
               PositionalEncodingSpec, AddSpec, ConcatSpec]
LAYERS = {cls.kind: cls for cls in LAYER_SPECS}


def register_layer_spec(cls) -> None:
    """Add a layer type to the config vocabulary (recurrent and attention layers do)."""
    LAYER_SPECS.append(cls)
    LAYERS[cls.kind] = cls


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    layers: list = field(list_of(single_key(LAYERS, "layer"), min_len=1,
                                 what="a list of layers"), doc="the layers, input to output")
    inputs: list | None = field(optional(list_of(string, min_len=1,
                                                 what="a list of input names")), None,
                                "further named inputs the data supplies (e.g. adjacency), "
                                "which layers name in their `inputs` as they name 'input'")

    def input_names(self) -> tuple[str, ...]:
        """Every name a layer may read besides the layers: the reserved model inputs and
        the declared ones."""
        return MODEL_INPUTS + tuple(self.inputs or ())

    def layer_names(self) -> list[str]:
        """Each layer's name: its `name`, or `<type>_<index>`."""
        return [spec.name or f"{spec.kind}_{i}" for i, spec in enumerate(self.layers)]

    def layer_inputs(self) -> list[list[str]]:
        """The names each layer reads: its `inputs`, or the previous layer (the model input
        for the first)."""
        names = self.layer_names()
        return [list(spec.inputs) if spec.inputs else [names[i - 1] if i else MODEL_INPUT]
                for i, spec in enumerate(self.layers)]

    def order(self) -> list[int]:
        """Layer indices with every layer after the layers it reads (depth-first)."""
        index = {n: i for i, n in enumerate(self.layer_names())}
        inputs, order, state = self.layer_inputs(), [], {}
        for start in range(len(self.layers)):
            stack = [(start, False)]
            while stack:
                i, done = stack.pop()
                if done:
                    state[i] = "done"
                    order.append(i)
                    continue
                if state.get(i):
                    continue
                state[i] = "open"
                stack.append((i, True))
                stack.extend((index[n], False) for n in reversed(inputs[i])
                             if n not in self.input_names() and not state.get(index[n]))
        return order

    def validate(self, path, ctx: Context) -> None:
        names, errors_before = self.layer_names(), len(ctx.errors)
        declared = list(self.inputs or ())
        for k, name in enumerate(declared):
            if name in MODEL_INPUTS:
                ctx.error(path + ("inputs", k), f"'{name}' is a model input already; list only "
                                                "further inputs here")
            elif name in declared[:k]:
                ctx.error(path + ("inputs", k), f"input '{name}' is listed twice")
            elif not any(name in (spec.inputs or ()) for spec in self.layers):
                ctx.error(path + ("inputs", k), f"no layer reads input '{name}'; name it in a "
                                                "layer's inputs or remove it")
        self._check_shares(path, ctx, names)
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            where = path + ("layers", i, self.layers[i].kind)
            if name in self.input_names():
                ctx.error(where + ("name",), f"'{name}' is reserved for a model input")
            elif name in seen:
                ctx.error(where + ("name",),
                          f"layer name '{name}' is already used by layers[{seen[name]}]")
            seen.setdefault(name, i)
        for i, (spec, inputs) in enumerate(zip(self.layers, self.layer_inputs())):
            where = path + ("layers", i, spec.kind)
            for k, name in enumerate(spec.inputs or ()):
                if name not in self.input_names() and name not in seen:
                    ctx.error(where + ("inputs", k), f"unknown layer '{name}'"
                              f"{suggest(name, list(self.input_names()) + names)}")
                elif name == names[i]:
                    ctx.error(where + ("inputs", k), f"layer '{name}' cannot read itself")
            if spec.merge and len(inputs) < 2:
                ctx.error(where, f"{spec.kind} merges two or more layers; name them in 'inputs'")
            if not spec.merge and not 1 <= len(inputs) <= spec.max_inputs:
                wants = "one input" if spec.max_inputs == 1 else \
                    f"1 to {spec.max_inputs} inputs"
                ctx.error(where + ("inputs",), f"{spec.kind} reads {wants}, got {len(inputs)}")
        if len(ctx.errors) == errors_before:
            self._check_cycles(path, ctx)
        # whether every layer is used depends on the outputs the losses score (RunSpec)

    def _check_shares(self, path, ctx: Context, names: list[str]) -> None:
        """A layer that shares another's parameters names an original of its own type and
        settings (not itself, not another sharer)."""
        index = {n: i for i, n in enumerate(names)}
        for i, spec in enumerate(self.layers):
            if spec.shares is None:
                continue
            where = path + ("layers", i, spec.kind, "shares")
            j = index.get(spec.shares)
            if j is None:
                ctx.error(where, f"unknown layer '{spec.shares}'{suggest(spec.shares, names)}")
                continue
            other = self.layers[j]
            if j == i:
                ctx.error(where, "a layer cannot share its own parameters")
            elif other.kind != spec.kind:
                ctx.error(where, f"'{spec.shares}' is a {other.kind} layer; a {spec.kind} "
                                 "layer can only share a layer of its own type")
            elif other.shares is not None:
                ctx.error(where, f"'{spec.shares}' shares '{other.shares}' itself; name the "
                                 f"original, '{other.shares}'")
            else:
                differ = [f.name for f in dataclasses.fields(spec)
                          if f.name not in ("name", "inputs", "shares")
                          and getattr(spec, f.name) != getattr(other, f.name)]
                if differ:
                    ctx.error(where, f"settings differ from '{spec.shares}' in "
                                     f"{', '.join(differ)}; a shared layer is the same layer")

    def check_all_used(self, path, ctx: Context, outputs: tuple[str, ...] = ()) -> None:
        """Every layer must feed the output (the last layer) or one of the further `outputs`
        a loss scores (aux_losses); a dangling one would be trained for nothing."""
        names, inputs = self.layer_names(), self.layer_inputs()
        index = {n: i for i, n in enumerate(names)}
        used, stack = set(), [self.output_index(), *(index[n] for n in outputs)]
        while stack:
            i = stack.pop()
            if i not in used:
                used.add(i)
                stack.extend(index[n] for n in inputs[i] if n not in self.input_names())
        for i in sorted(set(range(len(names))) - used):
            ctx.error(path + ("layers", i, self.layers[i].kind),
                      f"layer '{names[i]}' does not lead to the output (the last layer, "
                      f"'{names[-1]}'){' or to an aux_losses output' if outputs else ''}; "
                      "connect it through 'inputs', score it in aux_losses, or remove it")

    def _check_cycles(self, path, ctx: Context) -> None:
        names, inputs = self.layer_names(), self.layer_inputs()
        index = {n: i for i, n in enumerate(names)}
        colour: dict[int, int] = {}  # 1: on the current path, 2: finished
        for start in range(len(names)):
            stack = [(start, iter(inputs[start]))]
            colour[start] = colour.get(start) or 1
            if colour[start] == 2:
                continue
            trail = [start]
            while stack:
                i, it = stack[-1]
                nxt = next((index[n] for n in it if n not in self.input_names()), None)
                if nxt is None:
                    colour[i] = 2
                    stack.pop()
                    trail.pop()
                elif colour.get(nxt) == 1:
                    cycle = trail[trail.index(nxt):] + [nxt]
                    spec = self.layers[nxt]
                    ctx.error(path + ("layers", nxt, spec.kind, "inputs"),
                              "layers form a cycle: " + " <- ".join(names[j] for j in cycle))
                    return
                elif colour.get(nxt) != 2:
                    colour[nxt] = 1
                    stack.append((nxt, iter(inputs[nxt])))
                    trail.append(nxt)

    def output_index(self) -> int:
        return len(self.layers) - 1

    def model_inputs(self) -> set[str]:
        """The model inputs the layers read ('input', 'decoder_input')."""
        return {n for names in self.layer_inputs() for n in names if n in self.input_names()}


def with_defaults(spec) -> dict:
    """A layer spec's fields as a dict (for building a layer from it)."""
    return {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
