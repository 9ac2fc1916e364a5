"""`nnctl datasets`: the shipped data sets, the generators and the file loaders."""

from __future__ import annotations

from typing import Annotated

import typer

from nnctl.cli.app import app, guarded


@app.command()
def datasets(
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the catalogue as JSON instead of a table.")] = False,
) -> None:
    """List the data sets a config can name (data: dataset: NAME), with sizes and licences.

    Sources, hashes and licence texts are in datasets/README.md.

    Example: [bold]nnctl datasets[/]
    """
    def run():
        from nnctl.catalog import catalog

        entries = catalog()
        if as_json:
            import json
            print(json.dumps(entries, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title="data sets (data: dataset: NAME)")
        for column in ("name", "kind", "size", "features / labels", "licence", "config"):
            table.add_column(column, overflow="fold")
        for e in entries:
            size = e["size"] if e["available"] else f"{e['size']} [red](missing: {e['path']})[/]"
            table.add_row(e["name"], e["kind"], size, f"{e['features']} / {e['labels']}",
                          e["licence"], e["snippet"])
        console = Console(highlight=False)
        if not console.is_terminal:
            console.width = 160  # a log file has no width; keep rows on few lines
        console.print(table)
    guarded(run)
