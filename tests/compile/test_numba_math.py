"""The float32 functions our generated numba kernels inline (kernels/numba_math.py): accurate
to a few ulp over the whole float32 range, NumPy's special values, and vectorised."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl import jit

pytestmark = pytest.mark.skipif(not jit.available(), reason="numba is not installed")


def _kernel():
    import numba as nb

    from nnctl.compile.kernels.numba_math import tanh32

    @nb.njit(error_model="numpy")
    def run(out, x):
        for i in range(x.shape[0]):
            out[i] = tanh32(x[i])
    return run


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in float32 steps (both finite, same sign or zero)."""
    ia, ib = a.view(np.int32).astype(np.int64), b.view(np.int32).astype(np.int64)
    ia = np.where(ia < 0, -(ia & 0x7FFFFFFF), ia)
    ib = np.where(ib < 0, -(ib & 0x7FFFFFFF), ib)
    return np.abs(ia - ib)


def test_tanh32_is_within_a_few_ulp_of_the_correctly_rounded_tanh():
    run = _kernel()
    rng = np.random.default_rng(0)
    x = np.concatenate([
        np.linspace(-12, 12, 200_001), rng.standard_normal(100_000) * 3,
        np.geomspace(1e-8, 20, 50_000), -np.geomspace(1e-8, 20, 50_000),
        [4e-4, 3.9999e-4, 7.90531110763549805, 9.0, 9.0001, 8.5]]).astype(np.float32)
    out = np.empty_like(x)
    run(out, x)
    exact = np.tanh(x.astype(np.float64)).astype(np.float32)  # correctly rounded to float32
    worst = int(_ulps(out, exact).max())
    assert worst <= 8, worst
    # and no worse than NumPy's own float32 tanh by more than a few ulp
    assert worst <= int(_ulps(np.tanh(x), exact).max()) + 8


def test_tanh32_special_values_are_numpys():
    run = _kernel()
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, 1e-45, 50.0, -50.0,
                  3.0e38, -3.0e38], dtype=np.float32)
    out = np.empty_like(x)
    run(out, x)
    expected = np.tanh(x)
    np.testing.assert_array_equal(out, expected)
    assert np.signbit(out[4]) and not np.signbit(out[3])


def test_a_loop_around_tanh32_is_vectorised():
    """The point of tanh32: LLVM turns the loop into SIMD (libm's tanhf would stay scalar)."""
    run = _kernel()
    x = np.linspace(-3, 3, 64, dtype=np.float32)
    run(np.empty_like(x), x)
    llvm = "\n".join(run.inspect_llvm().values())
    assert "x float>" in llvm  # a vector type: <4 x float>, <8 x float>, <16 x float>
