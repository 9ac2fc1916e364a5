"""One plan for every batch size: the symbolic batch B, feeds checked on every call."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.errors import ShapeError
from nnctl.graph.tensor import input_placeholder, parameter
from nnctl.ops.registry import Dim

CPU = get_backend("cpu")
B = Dim("B")


def _step(batch):
    x = input_placeholder("x", (batch, 3), "float64")
    y = input_placeholder("y", (batch,), "int64")
    w = parameter("w", (3, 4), "float64")
    h = (x @ w).tanh()
    flat = h.reshape(-1)  # [4B]: a reshape that folds the batch into another axis
    loss = h.cross_entropy(y) + flat.mean() * 0.5 + (h * h).var(axis=0).sum()
    return [loss, *grad(loss, [w])], [x, y, w]


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), rng.integers(0, 4, n), rng.normal(size=(3, 4))


def test_one_symbolic_plan_equals_a_static_plan_at_every_batch_size():
    outputs, feeds = _step(B)
    plan = compile_graph(outputs, feeds, CPU, capacity={"B": 4})
    for n in (4, 1, 3, 7, 4):  # smaller, then larger than the capacity (the arena grows)
        static = compile_graph(*_step(n), CPU)
        got, want = plan(list(_data(n, n))), static(list(_data(n, n)))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-15)
    assert plan.memory.capacity == {"B": 7}
    # growing the arena to 7 dropped the bindings made for 4, 1 and 3; 4 was bound again after
    assert set(plan._bindings) == {(("B", 7),), (("B", 4),)}


def test_the_mean_gradient_scales_with_the_batch_it_is_given():
    x = input_placeholder("x", (B, 2), "float64")
    (g,) = grad(x.mean(), [x])
    plan = compile_graph([g], [x], CPU)
    np.testing.assert_array_equal(plan([np.ones((4, 2))])[0], np.full((4, 2), 1 / 8))
    np.testing.assert_array_equal(plan([np.ones((5, 2))])[0], np.full((5, 2), 1 / 10))


@pytest.mark.parametrize("feed, message", [
    (np.zeros((5, 3)), r"feed 'x' is float64\[5, 3\], but the graph expects float64\[4, 3\]"),
    (np.zeros((4, 3), "float32"), r"feed 'x' is float32\[4, 3\].*float64\[4, 3\]"),
    (np.zeros((4, 3, 1)), r"feed 'x' is float64\[4, 3, 1\]"),
])
def test_a_static_plan_refuses_a_feed_of_the_wrong_shape_or_dtype(feed, message):
    x = input_placeholder("x", (4, 3), "float64")
    plan = compile_graph([x.sum()], [x], CPU)
    with pytest.raises(ShapeError, match=message):
        plan([feed])


def test_feeds_must_agree_on_the_batch_size():
    outputs, feeds = _step(B)
    plan = compile_graph(outputs, feeds, CPU)
    x, y, w = _data(5)
    with pytest.raises(ShapeError, match=r"feed 'y' is int64\[6\], but the graph expects "
                                         r"int64\[B\] \(with B=5 from the feeds before it\)"):
        plan([x, np.zeros(6, dtype=np.int64), w])
    with pytest.raises(ShapeError, match=r"feed 'w' is float64\[4, 3\].*float64\[3, 4\]"):
        plan([x, y, w.T])
    with pytest.raises(ShapeError, match=r"feed 'y' is int32\[5\]"):
        plan([x, y.astype(np.int32), w])
    with pytest.raises(ShapeError, match="takes 3 feeds, got 2"):
        plan([x, y])


def test_a_symbolic_batch_axis_cannot_be_sliced_or_summed_into_a_number():
    x = input_placeholder("x", (B, 3), "float64")
    with pytest.raises(ShapeError, match="cannot index the batch axis B"):
        x[1:]
    assert x[:, 1:].shape == (B, 2) and x[:, 0].shape == (B,)
    assert x.reshape(-1).shape == (Dim("B", 3),)
    assert x.reshape(-1).reshape(B, 3).shape == (B, 3)


def test_plan_outputs_are_copies_and_run_outputs_views_into_the_arena():
    x = input_placeholder("x", (B, 3), "float64")
    plan = compile_graph([(x * 2.0).exp()], [x], CPU)
    first = plan([np.zeros((2, 3))])[0]
    plan([np.ones((2, 3))])
    np.testing.assert_array_equal(first, np.ones((2, 3)))  # kept: a copy
    view = plan.run([np.zeros((2, 3))])[0]
    plan.run([np.ones((2, 3))])
    np.testing.assert_allclose(view, np.exp(2.0))  # a view: overwritten by the next run
