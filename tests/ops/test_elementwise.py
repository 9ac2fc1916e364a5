"""Pointwise ops at the edges the op table's random samples miss (issue 8, point 13)."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.graph.tensor import Tensor
from nnctl.ops.registry import REGISTRY, Aval

X = np.array([[0.0, -1.5, 2.0], [3.0, -0.0, 0.5]])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_pow_with_exponent_zero_is_one_with_zero_gradient_even_at_zero(dtype):
    """d/dx x^0 = 0 everywhere: not 0 * x^-1, which is NaN at x = 0, nor g itself."""
    x = Tensor(X.astype(dtype))
    w = Tensor(np.arange(1.0, 7.0).reshape(2, 3).astype(dtype))
    y = x ** 0
    np.testing.assert_array_equal(y.numpy(), np.ones((2, 3), dtype))
    (g,) = grad((y * w).sum(), [x])
    assert g.numpy().dtype == dtype
    np.testing.assert_array_equal(g.numpy(), np.zeros((2, 3), dtype))
    out = np.full((2, 3), np.nan, dtype)
    np.testing.assert_array_equal(REGISTRY["pow"].forward_into(np, out, X.astype(dtype), 0),
                                  np.ones((2, 3), dtype))


def test_pow_with_exponent_one_passes_the_gradient_through():
    x = Tensor(X)
    w = np.arange(1.0, 7.0).reshape(2, 3)
    (g,) = grad((x ** 1 * Tensor(w)).sum(), [x])
    np.testing.assert_array_equal(g.numpy(), w)


# the shortcut exponents and their neighbours (a shortcut keyed on the wrong number is wrong)
@pytest.mark.parametrize("exponent", [2, 0.5, -1, 1, 0, 3, 1.5, -2, -0.5, -1.5, 4])
def test_pow_shortcuts_equal_numpy_power(exponent):
    """forward_into's shortcuts (square, sqrt, reciprocal, positive, fill) and the fused
    lowering's are x ** p."""
    from nnctl.compile.kernels.expr import Program
    from nnctl.compile.kernels.numpy_eval import numpy_kernel
    x = np.array([0.25, 1.0, 2.5, 9.0])
    expected = np.power(x, float(exponent))
    out = np.empty_like(x)
    np.testing.assert_allclose(REGISTRY["pow"].forward_into(np, out, x, exponent), expected,
                               rtol=1e-15)
    body = (("t0", REGISTRY["pow"].scalar("x0", exponent)),)
    kernel = numpy_kernel(Program(("float64",), ((True,),), body, "t0", "float64", 1), np)
    np.testing.assert_allclose(kernel(None, x), expected, rtol=1e-15)


@pytest.mark.parametrize("exponent", [True, "2", None, [2]])
def test_pow_refuses_an_exponent_that_is_not_a_number(exponent):
    from nnctl.errors import ShapeError
    with pytest.raises(ShapeError, match="pow needs a constant number as exponent"):
        REGISTRY["pow"].infer(Aval((3,), "float64"), exponent)
