"""Weight initialisers. They draw on the host from the run's seeded NumPy generator, so the
initial weights are the same on every device."""

from __future__ import annotations

import math

import numpy


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[0] * receptive, (shape[1] if len(shape) > 1 else shape[0]) * receptive


def glorot_uniform(rng, shape, dtype):
    fan_in, fan_out = fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def glorot_normal(rng, shape, dtype):
    fan_in, fan_out = fans(shape)
    return (rng.standard_normal(shape) * math.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)


def he_uniform(rng, shape, dtype):
    limit = math.sqrt(6.0 / fans(shape)[0])
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def he_normal(rng, shape, dtype):
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fans(shape)[0])).astype(dtype)


def zeros(rng, shape, dtype):
    return numpy.zeros(shape, dtype=dtype)


INITIALIZERS = {"glorot_uniform": glorot_uniform, "glorot_normal": glorot_normal,
                "he_uniform": he_uniform, "he_normal": he_normal, "zeros": zeros}
