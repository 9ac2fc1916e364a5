"""Activations on real values: softplus at +-1000, gelu against the erf form, the kinks of
leaky_relu and elu, and elu's overflow-free forward."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.errors import ShapeError
from nnctl.graph.tensor import Tensor


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softplus_is_finite_and_exact_far_out(dtype):
    x = Tensor(np.array([-1000.0, 0.0, 1000.0]), dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow on the way
        y = x.softplus()
        (g,) = grad(y.sum(), [x])
    assert y.dtype == dtype
    np.testing.assert_array_equal(y.numpy(), np.array([0.0, math.log(2.0), 1000.0], dtype))
    np.testing.assert_array_equal(g.numpy(), [0.0, 0.5, 1.0])


def test_gelu_is_the_tanh_approximation_within_5e_4_of_the_erf_form():
    xs = np.linspace(-6.0, 6.0, 241)
    y = Tensor(xs).gelu().numpy()
    exact = np.array([0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))) for v in xs])
    assert np.max(np.abs(y - exact)) < 5e-4
    assert Tensor(1.0).gelu().item() == pytest.approx(0.8411919906082768, rel=1e-15)
    x = Tensor(np.array([0.0]))
    (g,) = grad(x.gelu().sum(), [x])
    np.testing.assert_allclose(g.numpy(), [0.5])


@pytest.mark.parametrize("dtype,xs", [(np.float64, [-12.0, -16.0, -20.0]),
                                      (np.float32, [-6.0, -8.0, -9.0])])
def test_gelu_keeps_relative_precision_in_its_negative_tail(dtype, xs):
    """0.5 x (1 + tanh(u)) cancels to 0 (or a few ulps of 1) far below 0; x sigmoid(2u) is
    the same function without the cancellation. What remains is the function's own
    conditioning: e^(-2u) turns the rounding of 2u into a relative error of |2u| ulp, so the
    bound is (|2u| + 8) ulp of mpmath's value (the 1 + tanh form gave 0 here)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    c, k = mpmath.sqrt(2 / mpmath.pi), mpmath.mpf("0.044715")
    got = Tensor(np.array(xs, dtype=dtype)).gelu().numpy()
    for x, y in zip(xs, got):
        x = mpmath.mpf(x)
        z = 2 * c * (x + k * x ** 3)
        want = x / (1 + mpmath.exp(-z))
        bound = (abs(float(z)) + 8) * np.finfo(dtype).eps
        assert y != 0 and abs(mpmath.mpf(float(y)) / want - 1) < bound, \
            (float(x), float(y), float(want))


def test_leaky_relu_values_and_gradient():
    x = Tensor(np.array([-2.0, -0.5, 0.5, 3.0]))
    np.testing.assert_allclose(x.leaky_relu().numpy(), [-0.02, -0.005, 0.5, 3.0])
    (g,) = grad(x.leaky_relu(0.2).sum(), [x])
    np.testing.assert_allclose(g.numpy(), [0.2, 0.2, 1.0, 1.0])
    with pytest.raises(ShapeError, match="needs a number as slope"):
        x.leaky_relu("0.1")


def test_elu_values_gradient_and_no_overflow():
    x = Tensor(np.array([-2.0, -0.5, 0.5, 1000.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exp of the unused branch must not overflow
        y = x.elu(alpha=0.5)
    np.testing.assert_allclose(y.numpy(), [0.5 * math.expm1(-2.0), 0.5 * math.expm1(-0.5),
                                           0.5, 1000.0])
    (g,) = grad(y.sum(), [x])
    np.testing.assert_allclose(g.numpy(), [0.5 * math.exp(-2.0), 0.5 * math.exp(-0.5), 1, 1])
    # the second derivative is alpha e^x on the negative side and 0 on the positive side
    (gg,) = grad(grad(x.elu(alpha=0.5).sum(), [x])[0].sum(), [x])
    np.testing.assert_allclose(gg.numpy(), [0.5 * math.exp(-2.0), 0.5 * math.exp(-0.5), 0, 0])
