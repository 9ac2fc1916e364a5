"""float32 functions for generated numba kernels that LLVM can vectorise.

numba lowers `math.tanh` and `math.exp` on float32 to calls into libm, one element at a time,
so a fused loop holding a tanh or an exp (every sigmoid: 1 / (1 + exp(-x))) is not vectorised;
NumPy's own float32 tanh has no SIMD path on AVX2 either. Measured on this
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

`exp32` is Cephes' expf: n = round(x / ln 2) by the 1.5 * 2^23 shift, r = x - n ln 2 in two
parts (Cody-Waite), a degree-7 polynomial for e^r on |r| <= ln 2 / 2, and 2^n made from its
exponent bits in two halves (so results down to the smallest subnormal are right and the
multiply rounds once). It exists for the sigmoid, lowered as 1 / (1 + exp(-x)) so that it keeps
its relative precision for large negative x, where the tanh form cancels; within 2 ulp of the
correctly rounded exp (tests/ops/test_extreme_accuracy.py).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

MATH_VERSION = 2

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


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose bit pattern is the int32 `bits` (a register move, so it vectorises)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


_LOG2E, _SHIFT = _F(1.44269504088896341), _F(12582912.0)  # 1.5 * 2^23 rounds to an integer
_LN2_HI, _LN2_LO = _F(0.693359375), _F(-2.12194440e-4)
_P0, _P1, _P2 = _F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3)
_P3, _P4, _P5 = _F(4.1665795894e-2), _F(1.6666665459e-1), _F(5.0000001201e-1)
_EXP_HI = _F(88.72283935546875)  # the largest x whose e^x is finite in float32
_EXP_LO = _F(-104.0)  # e^x rounds to 0 below -103.97
_INF = _F(np.inf)


@nb.njit(inline="always", error_model="numpy", cache=True)
def exp32(x):
    c = x if x < _EXP_HI else _EXP_HI  # NaN takes the clamp here; it is restored at the end
    c = c if c > _EXP_LO else _EXP_LO
    n = (c * _LOG2E + _SHIFT) - _SHIFT
    r = c - n * _LN2_HI
    r = r - n * _LN2_LO
    p = r * _P0 + _P1
    p = r * p + _P2
    p = r * p + _P3
    p = r * p + _P4
    p = r * p + _P5
    p = (r * r) * p + r + _ONE
    k = np.int32(n)
    half = k >> 1
    scale_a = _float32_from_bits((half + np.int32(127)) << np.int32(23))
    scale_b = _float32_from_bits((k - half + np.int32(127)) << np.int32(23))
    y = (p * scale_a) * scale_b
    y = y if x > _EXP_LO else _ZERO
    y = y if x <= _EXP_HI else _INF
    return y if x == x else x  # noqa: PLR0124 (NaN is the one value unequal to itself)
