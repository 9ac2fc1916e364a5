"""`nnctl export-graph CONFIG`: the model's computation graph as DOT or JSON."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Optional

import typer

from nnctl.cli.app import app, guarded


@app.command("export-graph")
def export_graph(
    config: Annotated[Path, typer.Argument(
        help="The run config (YAML): its training graph; or a run folder (or "
             "runs/<config>-latest): its inference graph with the trained weights.")],
    fmt: Annotated[str, typer.Option(
        "--format", "-f", help="dot, json, mermaid, svg / png (drawn by Graphviz's dot), or "
                               "onnx (a run's model, checked in ONNX Runtime).")] = "dot",
    weights: Annotated[Optional[Path], typer.Option(
        "--weights", help="A run folder whose trained weights the config's model is exported "
                          "with (onnx, json); the same as giving the run folder.")] = None,
    opset: Annotated[int, typer.Option(
        "--opset", help="The ONNX opset to write (14-21).")] = 17,
    recurrent: Annotated[str, typer.Option(
        "--recurrent", help="ONNX: recurrent layers as ONNX's own LSTM / GRU / RNN nodes "
                            "(nodes, faster) or as their unrolled ops (unrolled).")] = "nodes",
    level: Annotated[str, typer.Option(
        "--level", help="ops (every elementary op, grouped by layer) or layers (one box per "
                        "layer with its output shape and parameters).")] = "ops",
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Write here instead of standard output.")] = None,
    backward: Annotated[bool, typer.Option(
        "--backward", help="Include the gradient nodes.")] = False,
    optimizer: Annotated[bool, typer.Option(
        "--optimizer", help="Include the optimizer's update of every parameter after its "
                            "gradient (implies --backward).")] = False,
    batch: Annotated[Optional[int], typer.Option(
        min=1, help="Batch size of the drawn graph (default: train.batch_size).")] = None,
    passes: Annotated[bool, typer.Option(
        "--passes", help="Write the whole training step before and after each compile pass "
        "(DOT and JSON per stage) into the folder -o (default: CONFIG-passes) and print "
        "nodes, bytes and rewrites per pass.")] = False,
    memory: Annotated[bool, typer.Option(
        "--memory", help="Print the compiled training step's memory plan: the arena "
        "allocated once before training, the peak alive, and its largest buffers "
        "(with -o: the whole plan as JSON).")] = False,
) -> None:
    """Write the training graph (forward and loss; --backward adds the gradients, --optimizer
    also the optimizer's update).

    Given a run folder (or --weights RUN_DIR), the model it predicts with instead: -f onnx
    writes an ONNX model, -f json the graph the NumPy runner reads (docs/runner.md), the
    drawings its inference graph.

    Examples: [bold]nnctl export-graph configs/digits_mlp.yaml -o mlp.dot && dot -Tsvg mlp.dot[/]
    and [bold]nnctl export-graph runs/digits_mlp-latest -f onnx -o mlp.onnx[/]
    """
    def run():
        from nnctl.config import load_config
        from nnctl.errors import UsageError
        from nnctl.export import FORMATS, export_graph as export
        from nnctl.cli.export_model import is_run_folder
        from nnctl.train.run_dir import check_writable_folder

        if output is not None:  # before the work: a read-only or missing place fails at once
            check_writable_folder(output if passes else output.parent, "--output")
        of_run = weights is not None or fmt == "onnx" or is_run_folder(config) or \
            config.suffix.lower() not in (".yaml", ".yml")
        if of_run and not (passes or memory or level == "layers"):
            if optimizer:
                raise UsageError("--optimizer draws a config's training step; a run exports "
                                 "the inference graph it predicts with (give the config for "
                                 "--optimizer)")
            _export_model(config, weights, fmt, output, opset, backward, recurrent)
            return
        if config.suffix.lower() not in (".yaml", ".yml") or config.is_dir():
            from nnctl.train.run_dir import resolve_run_dir  # a run folder's own config
            config_path = resolve_run_dir(config) / "config.yaml"
        else:
            config_path = config
        if passes:
            _export_passes(load_config(config_path), output or Path(f"{config.stem}-passes"),
                           batch)
            return
        if memory:
            _export_memory(load_config(config_path), output, batch)
            return
        picture = fmt in ("svg", "png")
        if fmt not in FORMATS and not picture:
            raise UsageError(f"--format: expected one of {', '.join(FORMATS)}, svg or png, got "
                             f"{fmt!r}")
        if picture and output is None:
            raise UsageError(f"--format {fmt} writes a picture: give -o FILE.{fmt}")
        if picture and shutil.which("dot") is None:
            raise UsageError(f"--format {fmt} needs Graphviz's dot on the PATH (e.g. apt install "
                             "graphviz); or write --format dot and draw it elsewhere")
        if level not in ("ops", "layers"):
            raise UsageError(f"--level: expected ops or layers, got {level!r}")
        if level == "layers" and backward:
            raise UsageError("--backward draws gradient ops; it needs --level ops")
        if level == "layers" and optimizer:
            raise UsageError("--optimizer draws the optimizer's update ops; it needs --level ops")
        text = export(load_config(config_path), "dot" if picture else fmt, backward=backward,
                      batch=batch, level=level, optimizer=optimizer)
        _write_text(text, fmt, output)
    guarded(run)


def _write_text(text: str, fmt: str, output) -> None:
    """DOT drawn to a picture (svg, png), or the text on standard output or into a file."""
    from nnctl.train.run_dir import atomic_write
    if fmt in ("svg", "png"):
        _draw(text, fmt, output)
    elif output is None:
        print(text, end="")
        return
    else:
        atomic_write(output, lambda f: f.write(text.encode()))
    print(f"wrote {output}")


def _export_model(source_path: Path, weights, fmt: str, output, opset: int,
                  backward: bool, recurrent: str = "nodes") -> None:
    """A run's model (or a config's, with its initial weights) as ONNX, as the runner's JSON,
    or drawn as its inference graph."""
    from nnctl.backend import get_backend
    from nnctl.errors import UsageError
    from nnctl.cli.export_model import export_source, inference_json, inference_view, \
        write_onnx

    if fmt not in ("onnx", "json", "dot", "mermaid", "svg", "png"):
        raise UsageError(f"--format: expected onnx, json, dot, mermaid, svg or png, got {fmt!r}")
    if recurrent not in ("nodes", "unrolled"):
        raise UsageError(f"--recurrent: expected nodes or unrolled, got {recurrent!r}")
    if backward:
        raise UsageError("--backward draws a config's training graph; a run exports the "
                         "inference graph it predicts with (give the config for --backward)")
    if fmt in ("onnx", "svg", "png") and output is None:
        raise UsageError(f"--format {fmt} writes a file: give -o FILE.{fmt}")
    if fmt in ("svg", "png") and shutil.which("dot") is None:
        raise UsageError(f"--format {fmt} needs Graphviz's dot on the PATH (e.g. apt install "
                         "graphviz); or write --format dot and draw it elsewhere")
    source = export_source(source_path, weights, get_backend("cpu"))
    if not source.trained:
        print(f"note: {source.where}, untrained; give a run folder or --weights RUN_DIR for "
              "a trained model")
    if fmt == "onnx":
        for line in write_onnx(source, output, opset, recurrent == "nodes"):
            print(line)
        return
    if fmt == "json":
        text = inference_json(source)
    else:
        view = inference_view(source)
        if fmt == "mermaid":
            from nnctl.export.mermaid import to_mermaid
            text = to_mermaid(view, source.title)
        else:
            from nnctl.export.dot import to_dot
            text = to_dot(view, source.title)
    _write_text(text, fmt, output)


def _export_passes(config, folder: Path, batch) -> None:
    """Write the stages with nnctl.export.export_passes and print what each pass did."""
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    from nnctl.export import export_passes

    done = export_passes(config, folder, batch)
    table = Table(title=f"compile passes of {config.name} (training step, batch "
                        f"{batch or config.spec.train.batch_size})")
    for column in ("stage", "nodes", "change", "bytes", "change", "rewrites"):
        table.add_column(column, justify="left" if column in ("stage", "rewrites") else "right")
    table.add_row("input", str(done.stages[0][1]), "", f"{done.stages[0][2]:,}", "", "")
    for s in done.stats:
        table.add_row(s.name, str(s.nodes_after), f"{s.nodes_after - s.nodes_before:+d}",
                      f"{s.bytes_after:,}", f"{s.bytes_after - s.bytes_before:+,}",
                      str(len(s.rewrites)) if s.rewrites else "")
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 120  # a log file has no width; keep rows on one line
    console.print(table)
    for s in done.stats:
        if s.name == "stabilize_numerics":
            console.print(f"numerics rewrites: {len(s.rewrites) or 'none'}")
            for pattern, scope in s.rewrites:
                console.print(f"  {pattern}  [dim]in {scope or '(no layer)'}[/]")
        elif s.rewrites:
            counts = Counter(p for p, _ in s.rewrites)
            console.print(f"{s.name} rewrites:")
            for pattern, n in counts.most_common():
                console.print(f"  {n:4d}  {pattern}")
    console.print(f"wrote {len(done.stages)} stages (DOT and JSON) and passes.json to {folder}")


def _export_memory(config, output, batch) -> None:
    from rich.console import Console
    from rich.table import Table

    from nnctl.cli.summary import human_bytes
    from nnctl.export.memory import memory_plan

    plan = memory_plan(config, batch)
    if output is not None:
        import json

        from nnctl.train.run_dir import atomic_write
        text = json.dumps(plan, indent=2) + "\n"
        atomic_write(output, lambda f: f.write(text.encode()))
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 120
    rows = sorted(plan["buffers_table"], key=lambda r: -r["bytes"])
    table = Table(title=f"memory plan of {config.name}: training step at batch {plan['batch']} "
                        f"({len(rows)} buffers, largest first)")
    for column in ("op", "layer", "shape", "bytes", "offset", "alive in steps"):
        table.add_column(column, justify="right" if column in ("bytes", "offset") else "left")
    for r in rows[:20]:
        table.add_row(r["op"], r["layer"], f"{r['dtype']}[{', '.join(r['shape'])}]",
                      f"{r['bytes']:,}", f"{r['offset']:,}",
                      f"{r['first_step']}-{r['last_step']}")
    console.print(table)
    print(f"arena: {human_bytes(plan['arena_bytes'])}, allocated once before the first step "
          f"({plan['in_place']} results written in place, {plan['views']} views)")
    print(f"most bytes alive at once: {human_bytes(plan['live_peak_bytes'])}; an interpreter "
          f"allocating every result would peak at {human_bytes(plan['unplanned_peak_bytes'])}")
    if output is not None:
        print(f"wrote {output}")


def _draw(dot_text: str, fmt: str, output: Path) -> None:
    """Graphviz's dot renders the DOT text to `output` (written whole or not at all)."""
    import subprocess

    from nnctl.errors import UsageError
    from nnctl.train.run_dir import atomic_write
    result = subprocess.run(["dot", f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
                            timeout=300)
    if result.returncode != 0:
        raise UsageError(f"dot -T{fmt} failed: "
                         f"{result.stderr.decode(errors='replace').strip()[:300]}")
    atomic_write(output, lambda f: f.write(result.stdout))
