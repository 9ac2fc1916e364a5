"""ExecutionPlan: same numbers as eager evaluation, no state between runs, seeded randomness."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.graph.tensor import Tensor, input_placeholder, parameter, random_bernoulli

CPU = get_backend("cpu")
SHAPES = {"w1": (4, 5), "b1": (5,), "w2": (5, 3), "b2": (3,)}


def _mlp_loss(x, y, w1, b1, w2, b2):
    h = (x @ w1 + b1).tanh()
    return (h @ w2 + b2).cross_entropy(y)


def _numpy_mlp(x, y, w1, b1, w2, b2):
    """Hand-written forward and backward, the reference for both eager and compiled runs."""
    z1 = x @ w1 + b1
    h = np.tanh(z1)
    logits = h @ w2 + b2
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    n = len(y)
    loss = -np.mean(np.log(p[np.arange(n), y]))
    dlogits = (p - np.eye(3)[y]) / n
    dz1 = (dlogits @ w2.T) * (1 - h**2)
    return loss, [x.T @ dz1, dz1.sum(0), h.T @ dlogits, dlogits.sum(0)]


def _data(seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(8, 4)), rng.integers(0, 3, 8)


@pytest.fixture(scope="module")
def params():
    rng = np.random.default_rng(42)
    return [rng.normal(scale=0.5, size=s) for s in SHAPES.values()]


@pytest.fixture(scope="module")
def plan():
    x = input_placeholder("x", (8, 4), "float64")
    y = input_placeholder("y", (8,), "int64")
    ps = [parameter(k, s, "float64") for k, s in SHAPES.items()]
    loss = _mlp_loss(x, y, *ps)
    return compile_graph([loss, *grad(loss, ps)], [x, y, *ps], CPU)


def test_plan_equals_eager_and_the_hand_written_reference(plan, params):
    xv, yv = _data(0)
    compiled = plan([xv, yv, *params])
    ts = [Tensor(p) for p in params]
    loss = _mlp_loss(Tensor(xv), Tensor(yv), *ts)
    eager = [loss.numpy()] + [g.numpy() for g in grad(loss, ts)]
    ref_loss, ref_grads = _numpy_mlp(xv, yv, *params)
    assert len(compiled) == 5
    for c, e, r in zip(compiled, eager, [ref_loss, *ref_grads]):
        assert np.shape(c) == np.shape(r)
        np.testing.assert_allclose(c, e, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(c, r, rtol=1e-10, atol=1e-14)


def test_feeding_different_arrays_gives_different_correct_results(plan, params):
    first = [np.array(a, copy=True) for a in plan([*_data(0), *params])]  # views: copied
    second = plan([*_data(1), *params])
    assert first[0] != second[0]
    np.testing.assert_allclose(second[0], _numpy_mlp(*_data(1), *params)[0], rtol=1e-12)
    np.testing.assert_allclose(second[1], _numpy_mlp(*_data(1), *params)[1][0], rtol=1e-10)
    again = plan([*_data(0), *params])  # nothing left over from the second run
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_plan_without_passes_gives_the_same_numbers(params):
    x = input_placeholder("x", (8, 4), "float64")
    y = input_placeholder("y", (8,), "int64")
    ps = [parameter(k, s, "float64") for k, s in SHAPES.items()]
    loss = _mlp_loss(x, y, *ps)
    outs = [loss, *grad(loss, ps)]
    optimised = compile_graph(outs, [x, y, *ps], CPU)
    raw = compile_graph(outs, [x, y, *ps], CPU, passes=())
    assert len(optimised) <= len(raw)
    assert raw.pass_stats == []
    feed = [*_data(3), *params]
    for a, b in zip(optimised(feed), raw(feed)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_constants_are_folded_into_the_plan():
    x = input_placeholder("x", (3,), "float64")
    y = x * (Tensor(np.array([1.0, 2.0, 3.0])).exp() + 1.0)
    plan = compile_graph([y], [x], CPU)
    assert len(plan) == 1  # only the mul runs; exp(c) + 1 was computed once
    np.testing.assert_allclose(plan([np.ones(3)])[0], np.exp([1.0, 2.0, 3.0]) + 1.0)


def test_random_leaves_draw_fresh_masks_each_run_from_a_seeded_rng():
    x = input_placeholder("x", (1000,), "float64")
    y = x * random_bernoulli((1000,), 0.3, "float64")

    def run_twice(seed):
        plan = compile_graph([y], [x], CPU, rng=np.random.default_rng(seed))
        return plan([np.ones(1000)])[0], plan([np.ones(1000)])[0]

    a1, a2 = run_twice(7)
    assert not np.array_equal(a1, a2)  # fresh mask per call
    assert set(np.unique(a1)) <= {0.0, 1.0}
    assert abs(a1.mean() - 0.3) < 0.06 and abs(a2.mean() - 0.3) < 0.06
    b1, b2 = run_twice(7)
    np.testing.assert_array_equal(a1, b1)  # same seed, same sequence of masks
    np.testing.assert_array_equal(a2, b2)
    c1, _ = run_twice(8)
    assert not np.array_equal(a1, c1)


def test_forward_and_backward_share_one_mask_per_run():
    x = input_placeholder("x", (200,), "float64")
    y = x * random_bernoulli((200,), 0.5, "float64")
    (g,) = grad(y.sum(), [x])
    plan = compile_graph([y, g], [x], CPU, rng=np.random.default_rng(0))
    xv = np.linspace(1.0, 2.0, 200)
    out, gv = plan([xv])
    np.testing.assert_array_equal(out / xv, gv)


def test_a_needed_leaf_that_is_not_fed_is_refused():
    x = input_placeholder("x", (3,), "float64")
    w = parameter("w", (3,), "float64")
    with pytest.raises(ValueError, match="is needed by the outputs but is not fed"):
        compile_graph([x * w], [x], CPU)


def test_an_unused_feed_is_skipped():
    x = input_placeholder("x", (3,), "float64")
    unused = parameter("u", (2,), "float64")
    plan = compile_graph([x.exp()], [x, unused], CPU)
    np.testing.assert_allclose(plan([np.zeros(3), np.ones(2)])[0], np.ones(3))


def test_float32_graph_gives_float32_gradients():
    # regression: the Python-float seed of a sum-loss was folded into a float64 constant
    x = input_placeholder("x", (4, 3), "float32")
    w = parameter("w", (3, 2), "float32")
    loss = (x @ w).tanh().sum()
    plan = compile_graph([loss, *grad(loss, [w])], [x, w], CPU)
    out = plan([np.ones((4, 3), np.float32), np.ones((3, 2), np.float32)])
    assert [np.asarray(o).dtype for o in out] == [np.float32, np.float32]


def test_float32_gradients_without_passes_are_float32():
    x = input_placeholder("x", (4, 3), "float32")
    w = parameter("w", (3, 2), "float32")
    loss = (x @ w).tanh().sum()
    plan = compile_graph([loss, *grad(loss, [w])], [x, w], CPU, passes=())
    out = plan([np.ones((4, 3), np.float32), np.ones((3, 2), np.float32)])
    assert [np.asarray(o).dtype for o in out] == [np.float32, np.float32]


def test_scalar_constants_keep_their_shape_in_a_plan():
    # a scalar loss scaled by a constant must stay 0-d (float() of it must work)
    x = input_placeholder("x", (3,), "float32")
    loss = (x * x).sum() * 0.5
    (value,) = compile_graph([loss], [x], get_backend("cpu"))([np.ones(3, np.float32)])
    assert np.shape(value) == () and float(value) == 1.5


# ---- when the plan uses numba ------------------------------------------------------------------

def _sigmoid_plan(rows, jit):
    x = input_placeholder("x", (rows, 256), "float32")
    return compile_graph([x.sigmoid(), x.tanh(), x.relu()], [x], CPU, jit=jit)


def test_auto_jit_only_for_a_model_with_a_large_array():
    from nnctl import jit
    if not jit.enabled():
        pytest.skip("the JIT is off")
    assert not _sigmoid_plan(jit.MIN_SIZE // 256 - 1, "auto").jit
    assert _sigmoid_plan(jit.MIN_SIZE // 256, "auto").jit
    assert not _sigmoid_plan(jit.MIN_SIZE // 256, False).jit


def test_lone_sigmoid_and_tanh_run_as_numba_kernels_with_the_same_values():
    """A sigmoid or tanh that fusion leaves alone (its output feeds its gradient) still runs
    as one vectorised numba loop in a jit plan; relu (one ufunc call) stays NumPy's."""
    from nnctl import jit
    if not jit.enabled():
        pytest.skip("the JIT is off")
    x = np.random.default_rng(3).normal(scale=4.0, size=(64, 256)).astype(np.float32)
    plan = _sigmoid_plan(64, True)
    outs = plan([x])
    kinds = {plan.graph.nodes[s].op: getattr(fn, "program", None) is not None
             for fn, _, s in plan.binding([x]).steps}
    assert kinds == {"sigmoid": True, "tanh": True, "relu": False}
    np.testing.assert_allclose(outs[0], 0.5 * np.tanh(0.5 * x) + 0.5, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(outs[1], np.tanh(x), rtol=2e-6, atol=1e-6)
    np.testing.assert_array_equal(outs[2], np.maximum(x, 0))
    numpy_outs = _sigmoid_plan(64, False)([x])
    for a, b in zip(outs, numpy_outs):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6)


def test_views_of_arena_buffers_are_made_once_and_follow_every_run():
    """A slice or transpose of an intermediate result is the same view of the arena at every
    run: it gets no step, and still shows each run's values; a view of a feed is remade."""
    x = input_placeholder("x", (4, 6), "float64")
    h = x.tanh()
    outs = [h[:, 2:4].T * 2.0, x.T * 1.0]
    plan = compile_graph(outs, [x], CPU)
    ops = [plan.graph.nodes[s].op for _, _, s in plan.binding([np.zeros((4, 6))]).steps]
    assert "getitem" not in ops and ops.count("transpose") == 1  # x.T only
    for seed in range(3):
        v = np.random.default_rng(seed).normal(size=(4, 6))
        a, b = plan([v])
        np.testing.assert_allclose(a, np.tanh(v)[:, 2:4].T * 2.0, rtol=1e-15)
        np.testing.assert_array_equal(b, v.T)


def test_generated_kernels_on_arena_buffers_are_bound_once_and_follow_every_run():
    """A numba kernel whose inputs and output are arena buffers is bound to them when the
    plan binds a batch size (its step gathers no inputs); one that reads a feed is not.
    Both follow each run's feeds."""
    from nnctl import jit
    if not jit.enabled():
        pytest.skip("the JIT is off")
    x = input_placeholder("x", (64, 32), "float32")
    h = x @ Tensor(np.full((32, 32), 0.01, dtype=np.float32))
    y = (h * 2.0 + 1.0).tanh() * 3.0  # a fused group of arena buffers only
    z = (x * 0.5 - 1.0) * x  # a fused group reading the feed
    plan = compile_graph([y, z], [x], CPU, jit=True)
    v0 = np.zeros((64, 32), np.float32)
    steps = {plan.graph.nodes[s].op + str(len(ins)) for _, ins, s in plan.binding([v0]).steps}
    assert "fused0" in steps and "fused1" in steps
    for seed in range(3):
        v = np.random.default_rng(seed).normal(size=(64, 32)).astype(np.float32)
        a, b = plan([v])
        hv = v @ np.full((32, 32), 0.01, dtype=np.float32)
        np.testing.assert_allclose(a, np.tanh(hv * 2.0 + 1.0) * 3.0, rtol=2e-6, atol=2e-6)
        np.testing.assert_allclose(b, (v * 0.5 - 1.0) * v, rtol=1e-6)
