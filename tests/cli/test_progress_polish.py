"""Small things a user sees: the live bar's first frame has no 'loss nan', and an interrupt
says which epochs are complete."""

import io

from rich.console import Console

from nnctl.cli.progress import RichReporter
from nnctl.train.trainer import interruption_point


def test_the_first_frame_shows_no_nan_then_the_loss():
    out = io.StringIO()
    reporter = RichReporter(Console(file=out, force_terminal=True, width=150))
    reporter.on_train_start({"run_dir": None, "epochs": 2, "steps_per_epoch": 10,
                             "device": "cpu", "params": 5,
                             "samples": {"train": 10, "val": 0, "test": 0},
                             "plan_steps": 3, "plan_peak_bytes": 1024, "passes": {},
                             "resumed_at": None})
    reporter.progress.refresh()
    first = out.getvalue()
    assert "epoch 0/2" in first and "nan" not in first.lower()
    reporter.on_step(1, 10, 10, 0.1234, 0.5, 100.0)
    reporter.progress.refresh()
    reporter.close()
    assert "loss 0.1234" in out.getvalue() and "acc 0.500" in out.getvalue()


def test_an_interruption_says_which_epochs_are_complete():
    assert interruption_point(1, 33, 45) == "epoch 1, step 33 of 45 (no epoch complete)"
    assert interruption_point(2, 3, 45) == "epoch 2, step 3 of 45 (1 epoch complete)"
    assert interruption_point(3, 45, 45) == "epoch 3, step 45 of 45 (3 epochs complete)"
