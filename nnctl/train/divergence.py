"""Stop a run whose loss has clearly diverged while staying finite.

A NaN stops a run at once; a learning rate far too high often does not make a NaN: Adam at
lr 1e6 reaches a loss of 1e14 and would train on for hours. The watch compares each step's
training loss with the run's first one (the untrained model's loss, the scale a sane run
falls from): `steps` steps in a row above `factor` times it, or above `max_loss`, is a
divergence, and the trainer stops as for a NaN (exit 3, checkpoint of the state before).
"""

from __future__ import annotations

import math

from nnctl.errors import TrainingError


class DivergenceWatch:
    """Fed every step's loss (before the update); raises TrainingError on a divergence."""

    def __init__(self, spec):
        self.spec = spec
        self.reference: float | None = None   # the run's first positive loss
        self.streak = 0                       # steps in a row above the limit
        self.since: tuple[int, int] | None = None  # (epoch, step) where the streak began

    def limit(self) -> float:
        relative = self.spec.factor * self.reference \
            if self.spec.factor is not None and self.reference is not None else math.inf
        absolute = self.spec.max_loss if self.spec.max_loss is not None else math.inf
        return min(relative, absolute)

    def check(self, loss: float, epoch: int, step: int) -> None:
        if not self.spec.enabled:
            return
        if self.reference is None and loss > 0:  # a loss of 0 would make any loss diverge
            self.reference = loss
        if loss <= self.limit():
            self.streak, self.since = 0, None
            return
        self.streak += 1
        self.since = self.since or (epoch, step)
        if self.streak >= self.spec.steps:
            raise TrainingError(self.message(loss, epoch, step))

    def message(self, loss: float, epoch: int, step: int) -> str:
        """The error of a divergence found at `step` (also by the device's check)."""
        s = self.spec
        bounds = []
        if s.factor is not None:
            bounds.append(f"{s.factor:g} x the first step's loss {self.reference:.4g}")
        if s.max_loss is not None:
            bounds.append(f"train.divergence.max_loss {s.max_loss:g}")
        since = f"epoch {self.since[0]}, step {self.since[1]}"
        return (f"the loss diverged: {loss:.4g} at epoch {epoch}, step {step}, above "
                f"{' or '.join(bounds)} for {self.streak} steps in a row (since {since}); "
                "lower optimizer.lr or clip gradients (train.clip_norm); train.divergence "
                "sets the test (false turns it off)")

    # ---- checkpoints: a resumed run keeps the same reference --------------------------------
    def state_dict(self) -> dict:
        return {"reference": self.reference, "streak": self.streak,
                "since": list(self.since) if self.since else None}

    def load_state_dict(self, state) -> None:
        """A checkpoint's state; one that is missing or malformed starts the watch afresh
        (it only decides when to stop, so a fresh reference is safe)."""
        self.reference, self.streak, self.since = None, 0, None
        if not isinstance(state, dict):
            return
        reference, streak, since = state.get("reference"), state.get("streak"), state.get("since")
        if isinstance(reference, float) and math.isfinite(reference) and reference > 0:
            self.reference = reference
        if _counts(streak) and streak > 0 and isinstance(since, list) and len(since) == 2 \
                and all(_counts(x) for x in since):
            self.streak, self.since = streak, (since[0], since[1])


def _counts(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0
