"""NCCL for data-parallel training on GPUs (`distributed: {backend: nccl}`), as ChainerMN's
pure_nccl communicator: MPI starts the ranks and carries NCCL's unique id from rank 0 to the
others; the per-step gradient Allreduce and synchronised batch norm's sums then run on the
GPUs through `cupy.cuda.nccl`, without a copy to the host. Each rank uses the GPU numbered
`local rank % GPUs on the node`.

NOTE: written against CuPy's NCCL binding; it needs a machine with GPUs to run, and the CUDA
tests that exercise it skip without one (docs/distributed.md says what was measured where).
"""

from __future__ import annotations

import os

from nnctl.errors import BackendError


class NCCLCommunicator:
    """nnctl.distributed.Communicator's interface over NCCL (host arrays go through MPI)."""

    backend = "nccl"

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def __init__(self, mpi):
        try:
            import cupy
            from cupy.cuda import nccl
        except ImportError:
            raise BackendError("distributed.backend nccl needs CuPy with NCCL (pip install "
                               "cupy-cuda12x) and a GPU per rank") from None
        devices = cupy.cuda.runtime.getDeviceCount()
        if devices == 0:
            raise BackendError("distributed.backend nccl needs a GPU per rank; none found")
        local = int(os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK",
                                   os.environ.get("MPI_LOCALRANKID", mpi.rank)))
        cupy.cuda.Device(local % devices).use()
        self.cupy, self.nccl, self.mpi = cupy, nccl, mpi
        self.rank, self.size = mpi.rank, mpi.size
        uid = nccl.get_unique_id() if mpi.rank == 0 else None
        self.comm = nccl.NcclCommunicator(self.size, mpi.bcast(uid), self.rank)

    def _type(self, array) -> int:
        return {"float32": self.nccl.NCCL_FLOAT32,
                "float64": self.nccl.NCCL_FLOAT64}[str(array.dtype)]

    def _on_device(self, array) -> bool:
        return isinstance(array, self.cupy.ndarray)

    def allreduce_array(self, array):
        if not self._on_device(array):
            return self.mpi.allreduce_array(array)
        array = self.cupy.ascontiguousarray(array)
        out = self.cupy.empty_like(array)
        self.comm.allReduce(array.data.ptr, out.data.ptr, array.size, self._type(array),
                            self.nccl.NCCL_SUM, self.cupy.cuda.get_current_stream().ptr)
        return out

    def allreduce_(self, buffer) -> None:
        if not self._on_device(buffer):
            self.mpi.allreduce_(buffer)
            return
        self.comm.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, self._type(buffer),
                            self.nccl.NCCL_SUM, self.cupy.cuda.get_current_stream().ptr)

    def bcast(self, value):
        return self.mpi.bcast(value)

    def bcast_arrays_(self, arrays: list) -> None:
        for array in arrays:
            if not self._on_device(array):
                self.mpi.bcast_arrays_([array])
                continue
            self.comm.bcast(array.data.ptr, array.size, self._type(array), 0,
                            self.cupy.cuda.get_current_stream().ptr)

    def barrier(self) -> None:
        self.mpi.barrier()

    def abort(self, code: int) -> None:
        self.mpi.abort(code)

    def describe(self) -> str:
        return f"{self.size} processes (NCCL {self.nccl.get_version()} over MPI)"
