"""`nnctl tune CONFIG --trials N`: a hyperparameter search (nnctl/tune.py), one line per trial
on stderr as it ends, and the trials ranked in a table at the end."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from nnctl.cli.app import app, guarded, say
from nnctl.cli.threads_option import ThreadsOption


@app.command()
def tune(
    config: Annotated[Path, typer.Argument(help="The run config (YAML), with a tune: section "
                                                "or --space options.")],
    trials: Annotated[Optional[int], typer.Option(
        min=1, help="How many trials (default: tune.trials, else 20).")] = None,
    overrides: Annotated[Optional[List[str]], typer.Option(
        "--set", help="Override a config value in every trial: --set train.epochs=30 "
                      "(repeatable).")] = None,
    space: Annotated[Optional[List[str]], typer.Option(
        "--space", help="Search a key: --space 'optimizer.lr=log_uniform(1e-4, 1e-1)'; kinds: "
                        "uniform, log_uniform, int, log_int, choice (repeatable; replaces the "
                        "key in tune.space).")] = None,
    out: Annotated[Path, typer.Option(
        help="Parent folder of the search's folder <config>-tune-<timestamp>.")] = Path("runs"),
    timeout: Annotated[Optional[float], typer.Option(
        min=1, help="Start no trial after this many seconds.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: ThreadsOption = None,
) -> None:
    """Search hyperparameters with Optuna: every trial is a run folder, the best config is
    written as best.yaml.

    Example: [bold]nnctl tune configs/spirals.yaml --trials 10[/]
    """
    def run():
        from nnctl.backend import get_backend
        from nnctl.threads import parse_threads, use_threads
        from nnctl.tune import Search

        requested = parse_threads(threads)
        backend = get_backend(device)
        search = Search(config, overrides or [], space or [], out, backend, trials=trials,
                        timeout=timeout, on_trial=lambda r: say(trial_line(r, search),
                                                                sys.stderr))
        goal = search.goal
        say(f"search folder: {search.folder}", sys.stderr)
        say(f"{search.trials} trials, {goal.direction} {goal.metric} over "
            + ", ".join(f"{k} {d.describe()}" for k, d in search.space.items()), sys.stderr)
        if requested is None:
            requested = search.base.spec.train.threads
        with use_threads(requested):
            results = search.run()
        print_table(search, results)
        best = search.best()
        counts = {s: sum(r.state == s for r in results) for s in ("complete", "pruned", "failed")}
        say(f"{counts['complete']} complete, {counts['pruned']} pruned, "
            f"{counts['failed']} failed")
        if best is not None:
            say(f"best: trial {best.number}, {goal.metric} {best.value:.4f}; "
                f"train it with: nnctl train {search.folder / 'best.yaml'}")
        say(f"trials: {search.folder / 'trials.csv'}")
    guarded(run)


def value_text(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trial_line(result, search) -> str:
    """trial 3/10  optimizer.lr=0.0123 train.batch_size=64  val_loss 0.0201 (epoch 87)  complete,
    100 epochs, 5.1 s"""
    params = " ".join(f"{k}={value_text(v)}" for k, v in result.params.items())
    score = f"{search.goal.metric} {result.value:.4f} (epoch {result.best_epoch})" \
        if result.value is not None else search.goal.metric + " -"
    state = result.state + (f" at epoch {result.epochs}" if result.state == "pruned" else
                            f", {result.epochs} epochs")
    why = f": {result.error}" if result.error else ""
    return (f"trial {result.number}/{search.trials}  {params}  {score}  {state}, "
            f"{result.seconds:.1f} s{why}")


def print_table(search, results) -> None:
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"{search.folder.name}: {search.goal.direction} {search.goal.metric}")
    for name in ("rank", "trial", *search.space, search.goal.metric, "state", "epochs"):
        # on a narrow terminal, long key paths fold onto more lines rather than lose their
        # ends to "…"
        table.add_column(name, justify="left" if name == "state" else "right",
                         overflow="fold", no_wrap=name not in search.space)
    for rank, r in enumerate(results, 1):
        table.add_row(str(rank), str(r.number),
                      *(value_text(r.params.get(k, "")) for k in search.space),
                      "-" if r.value is None else f"{r.value:.4f}", r.state, str(r.epochs))
    console = Console(highlight=False)
    if not console.is_terminal:  # a log or a pipe: whole rows, not 80 columns
        console = Console(highlight=False, width=200)
    console.print(table)
