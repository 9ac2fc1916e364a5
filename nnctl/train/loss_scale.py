"""Dynamic loss scaling for mixed precision (train.mixed_precision; docs/mixed_precision.md).

float16 keeps 3 decimal digits between 6e-8 and 65504: many gradients of a float32 model are
smaller than that range and would flush to zero in a float16 backward pass. So the backward
pass starts from loss x S (StepBuilder.training_step(mixed=...) feeds S as
`dynamic_loss_scale` and divides the float32 gradients by S again), and S is adapted as
torch.cuda.amp.GradScaler and Keras's LossScaleOptimizer adapt it:

- S starts at 2**16;
- a step whose gradients hold an inf or NaN (an overflow somewhere in the scaled float16
  backward pass) is skipped, no update and no state change, and S is halved;
- after `growth_interval` (2000) good steps in a row, S doubles.

S stays a power of two, so scaling and unscaling are exact. It never goes below
`min_scale` (1, as Keras): an overflow at S = 1 is not one of scaling but of the model
(`LossScaler.exhausted`), which the trainer handles as any non-finite step rather than
skipping forever.

Two versions of one rule (`next_scale`):

- `LossScaler` (host): S and the good-step count are Python numbers; `update(found_inf)`
  takes a Python bool and says whether to apply the step. The trainer reads the loss and the
  gradient norm every step where it decides each step on the host (the CPU, several ranks,
  train.on_nonfinite: skip), and the norm is what tells an overflow (inf or NaN), so this
  costs no extra device sync.
- `DeviceLossScaler`: S and the count live in 0-d arrays on the device; `overflow(loss,
  nonfinite)` and `update(flag)` run there with no host sync, and the skip is the
  optimizer's guarded step (`optimizer.step(..., apply=flag)`, the trainer's sync-free
  steps): for a trainer that reads the device once per interval.

Both give `scale_feed`, the 0-d float32 array to feed as `dynamic_loss_scale` (the same
array object every step, updated in place, so a captured CUDA graph reads the new value),
and `state_dict()` / `load_state_dict()` for the checkpoint.
"""

from __future__ import annotations

import math

INIT_SCALE = 2.0 ** 16
GROWTH_INTERVAL = 2000


def next_scale(scale: float, good_steps: int, found_inf: bool, growth_interval: int,
               min_scale: float = 1.0) -> tuple[float, int]:
    """(the scale, the good steps in a row) after one step: an overflow halves the scale
    (not below min_scale) and restarts the count; the growth_interval-th good step in a row
    doubles it and restarts the count."""
    if found_inf:
        return max(scale * 0.5, min_scale), 0
    good_steps += 1
    if good_steps >= growth_interval:
        return scale * 2.0, 0
    return scale, good_steps


class LossScaler:
    """The host version (see the module): S and the count as Python numbers."""

    def __init__(self, xp, init_scale: float = INIT_SCALE,
                 growth_interval: int = GROWTH_INTERVAL, min_scale: float = 1.0):
        _check(init_scale, growth_interval, min_scale)
        self.xp = xp
        self.scale, self.good_steps = float(init_scale), 0
        self.growth_interval, self.min_scale = int(growth_interval), float(min_scale)
        # the last step overflowed at min_scale already: no scale can fix that; the trainer
        # treats it as the non-finite step it is (train.on_nonfinite)
        self.exhausted = False
        self.scale_feed = xp.asarray(self.scale, dtype="float32")

    def update(self, found_inf: bool) -> bool:
        """Account for one step; True when its update should be applied (no overflow)."""
        found_inf = bool(found_inf)
        scale = self.scale
        self.exhausted = found_inf and scale <= self.min_scale
        self.scale, self.good_steps = next_scale(scale, self.good_steps, found_inf,
                                                 self.growth_interval, self.min_scale)
        if self.scale != scale:  # 4 bytes to the device, only when S changes
            self.scale_feed[...] = self.scale
        return not found_inf

    def update_from_norm(self, loss: float, norm: float) -> bool:
        """update() from what the trainer already reads every step: the (unscaled) loss is
        finite but the gradient norm is not, an overflow. A non-finite loss is not one (the
        float32 loss diverged; the trainer's on_nonfinite decides): the scale stays, False."""
        if not math.isfinite(loss):
            return False
        return self.update(not math.isfinite(norm))

    def state_dict(self) -> dict:
        return {"scale": self.scale, "good_steps": self.good_steps}

    def load_state_dict(self, state: dict) -> None:
        self.scale, self.good_steps = _loaded(state)
        self.scale_feed[...] = self.scale


class DeviceLossScaler:
    """The device version (see the module): S and the count as 0-d arrays on xp's device,
    updated there; reading `scale` or `state_dict()` syncs (for logs and checkpoints)."""

    def __init__(self, xp, init_scale: float = INIT_SCALE,
                 growth_interval: int = GROWTH_INTERVAL, min_scale: float = 1.0):
        _check(init_scale, growth_interval, min_scale)
        self.xp = xp
        self.growth_interval, self.min_scale = int(growth_interval), float(min_scale)
        self.scale_feed = xp.asarray(init_scale, dtype="float32")
        self._good = xp.zeros((), dtype="int32")

    def overflow(self, loss, nonfinite) -> object:
        """A 0-d bool device array: an overflow the scale can fix, to skip: the loss finite,
        the gradients not (`nonfinite`: found_inf, or the gradient norm not finite), the
        scale above min_scale (at min_scale it is the model's failure: LossScaler.exhausted)."""
        xp = self.xp
        return xp.isfinite(loss) & nonfinite & (self.scale_feed > self.min_scale)

    def update(self, found_inf, active=None) -> None:
        """next_scale on the device (found_inf: a 0-d bool array or a Python bool), in place;
        `active` (a 0-d bool array): only where true (a step the trainer will not run again:
        nnctl/train/device_steps.py)."""
        xp, s, good = self.xp, self.scale_feed, self._good
        found = xp.asarray(found_inf, dtype=bool)
        count = xp.where(found, 0, good + 1)
        grow = count >= self.growth_interval
        new = xp.where(found, xp.maximum(s * 0.5, self.min_scale), xp.where(grow, s * 2, s))
        count = xp.where(grow, 0, count)
        if active is not None:
            new, count = xp.where(active, new, s), xp.where(active, count, good)
        s[...] = new
        good[...] = count

    @property
    def scale(self) -> float:
        return float(self.scale_feed)

    @property
    def good_steps(self) -> int:
        return int(self._good)

    def state_dict(self) -> dict:
        return {"scale": self.scale, "good_steps": self.good_steps}

    def load_state_dict(self, state: dict) -> None:
        scale, good = _loaded(state)
        self.scale_feed[...] = scale
        self._good[...] = good


def found_inf(xp, grads) -> object:
    """A 0-d bool array on xp's device: whether any gradient holds an inf or NaN, with no
    sync. Two reductions per gradient and no temporary array: min and max propagate NaN,
    and an inf is one of them. (The gradient norm tells the same unless train.clip_value
    has clipped an inf to a finite value first: then check the gradients before clipping.)"""
    bad = xp.zeros((), dtype=bool)
    for g in grads:
        if g.size:
            bad |= ~(xp.isfinite(g.max()) & xp.isfinite(g.min()))
    return bad


def _check(init_scale: float, growth_interval: int, min_scale: float) -> None:
    if not (math.isfinite(init_scale) and init_scale >= min_scale > 0):
        raise ValueError(f"a loss scale needs finite init_scale >= min_scale > 0, got "
                         f"{init_scale} and {min_scale}")
    if int(growth_interval) < 1:
        raise ValueError(f"growth_interval must be a positive int, got {growth_interval}")


def _loaded(state: dict) -> tuple[float, int]:
    """(scale, good steps) from a checkpoint's state_dict, checked."""
    scale, good = float(state["scale"]), int(state["good_steps"])
    if not (math.isfinite(scale) and scale > 0) or good < 0:
        raise ValueError(f"a loss scaler's state needs a finite scale > 0 and good_steps >= 0, "
                         f"got {state}")
    return scale, good
