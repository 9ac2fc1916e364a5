"""Running sums for the loss and metrics over the batches of an epoch or an evaluation."""

from __future__ import annotations

import math


class MetricSums:
    def __init__(self, xp, metrics: list[str], classification: bool):
        self.xp, self.metrics, self.classification = xp, metrics, classification
        self.n = 0
        self.weight = 0  # what the loss is a mean over: samples, or real steps when padded
        self.loss = 0.0
        self.correct = 0
        self.positions = 0  # labels seen: samples, or samples x time steps for sequences
        self.abs_err = 0.0
        self.sq_err = 0.0

    def update(self, loss: float, out, y, mask=None) -> None:
        """Add one batch: its mean loss, the model's output and the labels/targets; `mask`
        (1 at real steps) when the labels are padded sequences: the loss is then a mean over
        the real steps, and only they count."""
        n = len(y)
        weight = n if mask is None else int(round(float(mask.sum())))
        self.n += n
        self.weight += weight
        self.loss += loss * weight
        if self.classification:
            hits = out.argmax(axis=-1) == y
            self.correct += int(hits.sum() if mask is None else (hits * mask).sum())
            self.positions += y.size if mask is None else weight
        elif any(m in ("mae", "rmse") for m in self.metrics):
            d = out - y
            self.abs_err += float(self.xp.abs(d).sum()) / max(d.size // n, 1)
            self.sq_err += float((d * d).sum()) / max(d.size // n, 1)

    @property
    def headline(self) -> float | None:
        """The metric shown in progress: accuracy for classification."""
        if self.classification and self.positions:
            return self.correct / self.positions
        return None

    def result(self, prefix: str) -> dict[str, float]:
        if not self.n:
            return {}
        out = {f"{prefix}_loss": self.loss / max(self.weight, 1)}
        for m in self.metrics:
            if m == "accuracy":
                out[f"{prefix}_accuracy"] = self.correct / self.positions
            elif m == "bits_per_char":  # cross-entropy in bits: the language-model measure
                out[f"{prefix}_bits_per_char"] = self.loss / max(self.weight, 1) / math.log(2)
            elif m == "mae":
                out[f"{prefix}_mae"] = self.abs_err / self.n
            elif m == "rmse":
                out[f"{prefix}_rmse"] = math.sqrt(self.sq_err / self.n)
        return out


class SpanTotals:
    """Chunk spans (BIO tags) over the batches of an evaluation: true positives, predicted
    and gold spans, summed, for the exact-match span F1 of CoNLL (nnctl.spans)."""

    def __init__(self, tags: list[str] | None):
        if not tags:
            raise ValueError("span_f1 needs tag names (a tagging data set)")
        self.tags = list(tags)
        self.tp = self.predicted = self.gold = 0

    def update(self, gold, pred, mask) -> None:
        """Host arrays [batch, steps] of tag ids, mask True at real steps (None: all)."""
        from nnctl.spans import span_counts
        tp, predicted, gold_n = span_counts(gold, pred, mask, self.tags)
        self.tp += tp
        self.predicted += predicted
        self.gold += gold_n

    def f1(self) -> float:
        denominator = self.predicted + self.gold
        return 2.0 * self.tp / denominator if denominator else 0.0
