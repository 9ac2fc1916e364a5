"""float32 functions for generated numba kernels that LLVM can vectorise.

numba lowers `math.tanh` on float32 to a call into libm, one element at a time, so a fused
loop holding a tanh (every sigmoid too: it is lowered as 0.5 * tanh(0.5 x) + 0.5) is not
vectorised; NumPy's own float32 tanh has no SIMD path on AVX2 either. Measured on this
project's 2-core AVX2 machine: 7.4 ns per element for `np.tanh`, ~2 ns for `tanh32` below
inside a numba loop (docs/performance.md).

`tanh32` is the rational approximation Eigen (and so TensorFlow) uses for float32 tanh: a
degree-13/6 odd/even polynomial ratio on [-7.9053, 7.9053]; measured within 6 float32 ulp of
the correctly rounded tanh over the whole range (tests/compile/test_numba_math.py). Around it:
tanh(x) = x below 4e-4 (where x is already the rounded result), +-1 beyond 9 (where float32's
tanh rounds to 1), NaN stays NaN and -0 stays -0. float64 kernels keep libm.

Branch-free (conditional expressions LLVM turns into selects), inlined into the caller by
numba, so the loop around it vectorises. Bump MATH_VERSION with any change here: the
generated kernels that inline this code are cached on disk, keyed on their own source.
"""

from __future__ import annotations

import numba as nb
import numpy as np

MATH_VERSION = 1

_F = np.float32
_CLAMP, _ONE_BEYOND, _TINY = _F(7.90531110763549805), _F(9.0), _F(4e-4)
_ONE, _ZERO = _F(1.0), _F(0.0)
_A1, _A3, _A5 = _F(4.89352455891786e-03), _F(6.37261928875436e-04), _F(1.48572235717979e-05)
_A7, _A9 = _F(5.12229709037114e-08), _F(-8.60467152213735e-11)
_A11, _A13 = _F(2.00018790482477e-13), _F(-2.76076847742355e-16)
_B0, _B2 = _F(4.89352518554385e-03), _F(2.26843463243900e-03)
_B4, _B6 = _F(1.18534705686654e-04), _F(1.19825839466702e-06)


@nb.njit(inline="always", error_model="numpy", cache=True)
def tanh32(x):
    c = x if x < _CLAMP else _CLAMP  # NaN takes the clamp here; it is restored at the end
    c = c if c > -_CLAMP else -_CLAMP
    x2 = c * c
    p = x2 * _A13 + _A11
    p = x2 * p + _A9
    p = x2 * p + _A7
    p = x2 * p + _A5
    p = x2 * p + _A3
    p = x2 * p + _A1
    q = x2 * _B6 + _B4
    q = x2 * q + _B2
    q = x2 * q + _B0
    t = c * p / q
    t = t if abs(x) <= _ONE_BEYOND else (_ONE if x > _ZERO else -_ONE)
    return t if abs(x) >= _TINY else x  # tiny x, -0 and NaN are their own tanh
