"""Faults a compiled plan must not have (issue 8, point 13): an arena buffer reused while its
value is still to be read, and first_nonfinite naming anything but the first op whose result
is not finite.

"Releasing" an intermediate is, in this plan, the memory planner's liveness: a buffer's bytes
are free for another buffer after its last read (memory.py). A fault there corrupts values
silently, so the model here is built so that reuse is heavy (the arena holds a fraction of the
bytes of all its buffers) and many values are read long after they are written (a skip
connection, the forward activations the backward pass reads), and its compiled outputs are
compared with the eager values, which no memory plan touches.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnctl import jit
from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.compile.memory import ALIGN
from nnctl.compile.plan import ExecutionPlan
from nnctl.graph.ir import name_scope
from nnctl.graph.tensor import Tensor, input_placeholder

CPU = get_backend("cpu")
ROWS, WIDTH, DEPTH = 16, 24, 10


def _model(x, weights):
    """A residual tanh MLP: the input of every block is read again after the block, the first
    hidden value at the very end, and its loss. Returns (loss, hidden values)."""
    h = first = (x @ weights[0]).tanh()
    for w in weights[1:-1]:
        h = h + (h @ w).sigmoid() * h  # h read before and after the block
    out = (h @ weights[-1] + first).tanh()  # `first` is read at the end of the forward pass
    return (out * out).mean(), first


def _arrays(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ROWS, WIDTH)).astype(dtype)
    ws = [(rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(dtype)
          for _ in range(DEPTH)]
    return x, ws


def _outputs(x, weights, step: bool) -> list:
    """The loss and the first hidden value; for a training step also the first layer's
    gradient (the last one the backward pass makes) and the squared norm of all gradients:
    few outputs, so that nearly every buffer is an intermediate whose bytes the plan reuses."""
    loss, first = _model(x, weights)
    if not step:
        return [loss, first]
    grads = grad(loss, weights)
    norm = sum(((g * g).sum() for g in grads[1:]), (grads[0] * grads[0]).sum())
    return [loss, first, grads[0], norm]


def _eager(dtype, step=True):
    x, ws = _arrays(dtype)
    return [t.numpy() for t in _outputs(Tensor(x), [Tensor(w) for w in ws], step)]


def _plan(dtype, use_jit, step=True) -> ExecutionPlan:
    x = input_placeholder("x", (ROWS, WIDTH), dtype)
    wt = [input_placeholder(f"w{i}", (WIDTH, WIDTH), dtype) for i in range(DEPTH)]
    return compile_graph(_outputs(x, wt, step), [x] + wt, CPU, jit=use_jit)


def _feeds(dtype):
    x, ws = _arrays(dtype)
    return [x] + ws


def _buffer_bytes(plan: ExecutionPlan) -> int:
    return sum(plan.memory.sizes.values())


JITS = [False, pytest.param(True, marks=pytest.mark.skipif(not jit.enabled(),
                                                             reason="the JIT is off"))]


# the arena's bytes over all buffers' bytes, at most: a forward pass's values die young; a
# training step keeps every block's activations until the backward pass reads them
# (measured: 0.30 and 0.42)
SHARE = {False: 1 / 3, True: 0.5}


@pytest.mark.parametrize("use_jit", JITS, ids=["numpy", "numba"])
@pytest.mark.parametrize("step", [False, True], ids=["forward", "step"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_an_arena_much_smaller_than_its_buffers_gives_the_eager_values(dtype, step, use_jit):
    plan = _plan(dtype, use_jit, step)
    assert plan.memory.arena_bytes <= SHARE[step] * _buffer_bytes(plan), (
        plan.memory.arena_bytes, _buffer_bytes(plan))
    # and every buffer starts on a cache line (an unaligned one still computes right: only
    # this notices a placement that starts counting at 1)
    assert all(offset % ALIGN == 0 for offset in plan.memory.offsets.values())
    expected = _eager(dtype, step)
    rtol = 1e-12 if dtype == "float64" else 2e-5
    for _ in range(2):  # the second run starts from the first run's leftovers in the arena
        outs = plan(_feeds(dtype))
        for got, want in zip(outs, expected):
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


def test_the_comparison_notices_a_plan_that_reuses_a_buffer_too_early(monkeypatch):
    """The planted fault: every buffer at offset 0 (each one "released" as soon as written).
    The same comparison as above must fail on it, or it could not catch a liveness bug."""
    original = ExecutionPlan._plan_memory

    def everything_at_zero(self, capacity):
        memory = original(self, capacity)
        for key in memory.offsets:
            memory.offsets[key] = 0
        memory.arena_bytes = max(memory.sizes.values())
        return memory

    monkeypatch.setattr(ExecutionPlan, "_plan_memory", everything_at_zero)
    outs = _plan("float64", False)(_feeds("float64"))
    mismatched = [not np.allclose(got, want, rtol=1e-12, atol=1e-12)
                  for got, want in zip(outs, _eager("float64"))]
    assert any(mismatched)


# ---- first_nonfinite names the first op, exactly -------------------------------------------

def _nan_in_the_middle():
    """Three layers whose scopes share a prefix: `enc` is finite, `enc_log` takes the log of a
    negative number (the first NaN), `enc_out` only carries the NaN on."""
    x = input_placeholder("x", (4, 3), "float64")
    w = input_placeholder("w", (3, 3), "float64")
    with name_scope("enc"):
        h = x @ w
    with name_scope("enc_log"):
        bad = (h - 10.0).log()  # h stays below 10: every element is NaN
    with name_scope("enc_out"):
        out = (bad @ w).sum()
    plan = compile_graph([out, h], [x, w], CPU, jit=False)
    feeds = [np.full((4, 3), 0.5), np.eye(3)]
    return plan, feeds


def test_first_nonfinite_names_exactly_the_first_op_that_made_a_nan():
    plan, feeds = _nan_in_the_middle()
    with np.errstate(invalid="ignore"):
        node = plan.first_nonfinite(feeds)
    assert node is not None
    assert node.scope == "enc_log"  # not `enc` (finite) nor `enc_out` (NaN only carried)
    assert node.op in ("log", "fused")
    # and it is the first in execution order: every op result before it is finite
    order = [plan.graph.nodes[s] for _, _, s in plan.binding(feeds).steps]
    before = order[:order.index(node)]
    assert all(n.scope != "enc_log" and not n.scope.startswith("enc_out") for n in before)


def test_first_nonfinite_is_none_when_every_value_is_finite():
    plan, _ = _nan_in_the_middle()
    assert plan.first_nonfinite([np.full((4, 3), 20.0), np.eye(3)]) is None


def test_first_nonfinite_skips_a_non_finite_feed():
    """An input holding inf is not an op's fault: the first op it poisons is named."""
    plan, _ = _nan_in_the_middle()
    x = np.full((4, 3), 20.0)
    x[0, 0] = np.inf
    with np.errstate(invalid="ignore"):  # inf * 0 in the matmul
        node = plan.first_nonfinite([x, np.eye(3)])
    assert node is not None and node.scope == "enc"


# ---- an op that reads its input while it writes: the buffer it writes must not be the input's

# overlapping windows (3 > stride 2): an element of the gradient gathers from several windows,
# so an output over its input reads values already overwritten; g is a quarter of h's size
POOL = {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1)}


def _pool_step(dtype):
    """h = x @ w as [N, C, H, W], max-pooled: the backward op max_pool2d_grad(g, h) writes an
    array of h's shape while it reads h and g, at the last read of both (the matmul's gradient
    needs x and w, not h). Its numba loop does not check for overlap: a planner that handed
    the bytes of h or of g to the op's output at that read would corrupt the gradient (both
    directions of the interval test in memory.py's placement are killed by this test)."""
    n, c, side = 2, 8, 64  # jit-sized: the numba pooling loops run
    x = input_placeholder("x", (n * c * side, side), dtype)
    w = input_placeholder("w", (side, side), dtype)
    h = (x @ w).reshape((n, c, side, side))
    p = h.apply("max_pool2d", **POOL)
    loss = (p * p).sum()
    return [loss] + grad(loss, [x, w]), [x, w]


@pytest.mark.parametrize("use_jit", JITS, ids=["numpy", "numba"])
def test_an_op_never_writes_over_an_input_it_reads_at_its_last_use(use_jit):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2 * 8 * 64, 64))
    w = rng.standard_normal((64, 64)) / 8.0
    outs, leaves = _pool_step("float64")
    plan = compile_graph(outs, leaves, CPU, jit=use_jit)
    xt, wt = Tensor(x), Tensor(w)
    h = (xt @ wt).reshape((2, 8, 64, 64))
    loss = (h.apply("max_pool2d", **POOL) ** 2).sum()
    expected = [loss.numpy()] + [g.numpy() for g in grad(loss, [xt, wt])]
    for got, want in zip(plan([x, w]), expected):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
