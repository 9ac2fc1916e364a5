"""make_spirals: shape, balance, range, determinism, and that the default is learnable."""

import numpy as np
import pytest

from nnctl.data import make_spirals, split


def test_spirals_shape_dtype_balance():
    ds = make_spirals()
    assert ds.name == "spirals" and len(ds) == 1000
    assert ds.x.dtype == np.float32 and ds.x.shape == (1000, 2)
    assert ds.y.dtype == np.int64 and ds.num_classes == 2
    assert np.bincount(ds.y).tolist() == [500, 500]
    odd = make_spirals(n_samples=7)
    assert sorted(np.bincount(odd.y).tolist()) == [3, 4]


def test_spirals_range():
    ds = make_spirals(n_samples=5000, noise=0.2)
    r = np.linalg.norm(ds.x, axis=1)
    assert np.abs(ds.x).max() < 1.2  # radius <= 1 plus a few noise sigmas (0.02)
    assert r.max() > 0.95 and r.min() < 0.05  # radius runs from ~0 to ~1
    clean = make_spirals(n_samples=2000, noise=0.0)
    assert np.linalg.norm(clean.x, axis=1).max() <= 1.0 + 1e-6


def test_spirals_classes_are_point_reflections_without_noise():
    # Class 1 is class 0 turned by pi: with no noise, each point lies on its class's arm
    # r = t, angle = 2*pi*turns*t (+pi for class 1).
    ds = make_spirals(n_samples=400, noise=0.0, turns=1.5, seed=3)
    r = np.linalg.norm(ds.x.astype(np.float64), axis=1)
    expected = 2 * np.pi * 1.5 * r + np.pi * ds.y
    got = np.arctan2(ds.x[:, 1], ds.x[:, 0])
    diff = np.angle(np.exp(1j * (got - expected)))  # wrap to (-pi, pi]
    assert np.abs(diff).max() < 1e-4


def test_spirals_deterministic_and_seeded():
    a, b, c = make_spirals(seed=5), make_spirals(seed=5), make_spirals(seed=6)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)


def test_spirals_rows_shuffled():
    y = make_spirals(n_samples=200).y
    # Not the generation order 0,1,0,1,...
    assert not np.array_equal(y, np.arange(200) % 2)


def nn1_accuracy(train, test):
    d = ((test.x[:, None, :] - train.x[None, :, :]) ** 2).sum(-1)
    return float((train.y[d.argmin(1)] == test.y).mean())


def test_spirals_default_noise_is_learnable_and_large_noise_is_hard():
    # 1-nearest-neighbour as a cheap stand-in for a small MLP: the default data must be
    # almost separable, heavy noise must not be.
    easy = split(make_spirals(noise=0.2), 0.0, 0.2, seed=0)
    assert nn1_accuracy(easy[0], easy[2]) >= 0.97
    hard = split(make_spirals(noise=2.0), 0.0, 0.2, seed=0)
    assert nn1_accuracy(hard[0], hard[2]) < 0.85


@pytest.mark.parametrize("kwargs,msg", [
    ({"n_samples": 1}, "n_samples must be an integer >= 2"),
    ({"n_samples": 10.5}, "n_samples must be an integer >= 2"),
    ({"noise": -0.1}, "noise must be a finite number >= 0"),
    ({"noise": float("inf")}, "noise must be a finite number >= 0"),
    ({"turns": 0}, "turns must be a finite number > 0"),
    ({"seed": "a"}, "seed must be an integer"),
])
def test_spirals_bad_arguments(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        make_spirals(**kwargs)
