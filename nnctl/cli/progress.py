"""Rendering trainer events: a rich live bar on a terminal, plain log lines elsewhere.

Output is never worth the run: when the reader of the log goes away (`2>&1 | head -1`, a
closed terminal, a full disk under a redirected log), the stream is silenced and training
goes on to its checkpoint, weights and summary.
"""

from __future__ import annotations

import functools
import sys
import time

from rich.console import Console

from nnctl.cli.app import say, silence
from nnctl.train.events import TrainerEvents


def _fmt_record(r: dict) -> str:
    parts = [f"epoch {r['epoch']}"]
    for key, value in r.items():
        if key in ("epoch", "seconds", "samples_per_s"):
            continue
        parts.append(f"{key} {value:.4f}")
    parts.append(f"{r['samples_per_s']:,.0f} samples/s")
    return "  ".join(parts)


def early_stop_line(info: dict) -> str:
    """One line: that early stopping ended the run, after which epoch, and whose weights
    the run keeps."""
    monitor, best_epoch = info["monitor"], info["best_epoch"]
    patience = info["patience"]
    line = (f"early stopping: {monitor} has not improved for {patience} epoch"
            f"{'s' if patience != 1 else ''}; stopped after epoch {info['epoch']}; ")
    best = f"epoch {best_epoch} ({monitor} {info['best']:.4f})"
    if info["restore_best"] or best_epoch == info["epoch"]:
        return line + f"kept the weights of the best, {best}"
    return line + (f"kept the last weights (epoch {info['epoch']}, train.restore_best: "
                   f"false); the best, {best}, are in best.npz")


def best_text(summary: dict) -> str:
    """'val_loss 0.1234' from a summary's best_<monitor> entry."""
    key = next((k for k in summary if k.startswith("best_") and k != "best_epoch"), None)
    return f"{key[5:]} {summary[key]:.4f}" if key else "monitored value"


class PlainReporter(TrainerEvents):
    """One line per epoch (and every `log_every` steps) on stderr; no escape sequences."""

    def __init__(self, log_every: int = 0, stream=None):
        self.stream = stream or sys.stderr
        self.log_every = log_every
        self.epochs = 0
        self.threads = ""  # how many BLAS/numba threads, set by the command: "1 thread (default)"

    def say(self, text: str) -> None:
        say(text, self.stream)

    def on_warning(self, message):
        self.say(f"warning: {message}")

    def on_train_start(self, info):
        self.epochs = info["epochs"]
        s = info["samples"]
        self.say(f"run folder: {info['run_dir']}" if info["run_dir"] else "no run folder")
        threads = f", {self.threads}" if self.threads else ""
        self.say(f"device {info['device']}{threads}, {info['params']:,} parameters, samples "
                 f"train/val/test {s['train']}/{s['val']}/{s['test']}, "
                 f"{info['plan_steps']} kernels per step, "
                 f"{info['plan_peak_bytes'] / 1024:,.0f} KiB arena (planned, allocated once)")

    def on_step(self, epoch, step, steps, loss, metric, samples_per_s):
        if self.log_every and step % self.log_every == 0:
            acc = f" acc={metric:.3f}" if metric is not None else ""
            self.say(f"epoch={epoch}/{self.epochs} step={step}/{steps} loss={loss:.4f}{acc} "
                     f"{samples_per_s:,.0f} samples/s")

    def on_epoch_end(self, record):
        self.say(_fmt_record(record) + f"  ({record['epoch']}/{self.epochs})")

    def on_early_stop(self, info):
        self.say(early_stop_line(info))

    def close(self):
        pass

    def final(self, summary: dict) -> None:
        kept, last = summary.get("weights_epoch"), summary.get("epochs_completed")
        if summary.get("status") == "completed" and kept is not None and kept != last:
            say(f"kept the weights of epoch {kept} (the best {best_text(summary)}), not those "
                f"of the last epoch ({last}); train.restore_best: false keeps the last")
        lines = [f"{k} {v:.4f}" for k, v in summary.items() if k.startswith("test_")]
        say("test: " + "  ".join(lines) if lines else "no test split")
        if summary.get("run_dir"):
            say(f"run folder: {summary['run_dir']}")


def _survives_lost_output(method):
    """A rich call that fails to write (the terminal is gone) silences stderr and returns."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except OSError:
            silence(self.console.file)
    return wrapper


class RichReporter(PlainReporter):
    """A live bar: epoch, step, loss, accuracy, samples/s, elapsed and ETA (at most 10 Hz)."""

    def __init__(self, console: Console):
        super().__init__(stream=sys.stderr)
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        self.console = console
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"),  # empty until the first step has a loss
            TextColumn("{task.fields[acc]}"),
            TextColumn("{task.fields[rate]:,.0f} samples/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, refresh_per_second=10)
        self.task = None
        self.last = 0.0

    @_survives_lost_output
    def say(self, text):
        self.console.print(text, highlight=False)

    @_survives_lost_output
    def on_train_start(self, info):
        super().on_train_start(info)
        self.steps = info["steps_per_epoch"]
        self.progress.start()
        self.task = self.progress.add_task("train", total=info["epochs"] * self.steps,
                                           epoch=0, epochs=info["epochs"], loss="",
                                           acc="", rate=0.0)

    @_survives_lost_output
    def on_step(self, epoch, step, steps, loss, metric, samples_per_s):
        if self.task is None:  # the terminal was gone before the bar could start
            return
        now = time.perf_counter()
        if now - self.last < 0.1 and step != steps:
            return
        self.last = now
        self.progress.update(self.task, completed=(epoch - 1) * self.steps + step, epoch=epoch,
                             loss=f"loss {loss:.4f}",
                             acc=f"acc {metric:.3f}" if metric is not None else "",
                             rate=samples_per_s)

    @_survives_lost_output
    def on_epoch_end(self, record):
        self.progress.console.print(_fmt_record(record), highlight=False)

    @_survives_lost_output
    def close(self):
        self.progress.stop()


def make_reporter(progress: bool, log_every: int = 0) -> PlainReporter:
    console = Console(stderr=True)
    if progress and console.is_terminal:
        return RichReporter(console)
    return PlainReporter(log_every)
