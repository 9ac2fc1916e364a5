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


# ---- size-1 axes and all -inf rows (mutation gaps, issue 8 point 13) ---------------------------

def test_mean_gradient_over_a_size_one_axis_is_g_itself():
    """n = 1: the divisor is 1 exactly (max(n, 1) with n = 1), not 0 or 2."""
    w = np.arange(1.0, 9.0).reshape(2, 1, 4)
    t = Tensor(np.linspace(-1.0, 1.0, 8).reshape(2, 1, 4))
    for keepdims in (False, True):
        y = t.mean(axis=1, keepdims=keepdims)
        (g,) = grad((y * Tensor(w.reshape(y.shape))).sum(), [t])
        np.testing.assert_array_equal(g.numpy(), w)
    # a mean over a size-1 and a size-4 axis divides by 4
    (g,) = grad(t.mean(axis=(1, 2)).sum(), [t])
    np.testing.assert_array_equal(g.numpy(), np.full((2, 1, 4), 0.25))


def test_mean_gradient_over_a_symbolic_batch_of_one_is_g():
    """A batch axis B: the count comes from numel at run time; at B = 1 it is 1."""
    from nnctl.backend import get_backend
    from nnctl.compile.plan import compile_graph
    from nnctl.graph.tensor import input_placeholder
    from nnctl.ops.registry import Dim
    x = input_placeholder("x", (Dim("B"), 3), "float64")
    (g,) = grad(x.mean(axis=0).sum(), [x])
    plan = compile_graph([g], [x], get_backend("cpu"))
    for rows in (1, 4):
        (value,) = plan([np.ones((rows, 3))])
        np.testing.assert_array_equal(value, np.full((rows, 3), 1.0 / rows))


def test_variance_over_a_size_one_axis_is_zero_with_zero_gradient():
    x = np.array([[[1.5, -2.0, 3.0]], [[0.25, 7.0, -1.0]]])  # [2, 1, 3]
    t = Tensor(x)
    v = t.var(axis=1)
    np.testing.assert_array_equal(v.numpy(), np.zeros((2, 3)))
    (g,) = grad(v.sum(), [t])
    np.testing.assert_array_equal(g.numpy(), np.zeros_like(x))
    # over the size-1 and the size-3 axis: the variance of each row of 3, and its gradient
    # 2 (x - mean) / 3
    v2 = t.var(axis=(1, 2))
    np.testing.assert_allclose(v2.numpy(), x.var(axis=(1, 2)), rtol=1e-15)
    (g2,) = grad(v2.sum(), [t])
    np.testing.assert_allclose(g2.numpy(), 2 * (x - x.mean(axis=(1, 2), keepdims=True)) / 3,
                               rtol=1e-15)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_logsumexp_of_an_all_minus_inf_row_is_minus_inf_not_nan(dtype):
    """log(sum(e^-inf)) = log 0 = -inf; the max shift alone would give -inf - -inf = NaN."""
    from nnctl.backend import get_backend
    from nnctl.compile.plan import compile_graph
    from nnctl.graph.tensor import input_placeholder
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.0, np.log(2.0), -np.inf]], dtype=dtype)
    expected = np.array([-np.inf, np.log(3.0)], dtype=dtype)
    with np.errstate(divide="ignore"):
        eager = Tensor(x).logsumexp(axis=1).numpy()
        xi = input_placeholder("x", (2, 3), dtype)
        (compiled,) = compile_graph([xi.logsumexp(axis=1)], [xi], get_backend("cpu"))([x])
    for value in (eager, compiled):
        np.testing.assert_allclose(value, expected, rtol=4 * np.finfo(dtype).eps)
        assert value.dtype == dtype
