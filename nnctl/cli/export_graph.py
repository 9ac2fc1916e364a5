"""`nnctl export-graph CONFIG`: the model's computation graph as DOT or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nnctl.cli.app import app, guarded


@app.command("export-graph")
def export_graph(
    config: Annotated[Path, typer.Argument(help="The run config (YAML).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="dot or json.")] = "dot",
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Write here instead of standard output.")] = None,
    backward: Annotated[bool, typer.Option(
        "--backward", help="Include the gradient nodes.")] = False,
    batch: Annotated[Optional[int], typer.Option(
        min=1, help="Batch size of the drawn graph (default: train.batch_size).")] = None,
) -> None:
    """Write the training graph (forward and loss; --backward adds the gradients).

    Example: [bold]nnctl export-graph configs/digits_mlp.yaml -o mlp.dot && dot -Tsvg mlp.dot[/]
    """
    def run():
        from nnctl.config import load_config
        from nnctl.errors import UsageError
        from nnctl.export import FORMATS, export_graph as export

        if fmt not in FORMATS:
            raise UsageError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
        text = export(load_config(config), fmt, backward=backward, batch=batch)
        if output is None:
            print(text, end="")
            return
        from nnctl.train.run_dir import atomic_write
        output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(output, lambda f: f.write(text.encode()))
        print(f"wrote {output}")
    guarded(run)
