"""Verification metrics (nnctl.comparator_metrics) against brute force and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.comparator_metrics import VerificationTotals, best_threshold, roc_auc
from nnctl.errors import DataError


def brute_force_threshold(d, same):
    """Every candidate threshold (-inf and each d), accuracy of "same iff d <= t"; the first
    best in ascending order."""
    best_t, best_acc = None, -1.0
    for t in [-np.inf, *sorted(set(d.tolist()))]:
        acc = float(np.mean((d <= t) == (same == 1)))
        if acc > best_acc:
            best_t, best_acc = t, acc
    return best_t, best_acc


def brute_force_auc(score, positive):
    pos, neg = score[positive == 1], score[positive == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


def noisy_pairs(seed, n=300, ties=False):
    rng = np.random.default_rng(seed)
    same = rng.integers(0, 2, size=n)
    d = rng.normal(size=n) + 1.2 * (same == 0)
    if ties:  # rounded distances: many ties across the two classes
        d = np.round(d, 1)
    return d, same


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True), (2, True)])
def test_best_threshold_and_auc_equal_brute_force(seed, ties):
    d, same = noisy_pairs(seed, ties=ties)
    t, acc = best_threshold(d, same)
    assert (t, acc) == brute_force_threshold(d, same)
    assert 0.6 < acc < 1.0  # noisy: neither trivial nor perfect
    assert roc_auc(-d, same) == pytest.approx(float(brute_force_auc(-d, same)), rel=1e-12)


def test_threshold_ties_go_to_the_smaller_and_minus_inf_is_a_candidate():
    # t = 1 and t = 3 both classify 3 of 4 right: the smaller wins
    assert best_threshold(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 0, 1, 0])) == (1.0, 0.75)
    # every pair different at its best: no threshold says "same"
    assert best_threshold(np.array([1.0, 2.0]), np.array([0, 0])) == (-np.inf, 1.0)


def test_auc_matches_sklearn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    d, same = noisy_pairs(3, ties=True)
    expected = sklearn_metrics.roc_auc_score(same, -d)
    assert roc_auc(-d, same) == pytest.approx(float(expected), rel=1e-12)


def test_totals_over_batches_equal_one_pass():
    d, same = noisy_pairs(4)
    totals = VerificationTotals()
    for start in range(0, len(d), 64):
        totals.update(d[start:start + 64, None], same[start:start + 64])
    result = totals.result("test")
    assert set(result) == {"test_verification_accuracy", "test_roc_auc"}
    assert result["test_verification_accuracy"] == brute_force_threshold(d, same)[1]
    assert result["test_roc_auc"] == pytest.approx(float(brute_force_auc(-d, same)), rel=1e-12)
    assert totals.threshold() == brute_force_threshold(d, same)[0]


def test_triplets_count_the_positive_nearer_and_their_pairs_auc():
    out = np.array([[0.1, 0.5], [0.7, 0.2], [0.3, 0.3], [0.2, 0.9]])
    totals = VerificationTotals()
    totals.update(out, np.zeros(4, np.int64))
    result = totals.result("val")
    assert result["val_verification_accuracy"] == 0.5  # a tie is no success
    pairs = np.concatenate([out[:, 0], out[:, 1]])
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    assert result["val_roc_auc"] == pytest.approx(float(brute_force_auc(-pairs, labels)))


def test_one_class_gives_nan_auc_and_a_wrong_width_a_data_error():
    assert np.isnan(roc_auc(np.array([1.0, 2.0]), np.array([1, 1])))
    with pytest.raises(DataError, match=r"\[batch, 1\].*got \[4, 3\]"):
        VerificationTotals().update(np.zeros((4, 3)), np.zeros(4))


def brute_force_recall(e, labels, k):
    hits = 0
    for i in range(len(e)):
        d = [(np.sum((e[i] - e[j]) ** 2), j) for j in range(len(e)) if j != i]
        nearest = [j for _, j in sorted(d)[:k]]
        hits += any(labels[j] == labels[i] for j in nearest)
    return hits / len(e)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recall_at_k_equals_brute_force(seed):
    from nnctl.comparator_metrics import recall_at_k
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, 60)
    e = rng.normal(size=(60, 3)) + labels[:, None] * 0.7  # classes partly separated
    got = recall_at_k(e, labels, [1, 2, 4, 8])
    for k in (1, 2, 4, 8):
        assert got[k] == brute_force_recall(e, labels, k)
    assert got[1] <= got[2] <= got[4] <= got[8]
    assert 0.2 < got[1] < 1.0  # neither trivial nor perfect on this data


def test_recall_at_k_extremes():
    from nnctl.comparator_metrics import recall_at_k
    e = np.array([[0.0], [0.1], [5.0], [5.1], [9.0]])
    labels = np.array([0, 0, 1, 1, 2])  # the last is alone in its class: always a miss
    assert recall_at_k(e, labels, [1, 4]) == {1: 0.8, 4: 0.8}
    assert np.isnan(recall_at_k(e[:1], labels[:1], [1])[1])
