"""Running sums for the loss and metrics over the batches of an epoch or an evaluation."""

from __future__ import annotations

import math

import numpy as np

from nnctl.comparator_metrics import roc_auc
from nnctl.metrics import safe_ratio


class MetricSums:
    # binary / multi-label runs (bce_with_logits, sigmoid_focal): `accuracy` counts label
    # decisions, logit > 0 against target > 0.5. Set on the instance only for such runs, so
    # that the fields a checkpoint saves (vars) stay those of every other run.
    multilabel = False

    def __init__(self, xp, metrics: list[str], classification: bool, multilabel: bool = False):
        self.xp, self.metrics, self.classification = xp, metrics, classification
        if multilabel:
            self.multilabel = True
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
        elif self.multilabel:
            self.correct += int(((out > 0) == (y > 0.5)).sum())
            self.positions += y.size
        elif any(m in ("mae", "rmse") for m in self.metrics):
            d = out - y
            self.abs_err += float(self.xp.abs(d).sum()) / max(d.size // n, 1)
            self.sq_err += float((d * d).sum()) / max(d.size // n, 1)

    FIELDS = ("n", "weight", "loss", "correct", "positions", "abs_err", "sq_err")

    def reduce(self, comm) -> None:
        """Sum these figures over the ranks of a data-parallel run (nnctl/distributed.py)."""
        values = np.array([float(getattr(self, f)) for f in self.FIELDS])
        comm.allreduce_(values)
        for f, v in zip(self.FIELDS, values):
            setattr(self, f, int(round(v)) if f in ("n", "weight", "correct", "positions")
                    else float(v))

    @property
    def headline(self) -> float | None:
        """The metric shown in progress: accuracy for classification (of the label
        decisions for multi-label)."""
        if (self.classification or self.multilabel) and self.positions:
            return self.correct / self.positions
        return None

    def result(self, prefix: str) -> dict[str, float]:
        if not self.n:
            return {}
        out = {f"{prefix}_loss": self.loss / max(self.weight, 1)}
        for m in self.metrics:
            if m == "accuracy" and self.positions:
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


class MultiLabelTotals:
    """Binary and multi-label metrics over a split's batches: out [N, K] logits, y [N, K]
    targets in [0, 1]. A label is predicted where sigmoid(logit) > 0.5 (logit > 0) and is
    true where its target > 0.5.

    result(prefix):
      accuracy: the share of the N x K label decisions right (Keras's binary_accuracy);
      subset_accuracy: the share of samples with all K right (scikit-learn's accuracy_score);
      precision/recall/f1_micro: from the true/false positive and false negative counts
        summed over labels; precision/recall/f1_macro: the plain mean over the K labels, a
        label without predictions (or without positives) counting 0 (zero_division=0);
      roc_auc: the mean over labels of each label's ROC AUC of its logit (nnctl.
        comparator_metrics.roc_auc; logits rank where sigmoids would tie at 1.0), over the
        labels whose targets hold both classes (scikit-learn's average='macro' refuses the
        others); NaN when no label has both.
    """

    def __init__(self) -> None:
        self.scores: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []

    def update(self, out, y, pred=None) -> None:
        out = np.asarray(out, np.float64)
        self.scores.append(out.reshape(len(out), -1))
        self.targets.append(np.asarray(y).reshape(len(out), -1) > 0.5)

    def result(self, prefix: str) -> dict[str, float]:
        if not self.scores:
            return {}
        return {f"{prefix}_{k}": v for k, v in multilabel_metrics(
            np.concatenate(self.scores), np.concatenate(self.targets)).items()}


def multilabel_metrics(logits: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """The MultiLabelTotals figures of logits [N, K] against boolean truth [N, K]."""
    pred = logits > 0
    tp = (pred & truth).sum(0)
    fp = (pred & ~truth).sum(0)
    fn = (~pred & truth).sum(0)
    micro = safe_ratio([tp.sum(), tp.sum(), 2 * tp.sum()],
                   [tp.sum() + fp.sum(), tp.sum() + fn.sum(), 2 * tp.sum() + fp.sum() + fn.sum()])
    aucs = [roc_auc(logits[:, k], truth[:, k]) for k in range(truth.shape[1])
            if 0 < truth[:, k].sum() < len(truth)]
    return {"accuracy": float((pred == truth).mean()),
            "subset_accuracy": float((pred == truth).all(1).mean()),
            "precision_micro": float(micro[0]), "recall_micro": float(micro[1]),
            "f1_micro": float(micro[2]),
            "precision_macro": float(safe_ratio(tp, tp + fp).mean()),
            "recall_macro": float(safe_ratio(tp, tp + fn).mean()),
            "f1_macro": float(safe_ratio(2 * tp, 2 * tp + fp + fn).mean()),
            "roc_auc": float(np.mean(aucs)) if aucs else float("nan")}
