"""The CUDA backend: CuPy. The only module that imports cupy, and only when asked for."""

from __future__ import annotations

from nnctl.backend.base import Backend
from nnctl.errors import BackendError


class CupyBackend(Backend):
    name = "cuda"

    def __init__(self):
        try:
            import cupy
        except ImportError:
            from nnctl.extras import install_hint
            raise BackendError("--device cuda needs CuPy on a machine with an NVIDIA GPU: "
                               + install_hint("cuda", "cupy-cuda12x")) from None
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as err:  # CuPy raises its own CUDARuntimeError without a driver
            raise BackendError(f"--device cuda: no usable CUDA GPU ({err}); "
                               "use --device cpu") from None
        if count == 0:
            raise BackendError("--device cuda: CuPy found no CUDA GPU; use --device cpu")
        self.xp = cupy

    def rng(self, seed):
        import numpy
        # cupy's default_rng wants an int seed; derive one from the SeedSequence deterministically
        if isinstance(seed, numpy.random.SeedSequence):
            seed = int(seed.generate_state(1, dtype="uint64")[0])
        return self.xp.random.default_rng(seed)

    def asarray(self, host_array, dtype=None):
        return self.xp.asarray(host_array, dtype=dtype)

    def to_host(self, array):
        return self.xp.asnumpy(array)

    def synchronize(self) -> None:
        self.xp.cuda.Stream.null.synchronize()
