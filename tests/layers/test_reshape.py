"""Reshape (per sample, batch axis kept) and Activation layers."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.errors import ShapeError
from nnctl.graph.tensor import Tensor, input_placeholder
from nnctl.layers import ACTIVATIONS, Activation, Reshape


def test_reshape_keeps_the_batch_axis():
    x = input_placeholder("x", (5, 12), "float64")
    y = Reshape("r", [3, 4])(x)
    assert y.shape == (5, 3, 4)
    plan = compile_graph([y], [x], get_backend("cpu"))
    xv = np.arange(60.0).reshape(5, 12)
    np.testing.assert_array_equal(plan([xv])[0], xv.reshape(5, 3, 4))


def test_reshape_eager_and_flatten():
    xv = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(Reshape("flat", [12])(Tensor(xv)).numpy(), xv.reshape(2, 12))


def test_reshape_of_the_wrong_size_says_per_sample():
    with pytest.raises(ShapeError, match=r"cannot reshape each sample of shape \[6\] \(6 values\) "
                       r"to \[5\] \(5 values\)"):
        Reshape("r", [5])(input_placeholder("x", (2, 6), "float64"))


def test_reshape_error_names_the_layer_when_called_directly():
    with pytest.raises(ShapeError) as info:
        Reshape("r", [5])(input_placeholder("x", (2, 6), "float64"))
    assert info.value.scope == "r" and str(info.value).startswith("layer r: ")


@pytest.mark.parametrize("name,f", [
    ("relu", lambda z: np.maximum(z, 0)), ("tanh", np.tanh),
    ("sigmoid", lambda z: 1 / (1 + np.exp(-z))), ("sin", np.sin), ("linear", lambda z: z)])
def test_activation_layer(name, f):
    assert name in ACTIVATIONS
    zv = np.linspace(-3, 3, 13).reshape(1, 13)
    y = Activation("act", name)(Tensor(zv))
    np.testing.assert_allclose(y.numpy(), f(zv), rtol=1e-12, atol=1e-15)
