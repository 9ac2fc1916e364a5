"""Evaluation metrics on host NumPy arrays: pure functions and two running accumulators.

Everything here takes host arrays (`backend.to_host` first) and imports no other part of
nnctl but its errors. Labels may be a sequence ([N, T]); every position then counts as one
labelled example (scores [N, T, classes] are flattened to [N*T, classes]).

Conventions, stated once:
- Macro averages are plain means over all `num_classes` classes. A class that is never
  predicted has precision 0, a class that never occurs has recall 0, and F1 is 0 where
  precision + recall = 0: scikit-learn's `zero_division=0` with `labels=range(num_classes)`.
- F1 per class is 2 TP / (2 TP + FP + FN), the harmonic mean of precision and recall where
  both are defined.
- top-k ranks classes by score, ties broken towards the lower class index (a stable
  descending sort), so top-1 accuracy always equals argmax accuracy.
- R^2 pools all outputs: 1 - SS_res / SS_tot with both sums over every element of the
  flattened targets (SS_tot around their one mean). For one output this is scikit-learn's
  r2_score; for several it is not its per-output average. SS_tot = 0 (constant targets)
  gives 0.0.
"""

from __future__ import annotations

import math

import numpy as np

from nnctl.errors import DataError

__all__ = ["ClassificationTotals", "RegressionTotals", "confusion_matrix",
           "precision_recall_f1", "r2_score", "top_k_accuracy"]


def _labels(y, num_classes: int, what: str = "labels") -> np.ndarray:
    y = np.asarray(y)
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise DataError(f"{what} must be integer class ids, got {y.dtype} values")
    y = y.astype(np.int64).reshape(-1)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = int(y.min() if y.min() < 0 else y.max())
        raise DataError(f"{what} must lie in 0..{num_classes - 1}, got {bad}")
    return y


def _check_classes(num_classes: int) -> int:
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return int(num_classes)


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """int64 [num_classes, num_classes]: entry [i, j] counts examples of class i predicted
    as class j (rows true, columns predicted). Inputs of any matching shape are flattened."""
    k = _check_classes(num_classes)
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape:
        raise DataError(f"y_true and y_pred differ in shape: {list(t.shape)} vs {list(p.shape)}")
    t, p = _labels(t, k, "y_true"), _labels(p, k, "y_pred")
    return np.bincount(t * k + p, minlength=k * k).astype(np.int64).reshape(k, k)


def safe_ratio(num, den) -> np.ndarray:
    """num / den in float64, 0 where den is 0 (scikit-learn's zero_division=0)."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def precision_recall_f1(cm) -> dict[str, float]:
    """Macro precision, recall and F1 of a confusion matrix (rows true, columns predicted);
    classes without predictions or without support contribute 0 (zero_division=0)."""
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"a confusion matrix is square and non-empty, got shape {list(cm.shape)}")
    tp = np.diag(cm)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    precision, recall = safe_ratio(tp, predicted), safe_ratio(tp, support)
    f1 = safe_ratio(2 * tp, predicted + support)  # 2TP / (2TP + FP + FN)
    return {"precision_macro": float(precision.mean()), "recall_macro": float(recall.mean()),
            "f1_macro": float(f1.mean())}


def _top_k_hits(scores: np.ndarray, y: np.ndarray, k: int) -> int:
    """How many rows of scores [n, classes] rank their label y [n] among the best k."""
    if k < 1 or int(k) != k:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not len(y):
        return 0
    s_true = np.take_along_axis(scores, y[:, None], axis=1)
    better = (scores > s_true).sum(axis=1)
    tied_before = ((scores == s_true) & (np.arange(scores.shape[1]) < y[:, None])).sum(axis=1)
    return int(((better + tied_before) < k).sum())


def _flatten_scores(scores, y) -> tuple[np.ndarray, np.ndarray]:
    scores, y = np.asarray(scores), np.asarray(y)
    if scores.ndim < 1 or scores.shape[:-1] != y.shape:
        raise DataError(f"scores must be [..., classes] over labels [...]: got scores "
                        f"{list(scores.shape)} and labels {list(y.shape)}")
    c = scores.shape[-1]
    if c < 1:
        raise DataError("scores have no classes")
    return scores.reshape(-1, c), _labels(y, c)


def top_k_accuracy(scores, y, k: int) -> float:
    """Fraction of labels y [...] among the k highest of scores [..., classes] (k larger
    than the number of classes counts every label). No labels gives 0.0."""
    s, t = _flatten_scores(scores, y)
    return _top_k_hits(s, t, k) / len(t) if len(t) else 0.0


def r2_score(y, pred) -> float:
    """1 - SS_res / SS_tot over all outputs flattened; 0.0 where SS_tot = 0."""
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if y.shape != pred.shape:
        raise DataError(f"targets and predictions differ in shape: {list(y.shape)} vs "
                        f"{list(pred.shape)}")
    if not y.size:
        return 0.0
    ss_res = float(((y - pred) ** 2).sum())
    if y.min() == y.max():  # constant targets: SS_tot is 0 (tested exactly, not by rounding)
        return 0.0
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return 1.0 - ss_res / ss_tot


class ClassificationTotals:
    """Confusion matrix and top-k hits over batches. `update(scores, y)` with host arrays
    scores [..., classes] and integer labels [...]; `result(prefix)` gives accuracy,
    top5_accuracy (top-k with k = min(5, classes)), precision_macro, recall_macro and
    f1_macro, each named `<prefix>_<metric>`; `confusion` is the int64 matrix so far."""

    def __init__(self, num_classes: int):
        self.num_classes = _check_classes(num_classes)
        self.k = min(5, self.num_classes)
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        self.top_k_hits = 0
        self.count = 0  # labelled positions seen

    def update(self, scores, y, pred=None) -> None:
        """`pred`: the predicted labels where they are not the argmax of the scores (a
        CRF's decoded path); top-k still ranks the scores."""
        s, t = _flatten_scores(scores, y)
        if s.shape[1] != self.num_classes:
            raise DataError(f"scores have {s.shape[1]} classes, expected {self.num_classes}")
        p = s.argmax(axis=1) if pred is None else np.asarray(pred).reshape(-1)
        self.confusion += confusion_matrix(t, p, self.num_classes)
        self.top_k_hits += _top_k_hits(s, t, self.k)
        self.count += len(t)

    def result(self, prefix: str) -> dict[str, float]:
        if not self.count:
            return {}
        out = {"accuracy": float(np.trace(self.confusion)) / self.count,
               "top5_accuracy": self.top_k_hits / self.count,
               **precision_recall_f1(self.confusion)}
        return {f"{prefix}_{k}": v for k, v in out.items()}


class RegressionTotals:
    """MAE, RMSE and R^2 over batches, pooled over every output element. `update(pred, y)`
    with host arrays of one shape; R^2 uses a streaming (Chan et al.) sum of squares, so it
    equals r2_score on all batches joined."""

    def __init__(self):
        self.count = 0
        self.abs_err = 0.0
        self.sq_err = 0.0
        self.mean = 0.0  # of the targets so far
        self.m2 = 0.0    # sum of squared deviations of the targets from `mean`
        self.low, self.high = math.inf, -math.inf  # target range: equal means SS_tot = 0

    def update(self, pred, y) -> None:
        pred, y = np.asarray(pred, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if pred.shape != y.shape:
            raise DataError(f"predictions and targets differ in shape: {list(pred.shape)} vs "
                            f"{list(y.shape)}")
        n = y.size
        if not n:
            return
        d = pred - y
        self.abs_err += float(np.abs(d).sum())
        self.sq_err += float((d * d).sum())
        mean_b = float(y.mean())
        m2_b = float(((y - mean_b) ** 2).sum())
        total = self.count + n
        delta = mean_b - self.mean
        self.m2 += m2_b + delta * delta * self.count * n / total
        self.mean += delta * n / total
        self.count = total
        self.low, self.high = min(self.low, float(y.min())), max(self.high, float(y.max()))

    def result(self, prefix: str) -> dict[str, float]:
        if not self.count:
            return {}
        r2 = 0.0 if self.low == self.high or self.m2 <= 0 else 1.0 - self.sq_err / self.m2
        return {f"{prefix}_mae": self.abs_err / self.count,
                f"{prefix}_rmse": math.sqrt(self.sq_err / self.count),
                f"{prefix}_r2": r2}
