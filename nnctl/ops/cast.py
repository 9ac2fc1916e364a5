"""cast: a value in another float dtype, the seam of mixed precision (nnctl/graph/precision.py
places it: a float32 master weight read as float16 by a matmul, a float16 activation read as
float32 by a softmax).

The forward rounds to the target dtype (float64 -> float32 -> float16 drops digits; widening is
exact). The derivative is taken as the identity, the gradient cast back to the input's dtype:
rounding stands for the identity map it approximates (every mixed-precision framework does
so), which is what gives a float32 master weight its gradient in float32.
"""

from __future__ import annotations

import contextlib

from nnctl.ops.registry import FLOAT_DTYPES, OPAQUE, Aval, Op, Sample, fail, register, \
    require_float


def _overflow_expected(xp):
    """Silences NumPy's overflow warning: past 65504 a float16 is inf, which is how dynamic
    loss scaling learns of an overflow (CuPy has no floating-point error state)."""
    errstate = getattr(xp, "errstate", None)
    return errstate(over="ignore") if errstate else contextlib.nullcontext()


@register
class Cast(Op):
    """y = x rounded to `dtype`;  dx = g cast back to x's dtype"""
    name = "cast"
    # not fused: a fused program computes in one dtype (kernels/expr.py); one copy per cast
    kind = OPAQUE

    def infer(self, x: Aval, dtype: str) -> Aval:
        require_float(x)
        if dtype not in FLOAT_DTYPES:
            fail(f"cast to {dtype!r}: expected one of {', '.join(FLOAT_DTYPES)}")
        return Aval(x.shape, dtype)

    def forward(self, xp, x, dtype):
        with _overflow_expected(xp):
            return x.astype(dtype)

    def forward_into(self, xp, out, x, dtype):
        with _overflow_expected(xp):
            xp.copyto(out, x, casting="same_kind")  # float to float, rounded to nearest even
        return out

    def vjp(self, g, out, x, dtype):
        return (g if g.dtype == x.dtype else g.apply("cast", dtype=x.dtype),)

    def samples(self):
        # NOTE: the op table feeds float64 and checks float32 in -> float32 out, so the samples
        # cast to float32; its gradcheck steps by 1e-6, which float32 resolves only near 0
        # (spacing 1e-10 at |x| = 1e-3; 1e-7 at 1). tests/ops/test_cast.py checks float16
        # and float64 targets with steps and tolerances that fit each.
        yield Sample(shapes=((3, 4),), attrs={"dtype": "float32"}, low=-1e-3, high=1e-3)
        yield Sample(shapes=((),), attrs={"dtype": "float32"}, low=-1e-3, high=1e-3)
