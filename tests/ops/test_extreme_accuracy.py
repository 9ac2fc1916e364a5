"""Relative accuracy of the pointwise ops at extreme inputs, against mpmath (issue 8, point 11).

Every path an op's values can take is checked: its `forward`, its `forward_into`, and its fused
lowering (`scalar`) run by the NumPy evaluator and by the numba generator (whose float32 exp and
tanh are our own, kernels/numba_math.py), in float64 and float32. Inputs reach into the tails
where a formula that cancels or overflows loses every digit (sigmoid as 0.5 tanh(x/2) + 0.5 is
exactly 0 at x = -38 in float64). The reference is mpmath at 60 digits, rounded to the dtype.

Tolerances are in units in the last place of the correctly rounded result (ulp; for a result
below the smallest normal number, ulp of that number). Each op is a handful of correctly
rounded steps (+, *, /: 0.5 ulp) around a library exp/log1p/expm1/tanh (NumPy's and libm's
are within 1-2 ulp; our tanh32 within 6), so ULPS allows 4 ulp, tanh32 paths 8. A formula that
cancels misses by millions of ulp, an overflow by infinitely many: the bound separates them.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from nnctl import jit
from nnctl.autodiff import grad
from nnctl.compile.kernels.expr import Program
from nnctl.compile.kernels.numpy_eval import numpy_kernel
from nnctl.graph.tensor import Tensor
from nnctl.ops.registry import REGISTRY

mpmath.mp.dps = 60
ULPS = 4
ULPS_TANH32 = 8  # tanh32 itself is within 6 ulp (tests/compile/test_numba_math.py)


def _mp_sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


def _mp_softplus(x):
    return mpmath.log1p(mpmath.exp(x))  # 1 + e^x would round at 60 digits for x < -140


def _mp_elu(x):
    return x if x > 0 else mpmath.expm1(x)


# op -> (reference, {dtype: extreme inputs whose exact results are normal numbers})
_LO32, _LO64 = -87.0, -708.0  # below these the exact sigmoid, exp, softplus are subnormal
CASES = {
    "sigmoid": (_mp_sigmoid, {
        "float64": [_LO64, -700.0, -300.0, -45.0, -38.0, -37.5, -20.0, -5.0, -1e-300, 0.0,
                    1e-300, 3.0, 20.0, 36.0, 800.0],
        "float32": [_LO32, -80.0, -45.0, -38.0, -20.0, -17.0, -5.0, -1e-30, 0.0, 1e-30, 3.0,
                    16.0, 100.0]}),
    "softplus": (_mp_softplus, {
        "float64": [_LO64, -300.0, -40.0, -1e-300, 0.0, 1e-10, 30.0, 40.0, 1e5, 1e300],
        "float32": [_LO32, -40.0, -17.0, -1e-30, 0.0, 1e-5, 16.0, 30.0, 1e5, 1e30]}),
    "elu": (_mp_elu, {
        "float64": [-1e300, -745.0, -40.0, -1.0, -1e-10, -1e-300, 1e-300, 1e300],
        "float32": [-1e30, -104.0, -17.0, -1.0, -1e-5, -1e-30, 1e-30, 1e30]}),
    "exp": (mpmath.exp, {
        "float64": [_LO64, -300.0, -1e-300, 0.0, 1e-10, 300.0, 709.0],
        "float32": [_LO32, -40.0, -1e-30, 0.0, 1e-5, 40.0, 88.0]}),
    "log": (mpmath.log, {
        "float64": [1e-300, 1e-10, 1.0 - 2**-52, 1.0 + 2**-52, 2.0, 1e300],
        "float32": [1e-37, 1e-10, 1.0 - 2**-23, 1.0 + 2**-23, 2.0, 1e37]}),
    "tanh": (mpmath.tanh, {
        "float64": [-40.0, -20.0, -1e-300, -1e-8, 0.0, 1e-8, 0.5, 19.0, 40.0],
        "float32": [-40.0, -9.5, -1e-30, -1e-3, 0.0, 1e-3, 0.5, 8.0, 40.0]}),
}


def _inputs(name: str, dtype: str) -> np.ndarray:
    return np.array(CASES[name][1][dtype], dtype=dtype)


def _exact(name: str, x: np.ndarray) -> np.ndarray:
    ref = CASES[name][0]
    return np.array([float(ref(mpmath.mpf(float(v)))) for v in x]).astype(x.dtype)


def _ulps(actual: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|actual - exact| in ulp of the exact result (at least the smallest normal's ulp)."""
    info = np.finfo(exact.dtype)
    unit = np.spacing(np.maximum(np.abs(exact), info.tiny)).astype(np.float64)
    with np.errstate(invalid="ignore"):
        err = np.abs(actual.astype(np.float64) - exact.astype(np.float64)) / unit
    return np.where(actual == exact, 0.0, err)  # inf == inf, 0 == 0


def _check(name: str, x: np.ndarray, actual: np.ndarray, bound: float) -> None:
    err = _ulps(actual, _exact(name, x))
    bad = ~(err <= bound)  # NaN counts as bad
    assert not bad.any(), {float(v): (float(a), f"{e:.3g} ulp")
                           for v, a, e in zip(x[bad], actual[bad], err[bad])}


def _program(name: str, dtype: str) -> Program:
    return Program((dtype,), ((True,),), (("t0", REGISTRY[name].scalar("x0")),), "t0", dtype,
                   1)


DTYPES = ["float64", "float32"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CASES))
def test_forward_is_accurate_at_extreme_inputs(name, dtype):
    x = _inputs(name, dtype)
    _check(name, x, REGISTRY[name].forward(np, x), ULPS)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CASES))
def test_forward_into_is_accurate_at_extreme_inputs(name, dtype):
    x = _inputs(name, dtype)
    out = np.full_like(x, np.nan)
    _check(name, x, REGISTRY[name].forward_into(np, out, x), ULPS)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CASES))
def test_fused_lowering_on_numpy_is_accurate_at_extreme_inputs(name, dtype):
    x = _inputs(name, dtype)
    with np.errstate(over="ignore"):  # a lowering may pass through inf on the way to 0
        out = numpy_kernel(_program(name, dtype), np)(None, x)
    _check(name, x, out, ULPS)


@pytest.mark.skipif(not jit.available(), reason="numba is not installed")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CASES))
def test_fused_lowering_on_numba_is_accurate_at_extreme_inputs(name, dtype):
    from nnctl.compile.kernels.numba_cpu import numba_kernel
    x = _inputs(name, dtype)
    out = numba_kernel(_program(name, dtype))(None, x)
    tanh32 = dtype == "float32" and "tanh(" in REGISTRY[name].scalar("x0")
    _check(name, x, out, ULPS_TANH32 if tanh32 else ULPS)


# ---- the sigmoid in the issue's own terms ---------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_at_minus_38_is_pytorchs_value_not_zero(dtype):
    value = REGISTRY["sigmoid"].forward(np, np.array([-38.0], dtype=dtype))[0]
    assert value == pytest.approx(3.1391327920480296e-17, rel=float(4 * np.finfo(dtype).eps),
                                  abs=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_sigmoid_and_its_gradient_are_finite_on_minus_45_to_minus_20(dtype):
    """Eager, so no compiler pass rewrites log(sigmoid(x)) into a softplus: the sigmoid alone
    must carry the precision. d/dx log sigmoid(x) = 1 - sigmoid(x), ~1 here."""
    x = Tensor(np.linspace(-45.0, -20.0, 64).astype(dtype))
    y = x.sigmoid().log()
    (dx,) = grad(y.sum(), [x])
    exact = x.numpy().astype(np.float64)
    rtol = 4 * np.finfo(dtype).eps
    np.testing.assert_allclose(y.numpy(), exact - np.log1p(np.exp(exact)), rtol=rtol)
    np.testing.assert_allclose(dx.numpy(), 1.0 / (1.0 + np.exp(exact)), rtol=rtol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_limits_and_nan(dtype):
    x = np.array([-np.inf, -1e4, np.inf, 1e4, np.nan], dtype=dtype)
    for values in (REGISTRY["sigmoid"].forward(np, x),
                   REGISTRY["sigmoid"].forward_into(np, np.empty_like(x), x)):
        np.testing.assert_array_equal(values, np.array([0.0, 0.0, 1.0, 1.0, np.nan], dtype))


def test_sigmoid_forward_into_raises_no_overflow_warning():
    x = np.array([-1e4, 0.0])
    with np.errstate(over="raise"):
        REGISTRY["sigmoid"].forward_into(np, np.empty_like(x), x)
        REGISTRY["sigmoid"].forward(np, x)


# ---- numba's float32 exp, which the float32 sigmoid kernels inline --------------------------

def _exp32_kernel():
    import numba as nb

    from nnctl.compile.kernels.numba_math import exp32

    @nb.njit(error_model="numpy")
    def run(out, x):
        for i in range(x.shape[0]):
            out[i] = exp32(x[i])
    return run


@pytest.mark.skipif(not jit.available(), reason="numba is not installed")
def test_exp32_is_within_two_ulp_down_to_the_smallest_subnormal():
    x = np.concatenate([np.linspace(-104.0, 88.72, 400_001),
                        np.random.default_rng(0).standard_normal(50_000) * 10,
                        [-103.97, -87.33, 88.7228, 1e-30, -1e-30]]).astype(np.float32)
    out = np.empty_like(x)
    _exp32_kernel()(out, x)
    exact = np.exp(x.astype(np.float64)).astype(np.float32)  # float64 exp, rounded once
    ulp = np.spacing(np.maximum(exact, np.finfo(np.float32).smallest_subnormal))
    err = np.abs(out.astype(np.float64) - exact) / ulp
    assert err.max() <= 2, (x[err.argmax()], out[err.argmax()], exact[err.argmax()])


@pytest.mark.skipif(not jit.available(), reason="numba is not installed")
def test_exp32_special_values_are_numpys():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 88.73, -104.0, -200.0, 3e38,
                  -3e38], dtype=np.float32)
    out = np.empty_like(x)
    _exp32_kernel()(out, x)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(out, np.exp(x))


# ---- derivatives in the tails ----------------------------------------------------------------

DERIVATIVES = {  # op -> (exact derivative, {dtype: inputs}); the tails where it is tiny
    # d elu = alpha e^x for x < 0 (alpha = 1 here); as y + alpha it cancelled to 0
    # (and 1 for x > 0, e^x never overflowing on the unused side: x = 800)
    "elu": (lambda x: 1 if x > 0 else mpmath.exp(x),
            {"float64": [-700.0, -40.0, -20.0, -1e-10, 1e-300, 1.0, 800.0],
             "float32": [-87.0, -30.0, -17.0, -1e-5, 1e-30, 1.0, 100.0]}),
    # d softplus = sigmoid(x): e^x in the left tail
    "softplus": (_mp_sigmoid, {"float64": [-700.0, -40.0, -1.0, 0.0, 30.0],
                               "float32": [-87.0, -20.0, -1.0, 0.0, 30.0]}),
    # d sigmoid = y (1 - y), from the output: relative precision where y is small (x < 0).
    # For x > 0, 1 - y is only absolutely accurate (|error| < eps); reading x instead would
    # keep the pre-activation alive for the backward pass, and the gradient is tiny there.
    "sigmoid": (lambda x: _mp_sigmoid(x) * _mp_sigmoid(-x),
                {"float64": [-700.0, -40.0, -1.0, 0.0], "float32": [-87.0, -20.0, -1.0, 0.0]}),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(DERIVATIVES))
def test_derivative_is_accurate_in_the_tails(name, dtype):
    reference, inputs = DERIVATIVES[name]
    x = np.array(inputs[dtype], dtype=dtype)
    t = Tensor(x)
    (dx,) = grad(t.apply(name).sum(), [t])
    exact = np.array([float(reference(mpmath.mpf(float(v)))) for v in x]).astype(dtype)
    err = _ulps(dx.numpy(), exact)
    assert (err <= ULPS).all(), dict(zip(x.tolist(), zip(dx.numpy().tolist(), err.tolist())))


@pytest.mark.parametrize("dtype", DTYPES)
def test_elu_derivative_scales_by_alpha_only_for_negative_inputs(dtype):
    x = np.array([-40.0, -1.0, 2.0], dtype=dtype)
    t = Tensor(x)
    (dx,) = grad(t.elu(0.5).sum(), [t])
    exact = np.array([0.5 * float(mpmath.exp(-40)), 0.5 * float(mpmath.exp(-1)), 1.0])
    np.testing.assert_allclose(dx.numpy(), exact.astype(dtype), rtol=4 * np.finfo(dtype).eps)
