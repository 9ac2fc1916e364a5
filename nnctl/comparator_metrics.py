"""Verification metrics of neural comparators, over a whole split: the accuracy of "same"
(distance at or below a threshold) at the best threshold, and the ROC AUC of the distance.

The trainer feeds host arrays batch by batch (update) and asks for the split's figures at the
end (result). Pure NumPy: a comparator's output is a distance, small for "same".
"""

from __future__ import annotations

import numpy as np

from nnctl.errors import DataError


def best_threshold(d: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) of the rule "same iff d <= threshold" that classifies the most
    pairs right, searched over the distinct values of d and -inf (every pair "different");
    among equally good thresholds the smallest."""
    d = np.asarray(d, np.float64).ravel()
    same = np.asarray(same).ravel() != 0
    n = len(d)
    if n == 0:
        return float("nan"), float("nan")
    values = np.unique(d)  # ascending
    order = np.sort(d[same]), np.sort(d[~same])
    # pairs at or below each candidate: true positives among "same", false ones among the rest
    tp = np.searchsorted(order[0], values, side="right")
    fp = np.searchsorted(order[1], values, side="right")
    correct = np.concatenate([[len(order[1])], tp + (len(order[1]) - fp)])
    best = int(np.argmax(correct))  # the first maximum: the smallest threshold
    threshold = -np.inf if best == 0 else values[best - 1]
    return float(threshold), float(correct[best] / n)


def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of `score` for the positives: the probability that a random
    positive scores above a random negative, ties counting half (the Mann-Whitney U over
    n_pos n_neg). NaN when either class is absent."""
    score = np.asarray(score, np.float64).ravel()
    positive = np.asarray(positive).ravel() != 0
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # average ranks (1-based) over ties
    order = np.argsort(score, kind="mergesort")
    sorted_scores = score[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    mean_rank = first + (counts + 1) / 2.0
    ranks = np.empty(len(score))
    ranks[order] = np.repeat(mean_rank, counts)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


class VerificationTotals:
    """Collects a split's comparator outputs. Pairs: out [B, 1] distances, y [B] (1 same,
    0 different). Triplets: out [B, 2] = (d(anchor, positive), d(anchor, negative)), y
    ignored.

    result(prefix):
      {prefix}_verification_accuracy: pairs: the accuracy of "same iff d <= t" at the best t
        (best_threshold); triplets: the share of triplets with d_ap < d_an (ties fail).
      {prefix}_roc_auc: the ROC AUC of -d for "same". Triplets count as their 2B pairs:
        (anchor, positive) same, (anchor, negative) different, so it is the probability that
        a random positive pair is nearer than a random negative pair (of any triplets).
    """

    def __init__(self) -> None:
        self.distances: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.width: int | None = None

    def update(self, out: np.ndarray, y: np.ndarray, pred=None) -> None:
        out = np.asarray(out, np.float64)
        if out.ndim != 2 or out.shape[1] not in (1, 2):
            raise DataError(f"a comparator's output is [batch, 1] (a distance) or [batch, 2] "
                            f"(a triplet's two), got {list(out.shape)}")
        if self.width is not None and out.shape[1] != self.width:
            raise DataError(f"comparator outputs of width {out.shape[1]} after width "
                            f"{self.width}")
        self.width = out.shape[1]
        self.distances.append(out)
        self.labels.append(np.asarray(y).ravel())

    def threshold(self) -> float:
        """The best threshold on pairs' distances (-inf: every pair "different")."""
        d, y = self._pairs()
        return best_threshold(d, y)[0]

    def _pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Every pair's distance and same (1) / different (0)."""
        out = np.concatenate(self.distances) if self.distances else np.zeros((0, 1))
        if self.width == 2:
            n = len(out)
            return (np.concatenate([out[:, 0], out[:, 1]]),
                    np.concatenate([np.ones(n, np.int64), np.zeros(n, np.int64)]))
        y = np.concatenate(self.labels) if self.labels else np.zeros(0, np.int64)
        return out[:, 0], y

    def result(self, prefix: str) -> dict[str, float]:
        d, y = self._pairs()
        if self.width == 2:
            out = np.concatenate(self.distances)
            accuracy = float(np.mean(out[:, 0] < out[:, 1]))
        else:
            accuracy = best_threshold(d, y)[1]
        return {f"{prefix}_verification_accuracy": accuracy,
                f"{prefix}_roc_auc": roc_auc(-d, y)}


def recall_at_k(embedding: np.ndarray, labels: np.ndarray, ks) -> dict[int, float]:
    """Retrieval recall@k (as deep metric learning reports it, e.g. Song et al. 2016): each
    sample queries all the others; a hit when one of its k nearest (Euclidean; ties by index)
    has its class. A sample alone in its class is a miss. {k: the share of hits}."""
    e = np.asarray(embedding, np.float64).reshape(len(embedding), -1)
    labels = np.asarray(labels).ravel()
    if len(e) < 2:
        return {k: float("nan") for k in ks}
    sq = (e * e).sum(1)
    d = sq[:, None] + sq[None, :] - 2.0 * (e @ e.T)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1, kind="stable")[:, :max(ks)]
    hit = labels[nearest] == labels[:, None]
    return {k: float(hit[:, :k].any(1).mean()) for k in ks}
