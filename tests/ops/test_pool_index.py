"""Max pooling's two backward graphs (nnctl/ops/pool.py): the default recomputes the window
argmax in max_pool2d_grad and max_pool2d_gather; inside `argmax_in_graph` it is one
max_pool2d_index node that the gradient (max_pool2d_scatter) and its derivative
(max_pool2d_take) share. Both pass gradcheck to second order and give the same values, ties
and NaN included, eagerly and compiled, on NumPy, numba and the strict backend."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl import jit
from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.backend.strict import StrictBackend
from nnctl.compile import compile_graph
from nnctl.compile.passes import run_passes
from nnctl.gradcheck import check_op
from nnctl.graph.ir import Graph
from nnctl.graph.tensor import Tensor, apply, input_placeholder
from nnctl.ops.pool import POOL_CASES, argmax_in_graph, argmax_in_graph_enabled

ATTRS = [a for _, a in POOL_CASES] + [{"kernel": (3, 3), "stride": (1, 1), "padding": (1, 1)}]


def _second_order_step(shape, attrs, dtype="float64"):
    """y = max_pool2d(x), dx = d<y, c>/dx, and dc' = d<dx, a>/dc (the second order's take):
    [y, dx, dc'] on placeholders x, c, a."""
    x = input_placeholder("x", shape, dtype)
    y = apply("max_pool2d", x, **attrs)
    c = input_placeholder("c", y.shape, dtype)
    a = input_placeholder("a", shape, dtype)
    (dx,) = grad([(y * c).sum()], [x])
    (dc,) = grad([(dx * a).sum()], [c])
    return [y, dx, dc], [x, c, a]


def _ops(outputs) -> list[str]:
    graph, _ = run_passes(Graph([t.node for t in outputs]))
    return [n.op for n in graph.nodes if not n.is_leaf]


def test_the_switch_is_off_by_default_and_scoped(monkeypatch):
    monkeypatch.delenv("NNCTL_MAX_POOL_INDEX", raising=False)
    assert not argmax_in_graph_enabled()
    with argmax_in_graph():
        assert argmax_in_graph_enabled()
        with argmax_in_graph(False):
            assert not argmax_in_graph_enabled()
        assert argmax_in_graph_enabled()
    assert not argmax_in_graph_enabled()
    monkeypatch.setenv("NNCTL_MAX_POOL_INDEX", "1")
    assert argmax_in_graph_enabled()
    with argmax_in_graph(False):  # the context wins over the environment
        assert not argmax_in_graph_enabled()


def test_off_the_gradient_and_its_derivative_each_search_the_windows(monkeypatch):
    monkeypatch.delenv("NNCTL_MAX_POOL_INDEX", raising=False)
    ops = _ops(_second_order_step((2, 3, 8, 8), {"kernel": (2, 2)})[0])
    assert ops.count("max_pool2d_grad") == 1 and ops.count("max_pool2d_gather") == 1
    assert "max_pool2d_index" not in ops


def test_on_one_index_node_serves_the_forward_the_gradient_and_its_derivative():
    with argmax_in_graph():
        outputs, _ = _second_order_step((2, 3, 8, 8), {"kernel": (2, 2)})
    ops = _ops(outputs)
    assert ops.count("max_pool2d_index") == 1  # the argmax, found once
    # the forward became a take at it (compile/conv_columns.py), as the second order's
    assert ops.count("max_pool2d_take") == 2 and "max_pool2d" not in ops
    assert ops.count("max_pool2d_scatter") == 1
    assert "max_pool2d_grad" not in ops and "max_pool2d_gather" not in ops


def test_a_forward_without_the_index_graph_keeps_its_max(monkeypatch):
    monkeypatch.delenv("NNCTL_MAX_POOL_INDEX", raising=False)
    x = input_placeholder("x", (2, 3, 8, 8), "float64")
    y = apply("max_pool2d", x, kernel=(2, 2))
    assert _ops([y]) == ["max_pool2d"]  # inference: no backward, nothing to share
    with argmax_in_graph():
        (dx,) = grad([y.sum()], [x])
    assert _ops([y, dx]).count("max_pool2d") == 0
    assert _ops([y]) == ["max_pool2d"]  # the rewrite needs the index in the same step


@pytest.mark.parametrize("on", [False, True], ids=["off", "on"])
def test_max_pool_passes_gradcheck_to_second_order_in_both_graphs(on):
    with argmax_in_graph(on):
        rows = check_op("max_pool2d")
    assert sorted({r.order for r in rows}) == [1, 2]
    assert len(rows) == 2 * len(POOL_CASES)
    assert all(r.passed for r in rows), [r for r in rows if not r.passed]


def _tricky(shape, seed=0):
    x = np.round(np.random.default_rng(seed).normal(size=shape), 1)  # ties
    x[0, 1, 2, 3], x[-1, -1, 0, 0] = np.nan, np.inf
    x[0, 0, :3, :3] = 0.5
    return x


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # the NaN in the sums
@pytest.mark.parametrize("attrs", ATTRS, ids=str)
def test_both_graphs_give_the_same_values_eagerly_ties_and_nan_included(attrs):
    x = _tricky((2, 3, 7, 6))
    results = []
    for on in (False, True):
        with argmax_in_graph(on):
            outputs, (xt, ct, at) = _second_order_step(x.shape, attrs)
            plan_inputs = [x, np.random.default_rng(1).normal(size=outputs[0].shape),
                           np.random.default_rng(2).normal(size=x.shape)]
            xe, ce, ae = (Tensor(v) for v in plan_inputs)
            y = apply("max_pool2d", xe, **attrs)
            (dx,) = grad([(y * ce).sum()], [xe])
            (dc,) = grad([(dx * ae).sum()], [ce])
        results.append([t.numpy() for t in (y, dx, dc)])
    for off, on in zip(*results):
        assert np.array_equal(off, on, equal_nan=True)
    y, dx, _ = results[0]
    assert np.isnan(y).any() and not np.isnan(dx).any()  # the NaN wins its windows' maxima


@pytest.mark.parametrize("use_jit", [False, True], ids=["numpy", "numba"])
@pytest.mark.parametrize("attrs", ATTRS, ids=str)
def test_compiled_steps_of_both_graphs_agree(attrs, use_jit, monkeypatch):
    if use_jit and not jit.enabled():
        pytest.skip("the JIT is off (numba not installed, or NNCTL_JIT=0)")
    monkeypatch.setattr(jit, "MIN_SIZE", 0)  # the numba loops on these small arrays too
    x = _tricky((2, 3, 9, 8), seed=3).astype(np.float32)
    results = []
    for on in (False, True):
        with argmax_in_graph(on):
            outputs, leaves = _second_order_step(x.shape, attrs, "float32")
        rng = np.random.default_rng(4)
        feeds = [x, rng.normal(size=outputs[0].shape).astype(np.float32),
                 rng.normal(size=x.shape).astype(np.float32)]
        plan = compile_graph(outputs, leaves, get_backend("cpu"), jit=use_jit)
        results.append([np.array(o) for o in plan(feeds)])
    for off, on in zip(*results):
        # the numba gradient loop adds overlapping windows in (p, q) order, col2im by offset
        np.testing.assert_allclose(on, off, rtol=1e-6, atol=1e-6)
        assert np.array_equal(np.isnan(on), np.isnan(off))


def test_the_index_graph_compiled_on_the_strict_backend_equals_numpy():
    attrs = {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1)}
    x = _tricky((2, 3, 9, 8), seed=5)
    with argmax_in_graph():
        outputs, leaves = _second_order_step(x.shape, attrs)
    rng = np.random.default_rng(6)
    feeds = [x, rng.normal(size=outputs[0].shape), rng.normal(size=x.shape)]
    want = compile_graph(outputs, leaves, get_backend("cpu"), jit=False)(feeds)
    strict = StrictBackend()
    got = compile_graph(outputs, leaves, strict, jit=False)([strict.asarray(f) for f in feeds])
    for a, b in zip(got, want):
        assert np.array_equal(strict.to_host(a), np.asarray(b), equal_nan=True)


def test_the_index_by_hand():
    x = np.array([[[[1.0, 3.0, 3.0, 0.0],
                    [3.0, 2.0, 1.0, 3.0],
                    [5.0, 5.0, 0.0, np.nan],
                    [5.0, 5.0, 0.0, 0.0]]]])
    index = apply("max_pool2d_index", Tensor(x), kernel=(2, 2)).numpy()
    # the first maximum of each window (k = i*2 + j), ties to the first; a NaN wins
    assert index.tolist() == [[[[1.0, 0.0], [0.0, 1.0]]]]
    g = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx = apply("max_pool2d_scatter", Tensor(g), Tensor(index), input_shape=x.shape,
               kernel=(2, 2)).numpy()
    np.testing.assert_array_equal(dx[0, 0], [[0, 1, 2, 0], [0, 0, 0, 0], [3, 0, 0, 4],
                                             [0, 0, 0, 0]])
    taken = apply("max_pool2d_take", Tensor(x * 10), Tensor(index), kernel=(2, 2)).numpy()
    np.testing.assert_array_equal(taken[0, 0], [[30.0, 30.0], [50.0, np.nan]])


@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), (2, 2, 0), (3, 1, 1)])
def test_the_index_graphs_gradient_matches_torch(kernel, stride, padding):
    try:
        import torch
    except Exception:  # not installed, or a broken install
        pytest.skip("PyTorch is not installed")
    rng = np.random.default_rng(5)
    x = rng.permutation(3 * 4 * 9 * 9).reshape(3, 4, 9, 9) / 10.0  # distinct: no ties
    out_hw = (9 + 2 * padding - kernel) // stride + 1
    v = rng.normal(size=(3, 4, out_hw, out_hw))
    xt = Tensor(x)
    y = apply("max_pool2d", xt, kernel=(kernel, kernel), stride=(stride, stride),
              padding=(padding, padding))
    with argmax_in_graph():
        (dx,) = grad([y], [xt], [Tensor(v)])
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, kernel, stride, padding)
    ty.backward(torch.tensor(v))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_float16_pooling_of_a_large_input_takes_numpys_path():
    """Mixed precision pools float16 activations; numba's loops have no float16, so a
    float16 input large enough for them runs NumPy's path (it raised before)."""
    from nnctl import jit
    from nnctl.ops.registry import REGISTRY
    x = np.random.default_rng(0).normal(size=(64, 16, 28, 28)).astype(np.float16)
    assert jit.worth(x.size)
    out = np.empty((64, 16, 14, 14), np.float16)
    got = REGISTRY["max_pool2d"].forward_into(np, out, x, kernel=(2, 2), stride=(2, 2))
    want = x.astype(np.float32).reshape(64, 16, 14, 2, 14, 2).max(axis=(3, 5))
    assert got.dtype == np.float16 and np.array_equal(got, want.astype(np.float16))
