"""The `logging:` section: where a run's scalars go besides metrics.jsonl (dashboards)."""

from __future__ import annotations

from dataclasses import dataclass

from nnctl.config.validate import boolean, field, integer


@dataclass(frozen=True)
class LoggingSpec:
    tensorboard: bool = field(boolean, False, "write per-epoch scalars as TensorBoard event "
                              "files into <run folder>/tensorboard/ (pip install "
                              "'nnctl[tensorboard]')")
    every_steps: int = field(integer(min=0), 0, "also write the running training loss (and "
                             "accuracy) every this many steps; 0: per epoch only")
