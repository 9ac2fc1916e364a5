"""Learning-rate schedules: pure functions of the optimizer step index t (0-based).

A schedule holds no state, so a resumed run needs only its step index. The trainer sets
`optimizer.lr = schedule(t)` before step t. Epoch-based kinds use epoch = t // steps_per_epoch.

    constant     base_lr
    step         base_lr * gamma ** (epoch // every_epochs)      (torch StepLR, per epoch)
    exponential  base_lr * gamma ** epoch                        (torch ExponentialLR, per epoch)
    cosine       min_lr + (base_lr - min_lr) (1 + cos(pi t / total_steps)) / 2, min_lr from
                 t = total_steps on                      (torch CosineAnnealingLR, per step)
    one_cycle    torch OneCycleLR with cosine annealing, two phases, per step: from
                 max_lr / div_factor up to max_lr over the first pct_start of total_steps, then
                 down to max_lr / div_factor / final_div_factor at t = total_steps - 1, held after.
                 max_lr defaults to base_lr (the configured lr is the peak).

with_warmup(schedule, warmup_steps) multiplies, as torch's LinearLR chained with another
scheduler: lr(t) = schedule(t) * (t + 1) / warmup_steps for t < warmup_steps, then schedule(t).
The inner schedule sees the same t (it is not delayed by the warm-up).
"""

from __future__ import annotations

import math
from typing import Callable

Schedule = Callable[[int], float]

# kind -> {parameter: default}; a default of None means the parameter is required
SCHEDULES: dict[str, dict[str, object]] = {
    "constant": {},
    "step": {"every_epochs": None, "gamma": 0.1},
    "exponential": {"gamma": None},
    "cosine": {"min_lr": 0.0},
    "one_cycle": {"max_lr": None, "pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4},
}


def make_schedule(kind: str, base_lr: float, steps_per_epoch: int, total_steps: int,
                  **params) -> Schedule:
    """The lr for each optimizer step t; ValueError names a bad kind or parameter."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r} (expected one of {', '.join(SCHEDULES)})")
    allowed = SCHEDULES[kind]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"schedule {kind!r} takes no {', '.join(unknown)} "
                         f"(its parameters: {', '.join(allowed) or 'none'})")
    missing = [k for k, v in allowed.items() if v is None and params.get(k) is None
               and not (kind == "one_cycle" and k == "max_lr")]
    if missing:
        raise ValueError(f"schedule {kind!r} needs {', '.join(missing)}")
    p = {**allowed, **{k: v for k, v in params.items() if v is not None}}
    if steps_per_epoch < 1 or total_steps < 1:
        raise ValueError(f"steps_per_epoch ({steps_per_epoch}) and total_steps ({total_steps}) "
                         f"must be at least 1")
    base_lr = float(base_lr)

    if kind == "constant":
        return lambda t: base_lr
    if kind == "step":
        every, gamma = int(p["every_epochs"]), float(p["gamma"])
        _check(every >= 1, "step: every_epochs must be at least 1")
        _check(gamma > 0, "step: gamma must be positive")
        return lambda t: base_lr * gamma ** ((t // steps_per_epoch) // every)
    if kind == "exponential":
        gamma = float(p["gamma"])
        _check(gamma > 0, "exponential: gamma must be positive")
        return lambda t: base_lr * gamma ** (t // steps_per_epoch)
    if kind == "cosine":
        return _cosine(base_lr, float(p["min_lr"]), total_steps)
    return _one_cycle(float(p["max_lr"]) if p["max_lr"] is not None else base_lr,
                      float(p["pct_start"]), float(p["div_factor"]),
                      float(p["final_div_factor"]), total_steps)


def with_warmup(schedule: Schedule, warmup_steps: int) -> Schedule:
    """schedule(t) * (t + 1) / warmup_steps during the first warmup_steps steps, then
    schedule(t); warmup_steps = 0 gives the schedule itself."""
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be non-negative, not {warmup_steps}")
    if warmup_steps == 0:
        return schedule

    def warmed(t: int) -> float:
        lr = schedule(t)
        return lr * (t + 1) / warmup_steps if t < warmup_steps else lr

    return warmed


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _cosine(base_lr: float, min_lr: float, total_steps: int) -> Schedule:
    def cosine(t: int) -> float:
        if t >= total_steps:
            return min_lr
        return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * t / total_steps)) / 2

    return cosine


def _one_cycle(max_lr: float, pct_start: float, div_factor: float, final_div_factor: float,
               total_steps: int) -> Schedule:
    _check(0 <= pct_start <= 1, "one_cycle: pct_start must be in [0, 1]")
    _check(div_factor > 0 and final_div_factor > 0,
           "one_cycle: div_factor and final_div_factor must be positive")
    initial_lr = max_lr / div_factor
    min_lr = initial_lr / final_div_factor
    # as OneCycleLR: phase ends at float steps, the last at total_steps - 1
    phases = ((float(pct_start * total_steps) - 1, initial_lr, max_lr),
              (float(total_steps - 1), max_lr, min_lr))

    def anneal(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    def one_cycle(t: int) -> float:
        t = min(t, total_steps - 1)  # OneCycleLR refuses later steps; hold the final lr
        start_step = 0.0
        for i, (end_step, start_lr, end_lr) in enumerate(phases):
            if t <= end_step or i == len(phases) - 1:
                span = end_step - start_step
                # a phase shorter than one step (tiny total_steps) is at its end at once
                pct = (t - start_step) / span if span > 0 else 1.0
                return anneal(start_lr, end_lr, pct)
            start_step = end_step
        raise AssertionError("unreachable")

    return one_cycle
