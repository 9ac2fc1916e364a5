"""Reductions: values over axes (negative too), keepdims, max's tie rule, axis errors."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.errors import ShapeError
from nnctl.graph.tensor import Tensor

X = np.arange(24.0).reshape(2, 3, 4) ** 1.5


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), (-1, -3), (2, 1, 0)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_match_numpy(reduce, axis, keepdims):
    y = getattr(Tensor(X), reduce)(axis, keepdims=keepdims)
    expected = getattr(np, {"max": "amax"}.get(reduce, reduce))(X, axis=axis, keepdims=keepdims)
    assert y.shape == np.shape(expected)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12)


def test_sum_and_mean_gradients():
    t = Tensor(X)
    (gs,) = grad(t.sum(axis=1).sum(), [t])
    np.testing.assert_array_equal(gs.numpy(), np.ones_like(X))
    w = np.arange(8.0).reshape(2, 4)
    (gm,) = grad((t.mean(axis=1) * Tensor(w)).sum(), [t])
    np.testing.assert_allclose(gm.numpy(), np.broadcast_to(w[:, None, :] / 3, X.shape))


def test_max_gradient_is_shared_between_ties():
    t = Tensor(np.array([[1.0, 3.0, 3.0], [5.0, 2.0, 0.0]]))
    (g,) = grad(t.max(axis=1).sum(), [t])
    np.testing.assert_array_equal(g.numpy(), [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    (g_all,) = grad(t.max(), [t])
    np.testing.assert_array_equal(g_all.numpy(), [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])


def test_axis_errors():
    t = Tensor(X)
    with pytest.raises(ShapeError, match="axis 3 is out of range for a 3-D input"):
        t.sum(3)
    with pytest.raises(ShapeError, match="repeated axis"):
        t.mean((0, -3))


def test_mean_gradient_of_an_empty_batch():
    # regression: Mean.vjp once divided by x.size // out.size, which is 0 for an empty input
    t = Tensor(np.zeros((0, 4)))
    (g,) = grad(t.mean(axis=1).sum(), [t])
    assert g.shape == (0, 4) and g.numpy().shape == (0, 4)
    # and the divisor is the reduced count, not x.size // out.size
    u = Tensor(np.ones((2, 5)))
    (gu,) = grad(u.mean(axis=1).sum(), [u])
    np.testing.assert_allclose(gu.numpy(), np.full((2, 5), 0.2))
