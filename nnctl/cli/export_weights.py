"""`nnctl export-weights RUN_DIR`: a run's weights under PyTorch's names and layouts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nnctl.cli.app import app, guarded


@app.command("export-weights")
def export_weights(
    run_dir: Annotated[Path, typer.Argument(help="A run folder made by nnctl train.")],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Where to write (default: RUN_DIR/weights.safetensors or "
                               ".npz).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="safetensors or npz.")] = "safetensors",
    weights: Annotated[str, typer.Option(help="final (weights.npz) or best (best.npz).")] =
        "final",
    names: Annotated[str, typer.Option(help="torch (PyTorch's names and layouts, "
                                            "docs/export.md) or nnctl (as trained).")] = "torch",
) -> None:
    """Write a run's weights for other tools: a state dict the equivalent torch.nn modules
    load (`load_state_dict`), as safetensors or NPZ; no pickle either way.

    Example: [bold]nnctl export-weights runs/digits_mlp-latest -o mlp.safetensors[/]
    """
    def run():
        import numpy as np

        from nnctl.config import load_config
        from nnctl.errors import UsageError
        from nnctl.torch_weights import layer_kinds, to_torch
        from nnctl.train.run_dir import atomic_write, load_weights, resolve_run_dir
        if fmt not in ("safetensors", "npz"):
            raise UsageError(f"--format: expected safetensors or npz, got {fmt!r}")
        if names not in ("torch", "nnctl"):
            raise UsageError(f"--names: expected torch or nnctl, got {names!r}")
        if weights not in ("final", "best"):
            raise UsageError(f"--weights: expected final or best, got {weights!r}")
        folder = resolve_run_dir(run_dir)
        config = load_config(folder / "config.yaml")
        arrays = load_weights(folder / ("weights.npz" if weights == "final" else "best.npz"))
        if names == "torch":
            arrays = to_torch(layer_kinds(config.spec.model), arrays)
        arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        target = output or folder / f"weights.{fmt}"
        if fmt == "npz":
            atomic_write(target, lambda f: np.savez(f, **arrays))
        else:
            try:
                from safetensors.numpy import save
            except ImportError:
                from nnctl.extras import install_hint
                raise UsageError("--format safetensors needs safetensors: "
                                 + install_hint("weights", "safetensors")
                                 + "; or use --format npz") from None
            data = save(arrays, metadata={"format": "pt" if names == "torch" else "np",
                                          "nnctl_run": folder.name})
            atomic_write(target, lambda f: f.write(data))
        print(f"wrote {len(arrays)} arrays ({names} names) to {target}")
    guarded(run)
