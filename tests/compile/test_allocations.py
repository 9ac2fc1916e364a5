"""A compiled training step allocates no arrays in steady state: every result and scratch
array lives in the plan's arena, allocated once, and the planned bytes are what it holds.

NumPy reports its allocations to tracemalloc, so the peak of traced memory during a step,
above what was allocated before it, is what the step allocated. What remains is NumPy's own
bookkeeping (iterator structs, a ufunc's cast buffer of at most 8192 elements): bounded, and
the same at every batch size, while an array per op would grow with the batch.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.graph.tensor import input_placeholder, parameter, random_bernoulli
from nnctl.ops.registry import Dim

B = Dim("B")
SIZES = {"w1": (64, 256), "b1": (256,), "w2": (256, 10), "b2": (10,)}


def _step(dropout: bool):
    x = input_placeholder("x", (B, 64), "float32")
    y = input_placeholder("y", (B,), "int64")
    w1, b1, w2, b2 = (parameter(k, s, "float32") for k, s in SIZES.items())
    h = (x @ w1 + b1).relu()
    if dropout:
        h = h * random_bernoulli(h.shape, 0.8, "float32") * (1 / 0.8)
    loss = (h @ w2 + b2).cross_entropy(y)
    return [loss, *grad(loss, [w1, b1, w2, b2])], [x, y, w1, b1, w2, b2]


def _feeds(n, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.normal(scale=0.1, size=s).astype(np.float32) for s in SIZES.values()]
    return [rng.normal(size=(n, 64)).astype(np.float32), rng.integers(0, 10, n), *params]


def _transient_bytes(plan, feeds) -> int:
    """Bytes a steady-state run allocates at its worst moment (above what it started with)."""
    for _ in range(3):
        plan.run(feeds)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        plan.run(feeds)
        return tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("dropout", [False, True])
def test_a_training_step_allocates_no_array_that_grows_with_the_batch(dropout):
    outputs, feeds = _step(dropout)
    plan = compile_graph(outputs, feeds, get_backend("cpu"), rng=np.random.default_rng(0),
                         capacity={"B": 4096})
    # both batches are past NumPy's buffer cap (8192 elements: the [B, 10] logits from
    # B = 820 on), so what NumPy buffers is the same for both; a [B] float32 array allocated
    # per step would add 12 KiB from the small batch to the large one
    small = _transient_bytes(plan, _feeds(1024))
    large = _transient_bytes(plan, _feeds(4096))
    arena = plan.peak_bytes
    assert arena > 4096 * 256 * 4  # at least the hidden activations of the large batch
    # one [4096, 256] float32 array is 4 MiB; the step allocates less than 1% of that, and
    # not more at 4x the batch
    assert large < 40_000, large
    assert large <= small + 4096, (small, large)


def test_the_planned_peak_is_what_a_step_holds():
    """Traced from before the plan allocates its arena: the measured peak of a first step
    (arena, plus the step's transient bytes) is within 10% of the planned bytes."""
    outputs, feeds = _step(dropout=True)
    plan = compile_graph(outputs, feeds, get_backend("cpu"), rng=np.random.default_rng(0),
                         capacity={"B": 1024})
    data = _feeds(1024)
    plan.run(data)  # kernels made, the arena allocated: then drop it and measure a fresh one
    plan._arena, plan._bindings = None, {}
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        plan.run(data)
        measured = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    planned = plan.peak_bytes
    assert planned <= measured <= 1.10 * planned, (planned, measured)
    # and the arena is no bigger than the most bytes ever alive at once (no fragmentation)
    assert plan.memory.arena_bytes <= 1.10 * plan.memory.live_peak()


def test_a_convolutional_step_allocates_no_array_either():
    """conv2d, its two gradients (stride 1, padded) and 2x2 max pooling keep their columns,
    padded copies and products in the arena: 4x the batch allocates nothing more."""
    from nnctl import jit
    x = input_placeholder("x", (B, 2, 10, 10), "float32")
    y = input_placeholder("y", (B,), "int64")
    w = parameter("w", (4, 2, 3, 3), "float32")
    d = parameter("d", (4 * 5 * 5, 10), "float32")
    from nnctl.graph.tensor import apply
    h = apply("max_pool2d", apply("conv2d", x, w, padding=(1, 1)).relu(), kernel=(2, 2))
    loss = (h.reshape(-1, 4 * 5 * 5) @ d).cross_entropy(y)
    outputs = [loss, *grad(loss, [w, d])]
    plan = compile_graph(outputs, [x, y, w, d], get_backend("cpu"), capacity={"B": 2048},
                         jit=jit.enabled())
    rng = np.random.default_rng(0)
    params = [rng.normal(scale=0.1, size=(4, 2, 3, 3)).astype(np.float32),
              rng.normal(scale=0.1, size=(100, 10)).astype(np.float32)]

    def feeds(n):
        return [rng.normal(size=(n, 2, 10, 10)).astype(np.float32), rng.integers(0, 10, n),
                *params]
    # batches whose [B, 10] logits are past the ops' small-array path (4096 elements, which
    # runs forward and copies) and NumPy's buffer cap
    small, large = _transient_bytes(plan, feeds(1024)), _transient_bytes(plan, feeds(2048))
    # [2048, 4, 10, 10] float32 (one activation) is 3.2 MB; the columns 4.5x that. What
    # remains is NumPy's iterator buffers, at most 8192 elements per operand: the relu reads
    # the conv's GEMM result as a transposed view (compile/conv_columns.py), which a ufunc
    # buffers (2 x 32 KiB), the same at every batch size
    assert large < 100_000, large
    assert large <= small + 4096, (small, large)
