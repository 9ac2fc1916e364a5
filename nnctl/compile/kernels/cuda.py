"""Fused Programs as CUDA: one CuPy ElementwiseKernel per program, beside numba_cpu.py.

`cuda_source(program)` maps the program's three-address instructions (expr.flatten) to CUDA
C++ statements, as numba_cpu maps them to Python and numpy_eval to ufunc calls. CuPy's
ElementwiseKernel then does what the CPU generators do by hand: it broadcasts the inputs
against the output (a bias row, a per-channel scale) and launches one thread per element,
so a fused chain of n ops is one kernel launch instead of n and reads each input once.
Kernels are compiled by CuPy (NVRTC) at first use and cached by CuPy on disk; here they are
kept per program (`cuda_kernel`).

The semantics are NumPy's, as the language's (expr.FUNCTIONS): maximum and minimum propagate
NaN (CUDA's fmax/fmin drop it), sign keeps NaN, where reads any nonzero condition as true.
The same statements compile as host C++ (`HOST_PRELUDE`), which is how they are checked
against the NumPy evaluator on a machine without a GPU (tests/compile/test_cuda_codegen.py),
and the kernels themselves are compiled with nvcc there when it is installed.
"""

from __future__ import annotations

from dataclasses import dataclass

from nnctl.compile.kernels.expr import COMPARE, Program, flatten

CTYPES = {"float16": "float16", "float32": "float", "float64": "double", "int32": "int",
          "int64": "long long", "bool": "bool"}
_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_COMPARE = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "eq": "==", "ne": "!="}
_MATH = {"exp": "exp", "expm1": "expm1", "log": "log", "log1p": "log1p", "sqrt": "sqrt",
         "abs": "fabs", "sin": "sin", "cos": "cos", "tanh": "tanh", "pow": "pow"}
assert set(_COMPARE) == set(COMPARE.values())

# what the statements need besides the math functions, on the device (CuPy's preamble)
DEVICE_PRELUDE = """
template <typename T> __device__ T nnctl_maximum(T a, T b) {
  return (a >= b || isnan(a)) ? a : b;  // NumPy's: NaN wins, either side
}
template <typename T> __device__ T nnctl_minimum(T a, T b) {
  return (a <= b || isnan(a)) ? a : b;
}
template <typename T> __device__ T nnctl_sign(T a) {
  return isnan(a) ? a : (T)((a > (T)0) - (a < (T)0));
}
"""
# the same helpers for host C++ (the tests compile the statements with g++)
HOST_PRELUDE = DEVICE_PRELUDE.replace("__device__ ", "").replace(
    "template", "#include <cmath>\nusing namespace std;\ntemplate", 1)


@dataclass(frozen=True)
class CudaSource:
    """The pieces of a cupy.ElementwiseKernel: `in_params` ("float32 x0, ..."), `out_params`
    ("float32 y"), the per-element `operation`, a `name`; `preamble` holds the helpers."""

    in_params: str
    out_params: str
    operation: str
    name: str
    preamble: str = DEVICE_PRELUDE


def _literal(value: float, ctype: str) -> str:
    text = repr(float(value))
    return text + ("f" if ctype == "float" else "")


def statements(program: Program) -> list[str]:
    """The program's body as C++ statements over inputs x0.. and the output y.

    A float16 program (CuPy's `float16`, stored as half) computes in float: each float16
    input is read as a float, every step is a float, and y is rounded to half once, at the
    end, as PyTorch's fused half kernels do (NumPy's unfused float16 ops round after each
    op: the results agree to float16's rounding, not bit for bit)."""
    out_type = "float" if program.dtype == "float16" else CTYPES[program.dtype]
    types = {f"x{k}": CTYPES[d] for k, d in enumerate(program.input_dtypes)}
    lines = []

    def arg(a) -> str:
        if not isinstance(a, str):
            return _literal(a, out_type)
        return f"((float)({a}))" if types.get(a) == "float16" else a

    instrs = flatten(program)
    for ins in instrs:
        args = [arg(a) for a in ins.args]
        ctype = out_type
        if ins.fn in _BINARY:
            expr = f"{args[0]} {_BINARY[ins.fn]} {args[1]}"
        elif ins.fn in _COMPARE:
            expr, ctype = f"{args[0]} {_COMPARE[ins.fn]} {args[1]}", "bool"
        elif ins.fn == "neg":
            expr = f"-{args[0]}"
        elif ins.fn == "copy":
            expr = args[0]
        elif ins.fn in _MATH:
            expr = f"{_MATH[ins.fn]}(({out_type})({args[0]})" + \
                "".join(f", ({out_type})({a})" for a in args[1:]) + ")"
        elif ins.fn in ("maximum", "minimum", "sign"):
            expr = f"nnctl_{ins.fn}<{out_type}>(" + \
                ", ".join(f"({out_type})({a})" for a in args) + ")"
        elif ins.fn == "where":
            condition = args[0] if types.get(ins.args[0]) == "bool" or \
                _is_compare(instrs, ins.args[0]) else f"({args[0]} != 0)"
            expr = f"{condition} ? ({out_type})({args[1]}) : ({out_type})({args[2]})"
        else:
            raise ValueError(f"no CUDA lowering for {ins.fn!r}")
        types[ins.dest] = ctype
        lines.append(f"{ctype} {ins.dest} = {expr};")
    lines.append(f"y = ({CTYPES[program.dtype]})({instrs[-1].dest});")
    return lines


def _is_compare(instrs, name) -> bool:
    return any(i.dest == name and i.fn in _COMPARE for i in instrs)


def cuda_source(program: Program) -> CudaSource:
    ins = ", ".join(f"{d} x{k}" for k, d in enumerate(program.input_dtypes))
    name = "nnctl_fused_" + "_".join(program.ops[:4]).replace(".", "_") if program.ops \
        else "nnctl_fused"
    return CudaSource(ins, f"{program.dtype} y", "\n".join(statements(program)), name)


_built: dict = {}


def _elementwise(program: Program, xp):
    """The ElementwiseKernel of `program`, built once (xp is CuPy: the backend's module)."""
    kernel = _built.get(program)
    if kernel is None:
        source = cuda_source(program)
        # without fused multiply-adds, as the optimizer kernels: the CPU's operations, so
        # the GPU's fused float32 chains can give the CPU's bits (they are memory-bound: an
        # FMA would save nothing)
        kernel = _built[program] = xp.ElementwiseKernel(
            source.in_params, source.out_params, source.operation, source.name,
            preamble=source.preamble, options=("--fmad=false",))
    return kernel


def cuda_kernel(program: Program, xp):
    """`kernel(out, *arrays) -> out` running `program` as one CUDA kernel (CuPy arrays);
    built once per program at its first call (CuPy compiles it then, or loads it from its
    cache)."""
    def kernel(out, *arrays):
        elementwise = _elementwise(program, xp)
        return elementwise(*arrays, out) if out is not None else elementwise(*arrays)
    return kernel
