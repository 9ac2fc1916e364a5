"""`nnctl doctor CONFIG`: where a backend or a precision departs from NumPy float64, op by op."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nnctl.cli.app import app, guarded


@app.command()
def doctor(
    config: Annotated[Path, typer.Argument(help="The run config (YAML).")],
    against: Annotated[Optional[str], typer.Option(
        "--against", help="cuda (CuPy on a GPU, float64: parity to 1e-10) or float32 (the "
                          "CPU in float32); default: cuda where a GPU is usable, else "
                          "float32.")] = None,
    batch: Annotated[int, typer.Option(min=1, help="Training samples in the batch.")] = 8,
) -> None:
    """Run the training step op by op on NumPy float64 and on another backend or precision
    from the same weights, batch and dropout masks, and print each op's largest difference;
    exit 1 when one is outside the tolerance, naming the first op that departs.

    Example: [bold]nnctl doctor configs/digits_cnn.yaml --against cuda[/]
    """
    def run():
        from rich.console import Console
        from rich.table import Table

        from nnctl.config import load_config
        from nnctl.doctor import diagnose, first_departure
        from nnctl.errors import BackendError, GradcheckError
        target = against
        if target is None:
            try:
                from nnctl.backend import get_backend
                get_backend("cuda")
                target = "cuda"
            except BackendError as err:
                target = "float32"
                print(f"note: no GPU to compare with ({err}); comparing float32 with float64 "
                      "on the CPU instead")
        reports, summary = diagnose(load_config(config), target, batch)
        console = Console(highlight=False)
        if not console.is_terminal:
            console.width = 120
        what = "CuPy (float64)" if target == "cuda" else "NumPy float32"
        table = Table(title=f"{config.name}: {what} against NumPy float64, training step of "
                            f"{batch} samples, {summary['nodes']} nodes; max |a - b| / max |b| "
                            "(or the inputs' max)")
        for column in ("op", "nodes", "largest difference", "in layer", "its inputs'"):
            table.add_column(column, justify="right" if column != "op" and
                             column != "in layer" else "left")
        for r in reports:
            table.add_row(r.op, str(r.nodes), f"{r.max_error:.2e}", r.layer,
                          f"{r.inherited:.2e}")
        console.print(table)
        tolerance = summary["tolerance"]
        if summary["worst"] <= tolerance:
            print(f"every op within {tolerance:g} (largest {summary['worst']:.2e})")
            return
        first = first_departure(summary)
        where = (f"; it starts at {first.op} in {first.layer} ({first.max_error:.2e} with "
                 f"inputs within {first.inherited:.2e})") if first else ""
        raise GradcheckError(f"{what} departs from float64 beyond {tolerance:g} "
                             f"(largest {summary['worst']:.2e}){where}")
    guarded(run)
