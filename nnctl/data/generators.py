"""Synthetic data sets, generated on demand from a seed (nothing to ship or download)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from nnctl.data.dataset import Dataset

# `noise` is measured in tenths of the outer radius: sigma = 0.1 * noise. With the default
# 1.5 turns neighbouring arms are 1/3 apart, so noise=0.2 (sigma 0.02) keeps the classes
# apart everywhere except the very centre, and noise around 1 makes them overlap heavily.
_NOISE_UNIT = 0.1


def make_spirals(n_samples: int = 1000, noise: float = 0.2, turns: float = 1.5,
                 seed: int = 0) -> Dataset:
    """Two interleaved spirals in 2-D (Lang & Witbrock's benchmark), classes 0 and 1.

    Each point sits at t ~ U(0, 1) along its arm: radius t, angle 2*pi*turns*t; class 1 is
    class 0 turned by pi. Coordinates lie in about [-1, 1]; gaussian noise with standard
    deviation 0.1 * noise is added to both. Class sizes differ by at most one; rows shuffled."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) \
            or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    if not (isinstance(noise, numbers.Real) and math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    if not (isinstance(turns, numbers.Real) and math.isfinite(turns) and turns > 0):
        raise ValueError(f"turns must be a finite number > 0, got {turns!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")

    rng = np.random.default_rng(seed)
    n = int(n_samples)
    y = np.arange(n) % 2  # alternate classes so the two counts differ by at most one
    t = rng.uniform(0.0, 1.0, n)
    angle = 2 * np.pi * turns * t + np.pi * y
    x = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    x += rng.normal(0.0, _NOISE_UNIT * noise, x.shape)
    order = rng.permutation(n)
    return Dataset(x[order].astype(np.float32), y[order].astype(np.int64), "spirals")
