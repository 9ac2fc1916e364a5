"""Kernels for fused elementwise Programs (see expr.py for the language).

`make_kernel(program, xp)` gives `kernel(out, *arrays) -> out`: one CUDA kernel when xp is
CuPy (cuda.py), the numba CPU kernel when xp is NumPy, the JIT is on
(`nnctl.jit.enabled()`) and numba gains on the program (see `uses_numba`), else the
array-call evaluator on xp (the pure-NumPy path).
"""

from __future__ import annotations

from nnctl import jit
from nnctl.compile.kernels.expr import FUNCTIONS, ExprError, Program, flatten, parse
from nnctl.compile.kernels.numpy_eval import numpy_kernel

__all__ = ["FUNCTIONS", "ExprError", "Program", "make_kernel", "numpy_kernel", "parse",
           "uses_numba"]


# NumPy runs these on float32 with SIMD (AVX2 and up), numba calls scalar libm for them:
# measured 3x slower fused than unfused (docs/performance.md), so such programs stay on
# the ufuncs. float64 and arithmetic-only programs gain from numba (1.5x and 8-11x), and
# float32 tanh and exp (so the sigmoid) have vectorisable lowerings of our own (numba_math.py).
SIMD_IN_NUMPY = {"float32": frozenset({"expm1", "log", "log1p", "sin", "cos", "pow"})}


def uses_numba(program: Program, xp) -> bool:
    """Whether `make_kernel` generates a numba kernel for `program` on `xp`."""
    if getattr(xp, "__name__", "") != "numpy" or not jit.enabled():
        return False
    slow = SIMD_IN_NUMPY.get(program.dtype, frozenset())
    return not any(i.fn in slow for i in flatten(program))


def make_kernel(program: Program, xp):
    if getattr(xp, "__name__", "") == "cupy":
        from nnctl.compile.kernels.cuda import cuda_kernel
        return cuda_kernel(program, xp)
    small = numpy_kernel(program, xp)
    if not uses_numba(program, xp):
        return small
    large = None

    def kernel(out, *arrays):
        """NumPy's ufuncs below jit.KERNEL_MIN_SIZE elements, numba above (compiled or
        loaded from the cache at the first large call, so a plan run under jit.held_back()
        never imports numba)."""
        nonlocal large
        size = out.size if out is not None else max((a.size for a in arrays), default=0)
        if not jit.worth(size, jit.KERNEL_MIN_SIZE):
            return small(out, *arrays)
        if large is None:
            from nnctl.compile.kernels.numba_cpu import numba_kernel
            large = numba_kernel(program)
        return large(out, *arrays)

    def bind(out, *arrays):
        """The launcher bound to these arrays of the kernel that would run them (see
        numba_cpu.numba_kernel; None where numba's needs a copy at each call)."""
        nonlocal large
        if not jit.worth(out.size, jit.KERNEL_MIN_SIZE):
            return small.bind(out, *arrays)
        if large is None:
            from nnctl.compile.kernels.numba_cpu import numba_kernel
            large = numba_kernel(program)
        return large.bind(out, *arrays)

    kernel.bind = bind
    return kernel
