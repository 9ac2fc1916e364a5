"""Exports of a model with its weights, for `nnctl export-graph RUN_DIR`: a run folder's trained
model (or a config's initial one) as ONNX, as the runner's inference JSON, or drawn as its
inference graph."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nnctl.errors import UsageError
from nnctl.export.inference import INFERENCE_PASSES, LAYERWISE_PASSES, InferenceGraph, \
    inference_graph


@dataclass
class ExportSource:
    trainer: object          # nnctl.train.trainer.Trainer holding the weights
    title: str               # the config's name
    trained: bool            # weights of a run (else the config's initial weights)
    where: str               # what the weights came from, for messages

    def graph(self, passes=INFERENCE_PASSES) -> InferenceGraph:
        return inference_graph(self.trainer, passes)


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.yaml").is_file()


def run_title(run: Path) -> str:
    """The config name a run folder was made from (digits_mlp-20261201-050436 -> digits_mlp)."""
    from nnctl.train.run_dir import parse_run_name
    parsed = parse_run_name(run.resolve().name)
    return parsed[0] if parsed else run.resolve().name


def export_source(config_or_run: Path, weights: Path | None, backend) -> ExportSource:
    """The model to export: a run folder's (its config and weights), a config with
    `--weights RUN_DIR` (the run's weights; its model must be the config's), or a config alone
    (its initial weights, seeded)."""
    from nnctl.config import load_config
    from nnctl.train.inference import load_run
    from nnctl.train.run_dir import resolve_run_dir

    if config_or_run.is_dir() or config_or_run.suffix.lower() not in (".yaml", ".yml"):
        run = resolve_run_dir(config_or_run)  # also runs/<config>-latest
        if weights is not None:
            raise UsageError("give a run folder or a config with --weights RUN_DIR, not both")
        trainer = load_run(run, backend)
        return ExportSource(trainer, run_title(run), True, str(run))
    if weights is not None:
        run = resolve_run_dir(weights)
        trainer = load_run(run, backend)
        mine = load_config(config_or_run)
        if mine.spec.model != trainer.config.spec.model:
            raise UsageError(f"--weights: the run {run} was trained with another model than "
                             f"{config_or_run}'s; export the run folder itself "
                             f"(nnctl export-graph {run} ...)")
        return ExportSource(trainer, mine.name, True, str(run))
    from nnctl.train.trainer import Trainer
    config = load_config(config_or_run)
    trainer = Trainer(config, backend, out=None)
    return ExportSource(trainer, config.name, False,
                        f"the initial weights of {config_or_run} (seed {config.spec.seed})")


def write_onnx(source: ExportSource, output: Path, opset: int,
               recurrent_nodes: bool = True) -> list[str]:
    """Build, check (onnx.checker, full), run in ONNX Runtime at batches 1 and 7 against
    nnctl's forward, then write `output` atomically; the report lines. Nothing is written
    when a step fails."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        from nnctl.extras import install_hint
        raise UsageError("ONNX export needs the onnx package: "
                         + install_hint("onnx", "onnx onnxruntime")) from None
    from nnctl.export.inference import reference_output, sample_inputs
    from nnctl.export.onnx_export import check, to_onnx, verify
    from nnctl.train.run_dir import atomic_write

    graph = source.graph(LAYERWISE_PASSES)
    model = to_onnx(graph, opset, source.title, recurrent_nodes)
    check(model)
    trainer = source.trainer
    lines = verify(model, graph, lambda b: sample_inputs(trainer, graph, b),
                   lambda arrays: reference_output(trainer, graph, arrays))
    data = model.SerializeToString()
    atomic_write(output, lambda f: f.write(data))
    inputs = ", ".join(f"{n.name} [{', '.join(map(str, n.aval.shape))}] "
                       f"{'float32' if n.aval.dtype.startswith('float') else n.aval.dtype}"
                       for n in graph.inputs)
    out = graph.output.aval.shape
    fused = sorted({n.op_type for n in model.graph.node} & {"LSTM", "GRU", "RNN"})
    head = [f"wrote {output} ({len(data) / 1024:,.0f} KiB): opset {opset}, "
            f"{len(model.graph.node)} ONNX nodes from {len(graph.graph.op_nodes)} nnctl ops"
            + (f" (recurrent layers as ONNX {' and '.join(fused)} nodes)" if fused else "")
            + f", weights of {source.where}",
            f"inputs: {inputs}" + (" (raw rows: the run's normaliser is in the model)"
                                   if graph.normalised else ""),
            f"output: output [{', '.join(map(str, out))}] float32"
            + (" (scores per class; softmax gives the probabilities)"
               if graph.classification else ""),
            "onnx.checker.check_model(full_check=True): passed"]
    return head + lines


def inference_json(source: ExportSource) -> str:
    from nnctl.export.inference import to_inference_json
    return to_inference_json(source.graph(), source.title, source.trainer.class_names())


def inference_view(source: ExportSource):
    """A GraphView of the inference graph, for DOT and Mermaid."""
    from nnctl.export.graph_view import GraphView
    graph = source.graph()
    return GraphView.of({"output": graph.output}, [graph.output])
