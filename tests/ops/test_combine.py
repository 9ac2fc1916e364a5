"""Combine, gather and the new reductions on real values: concat/split round trips, take's
summed gradients (the embedding case), tie and bound conventions, stable logsumexp, variance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.errors import ShapeError
from nnctl.graph.tensor import (Tensor, concat, input_placeholder, maximum, parameter,
                                stack, where)

X = np.arange(12.0).reshape(3, 4)
W = np.linspace(-1.0, 1.0, 12).reshape(3, 4)


def test_split_then_concat_is_the_identity_and_passes_gradients_back():
    x = Tensor(X)
    a, b = x.split([1, 3], axis=1)
    assert a.shape == (3, 1) and b.shape == (3, 3)
    np.testing.assert_array_equal(concat([a, b], axis=1).numpy(), X)
    np.testing.assert_array_equal(concat([a, b], axis=-1).numpy(), X)
    ga, gb = grad((concat([a, b], axis=1) * Tensor(W)).sum(), [a, b])
    np.testing.assert_array_equal(ga.numpy(), W[:, :1])
    np.testing.assert_array_equal(gb.numpy(), W[:, 1:])
    (gx,) = grad((concat(x.split(3), axis=0) * Tensor(W)).sum(), [x])
    np.testing.assert_array_equal(gx.numpy(), W)


def test_split_and_concat_errors_name_the_shapes():
    x = Tensor(X)
    with pytest.raises(ShapeError, match=r"split sizes \[1, 2\] do not add up to 4"):
        x.split([1, 2], axis=1)
    with pytest.raises(ShapeError, match="size 3 into 2 equal pieces"):
        x.split(2)
    with pytest.raises(ShapeError, match=r"\[3, 4\], \[2, 3\] differ") as info:
        concat([x, Tensor(np.ones((2, 3)))], axis=0)
    assert info.value.op == "concat"
    with pytest.raises(ShapeError, match=r"one shape, got \[3, 4\], \[4, 3\]"):
        stack([x, x.T])


def test_stack_gradient_picks_each_slice():
    a, b = Tensor(X), Tensor(2 * X)
    y = stack([a, b], axis=1)
    assert y.shape == (3, 2, 4)
    np.testing.assert_array_equal(y.numpy(), np.stack([X, 2 * X], axis=1))
    w = np.arange(24.0).reshape(3, 2, 4)
    ga, gb = grad((y * Tensor(w)).sum(), [a, b])
    np.testing.assert_array_equal(ga.numpy(), w[:, 0])
    np.testing.assert_array_equal(gb.numpy(), w[:, 1])


def test_take_with_repeated_indices_sums_their_gradients():
    table = Tensor(np.arange(8.0).reshape(4, 2))
    indices = np.array([[0, 2], [2, 2]])
    rows = table.take(indices)
    assert rows.shape == (2, 2, 2)
    np.testing.assert_array_equal(rows.numpy(), np.arange(8.0).reshape(4, 2)[indices])
    w = np.array([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]])
    (g,) = grad((rows * Tensor(w)).sum(), [table])
    # row 2 is picked three times: 3 + 5 + 7 and 4 + 6 + 8
    np.testing.assert_array_equal(g.numpy(), [[1, 2], [0, 0], [15, 18], [0, 0]])


def test_embedding_lookup_compiles_with_integer_inputs():
    table = parameter("embedding", (5, 3), "float64")
    ids = input_placeholder("ids", (2, 4), "int64")
    loss = (table.take(ids) ** 2).sum()
    (g,) = grad(loss, [table])
    plan = compile_graph([loss, g], [table, ids], get_backend("cpu"))
    values = np.arange(15.0).reshape(5, 3)
    idx = np.array([[0, 1, 1, 4], [4, 4, 0, 2]])
    out_loss, out_g = plan([values, idx])
    assert out_loss == pytest.approx(np.sum(values[idx] ** 2))
    counts = np.bincount(idx.ravel(), minlength=5)[:, None]
    np.testing.assert_allclose(out_g, 2 * values * counts)


def test_take_refuses_float_indices():
    with pytest.raises(ShapeError, match="integer indices"):
        Tensor(X).take(Tensor(np.array([0.0, 1.0])))


def test_maximum_and_minimum_share_the_gradient_at_ties():
    a, b = Tensor(np.array([1.0, 2.0, 3.0])), Tensor(np.array([3.0, 2.0, 1.0]))
    np.testing.assert_array_equal(maximum(a, b).numpy(), [3.0, 2.0, 3.0])
    ga, gb = grad(maximum(a, b).sum(), [a, b])
    np.testing.assert_array_equal(ga.numpy(), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(gb.numpy(), [1.0, 0.5, 0.0])
    ga, gb = grad(a.minimum(b).sum(), [a, b])
    np.testing.assert_array_equal(ga.numpy(), [1.0, 0.5, 0.0])
    np.testing.assert_array_equal(gb.numpy(), [0.0, 0.5, 1.0])
    # a number on either side is lifted to the tensor's dtype, and broadcasts
    x = Tensor(np.array([-1.0, 0.0, 2.0], dtype=np.float32))
    y = maximum(0.0, x)
    assert y.dtype == "float32"
    np.testing.assert_array_equal(y.numpy(), [0.0, 0.0, 2.0])
    (gx,) = grad(y.sum(), [x])
    np.testing.assert_array_equal(gx.numpy(), [0.0, 0.5, 1.0])


def test_clip_gradient_is_one_inside_and_at_the_bounds_zero_outside():
    x = Tensor(np.array([-3.0, -1.0, 0.0, 1.0, 3.0]))
    np.testing.assert_array_equal(x.clip(-1.0, 1.0).numpy(), [-1.0, -1.0, 0.0, 1.0, 1.0])
    (g,) = grad(x.clip(-1.0, 1.0).sum(), [x])
    np.testing.assert_array_equal(g.numpy(), [0.0, 1.0, 1.0, 1.0, 0.0])
    (g,) = grad(x.clip(low=0).sum(), [x])
    np.testing.assert_array_equal(g.numpy(), [0.0, 0.0, 1.0, 1.0, 1.0])
    with pytest.raises(ShapeError, match="low 2 is above high 1"):
        x.clip(2, 1)
    with pytest.raises(ShapeError, match="a low or a high bound"):
        x.clip()


@pytest.mark.parametrize("cond", [np.array([True, False, True]), np.array([1.0, 0.0, 1.0]),
                                  np.array([1, 0, 1])])
def test_where_selects_and_routes_the_gradient(cond):
    a, b = Tensor(np.array([1.0, 2.0, 3.0])), Tensor(np.array([10.0]))
    y = where(cond, a, b)
    np.testing.assert_array_equal(y.numpy(), [1.0, 10.0, 3.0])
    ga, gb = grad((y * Tensor(np.array([1.0, 2.0, 3.0]))).sum(), [a, b])
    np.testing.assert_array_equal(ga.numpy(), [1.0, 0.0, 3.0])
    np.testing.assert_array_equal(gb.numpy(), [2.0])  # b broadcast: its gradient is summed
    np.testing.assert_array_equal(a.where(cond, 0.0).numpy(), [1.0, 0.0, 3.0])


def test_pad_then_slice_round_trip_and_gradient():
    x = Tensor(X)
    y = x.pad(((1, 0), (2, 1)))
    assert y.shape == (4, 7)
    np.testing.assert_array_equal(y.numpy(), np.pad(X, ((1, 0), (2, 1))))
    np.testing.assert_array_equal(y[1:, 2:6].numpy(), X)
    w = np.arange(28.0).reshape(4, 7)
    (g,) = grad((y * Tensor(w)).sum(), [x])
    np.testing.assert_array_equal(g.numpy(), w[1:, 2:6])
    with pytest.raises(ShapeError, match=r"pad of \[3, 4\] needs 2 pairs"):
        x.pad(((1, 1),))


def test_logsumexp_is_stable_for_large_and_minus_infinite_values():
    x = Tensor(np.array([1000.0, 1000.0]))
    assert x.logsumexp().item() == pytest.approx(1000.0 + math.log(2.0), rel=1e-15)
    (g,) = grad(x.logsumexp(), [x])
    np.testing.assert_allclose(g.numpy(), [0.5, 0.5])
    m = Tensor(np.array([[0.0, -np.inf], [-1000.0, -1000.0]]))
    np.testing.assert_allclose(m.logsumexp(axis=1).numpy(), [0.0, -1000.0 + math.log(2.0)])
    (g,) = grad(m.logsumexp(axis=1).sum(), [m])
    np.testing.assert_allclose(g.numpy(), [[1.0, 0.0], [0.5, 0.5]])
    assert m.logsumexp(axis=-1, keepdims=True).shape == (2, 1)


def test_variance_of_a_constant_is_zero_with_a_finite_gradient():
    c = Tensor(np.full((3, 4), 7.0))
    np.testing.assert_array_equal(c.var(axis=1).numpy(), np.zeros(3))
    (g,) = grad(c.var(), [c])
    np.testing.assert_array_equal(g.numpy(), np.zeros((3, 4)))
    x = Tensor(X)
    np.testing.assert_allclose(x.var(axis=0, keepdims=True).numpy(),
                               np.var(X, axis=0, keepdims=True))
    (g,) = grad(x.var(), [x])
    np.testing.assert_allclose(g.numpy(), 2 * (X - X.mean()) / X.size)
