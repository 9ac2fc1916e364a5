"""Training steps that never wait for the device: the checks and sums of a step kept on the
device, read once per interval.

On the CPU a float(loss) costs nothing. On a GPU each read of a device value blocks the host
until every queued kernel has run, so a trainer that reads the loss, the gradient norm and
the accuracy count every step (three syncs) keeps the GPU idle while Python prepares the
next step; a small model becomes launch- and sync-bound. Here every per-step decision is
made on the device, with the same outcome as the CPU trainer's host checks:

- **The guard.** A step is applied only when its loss and its gradient norm are finite and
  the loss has not diverged (train.divergence, the same rule as DivergenceWatch, evaluated
  on the device). Its flag `ok` (a 0-d array, 1 or 0) gates the optimizer's update (the
  fused kernels skip the parameter when it is 0; nnctl/optim/base.py) and the layer states.
  Once a step fails, every later step of the interval is a no-op too: the weights stay
  those before the failing step, as the CPU trainer leaves them.
- **The sums.** The loss (times its weight), the sample and label counts and the correct
  predictions of the applied steps add up in one small device vector.
- **The read.** Every `interval` steps, at the end of the epoch and before a stop, the host
  reads the vector once (`settle`): the sums go into the epoch's MetricSums, and a failure
  comes back as the step it happened at and why, so the trainer can rewind its counters to
  just before that step and report it as the CPU trainer would.

The clip factor is computed on the device too (`clip_on_device`), as PyTorch's
clip_grad_norm_ does: the gradients are multiplied by min(1, max_norm / (norm + 1e-6)),
which is exactly 1 (the same bits) at or below the limit.
"""

from __future__ import annotations

import math

import numpy as np

# the device vector's slots: the sums of the interval's applied steps, then its failure, the
# divergence watch, the step counter and the guard
N, WEIGHT, LOSS, CORRECT, POSITIONS, ABS_ERR, SQ_ERR = range(7)
FAILED_AT, FAILED_LOSS, FAILED_KIND, REFERENCE, STREAK, SINCE, STEP, HEALTHY, EPOCH = \
    range(7, 16)
SIZE = 16
_SINCE_BASE = 2.0 ** 32  # `since` as epoch * 2^32 + step: a streak may begin in an earlier epoch
NONFINITE, DIVERGED, OVERFLOW = 1.0, 2.0, 3.0
KINDS = {NONFINITE: "nonfinite", DIVERGED: "diverged", OVERFLOW: "overflow"}


def clip_on_device(xp, grads: list, max_norm: float) -> tuple[list, object]:
    """(the gradients scaled to a global L2 norm of at most max_norm, that norm before
    clipping as a 0-d float64 device array); no value leaves the device."""
    total = None
    for g in grads:
        flat = g.ravel()
        square = xp.vdot(flat, flat).astype(xp.float64)
        total = square if total is None else total + square
    norm = xp.sqrt(total) if total is not None else xp.zeros((), xp.float64)
    if math.isinf(max_norm):
        return grads, norm
    factor = xp.minimum(max_norm / (norm + 1e-6), 1.0)
    # the factor in each gradient's dtype, as clip_grad_norm scales by a Python float
    return [g * factor.astype(g.dtype) for g in grads], norm


class DeviceSteps:
    """The device side of a sync-free epoch: `check` a step (its guard flag), `add` its
    figures, `settle` once per interval.

    Every per-step value is read from and written into the one device vector in place, and
    the step's number is counted there too: no Python value changes from step to step, so
    the same calls can be captured once as a CUDA graph and replayed (nnctl/train/capture.py).
    """

    def __init__(self, xp, divergence_spec, metrics):
        self.xp = xp
        self.spec = divergence_spec
        self.metrics = metrics  # the config's metrics (mae/rmse need the error sums)
        self.values = xp.zeros(SIZE, dtype=xp.float64)
        self._constants: dict = {}  # value -> its 0-d float64 device array, made once

    def constant(self, value: float):
        """A 0-d float64 device array holding `value`, made once (a fill kernel, not a
        host-to-device copy, which no captured graph may hold) and read at every step."""
        array = self._constants.get(value)
        if array is None:
            array = self._constants[value] = self.xp.full((), float(value), dtype=self.xp.float64)
        return array

    def start(self, epoch: int, step_in_epoch: int, watch) -> None:
        """Begin an interval after step `step_in_epoch` of the epoch (a host write, outside
        any captured step), from the host watch's reference and streak."""
        host = np.zeros(SIZE)
        host[REFERENCE] = watch.reference or 0.0
        host[STREAK] = watch.streak
        host[SINCE] = watch.since[0] * _SINCE_BASE + watch.since[1] if watch.since else 0.0
        host[STEP] = step_in_epoch
        host[EPOCH] = epoch
        host[HEALTHY] = 1.0
        self.values[...] = self.xp.asarray(host)

    def healthy(self):
        """A 0-d bool: no step of the interval has failed or been skipped yet (the next one
        will be applied if it passes)."""
        return self.values[HEALTHY] > 0

    def check(self, loss, norm, overflow=None):
        """The next step's flag (a 0-d float64 array): 1 to apply it, 0 to leave the weights
        as they are. Records the interval's first failure and the divergence streak.

        `overflow` (mixed precision; a 0-d bool): the step's float16 backward pass overflowed
        and the loss scale has halved. The step is skipped, as the CPU trainer skips it
        (before the divergence watch sees it), and ends the interval like a failure: the
        host, at its read, counts it, rewinds to just after it and runs the steps after it
        again, so that the step counts, the schedule and Adam's bias corrections are the
        CPU's (an overflow is rare: the scale halves at most once per growth interval)."""
        xp, v = self.xp, self.values
        loss = loss.astype(xp.float64)
        step = v[STEP] + 1.0
        v[STEP] = step
        healthy = v[HEALTHY] > 0
        finite = xp.isfinite(loss) & xp.isfinite(norm)
        skipped = xp.zeros((), dtype=bool) if overflow is None else overflow
        diverged = xp.zeros((), dtype=bool)
        if self.spec.enabled:
            # DivergenceWatch.check on the device: the run's first positive loss is the
            # reference; `steps` losses in a row above the limit are a divergence. Frozen
            # once the interval has failed (later steps are not applied).
            reference = v[REFERENCE]
            reference = xp.where((reference > 0) | ~(loss > 0), reference, loss)
            limit = self.constant(math.inf)
            if self.spec.factor is not None:
                limit = xp.where(reference > 0, reference * self.spec.factor, math.inf)
            if self.spec.max_loss is not None:
                limit = xp.minimum(limit, self.spec.max_loss)
            over = loss > limit
            streak = xp.where(over, v[STREAK] + 1.0, 0.0)
            since = xp.where(over & (v[STREAK] == 0), v[EPOCH] * _SINCE_BASE + step, v[SINCE])
            diverged = finite & (streak >= self.spec.steps)
            # a non-finite or skipped step never reaches the watch, as on the CPU
            watched = healthy & finite & ~skipped
            v[REFERENCE] = xp.where(watched, reference, v[REFERENCE])
            v[SINCE] = xp.where(watched, since, v[SINCE])
            v[STREAK] = xp.where(watched, streak, v[STREAK])
        ok = (finite & ~diverged & ~skipped & healthy).astype(xp.float64)
        failed_now = healthy & ~(ok > 0)  # only at the interval's first failure
        v[FAILED_AT] = xp.where(failed_now, step, v[FAILED_AT])
        v[FAILED_LOSS] = xp.where(failed_now, loss, v[FAILED_LOSS])
        kind = xp.where(skipped, OVERFLOW, xp.where(finite, DIVERGED, NONFINITE))
        v[FAILED_KIND] = xp.where(failed_now, kind, v[FAILED_KIND])
        v[HEALTHY] = ok
        return ok

    def add(self, ok, loss, out, y, mask, classification: bool, multilabel: bool) -> None:
        """MetricSums.update's figures of a step, on the device, counted where `ok` is 1."""
        xp, constant = self.xp, self.constant
        n = len(y)
        weight = constant(n) if mask is None else mask.sum().astype(xp.float64)
        zero = constant(0)
        figures = [constant(n), weight, loss.astype(xp.float64) * weight]
        if classification:
            hits = out.argmax(axis=-1) == y
            correct = hits.sum() if mask is None else (hits * mask).sum()
            figures += [correct.astype(xp.float64), constant(y.size) if mask is None else weight]
        elif multilabel:
            figures += [((out > 0) == (y > 0.5)).sum().astype(xp.float64), constant(y.size)]
        else:
            figures += [zero, zero]
        if not (classification or multilabel) and \
                any(m in ("mae", "rmse") for m in self.metrics):
            d = (out - y).astype(xp.float64)
            per = float(max(d.size // n, 1))
            figures += [xp.abs(d).sum() / per, (d * d).sum() / per]
        else:
            figures += [zero, zero]
        # (where, not a product: a failed step's NaN loss times 0 would still be NaN)
        self.values[:SQ_ERR + 1] += xp.where(ok > 0, xp.stack(figures), 0.0)

    def settle(self, to_host, sums, watch) -> tuple[int, float, str] | None:
        """Read the interval (one device-to-host copy): add its sums into the host
        MetricSums `sums`, bring the divergence streak back to the host `watch`. A failure
        (or a skipped overflow) comes back as (its step in the epoch, its loss,
        "nonfinite" | "diverged" | "overflow")."""
        host = np.asarray(to_host(self.values), dtype=np.float64)
        for slot, field in ((N, "n"), (WEIGHT, "weight"), (CORRECT, "correct"),
                            (POSITIONS, "positions")):
            setattr(sums, field, getattr(sums, field) + int(round(host[slot])))
        sums.loss += float(host[LOSS])
        sums.abs_err += float(host[ABS_ERR])
        sums.sq_err += float(host[SQ_ERR])
        if self.spec.enabled:
            watch.reference = float(host[REFERENCE]) if host[REFERENCE] > 0 else None
            watch.streak = int(host[STREAK])
            since = divmod(int(host[SINCE]), int(_SINCE_BASE))
            watch.since = since if watch.streak else None
        if host[FAILED_AT] > 0:
            return int(host[FAILED_AT]), float(host[FAILED_LOSS]), KINDS[host[FAILED_KIND]]
        return None
