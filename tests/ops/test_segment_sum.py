"""Deterministic scatter-add (nnctl/ops/segment_sum.py): the sort-based segment sum the GPU
runs adds each row's values in the same order as NumPy's add.at, so it gives the same bits;
its kernel's statements, compiled as host C++, and its plan, run on NumPy, show it."""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from nnctl.ops.segment_sum import DEVICE_SOURCE, SEGMENT_BODY, segment_plan, segment_sum


def _case(dtype, rows=7, n=300, width=5, seed=0):
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, rows, n)
    indices[:40] = 3  # one row gets many values: where the order of the adds shows
    x = (rng.normal(size=(n, width)) * 10.0 ** rng.integers(-6, 6, (n, 1))).astype(dtype)
    return x, indices


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_sorted_runs_added_in_order_are_add_at_bit_for_bit(dtype):
    x, indices = _case(dtype)
    want = np.zeros((8, 5), dtype)
    np.add.at(want, indices, x)
    order, starts, ends = segment_plan(np, indices, 8)
    got = np.zeros_like(want)
    for r in range(8):  # what each GPU thread does: its run, in order, from zero
        run = x[order[starts[r]:ends[r]]]
        got[r] = np.cumsum(run, axis=0, dtype=dtype)[-1] if len(run) else 0
    assert np.array_equal(got, want)
    assert ends[7] == starts[7]  # a row nothing lands on stays zero
    # the order matters in these sums: the same runs added backwards give other bits
    backwards = np.stack([np.cumsum(x[order[starts[r]:ends[r]]][::-1], axis=0)[-1]
                          if ends[r] > starts[r] else np.zeros(5, dtype) for r in range(8)])
    assert not np.array_equal(backwards, want)


def test_segment_sum_on_numpy_is_add_at_and_keeps_trailing_axes():
    x, indices = _case("float64")
    x = x.reshape(300, 5, 1)
    want = np.zeros((9, 5, 1))
    np.add.at(want, indices, x)
    assert np.array_equal(segment_sum(np, x, indices, 9), want)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
@pytest.mark.parametrize("dtype, ctype", [("float32", "float"), ("float64", "double")])
def test_the_kernel_body_compiled_for_the_host_gives_add_at(tmp_path, dtype, ctype):
    source = tmp_path / "segment.cpp"
    source.write_text(
        f'typedef {ctype} T;\nextern "C" void run(const T* rows, const long long* order, '
        "const long long* starts, const long long* ends, T* y, long long n, long long width)"
        " {\nfor (long long t = 0; t < n; t++) {" + SEGMENT_BODY + "}\n}\n")
    library = tmp_path / "segment.so"
    subprocess.run(["g++", "-O2", "-shared", "-fPIC", "-o", str(library), str(source)],
                   check=True, capture_output=True, timeout=120)
    run = ctypes.CDLL(str(library)).run
    run.restype = None
    x, indices = _case(dtype, seed=1)
    order, starts, ends = (np.ascontiguousarray(a, np.int64)
                           for a in segment_plan(np, indices, 8))
    y = np.zeros((8, 5), dtype)
    pointer = ctypes.c_void_p
    run(*(a.ctypes.data_as(pointer) for a in (np.ascontiguousarray(x), order, starts, ends,
                                              y)), ctypes.c_longlong(y.size),
        ctypes.c_longlong(5))
    want = np.zeros((8, 5), dtype)
    np.add.at(want, indices, x)
    assert np.array_equal(y, want)


@pytest.mark.slow  # nvcc takes 5-15 s
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
def test_the_kernel_compiles_with_nvcc(tmp_path):
    path = tmp_path / "segment.cu"
    path.write_text(DEVICE_SOURCE)
    result = subprocess.run(["nvcc", "-c", "-o", str(tmp_path / "segment.o"), str(path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
