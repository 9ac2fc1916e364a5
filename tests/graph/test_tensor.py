"""Tensor: operator overloading, eager values, symbolic tensors, dtypes of lifted scalars."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.errors import NnctlError, ShapeError
from nnctl.graph.tensor import (Tensor, apply, constant, input_placeholder, parameter,
                                random_bernoulli)

A = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.5]])
B = np.array([[2.0, 1.0, -1.0], [3.0, 0.5, 2.0]])


def test_symbolic_tensors_have_no_value():
    for t in (input_placeholder("x", (2, 3), "float32"), parameter("w", (3,), "float64"),
              random_bernoulli((4,), 0.5, "float32")):
        assert t.value is None
        with pytest.raises(NnctlError, match="symbolic and has no value"):
            t.numpy()
        with pytest.raises(NnctlError):
            t.item()
    x = input_placeholder("x", (2, 3), "float32")
    y = (x * 2.0).exp().sum(axis=1)
    assert y.value is None and y.shape == (2,) and y.dtype == "float32"
    assert y.op == "sum" and repr(y) == "Tensor(sum, shape=[2], dtype=float32)"


def test_leaf_kinds_and_attributes():
    x = input_placeholder("x", (2, 3), "float32")
    assert (x.op, x.node.name, x.shape, x.dtype, x.ndim, x.size) == \
        ("input", "x", (2, 3), "float32", 2, 6)
    assert parameter("w", (3,), "float64").op == "parameter"
    r = random_bernoulli((4,), 0.25, "float32")
    assert r.op == "random" and r.node.attrs == {"distribution": "bernoulli", "p": 0.25}


@pytest.mark.parametrize("expr,expected", [
    (lambda a, b: a + b, A + B),
    (lambda a, b: a - b, A - B),
    (lambda a, b: a * b, A * B),
    (lambda a, b: a / b, A / B),
    (lambda a, b: -a, -A),
    (lambda a, b: a @ b.T, A @ B.T),
    (lambda a, b: a ** 2, A ** 2),
    (lambda a, b: 2.0 + a, 2.0 + A),
    (lambda a, b: 2.0 - a, 2.0 - A),
    (lambda a, b: 3.0 * a, 3.0 * A),
    (lambda a, b: 1.0 / b, 1.0 / B),
    (lambda a, b: a + 1, A + 1),
    (lambda a, b: B @ a.T, B @ A.T),      # numpy array on the left defers to Tensor
    (lambda a, b: B * a, B * A),
    (lambda a, b: b.abs() ** a, np.abs(B) ** A),
    (lambda a, b: 2.0 ** a, 2.0 ** A),
    (lambda a, b: a[1, 1:], A[1, 1:]),
    (lambda a, b: a.relu(), np.maximum(A, 0)),
    (lambda a, b: a.sigmoid(), 1 / (1 + np.exp(-A))),
    (lambda a, b: a.tanh().sum(), np.tanh(A).sum()),
    (lambda a, b: a.mean(axis=0), A.mean(axis=0)),
    (lambda a, b: a.max(axis=-1, keepdims=True), A.max(axis=-1, keepdims=True)),
    (lambda a, b: a.equal(b), (A == B) * 1.0),
])
def test_eager_values(expr, expected):
    y = expr(Tensor(A), Tensor(B))
    assert isinstance(y, Tensor)
    assert y.shape == np.shape(expected)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12)


def test_python_scalars_keep_the_tensor_dtype():
    x = Tensor(np.ones(3, dtype=np.float32))
    for y in (x + 1.0, 2.0 * x, x / 3, 1 - x, x ** 2, x * np.float64(2.0)):
        assert y.dtype == "float32"
        assert y.numpy().dtype == np.float32


def test_scalar_base_power_keeps_float32():
    # regression: log of a Python-float constant was numpy float64 and widened the result
    x = Tensor(np.ones(3, dtype=np.float32))
    y = 2.0 ** x
    assert y.dtype == "float32" and y.numpy().dtype == np.float32
    np.testing.assert_allclose(y.numpy(), 2.0, rtol=1e-6)


def test_every_eager_value_has_its_node_dtype():
    x = Tensor(np.linspace(0.5, 1.5, 6, dtype=np.float32).reshape(2, 3))
    c = Tensor(np.float32(2.0))
    for y in (x.sum(), c.exp(), x.sum().reshape(1, 1), c.broadcast_to((2, 2)),
              (x * c).max(axis=0), x.softmax(), x.mean().sin()):
        assert y.dtype == "float32"
        assert np.asarray(y.value).dtype == np.float32, y


def test_constants():
    c = constant(2)
    assert c.dtype == "float64" and c.shape == () and c.value == 2.0 and isinstance(c.value, float)
    assert constant(3, "int64").value == 3
    arr = constant(np.arange(3), "float32")
    assert arr.dtype == "float32" and arr.numpy().dtype == np.float32
    t = Tensor([1, 2, 3])
    assert t.dtype == "int64" and t.op == "constant"
    assert Tensor(2.5).shape == () and Tensor(2.5).item() == 2.5


def test_apply_by_name_matches_the_method():
    x = Tensor(A)
    np.testing.assert_array_equal(apply("sum", x, axis=(1,), keepdims=False).numpy(),
                                  x.sum(1).numpy())


def test_mixing_symbolic_and_eager_is_symbolic():
    x = input_placeholder("x", (2, 3), "float64")
    y = x + Tensor(A)
    assert y.value is None and y.shape == (2, 3)


def test_tensor_is_not_iterable_and_rejects_bad_indices():
    with pytest.raises(TypeError, match="not iterable"):
        list(Tensor(A))
    with pytest.raises(TypeError, match="Tensor indices"):
        Tensor(A)[[0, 1]]


def test_reductions_reject_bad_axes():
    with pytest.raises(ShapeError, match="out of range"):
        Tensor(A).sum(axis=-3)


def test_repr_of_a_value_shows_small_values_only():
    assert repr(Tensor(A)) == ("Tensor(value, shape=[2, 3], dtype=float64, "
                               "value=[[ 1. , -2. ,  3. ], [ 0.5,  4. , -1.5]])")
    assert repr(Tensor(np.float64(0.25))) == "Tensor(value, shape=[], dtype=float64, value=0.25)"
    assert repr(Tensor(np.zeros((5, 4)))) == "Tensor(value, shape=[5, 4], dtype=float64)"
