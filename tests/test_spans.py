"""BIO spans and span F1: hand-made cases with conlleval's rules, and seqeval (its default,
conlleval-compatible mode) on random tag sequences where it is installed."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.spans import SpanCounts, bio_spans, parse_tags, span_counts

NAMES = ["O", "B-NP", "I-NP", "B-VP", "I-VP"]
ID = {n: i for i, n in enumerate(NAMES)}


def spans(*tags: str):
    return bio_spans([ID[t] for t in tags], parse_tags(NAMES))


def test_spans_follow_conlleval():
    assert spans("B-NP", "I-NP", "O", "B-VP") == {(0, 2, "NP"), (3, 4, "VP")}
    assert spans("B-NP", "B-NP", "I-NP") == {(0, 1, "NP"), (1, 3, "NP")}
    # an I- without a B- starts a span; an I- of another type closes one and starts its own
    assert spans("I-NP", "I-NP", "O", "I-VP") == {(0, 2, "NP"), (3, 4, "VP")}
    assert spans("B-NP", "I-VP", "I-VP", "I-NP") == {(0, 1, "NP"), (1, 3, "VP"), (3, 4, "NP")}
    assert spans("O", "O") == set()
    assert spans("I-VP") == {(0, 1, "VP")}


def test_counts_sum_over_batches_and_respect_the_mask():
    gold = np.array([[ID[t] for t in ("B-NP", "I-NP", "O", "B-VP")],
                     [ID[t] for t in ("B-VP", "I-VP", "B-NP", "O")]])
    pred = np.array([[ID[t] for t in ("B-NP", "I-NP", "O", "B-NP")],    # 1 of 2 right
                     [ID[t] for t in ("B-VP", "I-VP", "I-NP", "B-VP")]])  # padding after 3
    mask = np.array([[1, 1, 1, 1], [1, 1, 1, 0]])
    c = span_counts(gold, pred, mask, NAMES)
    assert c == SpanCounts(correct=3, predicted=4, gold=4)
    assert c.precision == 0.75 and c.recall == 0.75 and c.f1 == 0.75
    halves = span_counts(gold[:1], pred[:1], mask[:1], NAMES) + \
        span_counts(gold[1:], pred[1:], mask[1:], NAMES)
    assert halves == c
    # a boundary off by one is wrong (exact match), and so is the right extent with a wrong type
    c = span_counts(np.array([[1, 2, 0, 0]]), np.array([[1, 2, 2, 0]]), None, NAMES)
    assert c == SpanCounts(0, 1, 1) and c.f1 == 0.0
    c = span_counts(np.array([[1, 2, 0]]), np.array([[3, 4, 3]]), mask[1:2, :3] > 0, NAMES)
    assert c == SpanCounts(correct=0, predicted=2, gold=1)
    tp, predicted, gold_spans = c  # unpacks as a tuple
    assert (tp, predicted, gold_spans) == (0, 2, 1)


def test_precision_recall_f1_edges():
    assert SpanCounts(0, 0, 0).f1 == 0.0
    assert SpanCounts(0, 0, 5).precision == 0.0
    c = SpanCounts(2, 4, 8)
    assert (c.precision, c.recall) == (0.5, 0.25)
    assert c.f1 == pytest.approx(2 * 0.5 * 0.25 / 0.75, rel=1e-15)


def test_non_bio_names_are_refused():
    with pytest.raises(ValueError, match="'NN' is not BIO"):
        parse_tags(["O", "NN"])


def test_matches_seqeval_on_random_sequences():
    metrics = pytest.importorskip("seqeval.metrics")
    rng = np.random.default_rng(0)
    gold = rng.integers(0, len(NAMES), size=(200, 12))
    pred = np.where(rng.random(gold.shape) < 0.7, gold, rng.integers(0, len(NAMES), gold.shape))
    lengths = rng.integers(1, 13, size=200)
    mask = (np.arange(12)[None] < lengths[:, None]).astype(np.float32)
    c = span_counts(gold, pred, mask, NAMES)
    as_names = [[[NAMES[t] for t in row[:n]] for row, n in zip(a, lengths)] for a in (gold, pred)]
    assert c.f1 == pytest.approx(metrics.f1_score(*as_names), rel=1e-12)
    assert c.precision == pytest.approx(metrics.precision_score(*as_names), rel=1e-12)
    assert c.recall == pytest.approx(metrics.recall_score(*as_names), rel=1e-12)
    assert 0.3 < c.f1 < 0.9  # a mixed case, not all right or all wrong
