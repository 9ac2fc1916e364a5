"""Dense: y = f(x W + b) with the initial values; He/Glorot limits; parameters built once."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.errors import ShapeError
from nnctl.graph.tensor import input_placeholder
from nnctl.layers import Dense

CPU = get_backend("cpu")


def _run(layer, x_value, training=False):
    x = input_placeholder("x", x_value.shape, str(x_value.dtype))
    y = layer(x, training, np.random.default_rng(0)) if not layer.built else layer(x, training)
    names = list(layer.params)
    plan = compile_graph([y], [x, *layer.params.values()], CPU)
    return y, plan([x_value, *[layer.initial[k] for k in names]])[0]


@pytest.mark.parametrize("activation,f", [
    ("linear", lambda z: z), ("relu", lambda z: np.maximum(z, 0)), ("tanh", np.tanh),
    ("sigmoid", lambda z: 1 / (1 + np.exp(-z))), ("sin", np.sin)])
def test_output_is_x_w_plus_b_with_the_initial_values(activation, f):
    layer = Dense("dense_1", 4, activation)
    xv = np.random.default_rng(1).normal(size=(5, 3))
    y, out = _run(layer, xv)
    assert y.shape == (5, 4) and y.dtype == "float64"
    w, b = layer.initial["dense_1.weight"], layer.initial["dense_1.bias"]
    assert w.shape == (3, 4) and b.shape == (4,)
    np.testing.assert_array_equal(b, np.zeros(4))
    np.testing.assert_allclose(out, f(xv @ w + b), rtol=1e-12, atol=1e-15)


def test_nonzero_bias_is_added():
    layer = Dense("d", 2)
    x = input_placeholder("x", (3, 2), "float64")
    y = layer(x, False, np.random.default_rng(0))
    plan = compile_graph([y], [x, layer.params["d.weight"], layer.params["d.bias"]], CPU)
    out = plan([np.eye(3, 2), np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([10.0, 20.0])])[0]
    np.testing.assert_array_equal(out, [[11.0, 22.0], [13.0, 24.0], [10.0, 20.0]])


def test_no_bias():
    layer = Dense("d", 3, bias=False)
    layer(input_placeholder("x", (2, 5), "float64"), False, np.random.default_rng(0))
    assert list(layer.params) == ["d.weight"]


def test_parameters_are_named_scoped_and_typed():
    layer = Dense("hidden", 8)
    x = input_placeholder("x", (4, 6), "float32")
    y = layer(x, False, np.random.default_rng(0))
    assert y.dtype == "float32"
    w = layer.params["hidden.weight"]
    assert w.op == "parameter" and w.shape == (6, 8) and w.dtype == "float32"
    assert w.node.scope == "hidden" and y.node.scope == "hidden"
    assert layer.initial["hidden.weight"].dtype == np.float32


def test_parameters_are_built_once_and_shared_between_calls():
    layer = Dense("d", 2)
    rng = np.random.default_rng(0)
    y1 = layer(input_placeholder("x", (4, 3), "float64"), True, rng)
    w = layer.params["d.weight"]
    w0 = layer.initial["d.weight"].copy()
    y2 = layer(input_placeholder("x", (7, 3), "float64"), False, rng)
    assert layer.params["d.weight"] is w
    np.testing.assert_array_equal(layer.initial["d.weight"], w0)
    assert y1.node.inputs[0].inputs[1] is y2.node.inputs[0].inputs[1] is w.node


def test_same_seed_same_weights():
    a, b = Dense("d", 5), Dense("d", 5)
    for layer in (a, b):
        layer(input_placeholder("x", (1, 7), "float64"), False, np.random.default_rng(123))
    np.testing.assert_array_equal(a.initial["d.weight"], b.initial["d.weight"])


@pytest.mark.parametrize("activation,init,fan_in,fan_out,limit", [
    ("relu", "auto", 64, 32, math.sqrt(6 / 64)),           # He for relu
    ("tanh", "auto", 64, 32, math.sqrt(6 / (64 + 32))),    # Glorot otherwise
    ("linear", "he_uniform", 50, 200, math.sqrt(6 / 50)),
    ("relu", "glorot_uniform", 50, 200, math.sqrt(6 / 250)),
])
def test_uniform_initialisers_respect_their_limits(activation, init, fan_in, fan_out, limit):
    layer = Dense("d", fan_out, activation, init)
    layer(input_placeholder("x", (2, fan_in), "float64"), False, np.random.default_rng(0))
    w = layer.initial["d.weight"]
    assert w.shape == (fan_in, fan_out)
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.95 * limit  # fills the range (thousands of draws)
    assert abs(w.std() - limit / math.sqrt(3)) < 0.05 * limit
    assert abs(w.mean()) < 0.05 * limit


@pytest.mark.parametrize("init,std", [("he_normal", math.sqrt(2 / 100)),
                                      ("glorot_normal", math.sqrt(2 / (100 + 60)))])
def test_normal_initialisers_have_their_std(init, std):
    layer = Dense("d", 60, init=init)
    layer(input_placeholder("x", (2, 100), "float64"), False, np.random.default_rng(0))
    w = layer.initial["d.weight"]
    assert abs(w.std() - std) < 0.03 * std


def test_dense_needs_a_batch_axis():
    layer = Dense("dense_1", 3)
    with pytest.raises(ShapeError) as info:
        layer(input_placeholder("x", (4,), "float64"), False, np.random.default_rng(0))
    assert str(info.value) == "layer dense_1: dense needs input [batch, features], got [4]"
