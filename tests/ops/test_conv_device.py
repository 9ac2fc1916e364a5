"""The conv and pooling ops' device formulation (nnctl/ops/conv.py, window_kernels.py) on the
strict backend, which runs the xp-level code a non-NumPy array module gets: the values of the
NumPy path (float64, rtol 1e-12; in fact the same bits: the stride-one products are the CPU
loop's GEMMs as the batch of one matmul, and col2im adds in the loop's offset order), on the
op table's conv samples and on strided, dilated, grouped and padded cases, and a number of
array-module calls that does not grow with the kernel size (no Python loop over offsets)."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.backend.strict import StrictArray, StrictBackend
from nnctl.ops.conv import CONV_CASES, CONV_DEFAULTS, Conv2dGradInput, _conv_shape
from nnctl.ops.registry import REGISTRY, Aval

BACKEND = StrictBackend()
XP = BACKEND.xp

EXTRA_CASES = (  # (x shape, w shape, attrs) beyond the op table's
    ((2, 4, 9, 8), (6, 2, 3, 2), {"stride": (2, 3), "padding": (1, 1), "dilation": (2, 1),
                                  "groups": 2}),
    ((3, 3, 10, 10), (4, 3, 5, 5), {"padding": (2, 2)}),
    ((2, 6, 8, 9), (6, 1, 3, 3), {"padding": (1, 2), "dilation": (2, 2), "groups": 6}),
    ((1, 2, 12, 7), (3, 2, 4, 3), {"stride": (3, 2), "padding": (2, 1)}),
    ((4, 8, 6, 6), (16, 8, 3, 3), {"padding": (1, 1)}),  # wider: longer dot products
)
CASES = [pytest.param(*c, id=f"table-{k}") for k, c in enumerate(CONV_CASES)] + \
    [pytest.param(*c, id=f"extra-{k}") for k, c in enumerate(EXTRA_CASES)]


def _arrays(name, x, w, attrs, rng):
    y = _conv_shape(x, w, **{**CONV_DEFAULTS, **attrs})
    xv, wv, gv = (rng.normal(size=s) * 10.0 ** rng.integers(-3, 4, size=s) for s in (x, w, y))
    return {"conv2d": ((xv, wv), attrs),
            "conv2d_grad_input": ((gv, wv), {"input_shape": x, **attrs}),
            "conv2d_grad_weight": ((xv, gv), {"weight_shape": w, **attrs})}[name]


def _host(a):
    return BACKEND.to_host(a) if isinstance(a, StrictArray) else np.asarray(a)


@pytest.mark.parametrize("name", ["conv2d", "conv2d_grad_input", "conv2d_grad_weight"])
@pytest.mark.parametrize("x,w,attrs", CASES)
def test_the_device_formulation_gives_the_numpy_paths_values(name, x, w, attrs):
    op = REGISTRY[name]
    arrays, attrs = _arrays(name, x, w, attrs, np.random.default_rng(7))
    want = op.forward(np, *arrays, **attrs)
    got = _host(op.forward(XP, *[BACKEND.asarray(a) for a in arrays], **attrs))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    assert np.array_equal(got, want)  # and, with NumPy's BLAS underneath, the same bits
    # forward_into, with the plan's workspaces (which the device path leaves unused)
    avals = [Aval(a.shape, str(a.dtype)) for a in arrays]
    work = tuple(XP.full(v.shape, 3.0, dtype=v.dtype) for v in op.workspace(*avals, **attrs))
    out = XP.full(want.shape, np.nan)
    op.forward_into(XP, out, *[BACKEND.asarray(a) for a in arrays], **attrs,
                    **({"work": work} if work else {}))
    np.testing.assert_allclose(_host(out), want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("x,w,attrs", CASES)
def test_col2im_and_the_pool_gradients_on_the_device_give_the_numpy_paths_bits(x, w, attrs):
    if attrs.get("groups", 1) != 1:
        pytest.skip("col2im has no groups")
    rng = np.random.default_rng(8)
    geometry = {k: v for k, v in attrs.items() if k != "groups"}
    cols_aval = REGISTRY["im2col"].infer(Aval(x, "float64"), w[2:], **geometry)
    cols = rng.normal(size=cols_aval.shape)
    op = REGISTRY["col2im"]
    want = op.forward(np, cols, x, w[2:], **geometry)
    got = op.forward(XP, BACKEND.asarray(cols), x, w[2:], **geometry)
    assert np.array_equal(_host(got), want)
    out = XP.full(x, np.nan)
    work = (XP.empty((x[1], x[0]) + tuple(x[2:]), dtype="float64"),)  # unused on the device
    op.forward_into(XP, out, BACKEND.asarray(cols), x, w[2:], **geometry, work=work)
    assert np.array_equal(_host(out), want)


# ---- no Python loop over kernel offsets ------------------------------------------------------

class _Counting:
    """The strict module with every call counted (functions of the module and its
    submodules); the arrays' operators, methods and indexing are counted by `_count`."""

    def __init__(self, base, calls):
        self._base, self._calls, self.__name__ = base, calls, base.__name__

    def __getattr__(self, name):
        value = getattr(self._base, name)
        if hasattr(value, "__name__") and type(value).__name__ == "_StrictModule":
            return _Counting(value, self._calls)
        if callable(value) and not isinstance(value, type):
            def call(*args, **kwargs):
                self._calls.append(name)
                return value(*args, **kwargs)
            return call
        return value


@pytest.fixture
def counted(monkeypatch):
    calls: list = []
    for method in ("__array_ufunc__", "__array_function__", "__getitem__", "__setitem__",
                   "__getattr__"):
        original = getattr(StrictArray, method)

        def counting(self, *args, _original=original, _method=method, **kwargs):
            calls.append(_method)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(StrictArray, method, counting)
    return _Counting(XP, calls), calls


def _calls_for(counted, name, kernel, stride):
    xp, calls = counted
    x, w = (2, 4, 12, 12), (3, 4) + kernel
    attrs = {"stride": stride, "padding": (1, 1), "dilation": (1, 1)}
    arrays, attrs = _arrays(name, x, w, attrs, np.random.default_rng(9))
    arrays = [BACKEND.asarray(a) for a in arrays]
    del calls[:]
    REGISTRY[name].forward(xp, *arrays, **attrs)
    return len(calls)


@pytest.mark.parametrize("stride", [(1, 1), (2, 2)])  # the stride-one and the column paths
@pytest.mark.parametrize("name", ["conv2d", "conv2d_grad_input", "conv2d_grad_weight"])
def test_the_number_of_calls_does_not_grow_with_the_kernel(counted, name, stride):
    small = _calls_for(counted, name, (1, 1), stride)
    assert _calls_for(counted, name, (3, 3), stride) == small
    assert _calls_for(counted, name, (5, 4), stride) == small


def test_the_counter_sees_the_cpus_loop_over_offsets(counted):
    """The control: the CPU's stride-one formulation run on the same module grows with the
    kernel's KH*KW offsets (so equal counts above do mean no loop)."""
    xp, calls = counted

    def cpu_calls(kernel):
        g = BACKEND.asarray(np.ones((2, 3, 12 + 3 - kernel[0], 12 + 3 - kernel[1])))
        w = BACKEND.asarray(np.ones((3, 4) + kernel))
        del calls[:]
        Conv2dGradInput._stride_one(xp, g, w, (2, 4, 12, 12), (1, 1), (1, 1), 1)
        return len(calls)
    assert cpu_calls((3, 3)) > cpu_calls((1, 1)) + 8 - 1


@pytest.mark.parametrize("name", ["max_pool2d_grad", "max_pool2d_gather", "avg_pool2d_grad",
                                  "max_pool2d_index", "max_pool2d_scatter", "max_pool2d_take"])
def test_the_pooling_ops_calls_do_not_grow_with_the_window(counted, name):
    xp, calls = counted
    rng = np.random.default_rng(3)
    x = rng.permutation(2 * 3 * 12 * 12).reshape(2, 3, 12, 12).astype(np.float64)
    counts = []
    for kernel in ((2, 2), (3, 3), (5, 4)):
        attrs = {"kernel": kernel, "stride": (1, 1), "padding": (1, 1)}
        pooled = REGISTRY["max_pool2d"].forward(np, x, **attrs)
        index = REGISTRY["max_pool2d_index"].forward(np, x, **attrs)
        args = {"max_pool2d_grad": (pooled, x), "max_pool2d_gather": (x, x),
                "avg_pool2d_grad": (pooled,), "max_pool2d_index": (x,),
                "max_pool2d_scatter": (pooled, index), "max_pool2d_take": (x, index)}[name]
        extra = {"input_shape": x.shape} if name in ("avg_pool2d_grad",
                                                     "max_pool2d_scatter") else {}
        device = [BACKEND.asarray(a) for a in args]
        del calls[:]
        got = REGISTRY[name].forward(xp, *device, **extra, **attrs)
        counts.append(len(calls))
        want = REGISTRY[name].forward(np, *args, **extra, **attrs)
        assert np.array_equal(_host(got), want)
    assert counts[0] == counts[1] == counts[2], counts
