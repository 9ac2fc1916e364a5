"""make_parity and make_adding: labels computed from x, balance, marker layout, seeds, checks."""

import numpy as np
import pytest

from nnctl.data import make_adding, make_parity, split


def test_parity_shape_dtype_and_labels():
    ds = make_parity()
    assert ds.name == "parity" and len(ds) == 2000
    assert ds.x.dtype == np.int64 and ds.x.shape == (2000, 12)
    assert ds.y.dtype == np.int64 and ds.y.shape == (2000,)
    assert set(np.unique(ds.x).tolist()) == {0, 1}
    np.testing.assert_array_equal(ds.y, ds.x.sum(axis=1) % 2)
    assert ds.num_classes == 2


def test_parity_labels_balanced():
    assert np.bincount(make_parity().y).tolist() == [1000, 1000]
    assert sorted(np.bincount(make_parity(n_samples=7, length=5).y).tolist()) == [3, 4]


def test_parity_bits_are_fair_at_every_position():
    # Every position, the last included, is a fair coin (the last bit fixes the parity but
    # is still uniform), so a model cannot read the label off one position.
    ds = make_parity(n_samples=20000, length=8, seed=1)
    means = ds.x.mean(axis=0)
    assert np.all(np.abs(means - 0.5) < 0.02), means
    for k in range(8):  # no single bit predicts the label
        agree = (ds.x[:, k] == ds.y).mean()
        assert abs(agree - 0.5) < 0.02, (k, agree)


def test_parity_rows_are_not_class_ordered():
    y = make_parity(n_samples=200).y
    assert not np.array_equal(y, np.arange(200) % 2)
    assert 0 < y[:100].sum() < 100


def test_parity_length_one_is_the_bit_itself():
    ds = make_parity(n_samples=10, length=1)
    np.testing.assert_array_equal(ds.x[:, 0], ds.y)


def test_parity_deterministic_and_seeded():
    a, b, c = make_parity(seed=4), make_parity(seed=4), make_parity(seed=5)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)


def test_parity_splits_stratified():
    train, val, test = split(make_parity(), 0.1, 0.1, seed=0)
    assert np.bincount(val.y).tolist() == [100, 100]
    assert np.bincount(test.y).tolist() == [100, 100]


def test_adding_shape_dtype():
    ds = make_adding()
    assert ds.name == "adding" and len(ds) == 2000
    assert ds.x.dtype == np.float32 and ds.x.shape == (2000, 20, 2)
    assert ds.y.dtype == np.float32 and ds.y.shape == (2000, 1)
    assert ds.num_classes is None


def test_adding_values_uniform_in_unit_interval():
    v = make_adding(n_samples=5000, seed=2).x[:, :, 0]
    assert v.min() >= 0.0 and v.max() < 1.0
    assert abs(v.mean() - 0.5) < 0.01
    assert abs(v.var() - 1 / 12) < 0.005


def test_adding_exactly_two_markers_one_per_half():
    for length in (2, 3, 20, 21):
        ds = make_adding(n_samples=500, length=length, seed=3)
        m = ds.x[:, :, 1]
        assert set(np.unique(m).tolist()) <= {0.0, 1.0}
        assert np.all(m.sum(axis=1) == 2)
        half = length // 2
        assert np.all(m[:, :half].sum(axis=1) == 1), length
        assert np.all(m[:, half:].sum(axis=1) == 1), length


def test_adding_marker_positions_cover_each_half():
    m = make_adding(n_samples=4000, length=20, seed=0).x[:, :, 1]
    first, second = m[:, :10].argmax(1), m[:, 10:].argmax(1) + 10
    assert set(first.tolist()) == set(range(10))
    assert set(second.tolist()) == set(range(10, 20))


def test_adding_target_is_sum_of_marked_values():
    ds = make_adding(n_samples=1000, length=30, seed=7)
    values, marker = ds.x[:, :, 0].astype(np.float64), ds.x[:, :, 1].astype(np.float64)
    expected = (values * marker).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ds.y, expected, rtol=0, atol=1e-6)
    assert ds.y.min() >= 0.0 and ds.y.max() < 2.0
    # Spot-check one row by hand.
    i, j = np.flatnonzero(marker[0])
    assert ds.y[0, 0] == np.float32(values[0, i] + values[0, j])


def test_adding_constant_baseline_mse_is_about_one_sixth():
    y = make_adding(n_samples=20000, seed=1).y.astype(np.float64)
    assert abs(((y - 1.0) ** 2).mean() - 1 / 6) < 0.01


def test_adding_deterministic_and_seeded():
    a, b, c = make_adding(seed=9), make_adding(seed=9), make_adding(seed=10)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_samples=1), "n_samples must be an integer >= 2"),
    (dict(n_samples=10.0), "n_samples must be an integer"),
    (dict(n_samples=True), "n_samples must be an integer"),
    (dict(length=0), "length must be an integer >= 1"),
    (dict(length="12"), "length must be an integer"),
    (dict(seed=-1), "seed must be an integer >= 0"),
    (dict(seed=1.5), "seed must be an integer"),
])
def test_parity_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_parity(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_samples=0), "n_samples must be an integer >= 1"),
    (dict(length=1), "length must be an integer >= 2"),
    (dict(length=np.float64(20)), "length must be an integer"),
    (dict(seed=None), "seed must be an integer"),
])
def test_adding_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_adding(**kwargs)


def test_numpy_integer_arguments_accepted():
    assert make_parity(n_samples=np.int64(4), length=np.int32(3)).x.shape == (4, 3)
    assert make_adding(n_samples=np.int64(4), length=np.int32(3)).x.shape == (4, 3, 2)
