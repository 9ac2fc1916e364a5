"""Model: a stack of layers built from a ModelSpec, parameters shared between graphs."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.config.schema import DenseSpec, DropoutSpec, ModelSpec, ReshapeSpec
from nnctl.graph.tensor import input_placeholder
from nnctl.layers import Dense, Dropout, LayerError, build_model


def test_build_model_names_layers_and_runs_the_stack():
    spec = ModelSpec(layers=[DenseSpec(units=4, activation="relu"), DropoutSpec(rate=0.5),
                             DenseSpec(units=2, name="out")])
    model = build_model(spec, np.random.default_rng(0))
    assert [type(l) for l in model.layers] == [Dense, Dropout, Dense]
    assert [l.name for l in model.layers] == ["dense_0", "dropout_1", "out"]
    x = input_placeholder("x", (3, 5), "float64")
    y = model(x, training=False)
    assert list(model.params) == ["dense_0.weight", "dense_0.bias", "out.weight", "out.bias"]
    names = list(model.params)
    plan = compile_graph([y], [x, *model.params.values()], get_backend("cpu"))
    xv = np.random.default_rng(1).normal(size=(3, 5))
    init = model.initial
    h = np.maximum(xv @ init["dense_0.weight"] + init["dense_0.bias"], 0)
    expected = h @ init["out.weight"] + init["out.bias"]
    np.testing.assert_allclose(plan([xv, *[init[k] for k in names]])[0], expected, rtol=1e-12)
    # a second (training) graph reuses the same parameter tensors
    model(input_placeholder("x", (3, 5), "float64"), training=True)
    assert list(model.params) == names


def test_a_shape_error_inside_the_model_names_the_layer_and_index():
    spec = ModelSpec(layers=[DenseSpec(units=6), ReshapeSpec(shape=[4])])
    model = build_model(spec, np.random.default_rng(0))
    with pytest.raises(LayerError) as info:
        model(input_placeholder("x", (2, 3), "float64"))
    err = info.value
    assert err.index == 1 and err.scope == "reshape_1"
    assert str(err) == ("layer reshape_1: cannot reshape each sample of shape [6] (6 values) "
                        "to [4] (4 values)")
