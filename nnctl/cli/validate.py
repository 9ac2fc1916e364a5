"""`nnctl validate CONFIG`: check a config (and its data and model shapes) without training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nnctl.cli.app import app, guarded


@app.command()
def validate(
    config: Annotated[Path, typer.Argument(help="The run config (YAML).")],
    data: Annotated[bool, typer.Option(
        "--data/--no-data", help="Also load the data and build the model (checks shapes).")] = True,
) -> None:
    """Check a config: keys, types and values; with the data, also that the model fits it.

    Example: [bold]nnctl validate configs/digits_cnn.yaml[/]
    """
    def run():
        from nnctl.config import load_config
        cfg = load_config(config)
        if data:
            from nnctl.step import prepare
            splits, builder = prepare(cfg)
            n = sum(int(p.size) for p in builder.params.values())
            print(f"{config}: ok ({len(splits.train)}/{len(splits.val)}/{len(splits.test)} "
                  f"samples, {len(cfg.spec.model.layers)} layers, {n:,} parameters)")
        else:
            print(f"{config}: ok")
    guarded(run)
