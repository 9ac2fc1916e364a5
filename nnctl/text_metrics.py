"""Metrics of decoded sequences against their references, over a whole corpus.

Each function takes two equally long lists of sequences (strings, or lists of token ids) and
returns one number for the corpus:

- exact_match: the share of predictions equal to their reference, token for token.
- token_accuracy: the share of reference positions whose token the prediction has at the
  same position. Positions past the end of a shorter prediction count as wrong; tokens of a
  longer prediction past the reference's end are not counted (pass sequences that end with
  their end mark, EOS, to make an overlong prediction lose that position, as the teacher-forced
  accuracy does).
- char_error_rate: the Levenshtein edit distance (insertions, deletions and substitutions,
  each costing 1) summed over the corpus, divided by the summed reference lengths; so long
  references weigh more, as in jiwer and torchmetrics. It can exceed 1 (long wrong outputs).
- bleu: sacrebleu's corpus BLEU (0 to 100), one reference per prediction; `tokenize="char"`
  (the default here) makes each character a token, which suits character-level tasks such as
  dates; "13a" is sacrebleu's word tokeniser for sentences.
"""

from __future__ import annotations

from typing import Sequence

from nnctl.errors import UsageError


def _pairs(predictions: Sequence, references: Sequence) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")


def exact_match(predictions: Sequence, references: Sequence) -> float:
    """The share of predictions equal to their reference (0 for an empty corpus)."""
    _pairs(predictions, references)
    if not references:
        return 0.0
    return sum(list(p) == list(r) for p, r in zip(predictions, references)) / len(references)


def token_accuracy(predictions: Sequence, references: Sequence) -> float:
    """Correct positions / reference positions (see the module docstring for lengths)."""
    _pairs(predictions, references)
    total = sum(len(r) for r in references)
    if not total:
        return 0.0
    correct = sum(sum(a == b for a, b in zip(p, r)) for p, r in zip(predictions, references))
    return correct / total


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions turning a into
    b (dynamic programming over one row, O(len(a) len(b)))."""
    a, b = list(a), list(b)
    if len(a) < len(b):
        a, b = b, a  # the row runs over the shorter one
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (x != y))
    return row[-1]


def char_error_rate(predictions: Sequence, references: Sequence) -> float:
    """Summed edit distances / summed reference lengths. With only empty references: 0 when
    every prediction is empty too, else infinity (every edit is an error and no length)."""
    _pairs(predictions, references)
    errors = sum(edit_distance(p, r) for p, r in zip(predictions, references))
    length = sum(len(r) for r in references)
    if not length:
        return 0.0 if not errors else float("inf")
    return errors / length


def bleu(predictions: Sequence[str], references: Sequence[str], tokenize: str = "char") -> float:
    """sacrebleu's corpus BLEU, 0 to 100. sacrebleu is an optional extra: without it, a
    UsageError saying how to install it."""
    _pairs(predictions, references)
    try:
        import sacrebleu
    except ImportError:
        from nnctl.extras import install_hint
        raise UsageError("the bleu metric needs sacrebleu: " + install_hint("text", "sacrebleu")
                         + "; or drop 'bleu' from the metrics") from None
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)],
                                       tokenize=tokenize).score)
