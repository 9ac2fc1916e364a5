"""Labelled spans of BIO tag sequences, and span precision, recall and F1 (CoNLL's measure).

A span is (start, end, type) with end exclusive. The rules are conlleval's (and seqeval's
default mode): B-X starts a span of type X; I-X continues the open span if it has type X,
and otherwise starts one (an I- without a matching B- still makes a span, as conlleval
reads it); O, a B-, or an I- of another type closes the open span. A predicted span counts
as correct only when its start, end and type all equal a gold span's (exact match).

Counts add up over batches (SpanCounts + SpanCounts), so an evaluation sums them and
computes precision, recall and F1 once at the end, as conlleval does over a whole file.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np


def parse_tags(names: Sequence[str]) -> list[tuple[str, str | None]]:
    """(kind, type) per tag name: ("O", None), ("B", "NP"), ("I", "NP"). ValueError for a
    name that is not BIO."""
    parsed = []
    for name in names:
        if name == "O":
            parsed.append(("O", None))
        elif len(name) > 2 and name[:2] in ("B-", "I-"):
            parsed.append((name[0], name[2:]))
        else:
            raise ValueError(f"tag {name!r} is not BIO (expected O, B-<type> or I-<type>)")
    return parsed


def bio_spans(tags: Sequence[int], parsed: Sequence[tuple[str, str | None]]
              ) -> set[tuple[int, int, str]]:
    """The spans of one sequence of tag ids, given parse_tags of the tag names."""
    spans, start, current = set(), 0, None  # current: the open span's type
    for t, tag in enumerate(tags):
        kind, kind_type = parsed[int(tag)]
        if current is not None and (kind != "I" or kind_type != current):
            spans.add((start, t, current))
            current = None
        if kind == "B" or (kind == "I" and current is None):
            start, current = t, kind_type
    if current is not None:
        spans.add((start, len(tags), current))
    return spans


class SpanCounts(NamedTuple):
    """Exactly matching spans, predicted spans and gold spans; `+` sums them (over batches),
    and they unpack as a tuple: tp, predicted, gold = span_counts(...)."""

    correct: int = 0
    predicted: int = 0
    gold: int = 0

    def __add__(self, other: "SpanCounts") -> "SpanCounts":
        return SpanCounts(self.correct + other.correct, self.predicted + other.predicted,
                          self.gold + other.gold)

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.correct / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        """2 P R / (P + R); 0 when nothing was predicted or nothing is gold (conlleval)."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def span_counts(gold: np.ndarray, predicted: np.ndarray, mask: np.ndarray | None,
                names: Sequence[str]) -> SpanCounts:
    """Counts for a batch: gold and predicted tag ids [B, T] (seqeval's order: true first),
    mask [B, T] (1 or True at real steps, padding at the end; None: all real), the tag names
    in id order."""
    parsed = parse_tags(names)
    gold, predicted = np.asarray(gold), np.asarray(predicted)
    lengths = (np.full(len(gold), gold.shape[1]) if mask is None
               else np.asarray(mask).sum(axis=1).round().astype(np.int64))
    total = SpanCounts()
    for p, g, n in zip(predicted, gold, lengths):
        ps, gs = bio_spans(p[:n], parsed), bio_spans(g[:n], parsed)
        total += SpanCounts(len(ps & gs), len(ps), len(gs))
    return total
