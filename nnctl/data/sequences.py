"""Synthetic sequence tasks for recurrent models, generated on demand from a seed.

Both are classic tests of memory over time steps: parity needs every step of the sequence,
the adding problem needs two values seen far apart.
"""

from __future__ import annotations

import numbers

import numpy as np

from nnctl.data.dataset import Dataset


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def make_parity(n_samples: int = 2000, length: int = 12, seed: int = 0) -> Dataset:
    """Bit strings labelled with their parity: x int64 (N, length) of 0/1, y int64 (N,) =
    x.sum(1) % 2.

    Classes are balanced (the counts differ by at most one). Each string is uniform among the
    strings of its parity: the first length-1 bits are fair coin flips and the last bit makes
    the parity right, which gives exactly that distribution. Rows are in random order."""
    n = _check_int("n_samples", n_samples, 2)
    length = _check_int("length", length, 1)
    rng = np.random.default_rng(_check_seed(seed))
    y = rng.permutation(np.arange(n) % 2).astype(np.int64)
    x = np.empty((n, length), dtype=np.int64)
    x[:, :-1] = rng.integers(0, 2, size=(n, length - 1))
    x[:, -1] = (y - x[:, :-1].sum(axis=1)) % 2
    return Dataset(x, y, "parity")


def make_adding(n_samples: int = 2000, length: int = 20, seed: int = 0) -> Dataset:
    """The adding problem (Hochreiter & Schmidhuber 1997; the form of Le et al. 2015):
    x float32 (N, length, 2), y float32 (N, 1).

    Channel 0 holds values drawn uniformly from [0, 1). Channel 1 is a marker that is 1 at
    exactly two steps, one drawn uniformly from the first half (steps 0 .. length//2 - 1) and
    one from the second half, and 0 elsewhere. The target is the sum of the two marked
    values, computed from the float32 values in x, so it lies in [0, 2). Predicting 1 always
    gives a mean squared error of about 1/6, the baseline a model has to beat."""
    n = _check_int("n_samples", n_samples, 1)
    length = _check_int("length", length, 2)
    rng = np.random.default_rng(_check_seed(seed))
    values = rng.random((n, length), dtype=np.float32)
    half = length // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, length, size=n)
    rows = np.arange(n)
    marker = np.zeros((n, length), dtype=np.float32)
    marker[rows, first] = 1.0
    marker[rows, second] = 1.0
    x = np.stack([values, marker], axis=-1)
    y = (values[rows, first].astype(np.float64) + values[rows, second]).astype(np.float32)
    return Dataset(x, y[:, None], "adding")
