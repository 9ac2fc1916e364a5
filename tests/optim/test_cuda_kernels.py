"""The optimizers' CUDA kernels (nnctl/optim/cuda_kernels.py), checked without a GPU: their
statements compiled as host C++ update parameters and states exactly as the numba kernels
do (bit for bit, float32 and float64, with and without L2, Nesterov and the first momentum
step), they compile with nvcc, and a CuPy optimizer step calls them with its arrays in the
kernels' parameter order."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import types

import numpy as np
import pytest

from nnctl.optim.cuda_kernels import SOURCES, guarded, in_params

CTYPE = {"float32": "float", "float64": "double"}
# each kernel's arguments after p and g, as the numba kernel takes them
STATES = {"sgd": 0, "sgd_momentum": 1, "adam": 2, "rmsprop": 1, "rmsprop_momentum": 2,
          "adagrad": 1}
COEFS = {"sgd": [1.0, 0.01, 0.1, 0.9], "sgd_momentum": [1.0, 0.01, 0.1, 0.9],
         "adam": [0.999, 0.01, 0.1, 0.9, 0.001, 0.999, 3e-10, 0.0031],
         "rmsprop": [1.0, 0.01, 0.01, 0.99, 1e-8, 0.9, 0.01],
         "rmsprop_momentum": [1.0, 0.01, 0.01, 0.99, 1e-8, 0.9, 0.01],
         "adagrad": [1.0, 0.01, 1e-10, 0.01]}


def _host_library(folder, dtype):
    parts = ["#include <cmath>", "using namespace std;", f"typedef {CTYPE[dtype]} T;"]
    for name, (extra, outs, body) in SOURCES.items():
        arrays = [o.split()[1] for o in outs.split(", ")]
        flags = ", ".join(f"bool {f.split()[1]}" for f in extra.split(", ") if f)
        params = ", ".join([f"T* {a}_" for a in arrays] + ["const T* g_", "const T* c",
                                                             "bool l2"]
                           + ([flags] if flags else []))
        refs = "".join(f"T& {a} = {a}_[i];\n" for a in arrays)
        parts.append(f'extern "C" void {name}(long n, {params}) {{\n'
                     f"for (long i = 0; i < n; i++) {{\n{refs}const T g = g_[i];\n{body}\n}}\n}}")
    source = folder / f"optim_{dtype}.cpp"
    source.write_text("\n".join(parts))
    library = folder / f"optim_{dtype}.so"
    subprocess.run(["g++", "-O2", "-shared", "-fPIC", "-o", str(library), str(source)],
                   check=True, capture_output=True, timeout=120)
    return ctypes.CDLL(str(library))


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_statements_update_as_the_numba_kernels_do(tmp_path, dtype):
    kernels = pytest.importorskip("nnctl.optim.kernels")
    library = _host_library(tmp_path, dtype)
    rng = np.random.default_rng(0)
    n = 1001
    for name in SOURCES:
        for l2 in (False, True):
            flag_sets = [(nesterov, first) for nesterov in (False, True)
                         for first in (False, True)] if name == "sgd_momentum" else [()]
            for flags in flag_sets:
                p = rng.normal(size=n).astype(dtype)
                states = [np.abs(rng.normal(size=n)).astype(dtype)
                          for _ in range(STATES[name])]
                c = np.array(COEFS[name], dtype=dtype)
                host = [p.copy(), *[s.copy() for s in states]]
                for step in range(3):
                    g = rng.normal(size=n).astype(dtype)
                    getattr(kernels, name)(p, g, *states, c, l2, *flags)
                    function = getattr(library, name)
                    function.restype = None
                    function(ctypes.c_long(n),
                             *[a.ctypes.data_as(ctypes.c_void_p) for a in host],
                             g.ctypes.data_as(ctypes.c_void_p),
                             c.ctypes.data_as(ctypes.c_void_p), ctypes.c_bool(l2),
                             *[ctypes.c_bool(f) for f in flags])
                    for a, b in zip(host, [p, *states]):
                        assert np.array_equal(a, b), (name, l2, flags, step)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_a_guard_of_zero_leaves_every_element_and_a_guard_of_one_updates(tmp_path):
    parts = ["#include <cmath>", "using namespace std;", "typedef double T;"]
    for name in SOURCES:
        extra, outs, _ = SOURCES[name]
        inputs, body = guarded(name)
        assert inputs == in_params(name) + ", raw T ok"
        arrays = [o.split()[1] for o in outs.split(", ")]
        flags = ", ".join(f"bool {f.split()[1]}" for f in extra.split(", ") if f)
        params = ", ".join([f"T* {a}_" for a in arrays] + ["const T* g_", "const T* c",
                                                             "bool l2", "const T* ok"]
                           + ([flags] if flags else []))
        refs = "".join(f"T& {a} = {a}_[i];\n" for a in arrays)
        parts.append(f'extern "C" void {name}(long n, {params}) {{\n'
                     f"for (long i = 0; i < n; i++) {{\n{refs}const T g = g_[i];\n{body}\n}}\n}}")
    (tmp_path / "guard.cpp").write_text("\n".join(parts))
    subprocess.run(["g++", "-O2", "-shared", "-fPIC", "-o", str(tmp_path / "guard.so"),
                    str(tmp_path / "guard.cpp")], check=True, capture_output=True, timeout=120)
    library = ctypes.CDLL(str(tmp_path / "guard.so"))
    rng = np.random.default_rng(1)
    pointer = ctypes.c_void_p
    for name in SOURCES:
        flags = [False, False] if name == "sgd_momentum" else []
        arrays = [rng.normal(size=50) for _ in range(1 + STATES[name])]
        before = [a.copy() for a in arrays]
        g, c = rng.normal(size=50), np.array(COEFS[name])
        function = getattr(library, name)
        function.restype = None
        for ok in (0.0, 1.0):
            function(ctypes.c_long(50), *[a.ctypes.data_as(pointer) for a in arrays],
                     g.ctypes.data_as(pointer), c.ctypes.data_as(pointer), ctypes.c_bool(False),
                     np.array([ok]).ctypes.data_as(pointer), *[ctypes.c_bool(f) for f in flags])
            same = all(np.array_equal(a, b) for a, b in zip(arrays, before))
            assert same == (ok == 0.0), (name, ok)


@pytest.mark.slow  # nvcc takes 5-15 s
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
def test_the_kernels_compile_with_nvcc(tmp_path):
    parts = []
    for name, (extra, outs, _) in SOURCES.items():
        body = guarded(name)[1]
        arrays = [o.split()[1] for o in outs.split(", ")]
        flags = ", ".join(f"bool {f.split()[1]}" for f in extra.split(", ") if f)
        params = ", ".join([f"T* {a}_" for a in arrays] + ["const T* g_", "const T* c",
                                                             "bool l2", "const T* ok", "long n"]
                           + ([flags] if flags else []))
        refs = "".join(f"T& {a} = {a}_[i];\n" for a in arrays)
        parts.append(f"template <typename T> __global__ void {name}({params}) {{\n"
                     "long i = blockIdx.x * (long)blockDim.x + threadIdx.x;\n"
                     f"if (i >= n) return;\n{refs}const T g = g_[i];\n{body}\n}}\n"
                     f"template __global__ void {name}<float>("
                     + params.replace("T*", "float*").replace("const T", "const float")
                     + ");")
    path = tmp_path / "optim.cu"
    path.write_text("\n".join(parts))
    result = subprocess.run(["nvcc", "-c", "--fmad=false", "-o", str(tmp_path / "optim.o"),
                             str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_an_optimizer_on_cupy_launches_one_kernel_per_parameter():
    """A stand-in CuPy: the Adam step builds the adam kernel once and calls it per parameter
    with (g, c, l2, p, m, v), the coefficients filled on the device in one copy."""
    from nnctl.optim.adam import Adam
    calls, built = [], []

    class ElementwiseKernel:
        def __init__(self, ins, outs, body, name, options=()):
            built.append((ins, outs, name, options))

        def __call__(self, *args):
            calls.append(args)

    class DeviceArray(np.ndarray):
        def set(self, host):
            self[...] = host

    def empty(n, dtype):
        return np.empty(n, dtype).view(DeviceArray)

    fake = types.SimpleNamespace(__name__="cupy", ElementwiseKernel=ElementwiseKernel,
                                 zeros_like=np.zeros_like, empty=empty, copyto=np.copyto,
                                 ones=np.ones)
    opt = Adam(fake, lr=0.01)
    params = [np.ones((3, 2), np.float32), np.ones(4, np.float32)]
    grads = [np.full((3, 2), 0.5, np.float32), np.full(4, 0.25, np.float32)]
    opt.step(params, grads)
    assert len(built) == 1 and built[0][:3] == (guarded("adam")[0], "T p, T m, T v",
                                                "nnctl_adam")
    assert built[0][3] == ("--fmad=false",)
    assert len(calls) == 2
    g, c, l2, ok, p, m, v = calls[0]
    assert g.shape == (6,) and p.shape == (6,) and m.shape == (6,) and l2 is False
    assert ok.tolist() == [1.0]  # no guard: always applied
    assert np.shares_memory(p, params[0]) and np.allclose(c[2:4], [0.1, 0.9])
