"""`nnctl init DATA_FILE`: a commented first config for a CSV or NPZ file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nnctl.cli.app import app, guarded


@app.command()
def init(
    data: Annotated[Path, typer.Argument(help="A .csv (or .tsv) or .npz data file.")],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Where to write the config (default: DATA_FILE's name with "
                               ".yaml, in the current folder).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a first config for your data: the columns as nnctl reads them, the label, a
    sensible model and the keys worth changing.

    Example: [bold]nnctl init people.csv && nnctl train people.yaml[/]
    """
    def run():
        from nnctl.errors import UsageError
        from nnctl.starter import starter_config
        from nnctl.train.run_dir import atomic_write
        target = output if output is not None else Path(data.stem + ".yaml")
        if target.exists() and not force:
            raise UsageError(f"{target} exists; pass --force to overwrite it or -o another "
                             "file")
        text = starter_config(data, target)
        atomic_write(target, lambda f: f.write(text.encode()))
        print(f"wrote {target}; next: nnctl validate {target} && nnctl train {target}")
    guarded(run)
