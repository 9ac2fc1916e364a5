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
        # NOTE: not ascontiguousarray, which turns a 0-d array (a scalar constant) into 1-d
        array = numpy.asarray(host_array, dtype=dtype)
        return array if array.flags.c_contiguous else numpy.ascontiguousarray(array)

    def to_host(self, array):
        return numpy.asarray(array)
