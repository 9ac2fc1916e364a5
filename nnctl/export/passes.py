"""The training step's graph before and after each compile pass: DOT and JSON per stage, and
the node counts, bytes and rewrites per pass (`nnctl export-graph CONFIG --passes`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nnctl.compile.passes import PASSES, PassStat, result_bytes, run_passes
from nnctl.config import Config
from nnctl.export.dot import to_dot
from nnctl.export.graph_view import GraphView
from nnctl.export.json_export import to_json
from nnctl.graph.ir import Graph
from nnctl.step import prepare


@dataclass
class PassesExport:
    """What export_passes wrote: the files of each stage and the statistics of each pass."""

    folder: Path
    stages: list[tuple[str, int, int, list[Path]]]  # (stage, nodes, bytes, files)
    stats: list[PassStat]

    @property
    def numerics(self) -> list[tuple[str, str]]:
        """(pattern, scope) of every rewrite the numerics pass made."""
        return [r for s in self.stats if s.name == "stabilize_numerics" for r in s.rewrites]


def export_passes(config: Config, folder: Path, batch: int | None = None,
                  passes=PASSES) -> PassesExport:
    """Write `NN-<stage>.dot` and `NN-<stage>.json` into `folder` for the training step's
    graph (loss, output, gradients, new layer state) as built (`00-input`) and after each
    pass, and `passes.json` with one row per pass; return what was written."""
    _, builder = prepare(config)
    batch = batch or config.spec.train.batch_size
    outputs, _ = builder.training_step(batch)
    names = ["loss", "output", *(f"grad {n}" for n in builder.params),
             *(f"state {n}" for n in builder.states)]
    folder.mkdir(parents=True, exist_ok=True)
    stages: list[tuple[str, int, int, list[Path]]] = []

    def write(stage: str, graph: Graph) -> None:
        view = GraphView.of_graph(graph, names, forward=list(graph.outputs[:2]))
        stem = folder / f"{len(stages):02d}-{stage}"
        files = [stem.with_suffix(".dot"), stem.with_suffix(".json")]
        files[0].write_text(to_dot(view, f"{config.name} {stage}"))
        files[1].write_text(to_json(view, config.name, batch=batch, backward_included=True,
                                    stage=stage))
        stages.append((stage, len(graph), result_bytes(graph), files))

    _, stats = run_passes(Graph([t.node for t in outputs]), passes, on_stage=write)
    summary = {"title": config.name, "batch": batch,
               "passes": [{"name": s.name, "nodes_before": s.nodes_before,
                           "nodes_after": s.nodes_after, "bytes_before": s.bytes_before,
                           "bytes_after": s.bytes_after,
                           "rewrites": [{"pattern": p, "scope": sc} for p, sc in s.rewrites]}
                          for s in stats]}
    (folder / "passes.json").write_text(json.dumps(summary, indent=1) + "\n")
    return PassesExport(folder, stages, stats)
