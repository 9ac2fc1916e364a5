"""Companion kernels: a loss and its gradient computed in one pass (Op.companion), with the
same bits as the two ops' own kernels, and no buffer clobbered by writing the second early."""

from __future__ import annotations

import numpy as np
import pytest

import nnctl.compile.plan as plan_module
from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.graph.tensor import input_placeholder, parameter
from nnctl.ops.registry import Dim

B = Dim("B")
CPU = get_backend("cpu")


def _classifier(penalty: bool, labels_shape=(B,)):
    """x -> tanh dense -> dense -> cross_entropy; with `penalty` the loss adds a weight
    penalty, so the cross-entropy's own result dies inside the step (its buffer can be
    reused) instead of being an output."""
    x = input_placeholder("x", (*labels_shape, 6), "float32")
    y = input_placeholder("y", labels_shape, "int64")
    w1, w2 = parameter("w1", (6, 16), "float32"), parameter("w2", (16, 5), "float32")
    loss = ((x @ w1).tanh() @ w2).cross_entropy(y)
    if penalty:
        loss = loss + (w2 * w2).sum() * 1e-3
    return [loss, *grad(loss, [w1, w2])], [x, y, w1, w2]


def _feeds(n, labels_shape=None, seed=0):
    rng = np.random.default_rng(seed)
    shape = labels_shape or (n,)
    return [rng.normal(size=(*shape, 6)).astype(np.float32), rng.integers(0, 5, shape),
            rng.normal(scale=0.5, size=(6, 16)).astype(np.float32),
            rng.normal(scale=0.5, size=(16, 5)).astype(np.float32)]


def _plans(build, capacity):
    outputs, feeds = build()
    paired = compile_graph(outputs, feeds, CPU, capacity=capacity, jit=False)
    original = plan_module.companions
    plan_module.companions = lambda graph: (graph, {})
    try:
        outputs, feeds = build()
        single = compile_graph(outputs, feeds, CPU, capacity=capacity, jit=False)
    finally:
        plan_module.companions = original
    return paired, single


@pytest.mark.parametrize("penalty", [False, True], ids=["loss-output", "loss-inside"])
@pytest.mark.parametrize("n", [8, 2000], ids=["small-temporaries", "large-workspace"])
def test_paired_loss_and_gradient_equal_the_two_kernels_to_the_bit(penalty, n):
    paired, single = _plans(lambda: _classifier(penalty), {"B": n})
    ops = {(a.op, b.op) for a, b in paired.companions.items()}
    assert ops == {("cross_entropy", "softmax_xent_grad")}
    # one step fewer: the gradient's kernel is gone, written by the loss's
    assert len(paired.binding(_feeds(n)).steps) == len(single.binding(_feeds(n)).steps) - 1
    for seed in range(3):  # repeated runs: nothing left over from the run before
        feeds = _feeds(n, seed=seed)
        for got, want in zip(paired.run(feeds), single.run(feeds)):
            np.testing.assert_array_equal(got, want)


def test_a_sequence_of_labels_pairs_too():
    shape = (B, 7)
    paired, single = _plans(lambda: _classifier(False, shape), {"B": 4})
    assert paired.companions
    feeds = _feeds(0, labels_shape=(4, 7))
    for got, want in zip(paired.run(feeds), single.run(feeds)):
        np.testing.assert_array_equal(got, want)


def test_the_second_buffer_is_alive_from_the_first_kernel_on():
    """The memory plan sees the gradient written at the loss's step: its interval starts
    there, so no value alive in between shares its bytes."""
    paired, _ = _plans(lambda: _classifier(True), {"B": 64})
    position = {n: i for i, n in enumerate(paired.graph.nodes)}
    (first, second), = paired.companions.items()
    scale = second.inputs[2]  # the 1/batch scale, computed at run time: hoisted before the loss
    assert scale.op == "div" and position[scale] < position[first]
    memory = paired.memory
    assert memory.intervals[second][0] == position[first]
    lo, hi = memory.offsets[second], memory.offsets[second] + memory.sizes[second]
    for key, (start, end) in memory.intervals.items():
        if key is second or end < position[first] or start > position[second]:
            continue
        off = memory.offsets[key]
        assert off + memory.sizes[key] <= lo or off >= hi, key


def test_labels_outside_the_classes_give_the_same_loss_paired():
    """A label outside [0, classes) picks nothing, in both the paired and the single path."""
    paired, single = _plans(lambda: _classifier(False), {"B": 8})
    feeds = _feeds(8)
    feeds[1] = np.array([0, -1, 4, 5, 2, 9, 1, 3])
    for got, want in zip(paired.run(feeds), single.run(feeds)):
        np.testing.assert_array_equal(got, want)


def test_no_pair_when_the_second_needs_the_first():
    """A gradient scale computed from the loss cannot be hoisted before it: two kernels."""
    from nnctl.graph.tensor import apply
    x = input_placeholder("x", (B, 5), "float32")
    y = input_placeholder("y", (B,), "int64")
    loss = apply("cross_entropy", x, y)
    g = apply("softmax_xent_grad", x, y, loss * 0.5)
    plan = compile_graph([loss, g], [x, y], CPU, capacity={"B": 4}, jit=False)
    assert plan.companions == {}
    xs = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
    ys = np.array([0, 4, 2, 1])
    got_loss, got_g = plan([xs, ys])
    p = np.exp(xs - xs.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want_loss = -np.log(p[np.arange(4), ys]).mean()
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
    np.testing.assert_allclose(got_g, (p - np.eye(5)[ys]) * want_loss * 0.5, rtol=1e-5,
                               atol=1e-7)
