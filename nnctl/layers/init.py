"""Weight initialisers and constant tables. They run on the host with the run's seeded NumPy
generator, so the initial weights are the same on every device."""

from __future__ import annotations

import math

import numpy


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a dense weight [in, out]; other layers pass their own."""
    if len(shape) == 1:
        return shape[0], shape[0]
    return shape[0], shape[1]


def glorot_uniform(rng, shape, dtype, fan_in, fan_out):
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def glorot_normal(rng, shape, dtype, fan_in, fan_out):
    return (rng.standard_normal(shape) * math.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)


def he_uniform(rng, shape, dtype, fan_in, fan_out):
    limit = math.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def he_normal(rng, shape, dtype, fan_in, fan_out):
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


def normal(rng, shape, dtype, fan_in, fan_out):
    return rng.standard_normal(shape).astype(dtype)


def zeros(rng, shape, dtype, fan_in, fan_out):
    return numpy.zeros(shape, dtype=dtype)


def ones(rng, shape, dtype, fan_in, fan_out):
    return numpy.ones(shape, dtype=dtype)


INITIALIZERS = {"glorot_uniform": glorot_uniform, "glorot_normal": glorot_normal,
                "he_uniform": he_uniform, "he_normal": he_normal, "normal": normal,
                "zeros": zeros, "ones": ones}


def sinusoidal_table(length: int, dim: int, dtype: str):
    """The transformer's positional encodings (Vaswani et al. 2017): [length, dim]."""
    position = numpy.arange(length)[:, None]
    rate = numpy.exp(-math.log(10000.0) * (numpy.arange(0, dim, 2) / dim))
    table = numpy.zeros((length, dim))
    table[:, 0::2] = numpy.sin(position * rate)
    table[:, 1::2] = numpy.cos(position * rate[: dim // 2])
    return table.astype(dtype)
