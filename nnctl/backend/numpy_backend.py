"""The CPU backend: NumPy."""

from __future__ import annotations

import numpy

from nnctl.backend.base import Backend


class NumpyBackend(Backend):
    name = "cpu"
    xp = numpy

    def rng(self, seed):
        return numpy.random.default_rng(seed)

    def asarray(self, host_array, dtype=None):
        return numpy.ascontiguousarray(host_array, dtype=dtype)

    def to_host(self, array):
        return numpy.asarray(array)
