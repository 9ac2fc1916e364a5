"""batch_weight_gradients: a weight's gradient summed over steps becomes one GEMM."""

from __future__ import annotations

from collections import Counter

import numpy as np

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.compile.gemm import batch_weight_gradients
from nnctl.compile.passes import eliminate_dead_code
from nnctl.graph.ir import Graph
from nnctl.graph.tensor import input_placeholder, parameter
from nnctl.ops.registry import Dim


def _recurrence(batch, steps=6):
    x = input_placeholder("x", (batch, steps, 3), "float64")
    w = parameter("w", (4, 4), "float64")
    h = x[:, 0].sum(-1, keepdims=True) * np.ones(4)
    for t in range(1, steps):
        h = (h @ w + x[:, t].sum(-1, keepdims=True)).tanh()
    loss = h.sum()
    return loss, grad(loss, [w]), x, w


def test_the_sum_over_steps_becomes_one_matmul():
    loss, (gw,), x, w = _recurrence(Dim("B"))
    graph = Graph([gw.node])
    joined = eliminate_dead_code(batch_weight_gradients(graph))
    before = Counter(n.op for n in graph.nodes)
    after = Counter(n.op for n in joined.nodes)
    assert after["matmul"] == before["matmul"] - 4  # five a^T @ b into one
    assert after["add"] <= before["add"] - 4


def test_the_gradient_is_the_same_to_round_off():
    loss, grads, x, w = _recurrence(5)
    rng = np.random.default_rng(0)
    feeds = [rng.normal(size=(5, 6, 3)), rng.normal(scale=0.5, size=(4, 4))]
    cpu = get_backend("cpu")
    plain = compile_graph([loss, *grads], [x, w], cpu, passes=())(feeds)
    joined = compile_graph([loss, *grads], [x, w], cpu, passes=(batch_weight_gradients,))(feeds)
    for a, b in zip(plain, joined):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


def test_a_dense_layer_on_a_sequence_is_one_gemm_forward_and_for_its_weight_gradient():
    """x [B, T, K] @ w [K, N]: the weight's gradient is x's rows (B*T) against g's in one
    matmul, no batch of products summed; forward runs as one GEMM of all rows, also for a
    strided x (which takes NumPy's batched path). Values as NumPy's."""
    x = input_placeholder("x", (Dim("B"), 5, 3), "float64")
    w = parameter("w", (3, 4), "float64")
    y = x @ w
    loss = (y * y).sum()
    (gw,) = grad(loss, [w])
    graph = eliminate_dead_code(Graph([gw.node]))
    ops = Counter(n.op for n in graph.nodes)
    assert ops["matmul"] == 2 and ops["sum"] == 0  # y, and one matmul for dw
    plan = compile_graph([y, gw], [x, w], get_backend("cpu"))
    rng = np.random.default_rng(0)
    xv, wv = rng.normal(size=(6, 5, 3)), rng.normal(size=(3, 4))
    for xin in (xv, np.ascontiguousarray(xv.transpose(1, 0, 2)).transpose(1, 0, 2)):
        yv, gwv = plan([xin, wv])
        np.testing.assert_allclose(yv, xv @ wv, rtol=1e-14)
        np.testing.assert_allclose(gwv, np.einsum("btk,btn->kn", xv, 2 * (xv @ wv)), rtol=1e-13)
