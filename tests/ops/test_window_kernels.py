"""The device kernels of the window ops (nnctl/ops/window_kernels.py): col2im as a gather gives
the bits of the CPU's strided adds, and the window argmax NumPy's argmax, ties and NaN
included. Their bodies are compiled as host C++ with g++; a stand-in CuPy module whose
RawModule runs those host builds drives the ops' device paths end to end (argument order,
element strides, launches); nvcc compiles the kernels (slow)."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import types

import numpy as np
import pytest

from nnctl.ops import pool_kernels, window_kernels as wk
from nnctl.ops.conv import CONV_CASES, CONV_DEFAULTS, _conv_attrs, _conv_shape, _scatter_windows
from nnctl.ops.pool import POOL_CASES, _argmax, _pool_attrs
from nnctl.ops.registry import REGISTRY

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")

# (input shape, kernel, stride, padding, dilation): the op table's conv geometries and more
GEOMETRIES = [(x, w[2:], *_conv_attrs(**{k: v for k, v in {**CONV_DEFAULTS, **a}.items()
                                          if k != "groups"}))
              for x, w, a in CONV_CASES] + [
    ((2, 3, 9, 8), (3, 2), (2, 3), (1, 1), (2, 1)),
    ((1, 2, 7, 7), (5, 5), (1, 1), (2, 2), (1, 1)),
    ((2, 1, 11, 6), (2, 3), (3, 1), (0, 2), (3, 2)),
]


def _out_hw(x, kernel, stride, padding, dilation):
    return _conv_shape(x, (1, x[1]) + tuple(kernel), stride, padding, dilation, 1)[2:]


def _cols(rng, x, kernel, out_hw, dtype):
    shape = x[:2] + tuple(kernel) + tuple(out_hw)
    # magnitudes 1e-6 .. 1e6: the order of the additions shows in the last bits
    return (rng.normal(size=shape) * 10.0 ** rng.integers(-6, 7, shape)).astype(dtype)


def _host_library(tmp_path):
    """The kernels' bodies as host functions with the kernels' names and parameters, each a
    loop over t (what the grid of threads does)."""
    source = ["#include <cmath>"]
    for name, body, head, params in (
            ("col2im", wk.COL2IM_BODY, "const T* cols, T* dx", wk.COL2IM_PARAMS),
            ("window_argmax", wk.ARGMAX_BODY, "const T* x, T* index", wk.ARGMAX_PARAMS)):
        for ctype in ("float", "double"):
            source.append(f'extern "C" void nnctl_{name}_{ctype}('
                          f'{head.replace("T*", ctype + "*")}, {params}) {{\n'
                          f"typedef {ctype} T;\nfor (long long t = 0; t < total; t++) {{"
                          f"{body}}}\n}}")
    path = tmp_path / "window_kernels.cpp"
    path.write_text("\n".join(source))
    library = tmp_path / "window_kernels.so"
    subprocess.run(["g++", "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-o", str(library),
                    str(path)], check=True, capture_output=True, timeout=120)
    return ctypes.CDLL(str(library))


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("needs g++")
    return _host_library(tmp_path_factory.mktemp("window_kernels"))


class _HostFunction:
    """A RawKernel stand-in: called as kernel(grid, block, args), runs the host build on the
    arrays' memory (read through the strides the launch passes, as on the GPU)."""

    def __init__(self, function, log):
        self.function, self.log = function, log
        function.restype = None

    def __call__(self, grid, block, args):
        self.log.append((grid, block, len(args)))
        pointers = []
        for a in args:
            if isinstance(a, np.ndarray):
                pointers.append(ctypes.c_void_p(a.__array_interface__["data"][0]))
            else:
                assert isinstance(a, np.int64), a  # every scalar goes in as a long long
                pointers.append(ctypes.c_longlong(int(a)))
        self.function(*pointers)


def _standin_cupy(library, log):
    """NumPy's functions under another name, with a RawModule that loads the host build."""
    module = types.SimpleNamespace(__name__="cupy_standin")

    class RawModule:
        def __init__(self, code):
            assert code == wk.DEVICE_SOURCE

        def get_function(self, name):
            return _HostFunction(getattr(library, name), log)

    for name in dir(np):
        if not name.startswith("_"):
            setattr(module, name, getattr(np, name))
    module.RawModule = RawModule
    return module


@pytest.fixture
def cupy_standin(host, monkeypatch):
    monkeypatch.setattr(wk, "_kernels", {})
    log: list = []
    return _standin_cupy(host, log), log


# ---- col2im ------------------------------------------------------------------------------------

@needs_gxx
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_the_col2im_kernel_gives_the_bits_of_the_cpus_strided_adds(cupy_standin, geometry,
                                                                     dtype):
    xp, log = cupy_standin
    x, kernel, stride, padding, dilation = geometry
    out_hw = _out_hw(x, kernel, stride, padding, dilation)
    cols = _cols(np.random.default_rng(0), x, kernel, out_hw, dtype)
    want = _scatter_windows(np, cols, x, stride, padding, dilation)
    got = wk.col2im(xp, cols, x, stride, padding, dilation)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    assert len(log) == 1  # one launch, whatever the kernel size
    # through strides: the columns transposed in memory, and broadcast (avg-pool's share)
    blocks = np.ascontiguousarray(cols.transpose(1, 2, 3, 0, 4, 5)).transpose(3, 0, 1, 2, 4, 5)
    assert np.array_equal(wk.col2im(xp, blocks, x, stride, padding, dilation), want)
    shared = np.broadcast_to(cols[:, :, :1, :1], cols.shape)
    assert np.array_equal(wk.col2im(xp, shared, x, stride, padding, dilation),
                          _scatter_windows(np, np.ascontiguousarray(shared), x, stride,
                                           padding, dilation))


def test_the_order_of_the_additions_shows_in_the_bits():
    """The bits above are not luck: the same strided adds in the opposite offset order give
    other bits, so the kernel's fixed order is what makes it equal the CPU."""
    x, kernel, stride, padding, dilation = GEOMETRIES[0]
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    oh, ow = _out_hw(x, kernel, stride, padding, dilation)
    cols = _cols(np.random.default_rng(0), x, kernel, (oh, ow), "float64")
    backwards = np.zeros(x[:2] + (x[2] + 2 * padding[0], x[3] + 2 * padding[1]))
    for i in reversed(range(kh)):
        for j in reversed(range(kw)):
            backwards[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                      j * dw:j * dw + sw * (ow - 1) + 1:sw] += cols[:, :, i, j]
    want = _scatter_windows(np, cols, x, stride, padding, dilation)
    np.testing.assert_allclose(backwards, want, rtol=1e-9, atol=1e-9)
    assert not np.array_equal(backwards, want)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_the_gather_table_formulation_gives_the_cpus_bits(geometry):
    """What a device module without kernels (the strict backend) runs: one gather through the
    table and one sum over the offset axis, which NumPy adds in offset order."""
    from nnctl.backend.strict import StrictBackend

    backend = StrictBackend()
    x, kernel, stride, padding, dilation = geometry
    out_hw = _out_hw(x, kernel, stride, padding, dilation)
    cols = _cols(np.random.default_rng(1), x, kernel, out_hw, "float64")
    got = wk.col2im(backend.xp, backend.asarray(cols), x, stride, padding, dilation)
    assert np.array_equal(backend.to_host(got), _scatter_windows(np, cols, x, stride, padding,
                                                                 dilation))


def test_the_gather_table_by_hand():
    # one row of 4 pixels, kernel 1x2, stride 2, no padding: outputs q = 0, 1 read (0, 1), (2, 3)
    table = wk.gather_table((1, 4), (1, 2), (1, 2), (1, 2), (0, 0), (1, 1))
    # columns flattened as [KH=1, KW=2, OH=1, OW=2]: (j, q) -> j*2 + q; 4 is the zero entry
    assert table.tolist() == [[[0, 4, 1, 4]], [[4, 2, 4, 3]]]


# ---- the window argmax -------------------------------------------------------------------------

def _pool_input(dtype, shape=(2, 3, 7, 6), seed=0):
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=shape), 1)  # rounded: many ties
    x[0, 1, 2, 3], x[1, 2, 0, 0], x[0, 0, 4, 4] = np.nan, np.inf, -np.inf
    x[1, 0] = -np.inf  # a plane of -inf: windows whose first element is the padding
    x[0, 2, :3, :3] = 1.5  # a block of ties
    return x.astype(dtype)


def _reference_argmax(x, kernel, stride, padding):
    """k of each window's first maximum by the numba loops' own function, run as Python
    (pool_kernels._window_argmax: the padding skipped, a NaN the maximum)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    out = _argmax(np, x, kernel, stride, padding).astype(x.dtype)  # the shape
    for n, c, p, q in np.ndindex(out.shape):
        h, w = pool_kernels._window_argmax(x[n, c], p * sh - ph, q * sw - pw, kh, kw)
        out[n, c, p, q] = (h - p * sh + ph) * kw + (w - q * sw + pw)
    return out


def test_numpys_argmax_over_the_padded_view_differs_only_where_a_window_is_all_minus_inf():
    x = _pool_input("float64")
    attrs = ((3, 3), (1, 1), (1, 1))
    want = _reference_argmax(x, *attrs)
    numpy_view = _argmax(np, x, *attrs)
    differ = want != numpy_view
    assert differ.any() and np.all(REGISTRY["max_pool2d"].forward(np, x, *attrs)[differ]
                                   == -np.inf)
    assert np.array_equal(wk.window_argmax(np, x, *attrs, want.shape[2:]), want)


ARGMAX_CASES = [a for _, a in POOL_CASES] + [
    {"kernel": (3, 3), "stride": (1, 1), "padding": (1, 1)},
    {"kernel": (2, 3), "stride": (2, 1), "padding": (1, 1)},
]


@needs_gxx
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("attrs", ARGMAX_CASES, ids=str)
def test_the_argmax_kernel_equals_numpys_argmax_ties_nan_and_padding(cupy_standin, attrs,
                                                                       dtype):
    xp, log = cupy_standin
    x = _pool_input(dtype)
    kernel, stride, padding = _pool_attrs(attrs["kernel"], attrs.get("stride"),
                                          attrs.get("padding", (0, 0)))
    want = _reference_argmax(x, kernel, stride, padding)
    out_hw = want.shape[2:]
    got = wk.window_argmax(xp, x, kernel, stride, padding, out_hw)
    assert got.dtype == x.dtype and np.array_equal(got, want)
    # through strides: every other element of a wider buffer
    wide = np.zeros(x.shape + (2,), dtype)
    wide[..., 0] = x
    assert np.array_equal(wk.window_argmax(xp, wide[..., 0], kernel, stride, padding, out_hw),
                          want)
    # and the xp-level formulation (argmax over the window view, -inf windows fixed) agrees
    assert np.array_equal(wk.window_argmax(np, x, kernel, stride, padding, out_hw), want)
    assert len(log) == 2


# ---- the ops' device paths, end to end ---------------------------------------------------------

DEVICE_OPS = ["conv2d_grad_input", "conv2d_grad_weight", "col2im", "max_pool2d_grad",
              "max_pool2d_gather", "avg_pool2d_grad", "max_pool2d_index", "max_pool2d_scatter",
              "max_pool2d_take"]


@needs_gxx
@pytest.mark.parametrize("name", DEVICE_OPS)
def test_every_window_op_on_the_standin_cupy_gives_numpys_bits(cupy_standin, name):
    """forward and forward_into of each op on every sample, its device path running the host
    build of the kernels: the same bits as NumPy's path (the GEMMs are the CPU's own calls)."""
    from nnctl.gradcheck import sample_inputs
    from nnctl.ops.registry import Aval

    xp, log = cupy_standin
    op = REGISTRY[name]
    for k, sample in enumerate(op.samples()):
        arrays = sample_inputs(sample, np.random.default_rng(100 + k))
        want = op.forward(np, *arrays, **sample.attrs)
        got = op.forward(xp, *arrays, **sample.attrs)
        assert np.array_equal(got, want), (name, k)
        out = np.full(want.shape, np.nan)
        work = tuple(np.full(w.shape, 3.0) for w in op.workspace(
            *[Aval(a.shape, str(a.dtype)) for a in arrays], **sample.attrs))
        op.forward_into(xp, out, *arrays, **sample.attrs, **({"work": work} if work else {}))
        np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-14)
    # the weight gradient is GEMMs only; take reads the window view at the given positions
    assert bool(log) == (name not in ("conv2d_grad_weight", "max_pool2d_take"))


@needs_gxx
@pytest.mark.parametrize("name", ["conv2d_grad_input", "col2im", "max_pool2d_grad",
                                  "max_pool2d_index", "avg_pool2d_grad"])
def test_float16_on_cupy_takes_the_array_module_formulation(cupy_standin, name):
    """The kernels are built for float32 and float64; float16 (mixed precision) runs the
    gather-table and argmax formulation there: no launch, and NumPy's path's values."""
    from nnctl.gradcheck import sample_inputs

    xp, log = cupy_standin
    op = REGISTRY[name]
    for k, sample in enumerate(op.samples()):
        arrays = [a.astype(np.float16) for a in
                  sample_inputs(sample, np.random.default_rng(200 + k))]
        want = op.forward(np, *arrays, **sample.attrs)
        got = op.forward(xp, *arrays, **sample.attrs)
        assert got.dtype == np.float16
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                                   rtol=2e-3, atol=2e-3)
    assert not log


@pytest.mark.slow  # nvcc takes 5-15 s
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
def test_the_kernels_compile_with_nvcc(tmp_path):
    path = tmp_path / "window_kernels.cu"
    path.write_text(wk.DEVICE_SOURCE)
    result = subprocess.run(["nvcc", "-c", "-o", str(tmp_path / "window_kernels.o"), str(path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
