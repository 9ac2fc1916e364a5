"""Kernels for fused elementwise Programs (see expr.py for the language).

`make_kernel(program, xp)` gives `kernel(out, *arrays) -> out`: the numba CPU kernel when
xp is NumPy and the JIT is on (`nnctl.jit.enabled()`), else the array-call evaluator on xp
(the pure-NumPy path, and CuPy until a CUDA generator sits beside numba_cpu.py).
"""

from __future__ import annotations

from nnctl import jit
from nnctl.compile.kernels.expr import FUNCTIONS, ExprError, Program, parse
from nnctl.compile.kernels.numpy_eval import numpy_kernel

__all__ = ["FUNCTIONS", "ExprError", "Program", "make_kernel", "numpy_kernel", "parse"]


def make_kernel(program: Program, xp):
    if getattr(xp, "__name__", "") == "numpy" and jit.enabled():
        from nnctl.compile.kernels.numba_cpu import numba_kernel
        return numba_kernel(program)
    return numpy_kernel(program, xp)
