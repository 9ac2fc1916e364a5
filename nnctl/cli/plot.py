"""`nnctl plot RUN_DIR`: loss and metric curves (and a confusion matrix) as PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nnctl.cli.app import app, guarded


@app.command()
def plot(
    run_dir: Annotated[Path, typer.Argument(
        help="A run folder (runs/<config>-<time>; runs/<config>-latest: the newest).")],
) -> None:
    """Draw a run's training curves as PNGs in RUN_DIR/plots/ (needs matplotlib).

    loss.png and one PNG per metric (train and validation), and confusion.png where the
    run folder has confusion.json.

    Example: [bold]nnctl plot runs/digits_mlp-20250101-120000[/]
    """
    def run():
        nonlocal run_dir
        from nnctl.train.run_dir import resolve_run_dir
        run_dir = resolve_run_dir(run_dir)  # runs/<config>-latest, latest: the newest run
        from nnctl.plot import plot_run
        for path in plot_run(run_dir):
            print(f"wrote {path}")
    guarded(run)
