"""The CUDA generator for fused Programs (nnctl/compile/kernels/cuda.py), checked without a
GPU: every fused program of the shipped configs' training steps, and one program per function
of the expression language, is compiled as host C++ with the generated statements and run on
the same inputs as the NumPy evaluator (the semantics: NaN in maximum, minimum and sign
included); the kernels themselves are compiled with nvcc where it is installed; and the plan
asks for a CUDA kernel when its array module is CuPy."""

from __future__ import annotations

import ctypes
import functools
import shutil
import subprocess
import types
from pathlib import Path

import numpy as np
import pytest

from nnctl.compile.kernels import make_kernel, numpy_kernel
from nnctl.compile.kernels.cuda import HOST_PRELUDE, CTYPES, cuda_source, statements
from nnctl.compile.kernels.expr import FUNCTIONS, Program

ROOT = Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=1)
def _shipped_programs() -> tuple[Program, ...]:
    from nnctl.backend import get_backend
    from nnctl.compile.fusion import FUSED
    from nnctl.config import load_config
    from nnctl.train.trainer import Trainer
    found: dict[Program, None] = {}
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        trainer = Trainer(load_config(path), get_backend("cpu"), out=None)
        for node in trainer.train_plan().graph.nodes:
            if node.op == FUSED:
                found[node.attrs["program"]] = None
    return tuple(found)


def _function_programs() -> list[Program]:
    """One program per function of the language, in both float dtypes, and a where on a
    numeric condition."""
    programs = []
    for dtype in ("float32", "float64"):
        for name, (arity, _) in FUNCTIONS.items():
            if name == "where":
                text = "where((x0 > x1), x1, (x2 * 0.5))"
                arity = 3
            else:
                text = f"{name}({', '.join(f'x{k}' for k in range(arity))})"
            programs.append(Program((dtype,) * arity, ((True,),) * arity,
                                    (("t0", text),), "t0", dtype, 1, (name,)))
        programs.append(Program((dtype,) * 3, ((True,),) * 3,
                                (("t0", "where(x0, (x1 - 1.5), -x2)"),), "t0", dtype, 1,
                                ("where",)))
    return programs


def _host_library(programs: list[Program], folder: Path):
    """The generated statements as one host C++ library: p{i}(n, inputs..., out)."""
    parts = [HOST_PRELUDE]
    for i, program in enumerate(programs):
        out = CTYPES[program.dtype]
        params = [f"const {CTYPES[d]}* x{k}_p" for k, d in enumerate(program.input_dtypes)]
        loads = "".join(f"{CTYPES[d]} x{k} = x{k}_p[e];\n"
                        for k, d in enumerate(program.input_dtypes))
        body = "\n".join(statements(program))
        parts.append(f'extern "C" void p{i}(long n, {", ".join(params)}, {out}* y_p) {{\n'
                     f"for (long e = 0; e < n; e++) {{\n{loads}{out} y;\n{body}\n"
                     f"y_p[e] = y;\n}}\n}}\n")
    source = folder / "fused.cpp"
    source.write_text("\n".join(parts))
    library = folder / "fused.so"
    subprocess.run(["g++", "-O1", "-shared", "-fPIC", "-o", str(library), str(source)],
                   check=True, capture_output=True, timeout=300)
    return ctypes.CDLL(str(library))


def _inputs(program: Program, rng, n: int) -> list[np.ndarray]:
    arrays = []
    for dtype in program.input_dtypes:
        if not dtype.startswith("float"):  # a 0/1 condition
            arrays.append(rng.integers(0, 2, n).astype(dtype))
            continue
        a = rng.uniform(-2.0, 2.0, n).astype(dtype)
        a[:3] = [np.nan, 0.0, -0.0]
        a[3:6] = 1.0  # ties between inputs: maximum, where's comparison
        arrays.append(a)
    return arrays


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to build the host check")
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_generated_statements_compute_what_the_numpy_evaluator_computes(tmp_path):
    programs = _function_programs() + list(_shipped_programs())
    assert len(programs) > 100
    library = _host_library(programs, tmp_path)
    rng = np.random.default_rng(0)
    n = 257
    for i, program in enumerate(programs):
        arrays = _inputs(program, rng, n)
        shaped = [a.reshape((1,) * (program.ndim - 1) + (n,)) for a in arrays]
        want = np.asarray(numpy_kernel(program, np)(None, *shaped)).reshape(-1)
        got = np.empty(n, dtype=program.dtype)
        function = getattr(library, f"p{i}")
        function.restype = None
        function(ctypes.c_long(n), *[a.ctypes.data_as(ctypes.c_void_p) for a in arrays],
                 got.ctypes.data_as(ctypes.c_void_p))
        tight = program.dtype == "float64"
        np.testing.assert_allclose(got, want, rtol=1e-13 if tight else 2e-6,
                                   atol=1e-300 if tight else 1e-30, equal_nan=True,
                                   err_msg=str(program))
        assert np.array_equal(np.isnan(got), np.isnan(want)), str(program)


@pytest.mark.slow  # nvcc takes 5-15 s
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
def test_the_kernels_compile_with_nvcc(tmp_path):
    programs = _function_programs() + list(_shipped_programs())[:40]
    parts = ["#include <cuda_runtime.h>", cuda_source(programs[0]).preamble]
    for i, program in enumerate(programs):
        source = cuda_source(program)
        out = CTYPES[program.dtype]
        params = ", ".join(f"const {CTYPES[d]}* x{k}_p"
                           for k, d in enumerate(program.input_dtypes))
        loads = "".join(f"{CTYPES[d]} x{k} = x{k}_p[e];\n"
                        for k, d in enumerate(program.input_dtypes))
        parts.append(f'extern "C" __global__ void {source.name}_{i}({params}, {out}* y_p, '
                     "long n) {\nlong e = blockIdx.x * (long)blockDim.x + threadIdx.x;\n"
                     f"if (e >= n) return;\n{loads}{out} y;\n{source.operation}\ny_p[e] = y;\n}}")
    path = tmp_path / "fused.cu"
    path.write_text("\n".join(parts))
    result = subprocess.run(["nvcc", "-c", "-o", str(tmp_path / "fused.o"), str(path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_maximum_minimum_and_sign_keep_numpys_nan_rules():
    program = Program(("float32", "float32"), ((True,), (True,)),
                      (("t0", "maximum(x0, x1)"),), "t0", "float32", 1, ("maximum",))
    source = cuda_source(program)
    assert source.in_params == "float32 x0, float32 x1" and source.out_params == "float32 y"
    assert "nnctl_maximum<float>" in source.operation and "fmax" not in source.operation
    assert "isnan(a)" in source.preamble
    literal = Program(("float32",), ((True,),), (("t0", "(x0 * 0.5)"),), "t0", "float32", 1)
    assert "0.5f" in cuda_source(literal).operation  # float32 literals stay float32
    double = Program(("float64",), ((True,),), (("t0", "(x0 * 0.5)"),), "t0", "float64", 1)
    assert "0.5f" not in cuda_source(double).operation and "double" in cuda_source(double) \
        .operation


def test_a_plan_on_cupy_asks_for_one_cuda_kernel():
    """With CuPy as the array module, a fused program becomes one ElementwiseKernel built
    from the generated source (a stand-in CuPy records what it was given)."""
    made = []

    class ElementwiseKernel:
        def __init__(self, in_params, out_params, operation, name, preamble="", options=()):
            made.append((in_params, out_params, operation, name))
            assert options == ("--fmad=false",)

        def __call__(self, *arrays):
            return ("ran", len(arrays))

    fake = types.ModuleType("cupy")
    fake.ElementwiseKernel = ElementwiseKernel
    program = Program(("float32", "float32"), ((True,), (False,)),
                      (("t0", "(x0 + x1)"), ("t1", "tanh(t0)")), "t1", "float32", 1,
                      ("add", "tanh"))
    from nnctl.compile.kernels import cuda
    cuda._built.clear()
    kernel = make_kernel(program, fake)
    assert kernel("out", "a", "b") == ("ran", 3) and kernel(None, "a", "b") == ("ran", 2)
    assert len(made) == 1  # built once, kept
    in_params, out_params, operation, name = made[0]
    assert (in_params, out_params, name) == ("float32 x0, float32 x1", "float32 y",
                                             "nnctl_fused_add_tanh")
    assert operation.splitlines() == ["float v0 = x0 + x1;",
                                      "float v1 = tanh((float)(v0));", "y = (float)(v1);"]
    cuda._built.clear()
