"""The `logging:` section (where a run's scalars go besides metrics.jsonl: dashboards) and the
`distributed:` section (how data-parallel ranks communicate)."""

from __future__ import annotations

from dataclasses import dataclass

from nnctl.config.validate import boolean, choice, field, integer


@dataclass(frozen=True)
class LoggingSpec:
    tensorboard: bool = field(boolean, False, "write per-epoch scalars as TensorBoard event "
                              "files into <run folder>/tensorboard/ (pip install "
                              "'nnctl[tensorboard]')")
    every_steps: int = field(integer(min=0), 0, "also write the running training loss (and "
                             "accuracy) every this many steps; 0: per epoch only")


@dataclass(frozen=True)
class DistributedSpec:
    """`distributed:` how the ranks of a data-parallel run (mpiexec -n N nnctl train, or
    nnctl train --ranks N) exchange gradients; a single process ignores it."""
    backend: str = field(choice("mpi", "nccl"), "mpi", "mpi: MPI Allreduce through mpi4py "
                         "(CPU arrays); nccl: NCCL through CuPy on GPUs, bootstrapped over MPI")
