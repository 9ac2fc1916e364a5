"""Dynamic loss scaling (nnctl/train/loss_scale.py): skip and halve on an overflow, double
after growth_interval good steps in a row, the state through a checkpoint, and the device
version (NumPy standing in for CuPy) against the host one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnctl.train.loss_scale import (GROWTH_INTERVAL, INIT_SCALE, DeviceLossScaler, LossScaler,
                                    found_inf, next_scale)


def test_defaults_are_torch_gradscalers():
    assert (INIT_SCALE, GROWTH_INTERVAL) == (65536.0, 2000)
    s = LossScaler(np)
    assert s.scale == 65536.0 and s.good_steps == 0
    assert s.scale_feed.shape == () and s.scale_feed.dtype == np.float32


def test_an_overflow_skips_the_step_and_halves_the_scale():
    s = LossScaler(np, growth_interval=3)
    assert s.update(False) is True and s.good_steps == 1
    assert s.update(True) is False  # skip
    assert s.scale == 32768.0 and s.good_steps == 0  # halved, the count restarts
    assert s.update(True) is False and s.scale == 16384.0
    assert float(s.scale_feed) == 16384.0  # what the plan is fed follows
    assert s.update(False) is True and s.good_steps == 1


def test_the_scale_doubles_after_growth_interval_good_steps_in_a_row():
    s = LossScaler(np, init_scale=8.0, growth_interval=3)
    feed = s.scale_feed
    for _ in range(2):
        assert s.update(False)
    assert s.scale == 8.0 and s.good_steps == 2
    s.update(False)
    assert s.scale == 16.0 and s.good_steps == 0
    # an overflow in between restarts the count: 2 good, overflow, 2 good -> no growth
    s.update(False), s.update(False), s.update(True), s.update(False), s.update(False)
    assert s.scale == 8.0 and s.good_steps == 2
    assert s.scale_feed is feed  # updated in place: the same array every step


def test_the_scale_never_drops_below_min_scale():
    s = LossScaler(np, init_scale=4.0, min_scale=1.0)
    for _ in range(5):
        s.update(True)
    assert s.scale == 1.0
    assert s.exhausted  # the last one overflowed at 1 already: not a matter of scaling
    s.update(False)
    assert not s.exhausted
    t = LossScaler(np, init_scale=2.0)
    t.update(True)
    assert t.scale == 1.0 and not t.exhausted  # halved to 1: the next step may fit


def test_state_round_trip():
    s = LossScaler(np, growth_interval=10)
    for found in (False, True, False, False, False):
        s.update(found)
    state = s.state_dict()
    assert state == {"scale": 32768.0, "good_steps": 3}
    t = LossScaler(np, growth_interval=10)
    t.load_state_dict(state)
    assert (t.scale, t.good_steps, float(t.scale_feed)) == (32768.0, 3, 32768.0)
    for _ in range(7):
        s.update(False), t.update(False)
    assert s.state_dict() == t.state_dict() == {"scale": 65536.0, "good_steps": 0}
    with pytest.raises(ValueError, match="finite scale"):
        t.load_state_dict({"scale": math.inf, "good_steps": 0})


def test_the_device_version_follows_the_same_rule():
    rng = np.random.default_rng(0)
    host = LossScaler(np, init_scale=1024.0, growth_interval=4)
    device = DeviceLossScaler(np, init_scale=1024.0, growth_interval=4)
    feed = device.scale_feed
    scale, good = 1024.0, 0
    for found in rng.random(300) < 0.15:
        host.update(bool(found))
        device.update(np.asarray(found))
        scale, good = next_scale(scale, good, bool(found), 4)
        assert host.state_dict() == device.state_dict() == {"scale": scale, "good_steps": good}
    assert device.scale_feed is feed and feed.dtype == np.float32
    other = DeviceLossScaler(np, growth_interval=4)
    other.load_state_dict(device.state_dict())
    assert other.state_dict() == device.state_dict()


def test_update_from_norm_tells_an_overflow_from_a_diverged_loss():
    s = LossScaler(np)
    assert s.update_from_norm(0.7, 3.2) is True
    assert s.update_from_norm(0.7, math.inf) is False and s.scale == 32768.0
    assert s.update_from_norm(0.7, math.nan) is False and s.scale == 16384.0
    # a non-finite loss is not an overflow of the float16 backward: the scale stays
    assert s.update_from_norm(math.nan, math.nan) is False and s.scale == 16384.0


def test_found_inf_on_the_device_sees_inf_and_nan_anywhere():
    good = [np.ones((3, 2), np.float32), np.zeros(0, np.float32), np.full(4, -2.0, np.float32)]
    flag = found_inf(np, good)
    assert isinstance(flag, np.ndarray) and flag.shape == () and not flag
    assert not found_inf(np, good) and not found_inf(np, [])
    for bad in (np.inf, -np.inf, np.nan):
        grads = [g.copy() for g in good]
        grads[2][1] = bad
        assert found_inf(np, grads)


def test_overflow_on_the_device_is_what_the_scale_can_fix():
    d = DeviceLossScaler(np, init_scale=2.0)
    yes, no = np.asarray(True), np.asarray(False)
    assert d.overflow(np.float32(0.5), yes) and not d.overflow(np.float32(0.5), no)
    assert not d.overflow(np.float32(np.nan), yes)  # a non-finite loss: a failure
    d.update(d.overflow(np.float32(0.5), yes))
    assert d.scale == 1.0
    assert not d.overflow(np.float32(0.5), yes)  # at min_scale: the model's, not the scale's
