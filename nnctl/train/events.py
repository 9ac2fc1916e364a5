"""What the trainer reports while it runs. The CLI renders these (rich on a terminal, plain
lines elsewhere); the trainer itself never prints and never imports rich."""

from __future__ import annotations


class TrainerEvents:
    """No-op base: override what you need."""

    def on_train_start(self, info: dict) -> None:
        """info: run_dir, epochs, steps_per_epoch, params, device, plan stats."""

    def on_epoch_start(self, epoch: int, steps: int) -> None: ...

    def on_step(self, epoch: int, step: int, steps: int, loss: float, metric: float | None,
                samples_per_s: float) -> None: ...

    def on_epoch_end(self, record: dict) -> None: ...

    def on_early_stop(self, info: dict) -> None:
        """train.patience ran out. info: epoch (the last one trained), monitor, patience,
        best (its value), best_epoch, restore_best (whether the run ends on the best
        epoch's weights)."""

    def on_train_end(self, summary: dict) -> None: ...

    def on_warning(self, message: str) -> None:
        """Something was recovered or ignored, and the user should know (e.g. a torn log)."""
