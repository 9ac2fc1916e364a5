"""`nnctl explain CONFIG PARAM`: the paths from the loss back to one parameter, each edge with
the local derivative it applies, and each path's share of the gradient."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nnctl.cli.app import app, guarded


@app.command()
def explain(
    config: Annotated[Path, typer.Argument(help="The run config (YAML).")],
    param: Annotated[str, typer.Argument(help="A parameter, e.g. dense_0.weight "
                                              "(nnctl summary lists the layers).")],
    values: Annotated[Optional[Path], typer.Option(
        "--values", help="Use this run folder's weights (default: the initial ones).")] = None,
    batch: Annotated[int, typer.Option(min=1, help="Training samples in the batch.")] = 4,
) -> None:
    """The chain rule made visible: every path in the training graph from the loss back to
    PARAM, each step with the vjp rule it applies, and the size of each path's contribution
    on a batch; their sum is the gradient autodiff computes.

    Example: [bold]nnctl explain configs/spirals.yaml dense_0.weight[/]
    """
    def run():
        import numpy as np

        from nnctl.config import load_config
        from nnctl.explain import explain as explain_param
        weights = None
        if values is not None:
            from nnctl.train.run_dir import load_weights, resolve_run_dir
            weights = load_weights(resolve_run_dir(values) / "weights.npz")
        result = explain_param(load_config(config), param, batch, weights)
        source = f"weights of {values}" if values is not None else "initial weights"
        paths = result["paths"]
        print(f"{param} {result['shape']}: {len(paths)} path{'s' if len(paths) != 1 else ''} "
              f"to the loss (batch {result['batch']}, {source}, float64)")
        print("backpropagation applies each step's rule from the loss down to the parameter; "
              "g is the gradient arriving from above")
        for k, p in enumerate(paths, 1):
            print(f"\npath {k}: |contribution| {p['norm']:.4g}")
            print(f"  {param}")
            for line in p["edges"]:
                print(f"  -> {line}")
            print("  -> loss")
        diff = float(np.abs(result["sum"] - result["autodiff"]).max())
        print(f"\nsum over paths |g| {np.linalg.norm(result['sum']):.6g}; autodiff |g| "
              f"{np.linalg.norm(result['autodiff']):.6g}; max difference {diff:.1e}")
    guarded(run)
