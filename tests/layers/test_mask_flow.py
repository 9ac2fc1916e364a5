"""Padding masks through a model: which layers keep, drop or pick a mask (Layer.output_mask
and its overrides), Model.__call__ with named inputs and masks handing a mask only to layers
that read one, the ModelSpec checks of extra inputs and reserved input names, and the
StepBuilder refusing 'decoder_input' on data without sequence pairs.

Two test-only layer kinds are registered for the module and removed after: a probe that
reads masks (takes_mask) and records what it got, and a layer that does not read masks (its
forward has no `mask` parameter, so handing it one would raise)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.config import config_from, load_yaml_text
from nnctl.config.layer_specs import (LAYER_SPECS, LAYERS, LayerSpec, ModelSpec,
                                      register_layer_spec)
from nnctl.data.batching import steps_mask
from nnctl.errors import ConfigError
from nnctl.graph.tensor import Tensor, input_placeholder
from nnctl.layers import build_model
from nnctl.layers.base import LAYER_TYPES, Layer, register_layer
from nnctl.step import prepare

B, T, VOCAB = 3, 6, 20
HINTS = {"classes": 4, "vocab": VOCAB, "dtype": "float64"}


@dataclass(frozen=True, kw_only=True)
class MaskProbeSpec(LayerSpec):
    kind: ClassVar[str] = "test_mask_probe"
    max_inputs: ClassVar[int] = 2


@dataclass(frozen=True, kw_only=True)
class NoMaskSpec(LayerSpec):
    kind: ClassVar[str] = "test_no_mask"


class MaskProbe(Layer):
    """Identity on its (first) input; records the masks it was called with."""

    kind = "test_mask_probe"
    takes_mask = True

    def __init__(self, name):
        super().__init__(name)
        self.seen = []

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name)

    def forward(self, x, training, mask=None):
        self.seen.append(mask)
        return x[0] if isinstance(x, list) else x


class NoMask(Layer):
    """Identity; a mask handed to forward would be a TypeError."""

    kind = "test_no_mask"

    def __init__(self, name):
        super().__init__(name)
        self.calls = 0

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name)

    def forward(self, x, training):
        self.calls += 1
        return x * 1.0


@pytest.fixture(scope="module", autouse=True)
def test_kinds():
    """Register the two test kinds (spec and layer) for this module only."""
    for spec, layer in ((MaskProbeSpec, MaskProbe), (NoMaskSpec, NoMask)):
        register_layer_spec(spec)
        register_layer(layer)
    yield
    for spec in (MaskProbeSpec, NoMaskSpec):
        LAYER_SPECS.remove(spec)
        del LAYERS[spec.kind], LAYER_TYPES[spec.kind]


def model_of(model_spec, layers: str):
    """A Model from the YAML lines of its layers (indented as list items)."""
    errors = []
    spec = model_spec("layers:\n" + layers, errors)
    assert errors == []
    return build_model(spec, np.random.default_rng(0), HINTS)


def tokens():
    return input_placeholder("x", (B, T), "int64"), input_placeholder("m", (B, T), "float64")


# ---- what each layer does with a mask -----------------------------------------------------

KEEP, DROP = True, False


@pytest.mark.parametrize("layer, keeps", [
    ("dense: {units: 5}", KEEP),
    ("dense: {units: 5, activation: tanh}", KEEP),
    ("dropout: 0.5", KEEP),
    ("layer_norm: {}", KEEP),
    ("activation: relu", KEEP),
    ("positional_encoding: {}", KEEP),
    ("lstm: {units: 4, return_sequences: true}", KEEP),
    ("gru: {units: 4, return_sequences: true}", KEEP),
    ("multi_head_attention: {heads: 2}", KEEP),
    ("lstm: {units: 4}", DROP),   # the last state: time is gone
    ("rnn: {units: 4}", DROP),
    ("flatten: {}", DROP),        # [B, T * D]: no time axis any more
    ("sequence_pool: {mode: mean}", DROP),
    ("reshape: [3, 16]", DROP),   # time reshaped away (6 x 8 -> 3 x 16)
])
@pytest.mark.parametrize("training", [False, True])
def test_a_layer_after_an_embedding_keeps_or_drops_the_mask(model_spec, layer, keeps,
                                                            training):
    model = model_of(model_spec, f"  - embedding: {{dim: 8}}\n  - {layer}\n"
                                 "  - test_mask_probe: {name: probe}\n")
    x, m = tokens()
    out = model({"input": x}, training, {"input": m})
    probe = model.layer_named("probe")
    assert len(probe.seen) == 1
    assert (probe.seen[0] is m) if keeps else (probe.seen[0] is None)
    assert model.output_mask is probe.seen[0]  # the probe (identity) passes it on
    assert out.shape[0] == B


def test_the_embedding_passes_the_token_mask_to_vectors(model_spec):
    # token ids [B, T] -> vectors [B, T, dim]: the rank grows, yet the same steps are real
    model = model_of(model_spec, "  - embedding: {dim: 8}\n  - test_mask_probe: {name: p}\n")
    x, m = tokens()
    out = model(x, False, {"input": m})
    assert out.shape == (B, T, 8)
    assert model.layer_named("p").seen == [m]


def test_no_masks_give_none_everywhere(model_spec):
    model = model_of(model_spec, "  - embedding: {dim: 8}\n  - test_mask_probe: {name: p}\n"
                                 "  - lstm: {units: 3, return_sequences: true}\n")
    x, _ = tokens()
    model(x, False)  # a bare tensor, no masks
    assert model.layer_named("p").seen == [None] and model.output_mask is None


def test_layers_without_takes_mask_are_never_handed_one_but_pass_it_on(model_spec):
    model = model_of(model_spec, "  - embedding: {dim: 8}\n  - test_no_mask: {name: plain}\n"
                                 "  - dense: {units: 5}\n  - test_mask_probe: {name: p}\n")
    x, m = tokens()
    model({"input": x}, True, {"input": m})
    assert model.layer_named("plain").calls == 1
    assert model.layer_named("p").seen == [m]


# ---- merges and several inputs -----------------------------------------------------------

TWO_INPUTS = """\
  - embedding: {dim: 8, name: source, inputs: [input]}
  - embedding: {dim: 8, name: target, inputs: [decoder_input]}
"""


@pytest.mark.parametrize("merge", ["add: {", "concat: {axis: -1, "])
def test_a_merge_passes_its_first_inputs_mask(model_spec, merge):
    x, mx = tokens()
    d, md = input_placeholder("d", (B, T), "int64"), input_placeholder("md", (B, T), "float64")
    inputs, masks = {"input": x, "decoder_input": d}, {"input": mx, "decoder_input": md}
    for first, second, expected in (("source", "target", mx), ("target", "source", md)):
        model = model_of(model_spec, TWO_INPUTS +
                         f"  - {merge}inputs: [{first}, {second}]}}\n"
                         "  - test_mask_probe: {name: p}\n")
        model(inputs, False, masks)
        assert model.layer_named("p").seen == [expected]
    # the first input unpadded: the merge's output has no mask, whatever the others have
    model = model_of(model_spec, TWO_INPUTS + f"  - {merge}inputs: [source, target]}}\n"
                                              "  - test_mask_probe: {name: p}\n")
    model(inputs, False, {"decoder_input": md})
    assert model.layer_named("p").seen == [None]


def test_a_layer_with_two_inputs_gets_a_list_of_their_masks(model_spec):
    model = model_of(model_spec, TWO_INPUTS +
                     "  - test_mask_probe: {name: p, inputs: [target, source]}\n"
                     "  - test_mask_probe: {name: after}\n")
    x, mx = tokens()
    d, md = input_placeholder("d", (B, T), "int64"), input_placeholder("md", (B, T), "float64")
    model({"input": x, "decoder_input": d}, False, {"input": mx, "decoder_input": md})
    (seen,) = model.layer_named("p").seen
    assert isinstance(seen, list) and seen[0] is md and seen[1] is mx
    assert model.layer_named("after").seen == [md]  # out keeps the first input's steps
    # one input without a mask: None in its place
    model = model_of(model_spec, TWO_INPUTS +
                     "  - test_mask_probe: {name: p, inputs: [target, source]}\n")
    model({"input": x, "decoder_input": d}, False, {"input": mx})
    (seen,) = model.layer_named("p").seen
    assert seen[0] is None and seen[1] is mx


def test_concat_along_time_does_not_keep_the_first_inputs_mask(model_spec):
    # concat on axis 1 joins two sequences in time: [B, T, D] + [B, T, D] -> [B, 2T, D]. The
    # first input's [B, T] mask no longer fits the output; a layer reading it would mask the
    # wrong steps (or fail on the shapes). The mask must be the inputs' masks joined in time
    # (or no mask at all), never a [B, T] one.
    model = model_of(model_spec, TWO_INPUTS + "  - concat: {axis: 1, inputs: [source, target]}\n"
                                              "  - test_mask_probe: {name: p}\n")
    x, mx = tokens()
    d, md = input_placeholder("d", (B, T), "int64"), input_placeholder("md", (B, T), "float64")
    out = model({"input": x, "decoder_input": d}, False, {"input": mx, "decoder_input": md})
    assert out.shape == (B, 2 * T, 8)
    (seen,) = model.layer_named("p").seen
    assert seen is None or tuple(seen.shape) == (B, 2 * T)
    if seen is not None:  # joined: the source's steps, then the target's
        mxv = steps_mask([6, 2, 4], T, "float64")
        mdv = steps_mask([1, 6, 3], T, "float64")
        (joined,) = compile_graph([seen], [mx, md], get_backend("cpu"))([mxv, mdv])
        np.testing.assert_array_equal(joined, np.concatenate([mxv, mdv], axis=1))


def test_output_mask_defaults_called_directly():
    layer = Layer("plain")
    x3, m = Tensor(np.zeros((2, 5, 3))), Tensor(np.ones((2, 5)))
    assert layer.output_mask(x3, m, Tensor(np.zeros((2, 5, 7)))) is m      # same B, T, rank
    assert layer.output_mask(x3, m, Tensor(np.zeros((2, 4, 3)))) is None   # time changed
    assert layer.output_mask(x3, m, Tensor(np.zeros((2, 15)))) is None     # rank changed
    assert layer.output_mask(x3, None, Tensor(np.zeros((2, 5, 3)))) is None
    # several inputs to a non-merge: the first input's mask, if its steps are kept
    other = Tensor(np.ones((2, 4)))
    assert layer.output_mask([x3, x3], [m, other], Tensor(np.zeros((2, 5, 3)))) is m
    assert layer.output_mask([x3, x3], [None, other], Tensor(np.zeros((2, 5, 3)))) is None
    assert layer.output_mask([x3, x3], None, Tensor(np.zeros((2, 5, 3)))) is None


# ---- ModelSpec: extra inputs and reserved names --------------------------------------------

def spec_errors(model_spec, layers: str) -> list[str]:
    errors = []
    model_spec("layers:\n" + layers, errors)
    return errors


def test_max_inputs_is_checked_per_layer_kind(model_spec):
    assert spec_errors(model_spec, "  - embedding: {dim: 4}\n"
                                   "  - dense: {units: 3, inputs: [input, embedding_0]}\n") == [
        "m.yaml:3: layers[1].dense.inputs: dense reads one input, got 2"]
    assert spec_errors(model_spec, "  - embedding: {dim: 4}\n"
                                   "  - dense: {units: 4, name: h}\n"
                                   "  - lstm: {units: 4, inputs: [embedding_0, h, h]}\n") == [
        "m.yaml:4: layers[2].lstm.inputs: lstm reads 1 to 2 inputs, got 3"]
    # two are fine for a layer that takes a state (and the probe, max_inputs 2)
    assert spec_errors(model_spec, "  - embedding: {dim: 4}\n"
                                   "  - dense: {units: 4, name: h, inputs: [input]}\n"
                                   "  - lstm: {units: 4, inputs: [embedding_0, h]}\n") == []
    assert spec_errors(model_spec, "  - embedding: {dim: 4}\n"
                                   "  - test_mask_probe: {inputs: [embedding_0, input]}\n") == []


@pytest.mark.parametrize("reserved", ["input", "decoder_input"])
def test_model_input_names_are_reserved(model_spec, reserved):
    assert spec_errors(model_spec, f"  - embedding: {{dim: 4, name: {reserved}}}\n"
                                   "  - dense: {units: 3}\n") == [
        f"m.yaml:2: layers[0].embedding.name: '{reserved}' is reserved for a model input"]


def test_decoder_input_is_a_known_input_and_typos_get_a_suggestion(model_spec):
    errors = []
    spec = model_spec("layers:\n" + TWO_INPUTS + "  - add: {inputs: [source, target]}\n",
                      errors)
    assert errors == []
    assert isinstance(spec, ModelSpec)
    assert spec.model_inputs() == {"input", "decoder_input"}
    assert spec_errors(model_spec, "  - embedding: {dim: 4, inputs: [decoder_inpt]}\n") == [
        "m.yaml:2: layers[0].embedding.inputs[0]: unknown layer 'decoder_inpt' (did you mean "
        "'decoder_input'?)"]


# ---- the StepBuilder and data without sequence pairs ----------------------------------------

def test_decoder_input_on_data_without_pairs_is_one_config_error():
    text = """\
seed: 0
data: {dataset: parity, samples: 40, length: 6}
model:
  layers:
    - embedding: {dim: 4, inputs: [decoder_input]}
    - sequence_pool: {mode: mean}
    - dense: {units: classes}
loss: cross_entropy
optimizer: {name: sgd, lr: 0.1}
train: {epochs: 1, batch_size: 8}
"""
    config = config_from(load_yaml_text(text, "c.yaml"), Path("c.yaml"))
    with pytest.raises(ConfigError) as info:
        prepare(config)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("c.yaml:5: model.layers[0].embedding.inputs: "), message
    assert "'decoder_input' is the decoder's input of sequence-pair data" in message
