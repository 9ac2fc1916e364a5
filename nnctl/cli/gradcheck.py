"""`nnctl gradcheck [CONFIG]`: numeric vs analytic gradients, per op or for a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from nnctl.cli.app import app, guarded
from nnctl.cli.threads_option import ThreadsOption


@app.command()
def gradcheck(
    config: Annotated[Optional[Path], typer.Argument(
        help="A run config: check its model's parameter gradients. Without it: every op.")] = None,
    op: Annotated[Optional[List[str]], typer.Option(
        "--op", help="Only this op (repeatable).")] = None,
    eps: Annotated[float, typer.Option(help="Central-difference step.")] = 1e-6,
    atol: Annotated[float, typer.Option(help="Absolute tolerance.")] = 1e-5,
    rtol: Annotated[float, typer.Option(help="Relative tolerance.")] = 1e-3,
    second_order: Annotated[bool, typer.Option(
        "--second-order/--first-order", help="Also check gradients of gradients.")] = True,
    batch: Annotated[int, typer.Option(min=1, help="Batch size for a model check.")] = 4,
    threads: ThreadsOption = None,
) -> None:
    """Compare analytic gradients with central differences in float64. Exits 1 on a failure.

    Example: [bold]nnctl gradcheck --op matmul[/] or [bold]nnctl gradcheck configs/spirals.yaml[/]
    """
    def run():
        from rich.console import Console
        from rich.table import Table

        from nnctl import gradcheck as gc
        from nnctl.errors import GradcheckError, UsageError
        from nnctl.ops import REGISTRY
        from nnctl.threads import parse_threads, use_threads

        requested = parse_threads(threads)
        if config is not None:
            from nnctl.config import load_config
            cfg = load_config(config)
            with use_threads(requested if requested is not None else cfg.spec.train.threads):
                rows = gc.check_model(cfg, batch=batch, eps=eps, atol=atol, rtol=rtol)
            title = f"gradcheck of {config} (float64)"
        else:
            unknown = [o for o in op or [] if o not in REGISTRY]
            if unknown:
                from nnctl.config.validate import suggest
                raise UsageError(f"unknown op '{unknown[0]}'{suggest(unknown[0], REGISTRY)}")
            with use_threads(requested):
                rows = gc.check_ops(op or None, eps=eps, atol=atol, rtol=rtol,
                                    second_order=second_order)
            title = "gradcheck of every op (float64, central differences)"
        table = Table(title=title)
        for column in ("op" if config is None else "parameter", "case", "order",
                       "max abs err", "max rel err", "result"):
            table.add_column(column, justify="right" if "err" in column else "left")
        for r in rows:
            table.add_row(r.name, r.case, str(r.order), f"{r.max_abs:.2e}", f"{r.max_rel:.2e}",
                          "[green]pass[/]" if r.passed else f"[red]FAIL[/] {r.detail}")
        console = Console(highlight=False)
        if not console.is_terminal:
            console.width = 120  # a log file has no width; keep rows on one line
        console.print(table)
        failed = [r for r in rows if not r.passed]
        print(f"{len(rows) - len(failed)} passed, {len(failed)} failed")
        if failed:
            names = sorted({r.name for r in failed})
            raise GradcheckError(f"gradients disagree for: {', '.join(names)}")
    guarded(run)
