"""nnctl.metrics against hand-computed values (and scikit-learn where it is installed)."""

import math

import numpy as np
import pytest

from nnctl.errors import DataError
from nnctl.metrics import (ClassificationTotals, RegressionTotals, confusion_matrix,
                           precision_recall_f1, r2_score, top_k_accuracy)

Y_TRUE = [0, 0, 1, 1, 2, 2]
Y_PRED = [0, 1, 1, 1, 0, 2]
# rows true, columns predicted
CM = [[1, 1, 0],
      [0, 2, 0],
      [1, 0, 1]]


def test_confusion_matrix_rows_are_true_columns_predicted():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.dtype == np.int64 and cm.tolist() == CM
    assert confusion_matrix([2], [0], 3).tolist() == [[0, 0, 0], [0, 0, 0], [1, 0, 0]]


def test_confusion_matrix_flattens_sequences_and_checks_labels():
    cm = confusion_matrix(np.array(Y_TRUE).reshape(2, 3), np.array(Y_PRED).reshape(2, 3), 3)
    assert cm.tolist() == CM
    assert confusion_matrix([], [], 2).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(DataError, match=r"0\.\.2, got 3"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(DataError, match="got -1"):
        confusion_matrix([0, 1], [-1, 1], 3)
    with pytest.raises(DataError, match="differ in shape"):
        confusion_matrix([0, 1], [0], 3)


def test_precision_recall_f1_macro_by_hand():
    # precision per class TP/predicted = 1/2, 2/3, 1/1; recall TP/support = 1/2, 2/2, 1/2;
    # F1 = 2TP/(predicted + support) = 2/4, 4/5, 2/3
    m = precision_recall_f1(CM)
    assert m["precision_macro"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert m["recall_macro"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert m["f1_macro"] == pytest.approx((2 / 4 + 4 / 5 + 2 / 3) / 3)


def test_a_class_without_predictions_or_support_contributes_zero():
    cm = np.zeros((4, 4), np.int64)
    cm[:3, :3] = CM  # class 3: never seen, never predicted
    m = precision_recall_f1(cm)
    assert m["precision_macro"] == pytest.approx((1 / 2 + 2 / 3 + 1 + 0) / 4)
    assert m["recall_macro"] == pytest.approx((1 / 2 + 1 + 1 / 2 + 0) / 4)
    assert m["f1_macro"] == pytest.approx((2 / 4 + 4 / 5 + 2 / 3 + 0) / 4)
    # a class that occurs but is never predicted: precision 0 (0/0), recall 0, F1 0
    m = precision_recall_f1([[2, 0], [1, 0]])
    assert m["precision_macro"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["recall_macro"] == pytest.approx((1 + 0) / 2)
    assert m["f1_macro"] == pytest.approx((4 / 5 + 0) / 2)
    assert precision_recall_f1(np.zeros((2, 2))) == {
        "precision_macro": 0.0, "recall_macro": 0.0, "f1_macro": 0.0}


SCORES = np.array([[0.1, 0.5, 0.4],   # label 2 is second best
                   [0.3, 0.3, 0.4],   # label 1 ties class 0, which ranks first: third
                   [0.2, 0.2, 0.1]])  # label 0 ties class 1 and wins the tie: first
LABELS = np.array([2, 1, 0])


def test_top_k_accuracy_by_hand_with_ties_like_argmax():
    assert top_k_accuracy(SCORES, LABELS, 1) == pytest.approx(1 / 3)
    assert top_k_accuracy(SCORES, LABELS, 1) == np.mean(SCORES.argmax(-1) == LABELS)
    assert top_k_accuracy(SCORES, LABELS, 2) == pytest.approx(2 / 3)
    assert top_k_accuracy(SCORES, LABELS, 3) == 1.0
    assert top_k_accuracy(SCORES, LABELS, 5) == 1.0  # k beyond the classes counts all
    # sequence labels: [N, T, classes] over [N, T]
    assert top_k_accuracy(SCORES[None], LABELS[None], 2) == pytest.approx(2 / 3)
    assert top_k_accuracy(np.zeros((0, 3)), np.zeros(0, np.int64), 1) == 0.0
    with pytest.raises(DataError, match="scores must be"):
        top_k_accuracy(SCORES, LABELS[:2], 1)
    with pytest.raises(ValueError):
        top_k_accuracy(SCORES, LABELS, 0)


def test_r2_score_by_hand():
    # SS_res = 1, mean 2.5, SS_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5
    assert r2_score([1, 2, 3, 4], [1, 2, 3, 5]) == pytest.approx(0.8)
    assert r2_score([1, 2, 3], [1, 2, 3]) == 1.0
    # several outputs are pooled: one mean over all four values (8.25)
    y = np.array([[1.0, 10.0], [2.0, 20.0]])
    ss_tot = (1 - 8.25) ** 2 + (10 - 8.25) ** 2 + (2 - 8.25) ** 2 + (20 - 8.25) ** 2
    assert r2_score(y, y + [[0, 1], [0, -1]]) == pytest.approx(1 - 2 / ss_tot)
    assert r2_score([0.1] * 7, [0.0] * 7) == 0.0  # SS_tot = 0 -> 0.0
    with pytest.raises(DataError, match="differ in shape"):
        r2_score([1, 2], [1, 2, 3])


def test_classification_totals_over_batches():
    totals = ClassificationTotals(3)
    assert totals.result("val") == {}
    totals.update(SCORES[:2], LABELS[:2])
    totals.update(SCORES[2:], LABELS[2:])
    r = totals.result("val")
    assert sorted(r) == ["val_accuracy", "val_f1_macro", "val_precision_macro",
                         "val_recall_macro", "val_top5_accuracy"]
    assert r["val_accuracy"] == pytest.approx(1 / 3)
    assert r["val_top5_accuracy"] == 1.0  # k = min(5, 3)
    # predictions 1, 2, 0 for labels 2, 1, 0
    assert totals.confusion.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    assert r["val_precision_macro"] == pytest.approx(1 / 3)
    with pytest.raises(DataError, match="2 classes, expected 3"):
        totals.update(np.zeros((1, 2)), [0])


def test_classification_totals_flatten_sequence_positions():
    rng = np.random.default_rng(0)
    scores, y = rng.normal(size=(4, 6, 7)), rng.integers(0, 7, size=(4, 6))
    totals = ClassificationTotals(7)
    totals.update(scores[:3], y[:3])
    totals.update(scores[3:], y[3:])
    r = totals.result("test")
    flat_s, flat_y = scores.reshape(-1, 7), y.reshape(-1)
    assert totals.count == 24
    assert r["test_accuracy"] == pytest.approx(np.mean(flat_s.argmax(1) == flat_y))
    assert r["test_top5_accuracy"] == pytest.approx(top_k_accuracy(flat_s, flat_y, 5))
    assert np.array_equal(totals.confusion, confusion_matrix(flat_y, flat_s.argmax(1), 7))


def test_regression_totals_over_batches_match_the_pooled_functions():
    rng = np.random.default_rng(1)
    y = rng.normal(3.0, 2.0, size=(50, 2)).astype(np.float32)
    pred = y + rng.normal(0.0, 0.5, size=y.shape).astype(np.float32)
    totals = RegressionTotals()
    assert totals.result("val") == {}
    for start in range(0, 50, 16):  # uneven batches
        totals.update(pred[start:start + 16], y[start:start + 16])
    r = totals.result("val")
    d = pred.astype(np.float64) - y
    assert r["val_mae"] == pytest.approx(np.abs(d).mean())
    assert r["val_rmse"] == pytest.approx(math.sqrt((d * d).mean()))
    assert r["val_r2"] == pytest.approx(r2_score(y, pred), rel=1e-12)


def test_regression_totals_by_hand_and_constant_targets():
    totals = RegressionTotals()
    totals.update([1, 2], [1, 2])
    totals.update([3, 5], [3, 4])
    r = totals.result("train")
    assert r == pytest.approx({"train_mae": 0.25, "train_rmse": 0.5, "train_r2": 0.8})
    constant = RegressionTotals()
    constant.update([0.0, 1.0], [0.1, 0.1])
    constant.update([0.2], [0.1])
    assert constant.result("val")["val_r2"] == 0.0


def test_against_scikit_learn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(300, 6))
    y = rng.integers(0, 6, size=300)
    y[y == 5] = 4  # class 5 never occurs
    pred = scores.argmax(1)
    cm = confusion_matrix(y, pred, 6)
    assert np.array_equal(cm, sk.confusion_matrix(y, pred, labels=range(6)))
    m = precision_recall_f1(cm)
    for name, fn in (("precision_macro", sk.precision_score), ("recall_macro", sk.recall_score),
                     ("f1_macro", sk.f1_score)):
        assert m[name] == pytest.approx(fn(y, pred, labels=range(6), average="macro",
                                           zero_division=0)), name
    for k in (1, 2, 5):
        assert top_k_accuracy(scores, y, k) == pytest.approx(
            sk.top_k_accuracy_score(y, scores, k=k, labels=range(6)))
    t, p = rng.normal(size=40), rng.normal(size=40)
    assert r2_score(t, p) == pytest.approx(sk.r2_score(t, p))
