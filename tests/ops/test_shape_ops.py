"""Shape ops and broadcasting: error messages, indexing round trips, reshape -1, and
(hypothesis) gradients of broadcasting binary ops always have their input's shape (A2, R4)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

from nnctl.autodiff import grad
from nnctl.errors import ShapeError
from nnctl.graph.tensor import Tensor, input_placeholder


def _unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Reference: sum `g` over the axes that broadcasting added or stretched."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, d in enumerate(shape):
        if d == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g


@pytest.mark.parametrize("symbolic", [False, True])
def test_broadcast_error_names_both_shapes_and_the_op(symbolic):
    if symbolic:
        a = input_placeholder("a", (3, 4), "float64")
        b = input_placeholder("b", (5,), "float64")
    else:
        a, b = Tensor(np.ones((3, 4))), Tensor(np.ones(5))
    with pytest.raises(ShapeError) as info:
        a * b
    message = str(info.value)
    assert "[3, 4]" in message and "[5]" in message and "do not broadcast" in message
    assert info.value.op == "mul" and "op mul" in message


def test_mixed_dtypes_are_refused_naming_both():
    a = Tensor(np.ones(3, dtype=np.float32))
    b = Tensor(np.ones(3, dtype=np.float64))
    with pytest.raises(ShapeError, match=r"float32\[3\], float64\[3\]"):
        a + b


def test_matmul_inner_mismatch_message():
    a, b = Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5)))
    with pytest.raises(ShapeError) as info:
        a @ b
    assert "matmul of [2, 3] and [4, 5]: inner sizes 3 and 4 differ" in str(info.value)
    with pytest.raises(ShapeError, match="at least 2 axes"):
        Tensor(np.ones(3)) @ Tensor(np.ones((3, 2)))
    with pytest.raises(ShapeError, match=r"shapes \[2, 3\] and \[5\] do not broadcast"):
        Tensor(np.ones((2, 3, 4, 5))) @ Tensor(np.ones((5, 5, 2)))


def test_batched_matmul_values_and_grad_shapes():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(4, 5))
    ta, tb = Tensor(a), Tensor(b)
    y = ta @ tb
    np.testing.assert_allclose(y.numpy(), a @ b, rtol=1e-12)
    ga, gb = grad(y.sum(), [ta, tb])
    np.testing.assert_allclose(ga.numpy(), np.broadcast_to(b.sum(1), (2, 3, 4)), rtol=1e-12)
    np.testing.assert_allclose(gb.numpy(), np.broadcast_to(a.sum((0, 1))[:, None], (4, 5)),
                               rtol=1e-12)


def test_getitem_scatter_round_trip():
    x = np.arange(20.0).reshape(4, 5)
    t = Tensor(x)
    y = t[1:3, ::2]
    np.testing.assert_array_equal(y.numpy(), x[1:3, ::2])
    index = (("slice", 1, 3, None), ("slice", None, None, 2))
    assert y.node.attrs["index"] == index
    back = y.scatter_index(index, x.shape)
    expected = np.zeros_like(x)
    expected[1:3, ::2] = x[1:3, ::2]
    np.testing.assert_array_equal(back.numpy(), expected)
    np.testing.assert_array_equal(back[1:3, ::2].numpy(), y.numpy())
    # the gradient of getitem is the scatter of the upstream gradient
    (g,) = grad(y.sum(), [t])
    mask = np.zeros_like(x)
    mask[1:3, ::2] = 1.0
    np.testing.assert_array_equal(g.numpy(), mask)


@pytest.mark.parametrize("key,expected_shape", [
    ((Ellipsis, -1), (2, 3)),
    ((None, 1), (1, 3, 4)),
    ((0, None, slice(None, None, -1)), (1, 3, 4)),
    ((slice(5, 10),), (0, 3, 4)),
    ((-2, 1, 3), ()),
])
def test_getitem_shapes_match_numpy(key, expected_shape):
    x = np.arange(24.0).reshape(2, 3, 4)
    y = Tensor(x)[key]
    assert y.shape == expected_shape == x[key].shape
    np.testing.assert_array_equal(y.numpy(), x[key])
    s = input_placeholder("s", (2, 3, 4), "float64")[key]
    assert s.shape == expected_shape


def test_getitem_errors():
    t = Tensor(np.ones((2, 3)))
    with pytest.raises(ShapeError, match="index 3 is out of bounds for axis 1 with size 3"):
        t[0, 3]
    with pytest.raises(ShapeError, match="too many indices"):
        t[0, 0, 0]
    with pytest.raises(ShapeError, match="single ellipsis"):
        t[..., 0, ...]
    with pytest.raises(TypeError, match="Tensor indices"):
        t[np.array([0, 1])]
    with pytest.raises(TypeError, match="Tensor indices"):
        t[True]


def test_scatter_index_refuses_a_wrong_shape():
    with pytest.raises(ShapeError, match=r"scatter of \[3, 5\] into \[4, 5\].*needs \[2, 5\]"):
        Tensor(np.ones((3, 5))).scatter_index((("slice", 1, 3, None),), (4, 5))


def test_reshape_with_minus_one():
    x = np.arange(24.0).reshape(2, 3, 4)
    t = Tensor(x)
    assert t.reshape(-1, 4).shape == (6, 4)
    assert t.reshape(2, -1).shape == (2, 12)
    assert t.reshape((-1,)).shape == (24,)
    assert t.reshape([4, -1, 2]).shape == (4, 3, 2)
    np.testing.assert_array_equal(t.reshape(2, -1).numpy(), x.reshape(2, -1))
    assert t.reshape(2, 3, 4) is t  # no-op reshape adds no node
    s = input_placeholder("s", (2, 3, 4), "float64")
    assert s.reshape(-1, 6).shape == (4, 6)
    with pytest.raises(ShapeError, match=r"cannot reshape \[2, 3, 4\] \(24 elements\) to \[5, 5\]"):
        t.reshape(5, 5)
    (g,) = grad((t.reshape(6, 4) * Tensor(np.arange(24.0).reshape(6, 4))).sum(), [t])
    np.testing.assert_array_equal(g.numpy(), x)


def test_reshape_refuses_negative_dims():
    # regression: negative sizes whose product equals the size used to pass infer()
    s = input_placeholder("s", (3, 4), "float64")
    with pytest.raises(ShapeError, match="non-negative"):
        s.reshape(-3, -4)
    with pytest.raises(ShapeError, match="non-negative"):
        s.reshape(-1, -1, 12)


def test_transpose_and_its_gradient():
    x = np.arange(24.0).reshape(2, 3, 4)
    t = Tensor(x)
    assert t.T.shape == (4, 3, 2)
    np.testing.assert_array_equal(t.transpose(2, 0, 1).numpy(), x.transpose(2, 0, 1))
    np.testing.assert_array_equal(t.transpose(-1, 0, 1).numpy(), x.transpose(2, 0, 1))
    np.testing.assert_array_equal(t.mT.numpy(), np.swapaxes(x, -1, -2))
    w = np.random.default_rng(1).normal(size=(4, 2, 3))
    (g,) = grad((t.transpose(2, 0, 1) * Tensor(w)).sum(), [t])
    np.testing.assert_array_equal(g.numpy(), w.transpose(1, 2, 0))
    with pytest.raises(ShapeError, match="not a permutation"):
        t.transpose(0, 0, 1)


def test_broadcast_to_and_sum_to():
    t = Tensor(np.array([[1.0], [2.0], [3.0]]))
    b = t.broadcast_to((2, 3, 4))
    np.testing.assert_array_equal(b.numpy(), np.broadcast_to([[1.0], [2.0], [3.0]], (2, 3, 4)))
    np.testing.assert_array_equal(b.sum_to((3, 1)).numpy(), [[8.0], [16.0], [24.0]])
    np.testing.assert_array_equal(b.sum_to((1, 4)).numpy(), [[12.0] * 4])
    assert t.broadcast_to((3, 1)) is t
    with pytest.raises(ShapeError, match=r"shapes \[3, 1\] and \[4, 2\] do not broadcast"):
        t.broadcast_to((4, 2))
    with pytest.raises(ShapeError, match=r"cannot broadcast \[3, 1\] to \[3\]"):
        t.broadcast_to((3,))


@settings(max_examples=50, deadline=None)
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=3),
       op=st.sampled_from(["add", "mul", "sub", "div"]), seed=st.integers(0, 2**16))
def test_broadcasting_gradients_have_input_shapes(shapes, op, seed):
    sa, sb = shapes.input_shapes
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.5, 2.0, sa), rng.uniform(0.5, 2.0, sb)
    ta, tb = Tensor(a), Tensor(b)
    y = {"add": ta + tb, "mul": ta * tb, "sub": ta - tb, "div": ta / tb}[op]
    assert y.shape == shapes.result_shape
    g = rng.normal(size=shapes.result_shape)
    ga, gb = grad([y], [ta, tb], [g])
    assert ga.shape == sa and gb.shape == sb
    assert ga.numpy().shape == sa and gb.numpy().shape == sb
    da, db = {"add": (g, g), "mul": (g * b, g * a), "sub": (g, -g),
              "div": (g / b, -g * a / b**2)}[op]
    np.testing.assert_allclose(ga.numpy(), _unbroadcast(np.broadcast_to(da, g.shape), sa),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gb.numpy(), _unbroadcast(np.broadcast_to(db, g.shape), sb),
                               rtol=1e-12, atol=1e-12)
