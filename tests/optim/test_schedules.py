"""Learning-rate schedules: hand values and torch.optim.lr_scheduler over 50 steps."""

from __future__ import annotations

import math

import pytest

from nnctl.optim import make_schedule, with_warmup

STEPS = 50


def _torch_lrs(make_scheduler, base_lr, n):
    """The lr torch uses for each of n scheduler periods (scheduler.step() after each)."""
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    sched = make_scheduler(torch.optim.lr_scheduler, opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def _ours(kind, base_lr, steps_per_epoch=1, total_steps=STEPS, **params):
    lr = make_schedule(kind, base_lr, steps_per_epoch, total_steps, **params)
    return [lr(t) for t in range(STEPS)]


# ---- hand values -------------------------------------------------------------------------


def test_constant():
    lr = make_schedule("constant", 0.3, 7, 100)
    assert [lr(t) for t in (0, 1, 99, 1000)] == [0.3] * 4


def test_step_hand_values():
    lr = make_schedule("step", 1.0, 10, 100, every_epochs=2, gamma=0.1)
    assert [lr(t) for t in (0, 19)] == [1.0, 1.0]  # epochs 0 and 1
    assert lr(20) == pytest.approx(0.1) and lr(39) == pytest.approx(0.1)
    assert lr(45) == pytest.approx(0.01)
    default_gamma = make_schedule("step", 1.0, 10, 100, every_epochs=1)
    assert default_gamma(10) == pytest.approx(0.1)


def test_exponential_hand_values():
    lr = make_schedule("exponential", 2.0, 4, 100, gamma=0.5)
    assert [lr(t) for t in (0, 3, 4, 8, 13)] == [2.0, 2.0, 1.0, 0.5, 0.25]


def test_cosine_hand_values():
    lr = make_schedule("cosine", 1.0, 3, 100, min_lr=0.2)
    assert lr(0) == 1.0
    assert lr(50) == pytest.approx(0.6, rel=1e-15)
    assert lr(25) == pytest.approx(0.2 + 0.8 * (1 + math.cos(math.pi / 4)) / 2, rel=1e-15)
    assert lr(100) == 0.2 and lr(1000) == 0.2  # held at min_lr after total_steps
    assert make_schedule("cosine", 1.0, 3, 100)(50) == pytest.approx(0.5)  # min_lr 0


def test_one_cycle_hand_values():
    lr = make_schedule("one_cycle", 0.01, 1, 100, max_lr=1.0)
    assert lr(0) == pytest.approx(1.0 / 25, rel=1e-15)  # max_lr / div_factor
    assert lr(29) == pytest.approx(1.0, rel=1e-15)  # end of warm phase: 0.3 * 100 - 1
    assert lr(99) == pytest.approx(1.0 / 25 / 1e4, rel=1e-12)  # end: initial / final_div_factor
    assert lr(500) == lr(99)  # held after the last step
    assert all(lr(t) < lr(t + 1) for t in range(29))
    assert all(lr(t) > lr(t + 1) for t in range(29, 99))
    # max_lr defaults to base_lr: the configured lr is the peak
    default = make_schedule("one_cycle", 0.5, 1, 100)
    assert default(29) == pytest.approx(0.5) and default(0) == pytest.approx(0.02)


def test_one_cycle_with_a_tiny_cycle_is_finite():
    for total in (1, 2, 3):
        for pct in (0.0, 0.3, 1.0):
            lr = make_schedule("one_cycle", 0.1, 1, total, pct_start=pct)
            assert all(math.isfinite(lr(t)) and lr(t) > 0 for t in range(total + 2))


def test_warmup_hand_values():
    lr = with_warmup(make_schedule("constant", 0.5, 1, 100), 4)
    assert [lr(t) for t in range(6)] == [0.125, 0.25, 0.375, 0.5, 0.5, 0.5]
    cos = make_schedule("cosine", 1.0, 1, 100)
    warm = with_warmup(cos, 10)
    assert warm(3) == pytest.approx(cos(3) * 0.4, rel=1e-15)  # multiplies; same t inside
    assert warm(10) == cos(10) and warm(60) == cos(60)
    assert with_warmup(cos, 0) is cos
    assert with_warmup(cos, 1)(0) == cos(0)


def test_schedules_are_pure():
    lr = with_warmup(make_schedule("one_cycle", 0.1, 5, 50), 5)
    first = [lr(t) for t in range(STEPS)]
    assert [lr(t) for t in reversed(range(STEPS))][::-1] == first  # any order, same values
    assert all(isinstance(v, float) for v in first)


@pytest.mark.parametrize("args,params,message", [
    (("linear", 0.1, 1, 10), {}, "unknown schedule 'linear'"),
    (("step", 0.1, 1, 10), {}, "needs every_epochs"),
    (("step", 0.1, 1, 10), {"every_epochs": 2, "gama": 0.5}, "takes no gama"),
    (("exponential", 0.1, 1, 10), {}, "needs gamma"),
    (("constant", 0.1, 1, 10), {"gamma": 0.5}, "takes no gamma"),
    (("cosine", 0.1, 0, 10), {}, "steps_per_epoch"),
    (("cosine", 0.1, 1, 0), {}, "total_steps"),
    (("step", 0.1, 1, 10), {"every_epochs": 0}, "every_epochs must be"),
    (("exponential", 0.1, 1, 10), {"gamma": 0.0}, "gamma must be positive"),
    (("one_cycle", 0.1, 1, 10), {"pct_start": 1.5}, "pct_start"),
])
def test_bad_arguments_are_refused(args, params, message):
    with pytest.raises(ValueError, match=message):
        make_schedule(*args, **params)


def test_negative_warmup_is_refused():
    with pytest.raises(ValueError, match="warmup_steps"):
        with_warmup(lambda t: 0.1, -1)


# ---- against torch.optim.lr_scheduler ------------------------------------------------------


def test_step_matches_steplr_per_epoch():
    spe = 5  # 50 steps = 10 epochs; torch steps its scheduler once per epoch
    per_epoch = _torch_lrs(lambda s, o: s.StepLR(o, step_size=3, gamma=0.5), 0.1, STEPS // spe)
    ours = _ours("step", 0.1, spe, every_epochs=3, gamma=0.5)
    assert ours == pytest.approx([per_epoch[t // spe] for t in range(STEPS)], rel=1e-12)


def test_exponential_matches_exponentiallr_per_epoch():
    spe = 5
    per_epoch = _torch_lrs(lambda s, o: s.ExponentialLR(o, gamma=0.8), 0.1, STEPS // spe)
    ours = _ours("exponential", 0.1, spe, gamma=0.8)
    assert ours == pytest.approx([per_epoch[t // spe] for t in range(STEPS)], rel=1e-12)


@pytest.mark.parametrize("min_lr", [0.0, 0.001])
def test_cosine_matches_cosineannealinglr(min_lr):
    want = _torch_lrs(lambda s, o: s.CosineAnnealingLR(o, T_max=STEPS, eta_min=min_lr), 0.1, STEPS)
    assert _ours("cosine", 0.1, min_lr=min_lr) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("params", [
    {"max_lr": 0.1}, {"max_lr": 0.3, "pct_start": 0.25, "div_factor": 10.0},
    {"max_lr": 0.05, "pct_start": 0.5, "final_div_factor": 100.0}])
def test_one_cycle_matches_onecyclelr(params):
    want = _torch_lrs(lambda s, o: s.OneCycleLR(o, total_steps=STEPS, cycle_momentum=False,
                                                anneal_strategy="cos", **params),
                      0.01, STEPS)
    assert _ours("one_cycle", 0.01, **params) == pytest.approx(want, rel=1e-12)


def test_one_cycle_default_max_lr_matches_onecyclelr_at_base_lr():
    want = _torch_lrs(lambda s, o: s.OneCycleLR(o, max_lr=0.2, total_steps=STEPS,
                                                cycle_momentum=False), 0.2, STEPS)
    assert _ours("one_cycle", 0.2) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("warmup", [5, 10])
def test_warmup_matches_linearlr_chained(warmup):
    # (t + 1) / warmup is LinearLR(start_factor=1/warmup, total_iters=warmup - 1), and
    # ChainedScheduler multiplies it with the other schedule, both seeing the same t
    def chained(other):
        return lambda s, o: s.ChainedScheduler([
            s.LinearLR(o, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1),
            other(s, o)])

    cos = _torch_lrs(chained(lambda s, o: s.CosineAnnealingLR(o, T_max=STEPS)), 0.1, STEPS)
    lr = with_warmup(make_schedule("cosine", 0.1, 1, STEPS), warmup)
    assert [lr(t) for t in range(STEPS)] == pytest.approx(cos, rel=1e-12)

    exp = _torch_lrs(chained(lambda s, o: s.ExponentialLR(o, gamma=0.95)), 0.1, STEPS)
    lr = with_warmup(make_schedule("exponential", 0.1, 1, STEPS, gamma=0.95), warmup)
    assert [lr(t) for t in range(STEPS)] == pytest.approx(exp, rel=1e-12)


# ---- one-cycle phases shorter than one step (issue 8, point 13) -----------------------------

SHORT_PHASES = [(1, 0.0), (1, 0.3), (2, 0.2), (2, 0.9), (3, 0.3), (3, 0.1), (4, 0.2), (5, 0.1),
                (5, 0.95), (10, 0.05), (10, 0.99)]


@pytest.mark.parametrize("total,pct", SHORT_PHASES)
def test_one_cycle_with_phases_shorter_than_a_step_matches_onecyclelr(total, pct):
    """pct_start * total < 1 (the warm-up ends before step 0) or (1 - pct_start) * total < 1
    (the annealing is shorter than a step): every step's lr is torch's, and the final lr is
    held after the last step."""
    want = _torch_lrs(lambda s, o: s.OneCycleLR(o, max_lr=0.1, total_steps=total, pct_start=pct,
                                                cycle_momentum=False), 0.1, total)
    lr = make_schedule("one_cycle", 0.1, 1, total, pct_start=pct)
    assert [lr(t) for t in range(total)] == pytest.approx(want, rel=1e-12)
    assert lr(total) == lr(total + 5) == lr(total - 1)


@pytest.mark.parametrize("total", [2, 3, 4, 5])
def test_one_cycle_with_a_warm_up_of_exactly_one_step_is_torchs_limit(total):
    """pct_start * total = 1 puts the warm-up's end at step 0, a phase of length 0 (torch
    divides by zero there). Ours is at the phase's end, max_lr: torch's value with the phase
    ending just before step 0. (total = 1 is left out: both phases are then of length 0.)"""
    pct = 1.0 / total
    lr = make_schedule("one_cycle", 0.1, 1, total, pct_start=pct)
    below = _torch_lrs(lambda s, o: s.OneCycleLR(o, max_lr=0.1, total_steps=total,
                                                 pct_start=pct * (1 - 1e-9), cycle_momentum=False),
                       0.1, total)
    assert lr(0) == 0.1
    assert [lr(t) for t in range(total)] == pytest.approx(below, rel=1e-6)


@pytest.mark.parametrize("params", [{"div_factor": 0.0}, {"div_factor": -2.0},
                                    {"final_div_factor": 0.0}, {"final_div_factor": -1.0}])
def test_one_cycle_refuses_a_non_positive_div_factor(params):
    with pytest.raises(ValueError, match="div_factor and final_div_factor must be positive"):
        make_schedule("one_cycle", 0.1, 1, 10, **params)


def test_one_cycle_takes_div_factors_below_one_as_torch_does():
    params = {"max_lr": 0.1, "div_factor": 0.5, "final_div_factor": 0.25}
    want = _torch_lrs(lambda s, o: s.OneCycleLR(o, total_steps=STEPS, cycle_momentum=False,
                                                **params), 0.1, STEPS)
    assert _ours("one_cycle", 0.1, **params) == pytest.approx(want, rel=1e-12)
