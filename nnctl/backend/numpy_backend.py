"""The CPU backend: NumPy."""

from __future__ import annotations

import numpy

from nnctl.backend.base import Backend


_blas_warm = False


class NumpyBackend(Backend):
    name = "cpu"
    xp = numpy

    def warm_up(self) -> None:
        """One float32 GEMM of 384^3 (~3 ms), once per process, before the first plan runs.

        Measured with NumPy's OpenBLAS 0.3.31 on this project's machine (docs/performance.md):
        until a process has run one GEMM with every size at least 384, the small GEMMs with a
        long inner dimension that weight gradients are ([128, 1024] @ [1024, 128]) take 2.4x
        as long (2.3 ms against 0.95), so the benchmark transformer's step took 52 ms on one
        thread where it takes 35 once warm. A model whose own GEMMs are never that large
        (the transformers, the LSTMs) would otherwise pay it on every step of a run."""
        global _blas_warm
        if not _blas_warm:
            _blas_warm = True
            a = numpy.ones((384, 384), dtype=numpy.float32)
            a @ a

    def rng(self, seed):
        return numpy.random.default_rng(seed)

    def asarray(self, host_array, dtype=None):
        # NOTE: not ascontiguousarray, which turns a 0-d array (a scalar constant) into 1-d
        array = numpy.asarray(host_array, dtype=dtype)
        return array if array.flags.c_contiguous else numpy.ascontiguousarray(array)

    def to_host(self, array):
        return numpy.asarray(array)
