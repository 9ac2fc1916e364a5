"""Checkpoints: 3 steps, save, a new optimizer loads, 3 more steps == 6 steps straight,
bit for bit."""

from __future__ import annotations

import io

import numpy as np
import pytest

from nnctl.optim import SGD, Adagrad, Adam, AdamW, RMSprop

MAKERS = {
    "sgd": lambda: SGD(np, 0.1),
    "sgd_momentum": lambda: SGD(np, 0.1, momentum=0.9, weight_decay=0.01),
    "sgd_nesterov": lambda: SGD(np, 0.05, momentum=0.8, nesterov=True),
    "adam": lambda: Adam(np, 0.01, weight_decay=0.01),
    "adamw": lambda: AdamW(np, 0.01, weight_decay=0.1),
    "rmsprop": lambda: RMSprop(np, 0.01),
    "rmsprop_momentum": lambda: RMSprop(np, 0.01, momentum=0.9, weight_decay=0.01),
    "adagrad": lambda: Adagrad(np, 0.1, initial_accumulator_value=0.1),
}
KEYS = {
    "sgd": set(), "sgd_momentum": {"velocity"}, "sgd_nesterov": {"velocity"},
    "adam": {"m", "v"}, "adamw": {"m", "v"}, "rmsprop": {"square_avg"},
    "rmsprop_momentum": {"square_avg", "momentum_buffer"}, "adagrad": {"sum"},
}


def _problem(dtype):
    rng = np.random.default_rng(3)
    params = [rng.normal(size=(4, 3)).astype(dtype), rng.normal(size=3).astype(dtype)]
    grads = [[rng.normal(size=p.shape).astype(dtype) for p in params] for _ in range(6)]
    return params, grads


def _through_npz(state):
    # what a checkpoint file does to the state
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    with np.load(buf) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", MAKERS)
def test_resume_is_bit_identical(name, dtype):
    params, grads = _problem(dtype)
    lrs = [1.0, 0.9, 0.7, 0.5, 0.3, 0.1]  # the trainer sets lr from a schedule on every step

    straight = [p.copy() for p in params]
    opt = MAKERS[name]()
    base = opt.lr
    for t in range(6):
        opt.lr = base * lrs[t]
        opt.step(straight, grads[t])

    first = [p.copy() for p in params]
    a = MAKERS[name]()
    for t in range(3):
        a.lr = base * lrs[t]
        a.step(first, grads[t])
    state = _through_npz(a.state_dict(np.asarray))

    resumed = [p.copy() for p in first]
    b = MAKERS[name]()
    b.load_state_dict(state, np.asarray)
    assert b.steps == 3
    for t in range(3, 6):
        b.lr = base * lrs[t]
        b.step(resumed, grads[t])
    for p, q in zip(resumed, straight):
        assert p.dtype == dtype
        assert np.array_equal(p, q)


@pytest.mark.parametrize("name", MAKERS)
def test_state_dict_keys_and_types(name):
    params, grads = _problem(np.float32)
    opt = MAKERS[name]()
    for t in range(2):
        opt.step(params, grads[t])
    state = opt.state_dict(np.asarray)
    assert state["step"].dtype == np.int64 and state["step"].shape == () and state["step"] == 2
    want = {f"{slot}.{i}" for slot in KEYS[name] for i in range(2)} | {"step"}
    assert set(state) == want
    for key, value in state.items():
        assert isinstance(value, np.ndarray)
        if key != "step":
            assert value.shape == params[int(key.split(".")[1])].shape


@pytest.mark.parametrize("name", MAKERS)
def test_saved_and_loaded_state_never_alias_live_arrays(name):
    params, grads = _problem(np.float64)
    opt = MAKERS[name]()
    opt.step(params, grads[0])
    saved = opt.state_dict(np.asarray)
    snapshot = {k: v.copy() for k, v in saved.items()}
    opt.step(params, grads[1])  # must not change what was saved
    for k in saved:
        np.testing.assert_array_equal(saved[k], snapshot[k])
    other = MAKERS[name]()
    other.load_state_dict(saved, np.asarray)
    other.step([p.copy() for p in params], grads[2])  # must not change the caller's arrays
    for k in saved:
        np.testing.assert_array_equal(saved[k], snapshot[k])


def test_loading_replaces_earlier_state():
    params, grads = _problem(np.float64)
    opt = Adam(np, 0.01)
    opt.step(params, grads[0])
    opt.step(params, grads[1])
    opt.load_state_dict({"step": np.array(0, dtype=np.int64)}, np.asarray)
    assert opt.steps == 0 and opt.m == {} and opt.v == {} and opt.scratch == {}


def test_to_host_and_asarray_are_used():
    seen = []
    opt = SGD(np, 0.1, momentum=0.9)
    opt.step([np.ones(2)], [np.ones(2)])
    opt.state_dict(lambda a: seen.append("host") or np.asarray(a))
    opt.load_state_dict({"step": np.array(1), "velocity.0": np.ones(2)},
                        lambda a: seen.append("device") or a)
    assert seen == ["host", "device"]


@pytest.mark.parametrize("state,message", [
    ({"m.0": np.zeros(2)}, "no 'step'"),
    ({"step": np.array(1), "velocity.0": np.zeros(2)}, "unexpected entry 'velocity.0'"),
    ({"step": np.array(1), "m.x": np.zeros(2)}, "unexpected entry 'm.x'"),
])
def test_bad_state_is_refused(state, message):
    with pytest.raises(ValueError, match=message):
        Adam(np).load_state_dict(state, np.asarray)
