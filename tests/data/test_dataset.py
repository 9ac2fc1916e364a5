"""Dataset, split, Normalizer and batch_indices."""

import json

import numpy as np
import pytest

from nnctl.data import Dataset, Normalizer, batch_indices, split
from nnctl.errors import DataError


def make_ds(counts=(60, 30, 10), features=(3,)):
    y = np.concatenate([np.full(c, k, dtype=np.int64) for k, c in enumerate(counts)])
    x = np.arange(len(y) * int(np.prod(features)), dtype=np.float32).reshape(len(y), *features)
    return Dataset(x, y, "toy")


def test_dataset_basics():
    ds = make_ds()
    assert len(ds) == 100
    assert ds.num_classes == 3
    sub = ds.subset([5, 0, 99])
    assert sub.name == "toy"
    np.testing.assert_array_equal(sub.y, [0, 0, 2])
    np.testing.assert_array_equal(sub.x[0], ds.x[5])
    empty = ds.subset([])
    assert empty.x.shape == (0, 3) and empty.y.shape == (0,)
    reg = Dataset(np.zeros((4, 2), np.float32), np.zeros(4, np.float32))
    assert reg.num_classes is None
    with pytest.raises(ValueError, match="4 samples but y has 3"):
        Dataset(np.zeros((4, 2), np.float32), np.zeros(3, np.int64))


def test_split_sizes_stratified_disjoint():
    ds = make_ds()
    train, val, test = split(ds, 0.2, 0.1, seed=0)
    assert (len(train), len(val), len(test)) == (70, 20, 10)
    # Every sample appears in exactly one split (x rows are unique by construction).
    ids = np.concatenate([s.x[:, 0] for s in (train, val, test)])
    assert sorted(ids.tolist()) == sorted(ds.x[:, 0].tolist())
    # Stratified: 60/30/10 class mix kept in each split.
    assert np.bincount(val.y, minlength=3).tolist() == [12, 6, 2]
    assert np.bincount(test.y, minlength=3).tolist() == [6, 3, 1]
    assert np.bincount(train.y, minlength=3).tolist() == [42, 21, 7]
    # Pairs (x, y) stay together.
    np.testing.assert_array_equal(ds.y[(train.x[:, 0] // 3).astype(int)], train.y)


def test_split_deterministic_and_seed_dependent():
    ds = make_ds()
    a = split(ds, 0.25, 0.25, seed=7)
    b = split(ds, 0.25, 0.25, seed=7)
    c = split(ds, 0.25, 0.25, seed=8)
    for s, t in zip(a, b):
        np.testing.assert_array_equal(s.x, t.x)
        np.testing.assert_array_equal(s.y, t.y)
    assert not np.array_equal(a[1].x, c[1].x)


def test_split_zero_fraction_gives_empty_with_shape():
    ds = make_ds(features=(2, 2))
    train, val, test = split(ds, 0.0, 0.3, seed=0)
    assert val.x.shape == (0, 2, 2) and val.y.shape == (0,) and val.y.dtype == np.int64
    assert len(train) == 70 and len(test) == 30


def test_split_regression_targets_unstratified():
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    ds = Dataset(x, np.linspace(0, 1, 10).astype(np.float32))
    train, val, test = split(ds, 0.2, 0.2, seed=3)
    assert (len(train), len(val), len(test)) == (6, 2, 2)
    assert sorted(np.concatenate([train.x, val.x, test.x])[:, 0].tolist()) == list(range(10))


def test_split_stratified_keeps_rare_class_counts_exact():
    ds = make_ds(counts=(97, 3))
    train, val, test = split(ds, 0.1, 0.1, seed=0)
    assert (len(train), len(val), len(test)) == (80, 10, 10)
    total = [np.bincount(s.y, minlength=2) for s in (train, val, test)]
    assert sum(t[1] for t in total) == 3


@pytest.mark.parametrize("val,test,msg", [
    (-0.1, 0.2, "val_fraction must be a number >= 0"),
    (0.2, float("nan"), "test_fraction must be a number >= 0"),
    (0.5, 0.5, "must be < 1"),
])
def test_split_bad_fractions(val, test, msg):
    with pytest.raises(ValueError, match=msg):
        split(make_ds(), val, test, seed=0)


def test_split_nonzero_fraction_that_rounds_to_empty():
    ds = make_ds(counts=(3, 2))
    with pytest.raises(ValueError, match="val split would be empty: 5 samples"):
        split(ds, 0.05, 0.2, seed=0)
    with pytest.raises(ValueError, match="train split would be empty: 2 samples"):
        split(make_ds(counts=(1, 1)), 0.3, 0.3, seed=0)


def test_normalizer_standard():
    rng = np.random.default_rng(0)
    x = rng.normal([3.0, -2.0, 5.0], [2.0, 0.5, 1.0], size=(500, 3)).astype(np.float32)
    x[:, 2] = 5.0  # constant feature
    norm = Normalizer.fit(x, "standard")
    z = norm.apply(x)
    assert z.dtype == np.float64  # the caller casts to the run's dtype
    np.testing.assert_allclose(z.mean(axis=0), [0, 0, 0], atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), [1, 1, 0], atol=1e-5)
    assert np.all(z[:, 2] == 0)  # no division by zero
    np.testing.assert_allclose(norm.offset[:2], x[:, :2].astype(np.float64).mean(axis=0))


def test_normalizer_minmax_and_none_and_multidim():
    x = np.array([[[0, 10]], [[5, 10]], [[10, 10]]], dtype=np.float32)  # (3, 1, 2)
    z = Normalizer.fit(x, "minmax").apply(x)
    assert z.shape == (3, 1, 2)
    np.testing.assert_allclose(z[:, 0, 0], [0, 0.5, 1])
    np.testing.assert_allclose(z[:, 0, 1], [0, 0, 0])
    ident = Normalizer.fit(x, "none").apply(x)
    np.testing.assert_array_equal(ident, x)
    with pytest.raises(ValueError, match="one of standard, minmax, none"):
        Normalizer.fit(x, "zscore")


def test_normalizer_dict_roundtrip_through_json():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4))
    norm = Normalizer.fit(x, "standard")
    d = json.loads(json.dumps(norm.to_dict()))
    back = Normalizer.from_dict(d)
    assert back.method == "standard"
    np.testing.assert_array_equal(back.offset, norm.offset)
    np.testing.assert_array_equal(back.scale, norm.scale)
    np.testing.assert_array_equal(back.apply(x), norm.apply(x))


def test_normalizer_errors_are_data_errors():
    norm = Normalizer.fit(np.ones((4, 3)), "standard")
    with pytest.raises(DataError, match=r"fitted on samples of shape \(3,\), got samples of "
                                        r"shape \(2,\)"):
        norm.apply(np.ones((4, 2)))
    with pytest.raises(DataError, match="normalizer: expected a mapping"):
        Normalizer.from_dict({"method": "standard"})
    bad = norm.to_dict() | {"scale": [1.0, 0.0, 1.0]}
    with pytest.raises(DataError, match="scale finite and > 0"):
        Normalizer.from_dict(bad)


@pytest.mark.parametrize("n,bs", [(10, 3), (9, 3), (1, 5), (0, 4), (100, 1)])
def test_batch_indices_cover_each_index_once(n, bs):
    rng = np.random.default_rng(0)
    batches = list(batch_indices(n, bs, shuffle=True, rng=rng))
    sizes = [len(b) for b in batches]
    assert len(batches) == -(-n // bs)
    assert all(s == bs for s in sizes[:-1]) and (not sizes or 1 <= sizes[-1] <= bs)
    assert sorted(np.concatenate(batches or [np.array([], int)]).tolist()) == list(range(n))


def test_batch_indices_deterministic_and_ordered_without_shuffle():
    a = list(batch_indices(20, 6, True, np.random.default_rng(5)))
    b = list(batch_indices(20, 6, True, np.random.default_rng(5)))
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not np.array_equal(np.concatenate(a), np.arange(20))  # actually shuffled
    plain = list(batch_indices(7, 3, False, None))
    assert [p.tolist() for p in plain] == [[0, 1, 2], [3, 4, 5], [6]]
    # A new call with the same generator continues its stream: next epoch differs.
    rng = np.random.default_rng(5)
    e1 = np.concatenate(list(batch_indices(20, 6, True, rng)))
    e2 = np.concatenate(list(batch_indices(20, 6, True, rng)))
    assert not np.array_equal(e1, e2)


def test_batch_indices_bad_args():
    with pytest.raises(ValueError, match="batch_size >= 1"):
        list(batch_indices(10, 0, False, None))
    with pytest.raises(ValueError, match="needs a numpy Generator"):
        list(batch_indices(10, 2, True, None))
