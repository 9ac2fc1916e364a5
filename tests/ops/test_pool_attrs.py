"""Pooling attributes given as ints: every pooling op, on every path, equals the pair form
(issue 8, point 13: infer accepted `kernel=2` while nothing ran it, so forward's handling of
an int was untested). Infer itself refuses what forward could not run."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl import jit
from nnctl.autodiff import grad
from nnctl.errors import ShapeError
from nnctl.graph.tensor import Tensor
from nnctl.ops.registry import REGISTRY, Aval

INT_ATTRS = [{"kernel": 2}, {"kernel": 3, "stride": 2, "padding": 1}, {"kernel": 2, "stride": 1},
             {"kernel": 1}]


def _pairs(attrs: dict) -> dict:
    return {k: (v, v) for k, v in attrs.items()}


def _inputs(op: str, x: np.ndarray, attrs: dict) -> tuple:
    """The arrays and extra attrs each pooling op takes, for input x."""
    pooled = REGISTRY["max_pool2d"].forward(np, x, **_pairs(attrs))
    g = np.random.default_rng(1).standard_normal(pooled.shape)
    index = REGISTRY["max_pool2d_index"].forward(np, x, **_pairs(attrs))
    return {"max_pool2d": ((x,), {}), "avg_pool2d": ((x,), {}),
            "max_pool2d_grad": ((g, x), {}), "max_pool2d_gather": ((x * 2.0, x), {}),
            "avg_pool2d_grad": ((g,), {"input_shape": x.shape}),
            "max_pool2d_index": ((x,), {}),
            "max_pool2d_scatter": ((g, index), {"input_shape": x.shape}),
            "max_pool2d_take": ((x * 2.0, index), {})}[op]


OPS = ["max_pool2d", "avg_pool2d", "max_pool2d_grad", "max_pool2d_gather", "avg_pool2d_grad",
       "max_pool2d_index", "max_pool2d_scatter", "max_pool2d_take"]


@pytest.mark.parametrize("size", [6, 96], ids=["numpy", "jit-sized"])
@pytest.mark.parametrize("attrs", INT_ATTRS, ids=str)
@pytest.mark.parametrize("name", OPS)
def test_int_attrs_equal_pairs_in_infer_forward_and_forward_into(name, attrs, size):
    if size == 96 and not jit.available():
        pytest.skip("numba is not installed")
    x = np.random.default_rng(0).permutation(2 * 4 * size * size).reshape(2, 4, size, size)
    x = x.astype(np.float64)  # distinct values: no ties between window maxima
    op = REGISTRY[name]
    arrays, extra = _inputs(name, x, attrs)
    expected = op.forward(np, *arrays, **extra, **_pairs(attrs))
    avals = [Aval(a.shape, str(a.dtype)) for a in arrays]
    assert op.infer(*avals, **extra, **attrs) == op.infer(*avals, **extra, **_pairs(attrs))
    np.testing.assert_array_equal(op.forward(np, *arrays, **extra, **attrs), expected)
    out = np.full(expected.shape, np.nan)
    # the numba loops add overlapping windows' gradients in another order: round-off only
    np.testing.assert_allclose(op.forward_into(np, out, *arrays, **extra, **attrs), expected,
                               rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("attrs", INT_ATTRS, ids=str)
@pytest.mark.parametrize("pool", ["max_pool2d", "avg_pool2d", "max_pool2d argmax_in_graph"])
def test_int_attrs_first_and_second_order_gradients_equal_pairs(pool, attrs):
    from nnctl.ops.pool import argmax_in_graph

    x0 = np.random.default_rng(2).permutation(2 * 3 * 7 * 7).reshape(2, 3, 7, 7) / 10.0
    pool, switch = pool.split()[0], pool.endswith("argmax_in_graph")
    results = []
    for a in (attrs, _pairs(attrs)):
        x = Tensor(x0)
        y = x.apply(pool, **a)
        with argmax_in_graph(switch):
            (gx,) = grad((y * y).sum(), [x])
            (gxx,) = grad((gx * gx).sum(), [x])
        results.append((y.numpy(), gx.numpy(), gxx.numpy()))
    for got, expected in zip(*results):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("attrs,message", [
    ({"kernel": 0}, "kernel must be an int or a pair of ints >= 1"),
    ({"kernel": 2.0}, "kernel must be an int or a pair of ints >= 1"),
    ({"kernel": True}, "kernel must be an int or a pair of ints >= 1"),
    ({"kernel": (2, 2, 2)}, "kernel must be an int or a pair of ints >= 1"),
    ({"kernel": 2, "stride": 0}, "stride must be an int or a pair of ints >= 1"),
    ({"kernel": 2, "stride": 1.0}, "stride must be an int or a pair of ints >= 1"),
    ({"kernel": 2, "padding": 0.0}, "padding must be an int or a pair of ints >= 0"),
    ({"kernel": 2, "padding": -1}, "padding must be an int or a pair of ints >= 0"),
    ({"kernel": 2, "padding": 2}, r"padding \(2, 2\) must be at most half of kernel"),
])
@pytest.mark.parametrize("pool", ["max_pool2d", "avg_pool2d"])
def test_infer_refuses_attrs_forward_could_not_run(pool, attrs, message):
    with pytest.raises(ShapeError, match=message):
        REGISTRY[pool].infer(Aval((1, 1, 6, 6), "float64"), **attrs)
