"""`nnctl summary CONFIG`: the model's layers, output shapes, parameters and memory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nnctl.cli.app import app, guarded


def human_bytes(n: int) -> str:
    """'124,584 B (121.7 KiB)'; binary units."""
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    return f"{n:,} B" if unit == "B" else f"{n:,} B ({value:.1f} {unit})"


def shape(dims) -> str:
    return "[-, " + ", ".join(str(d) for d in dims) + "]" if dims else "[-]"


@app.command()
def summary(
    config: Annotated[Path, typer.Argument(help="The run config (YAML).")],
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the summary as JSON instead of a table.")] = False,
) -> None:
    """Show the model layer by layer: output shape, parameters, memory (loads the data).

    Shapes are per sample ('-' is the batch). Activation memory is the total of the op
    results of one sample's evaluation forward pass.

    Example: [bold]nnctl summary configs/digits_cnn.yaml[/]
    """
    def run():
        from nnctl.config import load_config
        from nnctl.summary import model_summary

        s = model_summary(load_config(config))
        if as_json:
            import json
            print(json.dumps(s, indent=2))
            return
        from rich.console import Console
        from rich.table import Table

        t = s["totals"]
        inputs = ", ".join(f"{name} {shape(i['shape'])} {i['dtype']}"
                           for name, i in s["inputs"].items())
        table = Table(title=f"{s['config']}: {inputs}")
        for column, justify in (("layer", "left"), ("type", "left"), ("output shape", "left"),
                                ("params", "right"), ("trainable", "right"),
                                ("activations", "right")):
            table.add_column(column, justify=justify)
        previous = "input"
        for r in s["layers"]:
            name = r["name"]
            if r["inputs"] != [previous]:  # a DAG: say what the layer reads
                name += f" <- {', '.join(r['inputs'])}"
            previous = r["name"]
            table.add_row(name, r["type"], shape(r["output_shape"]), f"{r['params']:,}",
                          f"{r['trainable']:,}", f"{r['activation_bytes']:,} B")
        console = Console(highlight=False)
        if not console.is_terminal:
            console.width = 120  # a log file has no width; keep rows on one line
        console.print(table)
        memory = ", ".join(f"{human_bytes(b)} {d}" for d, b in t["param_bytes"].items())
        if len(s["outputs"]) > 1:  # aux_losses: say what each output is scored against
            print("outputs: " + "; ".join(
                f"{o['name']} {shape(o['shape'])} ({o['loss']} vs {o['target']}"
                f"{'' if o['weight'] == 1 else ' x ' + format(o['weight'], 'g')})"
                for o in s["outputs"]))
        print(f"total parameters: {t['params']:,}")
        print(f"trainable: {t['trainable']:,}")
        print(f"non-trainable: {t['non_trainable']:,} (layer state)")
        print(f"parameter memory: {memory or '0 B'}")
        print(f"activation memory per sample: {human_bytes(t['activation_bytes_per_sample'])} "
              "(forward, evaluation mode)")
        for name, m in s["memory_plan"].items():
            step = "training step" if name == "train" else "evaluation step"
            print(f"planned memory, {step} at batch {m['batch']}: "
                  f"{human_bytes(m['arena_bytes'])} in one arena ({m['buffers']} buffers, "
                  f"{m['in_place']} written in place, {m['views']} views; at most "
                  f"{human_bytes(m['live_peak_bytes'])} alive at once; without the plan "
                  f"{human_bytes(m['unplanned_peak_bytes'])})")
    guarded(run)
