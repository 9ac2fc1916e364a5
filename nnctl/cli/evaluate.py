"""`nnctl evaluate RUN_DIR` and `nnctl predict RUN_DIR INPUT -o OUT`: use a finished run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from nnctl.cli.app import app, guarded
from nnctl.cli.threads_option import ThreadsOption


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(
        help="A run folder made by nnctl train (runs/<config>-latest: the newest).")],
    split: Annotated[str, typer.Option(help="test, val or train.")] = "test",
    data: Annotated[Optional[Path], typer.Option(
        "--data", help="Evaluate on this labelled file instead of a split: a .csv with the "
                       "run's label column, or an .npz with x and y.")] = None,
    weights: Annotated[str, typer.Option(help="final (weights.npz) or best (best.npz).")] = "final",
    beam: Annotated[int, typer.Option(min=1, help="Sequence to sequence: the beam width of "
                                                  "the decoded metrics (1: greedy).")] = 1,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: ThreadsOption = None,
) -> None:
    """Metrics of a trained run on one split, and its confusion matrix for a classifier.

    Example: [bold]nnctl evaluate runs/digits_mlp-20261127-101500 --split val[/]
    """
    def run():
        nonlocal run_dir
        from nnctl.train.run_dir import resolve_run_dir
        run_dir = resolve_run_dir(run_dir)  # runs/<config>-latest, latest: the newest run
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        from nnctl.backend import get_backend
        from nnctl.threads import parse_threads, use_threads
        from nnctl.train.inference import evaluate_file, evaluate_run

        with use_threads(parse_threads(threads)):
            if data is not None:
                metrics, confusion, names = evaluate_file(run_dir, get_backend(device), data,
                                                          weights, beam)
            else:
                metrics, confusion, names = evaluate_run(run_dir, get_backend(device), split,
                                                         weights, beam)
        console = Console(highlight=False)
        where = f"{data.name}" if data is not None else f"{split} split"
        # the heading as a line of its own: a table title would wrap inside the run's name
        console.print(f"{run_dir.name}: {where}, {weights} weights", soft_wrap=True,
                      markup=False)
        table = Table()
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in metrics.items():
            table.add_row(key, f"{value:.4f}")
        console.print(table)
        if confusion is not None and len(confusion) <= 20:
            console.print("confusion matrix (rows: true class, columns: predicted)",
                          soft_wrap=True)
            cm = Table()
            cm.add_column("")
            names = [escape(n) for n in names] if names else \
                [str(k) for k in range(len(confusion))]
            for name in names:
                cm.add_column(name, justify="right")
            for k, row in enumerate(confusion):
                cm.add_row(names[k], *[f"[bold]{v}[/]" if i == k else str(v)
                                     for i, v in enumerate(row)])
            console.print(cm)
    guarded(run)


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(
        help="A run folder made by nnctl train (runs/<config>-latest: the newest).")],
    inputs: Annotated[Path, typer.Argument(
        help="Features: .npz (array x, and arrays named as the model's further inputs) or "
             ".csv; for a text model, a text file of one input per line; for a graph model, "
             "graphs as .jsonl or .npz (docs/graphs.md).")],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Where to write (.csv/.npz); without it, CSV on standard "
                               "output.")] = None,
    weights: Annotated[str, typer.Option(help="final or best.")] = "final",
    beam: Annotated[int, typer.Option(min=1, help="Sequence to sequence: beam width (1: "
                                                  "greedy).")] = 1,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: ThreadsOption = None,
) -> None:
    """Predictions of a trained run for new inputs: the class and the probabilities (or the
    regression outputs), one row per input; for text models the class, the tag of each token,
    or the translation of each line.

    Example: [bold]nnctl predict runs/digits_mlp-20261127-101500 new.csv -o predictions.csv[/]
    """
    def run():
        nonlocal run_dir
        from nnctl.train.run_dir import resolve_run_dir
        run_dir = resolve_run_dir(run_dir)  # runs/<config>-latest, latest: the newest run
        from nnctl.backend import get_backend
        from nnctl.threads import parse_threads, use_threads
        from nnctl.train.inference import predict_run
        from nnctl.train.run_dir import check_writable_folder
        if output is not None:  # before the predictions are computed
            check_writable_folder(output.parent, "--output")

        def report(line: str) -> None:  # the metric on a file that still had its labels
            print(line, file=sys.stderr if output is None else sys.stdout)
        with use_threads(parse_threads(threads)):
            n = predict_run(run_dir, inputs, output, get_backend(device), weights, beam,
                            report)
        if output is not None:
            print(f"wrote {n} predictions to {output}")
    guarded(run)
