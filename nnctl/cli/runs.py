"""`nnctl runs [FOLDER]` lists the runs in a folder; `nnctl runs A B [C...]` compares runs
side by side (their status, metrics, and the config keys that differ). A rich table on a
terminal, plain aligned columns elsewhere (for grep, files and tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from nnctl.cli.app import app, guarded, say


@app.command()
def runs(
    folders: Annotated[Optional[List[Path]], typer.Argument(
        help="A folder of run folders to list (default: runs), or two or more run folders to "
             "compare (runs/<config>-latest and latest name the newest).",
        show_default=False)] = None,
) -> None:
    """List runs (newest first) with their status and key metrics, or compare runs.

    Examples: [bold]nnctl runs[/], [bold]nnctl runs runs/spirals-latest runs/digits_mlp-latest[/]
    """
    def run():
        from rich.console import Console

        from nnctl.errors import UsageError
        from nnctl.train.run_dir import DEFAULT_RUNS, resolve_run_dir, run_folders
        from nnctl.train.run_info import is_run_folder, read_run

        console = Console(highlight=False, soft_wrap=True)
        named = [resolve_run_dir(f) for f in folders or ()]
        if len(named) == 1 and not is_run_folder(named[0]) or not named:
            parent = named[0] if named else DEFAULT_RUNS
            if not parent.is_dir():
                raise UsageError(f"{parent}: no such folder (nnctl train writes its runs to "
                                 "runs/, or to --out FOLDER)")
            found = [f for f in run_folders(parent) if is_run_folder(f)]
            if not found:
                say(f"no runs in {parent}")
                return
            show(console, listing([read_run(f) for f in reversed(found)]),
                 f"runs in {parent}")
            return
        for folder in named:
            if not is_run_folder(folder):
                why = "no such folder" if not folder.exists() else \
                    "not a run folder (it has no config.yaml)"
                raise UsageError(f"{folder}: {why}")
        show(console, comparison([read_run(f) for f in named]), "runs compared")
    guarded(run)


def listing(infos) -> tuple[list[str], list[list[str]]]:
    """One row per run: name, config, status, epochs, the monitored metric, test metrics,
    when it started."""
    headers = ["run", "config", "status", "epochs", "best", "test", "started"]
    rows = [[i.path.name, i.config_name, i.status, epochs_text(i), best_text(i),
             ", ".join(f"{k[5:]} {v:.4f}" for k, v in i.test.items()) or "-", i.started]
            for i in infos]
    return headers, rows


def comparison(infos) -> tuple[list[str], list[list[str]]]:
    """One column per run, one row per fact: status, epochs, the best monitored value, the
    test metrics (the union over the runs), then each config key whose values differ."""
    from nnctl.train.run_info import MISSING, config_differences
    headers = [""] + [i.path.name for i in infos]
    rows = [["config"] + [i.config_name for i in infos],
            ["status"] + [i.status for i in infos],
            ["epochs"] + [epochs_text(i) for i in infos],
            ["best"] + [best_text(i) for i in infos],
            ["weights from epoch"] + [str(i.weights_epoch or "-") for i in infos]]
    metrics = list(dict.fromkeys(k for i in infos for k in i.test))
    rows += [[key] + [f"{i.test[key]:.4f}" if key in i.test else "-" for i in infos]
             for key in metrics]
    for key, values in config_differences(infos):
        rows.append([f"config {key}"] + ["-" if v is MISSING else value_text(v)
                                         for v in values])
    return headers, rows


def epochs_text(info) -> str:
    return f"{info.epochs_done}/{info.epochs}" if info.epochs else str(info.epochs_done)


def best_text(info) -> str:
    if info.best is None:
        return "-"
    return f"{info.monitor} {info.best:.4f} (epoch {info.best_epoch})"


def value_text(value) -> str:
    import json
    return value if isinstance(value, str) else json.dumps(value)


def show(console, table: tuple[list[str], list[list[str]]], title: str) -> None:
    """A rich table on a terminal; else plain columns, two spaces apart, header first."""
    headers, rows = table
    if console.is_terminal:
        from rich.markup import escape
        from rich.table import Table
        out = Table(title=escape(title))
        for name in headers:
            out.add_column(escape(name), overflow="fold")
        for row in rows:
            out.add_row(*[escape(cell) for cell in row])
        console.print(out)
        return
    widths = [max(len(r[c]) for r in [headers, *rows]) for c in range(len(headers))]
    for row in [headers, *rows]:
        say("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
