"""Each optimizer's update drawn as graph nodes (`update_graph`) is the update it runs: the
Tensor ops, evaluated eagerly, give the new parameter and state that `update` (the NumPy path)
and the fused numba kernels give, over three steps in float64, for every optimizer in
make_optimizer's table and its options."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl import jit
from nnctl.config.schema import OPTIMIZERS
from nnctl.graph.tensor import Tensor, parameter
from nnctl.optim import OPTIMIZER_NAMES, make_optimizer

# (spec name, options): each optimizer's table entry with the options it has switched on
CASES = {
    "sgd": ("sgd", dict(lr=0.1)),
    "sgd_wd": ("sgd", dict(lr=0.1, weight_decay=0.05)),
    "sgd_momentum": ("sgd", dict(lr=0.1, momentum=0.9)),
    "sgd_nesterov_wd": ("sgd", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01)),
    "adam": ("adam", dict(lr=0.01)),
    "adam_wd": ("adam", dict(lr=0.02, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1)),
    "adamw": ("adamw", dict(lr=0.02, weight_decay=0.0)),
    "adamw_wd": ("adamw", dict(lr=0.02, beta1=0.85, beta2=0.995, eps=1e-4, weight_decay=0.3)),
    "rmsprop": ("rmsprop", dict(lr=0.01)),
    "rmsprop_momentum_wd": ("rmsprop", dict(lr=0.01, alpha=0.9, eps=1e-4, momentum=0.9,
                                            weight_decay=0.05)),
    "adagrad": ("adagrad", dict(lr=0.1)),
    "adagrad_wd_init": ("adagrad", dict(lr=0.1, eps=1e-6, weight_decay=0.05,
                                        initial_accumulator_value=0.2)),
}
STEPS = 3
RTOL = 1e-12
SHAPE = (6, 5)


def make(case: str, fused: bool):
    name, options = CASES[case]
    jit.set_enabled(fused)
    try:
        return make_optimizer(OPTIMIZERS[name](name=name, **options), np)
    finally:
        jit.set_enabled(None)


def initial_state(opt) -> dict[str, np.ndarray]:
    """The state before the first step, as `update` starts it."""
    start = getattr(opt, "initial_accumulator_value", 0.0)
    return {slot: np.full(SHAPE, start) for slot in opt.graph_slots()}


def run_arrays(opt, p, grads):
    """p after each step and the state after the last, through `opt.step`."""
    seen = []
    for g in grads:
        opt.step([p], [g])
        seen.append(p.copy())
    return seen, {slot: getattr(opt, slot)[0] for slot in opt.graph_slots()}


def run_graph(opt, p, grads):
    """The same steps through update_graph, evaluated eagerly (Tensors made from arrays)."""
    state = {k: Tensor(v) for k, v in initial_state(opt).items()}
    p, seen = Tensor(p), []
    for step, g in enumerate(grads, start=1):
        p, state = opt.update_graph(p, Tensor(g), state, step)
        assert p.value is not None and set(state) == set(opt.graph_slots())
        seen.append(p.numpy())
    return seen, {k: t.numpy() for k, t in state.items()}


def test_the_cases_cover_every_optimizer_in_the_table():
    assert {name for name, _ in CASES.values()} == set(OPTIMIZER_NAMES)


@pytest.mark.parametrize("fused", [False, pytest.param(True, marks=pytest.mark.skipif(
    not jit.available(), reason="numba is not installed"))], ids=["numpy", "fused"])
@pytest.mark.parametrize("case", CASES)
def test_update_graph_computes_the_update(case, fused, monkeypatch):
    monkeypatch.setattr(jit, "MIN_TOTAL", 0)  # the kernels on this small parameter too
    rng = np.random.default_rng(7)
    p0 = rng.normal(size=SHAPE)
    grads = [rng.normal(size=SHAPE) for _ in range(STEPS)]
    opt = make(case, fused)
    assert opt.jit is fused
    want_p, want_state = run_arrays(opt, p0.copy(), grads)
    assert (opt._kernels is not None) is fused  # the path the test names was taken
    got_p, got_state = run_graph(make(case, False), p0.copy(), grads)
    for step, (got, want) in enumerate(zip(got_p, want_p), start=1):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=0, err_msg=f"p, step {step}")
    assert got_state.keys() == want_state.keys()
    for slot in want_state:
        np.testing.assert_allclose(got_state[slot], want_state[slot], rtol=RTOL, atol=0,
                                   err_msg=slot)
    assert not np.allclose(want_p[-1], p0, rtol=1e-3)  # the steps moved the parameter


def test_a_wrong_equation_would_be_caught():
    # the comparison is sharp: Adam's graph at step 2 with step 1's bias corrections differs
    rng = np.random.default_rng(3)
    p, g = rng.normal(size=SHAPE), rng.normal(size=SHAPE)
    opt = make("adam", False)
    state = {k: Tensor(v) for k, v in initial_state(opt).items()}
    _, state = opt.update_graph(Tensor(p), Tensor(g), state, 1)
    right, _ = opt.update_graph(Tensor(p), Tensor(g), state, 2)
    wrong, _ = opt.update_graph(Tensor(p), Tensor(g), state, 1)
    assert not np.allclose(right.numpy(), wrong.numpy(), rtol=1e-6)


@pytest.mark.parametrize("case, inputs", [
    ("sgd", []),
    ("sgd_momentum", ["sgd.velocity[dense_0.weight]"]),
    ("adamw_wd", ["adamw.m[dense_0.weight]", "adamw.v[dense_0.weight]"]),
    ("rmsprop", ["rmsprop.square_avg[dense_0.weight]"]),
    ("rmsprop_momentum_wd", ["rmsprop.square_avg[dense_0.weight]",
                             "rmsprop.momentum_buffer[dense_0.weight]"]),
    ("adagrad", ["adagrad.sum[dense_0.weight]"]),
])
def test_graph_step_names_the_state_and_scopes_the_ops(case, inputs):
    from nnctl.graph.ir import toposort
    opt = make(case, False)
    p = parameter("dense_0.weight", SHAPE, "float32")
    g = parameter("g", SHAPE, "float32")
    new_p, new_state = opt.graph_step("dense_0.weight", p, g)
    nodes = toposort([new_p.node, *(t.node for t in new_state.values())])
    assert sorted(n.name for n in nodes if n.op == "input") == sorted(inputs)
    ops = [n for n in nodes if not n.is_leaf]
    assert ops and {n.scope for n in ops} == {f"{opt.graph_name}/dense_0.weight"}
    assert new_p.shape == SHAPE and new_p.dtype == "float32"
    assert sorted(new_state) == sorted(opt.graph_slots())
