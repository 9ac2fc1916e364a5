"""share_conv_columns: conv2d and its weight gradient as GEMMs on one im2col of x."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.compile.conv_columns import share_conv_columns
from nnctl.compile.passes import eliminate_common_subexpressions, eliminate_dead_code
from nnctl.graph.ir import Graph
from nnctl.graph.tensor import apply, input_placeholder, parameter
from nnctl.ops.registry import Dim
from tests.compile.test_passes import assert_same_results, random_feeds

B = Dim("B")


def _step(attrs: dict, groups: int = 1, train_weights: bool = True, dtype="float64", batch=3):
    x = input_placeholder("x", (batch, 4, 9, 8), dtype)
    w = parameter("w", (6, 4 // groups, 3, 2), dtype)
    v = parameter("v", (6, 6 // groups, 3, 3), dtype)
    h = apply("conv2d", x, w, groups=groups, **attrs).tanh()
    y = apply("conv2d", h, v, groups=groups, padding=(1, 1))
    loss = (y * y).sum()
    wrt = [w, v] if train_weights else [x]
    return [loss, *grad(loss, wrt)], [x, w, v]


def _lowered(graph: Graph) -> Graph:
    return eliminate_dead_code(eliminate_common_subexpressions(share_conv_columns(graph)))


@pytest.mark.parametrize("attrs", [{}, {"padding": (1, 0)}, {"stride": (2, 1)},
                                   {"stride": (1, 2), "padding": (2, 1), "dilation": (2, 1)}])
def test_the_lowered_step_computes_the_same_values(attrs):
    outputs, _ = _step(attrs)
    graph = Graph([t.node for t in outputs])
    lowered = _lowered(graph)
    ops = Counter(n.op for n in lowered.nodes)
    # one column matrix per convolution, read by its forward GEMM and its weight-gradient GEMM
    assert ops["im2col"] == 2 and ops["conv2d"] == ops["conv2d_grad_weight"] == 0
    assert ops["conv2d_grad_input"] == 1  # the input gradient keeps its own kernel
    cols = [n for n in lowered.nodes if n.op == "im2col"]
    users = lowered.users
    assert all(sorted(u.op for u in users[c]) == ["matmul", "transpose"] for c in cols)
    assert_same_results(graph, lowered, random_feeds(graph), rtol=1e-9)


def test_grouped_convolutions_and_inference_keep_their_kernels():
    outputs, _ = _step({}, groups=2)
    graph = Graph([t.node for t in outputs])
    assert "im2col" not in {n.op for n in share_conv_columns(graph).nodes}
    outputs, _ = _step({}, train_weights=False)  # dx only: no weight gradient reads the columns
    graph = Graph([t.node for t in outputs])
    ops = {n.op for n in share_conv_columns(graph).nodes}
    assert "im2col" not in ops and "conv2d" in ops


def test_a_compiled_float32_step_agrees_and_keeps_one_plan_for_every_batch():
    outputs, feeds = _step({"padding": (1, 1)}, dtype="float32", batch=B)
    plan = compile_graph(outputs, feeds, get_backend("cpu"), capacity={"B": 16})
    assert "im2col" in {n.op for n in plan.graph.nodes}
    reference = compile_graph(outputs, feeds, get_backend("cpu"), capacity={"B": 16},
                              passes=())
    rng = np.random.default_rng(0)
    params = [rng.normal(scale=0.3, size=(6, 4, 3, 2)).astype(np.float32),
              rng.normal(scale=0.3, size=(6, 6, 3, 3)).astype(np.float32)]
    for n in (16, 5, 16):  # a short batch and back: views of the same arena
        data = [rng.normal(size=(n, 4, 9, 8)).astype(np.float32), *params]
        for got, want in zip(plan(data), reference(data)):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-4 * np.abs(want).max())


@pytest.mark.parametrize("attrs", [{"padding": (1, 1)}, {"stride": (2, 1), "padding": (1, 2)},
                                   {"stride": (2, 2), "dilation": (2, 1)}])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_col2im_without_temporaries_equals_its_forward(attrs, dtype):
    """col2im's workspace path (the adds in the columns' own order, then one copy) gives
    forward's bits: the adjoint im2col's second-order gradients run through it."""
    from nnctl.ops.registry import REGISTRY, Aval
    op = REGISTRY["col2im"]
    shape, kernel = (4, 3, 11, 9), (3, 3)
    cols_aval = REGISTRY["im2col"].infer(Aval(shape, "float32"), kernel, **attrs)
    cols = np.random.default_rng(0).normal(size=cols_aval.shape).astype(dtype)
    attrs = {"input_shape": shape, "kernel": kernel, **attrs}
    work = [np.full(a.shape, np.nan, a.dtype)
            for a in op.workspace(Aval(cols.shape, str(cols.dtype)), **attrs)]
    got = op.forward_into(np, np.full(shape, np.nan, dtype), cols, **attrs, work=work)
    np.testing.assert_array_equal(got, op.forward(np, cols, **attrs))
