"""TensorBoard event files for a run: the per-epoch scalars of metrics.jsonl (and, if asked,
the running training loss every few steps), in <run folder>/tensorboard/.

Written through tensorboardX, an optional extra (`pip install 'nnctl[tensorboard]'`). The
writer is a TrainerEvents listener that passes every event on to the one it wraps (the
progress reporter), so the trainer keeps talking to a single listener.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from nnctl.config import Config
from nnctl.train.events import TrainerEvents

FOLDER = "tensorboard"
INSTALL = "pip install 'nnctl[tensorboard]'"
# record keys that are not scalars over epochs: the epoch is the x axis, timings vary by run
NOT_SCALARS = ("epoch", "seconds", "samples_per_s")


def with_tensorboard(config: Config, events: TrainerEvents) -> TrainerEvents:
    """`events`, wrapped in a TensorBoard writer when the config's logging.tensorboard asks
    for one. Raises the config error naming the missing package before anything trains."""
    logging = config.spec.logging
    if not logging.tensorboard:
        return events
    if importlib.util.find_spec("tensorboardX") is None:
        raise config.error(("logging", "tensorboard"), f"needs tensorboardX: {INSTALL} (or set "
                                                       "logging.tensorboard: false)")
    return TensorBoardLog(events, every_steps=logging.every_steps)


class TensorBoardLog(TrainerEvents):
    """Scalars per epoch under the metrics.jsonl names (train_loss, val_accuracy, lr, ...),
    the test metrics at the last epoch, and with `every_steps` the training loss and headline
    metric so far in the epoch (the running mean the progress bar shows) under step/, every
    `every_steps` global steps."""

    def __init__(self, inner: TrainerEvents, every_steps: int = 0):
        self.inner, self.every_steps = inner, every_steps
        self.writer = None
        self.steps_per_epoch = 0
        self.last_epoch = 0

    def on_train_start(self, info: dict) -> None:
        if info.get("run_dir"):  # no run folder (a library call with out=None): nothing to write
            from tensorboardX import SummaryWriter
            self.writer = SummaryWriter(str(Path(info["run_dir"]) / FOLDER))
        self.steps_per_epoch = info["steps_per_epoch"]
        self.inner.on_train_start(info)

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        self.inner.on_epoch_start(epoch, steps)

    def on_step(self, epoch, step, steps, loss, metric, samples_per_s) -> None:
        at = (epoch - 1) * self.steps_per_epoch + step  # the global step, as Lightning counts
        if self.writer is not None and self.every_steps and at % self.every_steps == 0:
            self.writer.add_scalar("step/train_loss", loss, at)
            if metric is not None:
                self.writer.add_scalar("step/train_metric", metric, at)
        self.inner.on_step(epoch, step, steps, loss, metric, samples_per_s)

    def on_epoch_end(self, record: dict) -> None:
        if self.writer is not None:
            epoch = record["epoch"]
            for key, value in record.items():
                if key not in NOT_SCALARS and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, epoch)
            self.writer.flush()  # a TensorBoard watching the folder sees each epoch as it ends
            self.last_epoch = epoch
        self.inner.on_epoch_end(record)

    def on_train_end(self, summary: dict) -> None:
        if self.writer is not None:
            for key, value in summary.items():
                if key.startswith("test_") and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, self.last_epoch)
            self.writer.close()
            self.writer = None
        self.inner.on_train_end(summary)

    def on_warning(self, message: str) -> None:
        self.inner.on_warning(message)
