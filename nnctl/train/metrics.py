"""Running sums for the loss and metrics over the batches of an epoch or an evaluation."""

from __future__ import annotations

import math


class MetricSums:
    def __init__(self, xp, metrics: list[str], classification: bool):
        self.xp, self.metrics, self.classification = xp, metrics, classification
        self.n = 0
        self.loss = 0.0
        self.correct = 0
        self.positions = 0  # labels seen: samples, or samples x time steps for sequences
        self.abs_err = 0.0
        self.sq_err = 0.0

    def update(self, loss: float, out, y) -> None:
        """Add one batch: its mean loss, the model's output and the labels/targets."""
        n = len(y)
        self.n += n
        self.loss += loss * n
        if self.classification:
            self.correct += int((out.argmax(axis=-1) == y).sum())
            self.positions += y.size
        elif self.metrics:
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
        out = {f"{prefix}_loss": self.loss / self.n}
        for m in self.metrics:
            if m == "accuracy":
                out[f"{prefix}_accuracy"] = self.correct / self.positions
            elif m == "bits_per_char":  # cross-entropy in bits: the language-model measure
                out[f"{prefix}_bits_per_char"] = self.loss / self.n / math.log(2)
            elif m == "mae":
                out[f"{prefix}_mae"] = self.abs_err / self.n
            elif m == "rmse":
                out[f"{prefix}_rmse"] = math.sqrt(self.sq_err / self.n)
        return out
