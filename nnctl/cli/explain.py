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
    diagram: Annotated[Optional[Path], typer.Option(
        "--diagram", "-o", help="Also draw the paths, highlighted in the graph with each "
                                "edge's rule: FILE.dot, or .svg / .png through Graphviz's "
                                "dot.")] = None,
) -> None:
    """The chain rule made visible: every path in the training graph from the loss back to
    PARAM, each step with the vjp rule it applies, and the size of each path's contribution
    on a batch (and of the gradient g arriving at each step); their sum is the gradient
    autodiff computes.

    Example: [bold]nnctl explain configs/spirals.yaml dense_0.weight -o paths.svg[/]
    """
    def run():
        import shutil

        import numpy as np

        from nnctl.config import load_config
        from nnctl.errors import UsageError
        from nnctl.explain import explain as explain_param
        if diagram is not None:
            fmt = diagram.suffix.lower().lstrip(".")
            if fmt not in ("dot", "svg", "png"):
                raise UsageError(f"--diagram: expected a .dot, .svg or .png file, got "
                                 f"{diagram.name}")
            if fmt != "dot" and shutil.which("dot") is None:
                raise UsageError(f"--diagram {diagram.name} needs Graphviz's dot on the PATH "
                                 "(e.g. apt install graphviz); or write a .dot file")
            from nnctl.train.run_dir import check_writable_folder
            check_writable_folder(diagram.parent, "--diagram")
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
        width = max((len(line) for p in paths for line in p["edges"]), default=0)
        for k, p in enumerate(paths, 1):
            print(f"\npath {k}: |contribution| {p['norm']:.4g}")
            print(f"  {param}")
            for line, flow in zip(p["edges"], p["flow"]):
                print(f"  -> {line.ljust(width)}   |g| {flow:.3g}")
            print("  -> loss")
        diff = float(np.abs(result["sum"] - result["autodiff"]).max())
        print(f"\nsum over paths |g| {np.linalg.norm(result['sum']):.6g}; autodiff |g| "
              f"{np.linalg.norm(result['autodiff']):.6g}; max difference {diff:.1e}")
        if diagram is not None:
            _draw_paths(result, param, diagram)
    guarded(run)


def _draw_paths(result: dict, param: str, path: Path) -> None:
    from nnctl.explain import rule
    from nnctl.export.highlight import paths_dot
    from nnctl.train.run_dir import atomic_write
    paths = [p["graph_edges"] for p in result["paths"]]
    rules = [[rule(node.op, index) for node, index in edges] for edges in paths]
    text = paths_dot(result["param_node"], result["loss"], paths, rules,
                     [p["flow"] for p in result["paths"]], f"{param}: paths to the loss")
    if path.suffix.lower() == ".dot":
        atomic_write(path, lambda f: f.write(text.encode()))
    else:
        from nnctl.cli.export_graph import _draw
        _draw(text, path.suffix.lower().lstrip("."), path)
    print(f"wrote {path}")
