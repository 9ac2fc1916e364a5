"""Token vocabularies: texts to int64 ids and back, by characters or by words.

Ids 0..3 are the specials every sequence model here shares (nnctl.data.batching): PAD fills
the end of a short sequence, UNK stands for a token the vocabulary lacks, BOS starts a
decoder's input, EOS ends a target. The other tokens follow in order of frequency in the
texts the vocabulary is built from (the training split only: a token seen only in the test
split must not leak into the model), ties in code-point order, so the same texts always give
the same ids.
"""

from __future__ import annotations

import numbers
from collections import Counter
from typing import Any, Iterable

import numpy as np

from nnctl.data.batching import BOS, EOS, PAD, UNK
from nnctl.data.dataset import Dataset, split
from nnctl.errors import DataError, excerpt

SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")  # the names of ids PAD, UNK, BOS, EOS
LEVELS = ("chars", "words")
UNKNOWN = ("unk", "error")  # what encode does with a token the vocabulary lacks
# decode writes UNK as one character in a character vocabulary, so that a decoded text keeps
# one character per position (a character error rate counts it once)
UNK_TEXT = {"chars": "\ufffd", "words": SPECIALS[UNK]}
assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)


class TokenVocab:
    """Ids of tokens: PAD=0, UNK=1, BOS=2, EOS=3, then `tokens` (ids 4, 5, ...).

    level: "chars" (every character is a token, spaces included) or "words" (the text split
    at runs of whitespace). lowercase: texts are lowercased before they are split.
    unknown: "unk" (a token not in the vocabulary becomes UNK) or "error" (DataError)."""

    def __init__(self, tokens: Iterable[str], level: str = "chars", lowercase: bool = False,
                 unknown: str = "unk"):
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
        if unknown not in UNKNOWN:
            raise ValueError(f"unknown must be one of {', '.join(UNKNOWN)}, got {unknown!r}")
        self.tokens: tuple[str, ...] = tuple(tokens)
        self.level, self.lowercase, self.unknown = level, bool(lowercase), unknown
        self._index = {t: i for i, t in enumerate(self.tokens, start=len(SPECIALS))}
        if len(self._index) != len(self.tokens):
            raise ValueError("tokens must be unique")
        self._text = list(SPECIALS) + list(self.tokens)
        self._text[UNK] = UNK_TEXT[level]

    @classmethod
    def build(cls, texts: Iterable[str], level: str = "chars", lowercase: bool = False,
              min_count: int = 1, max_size: int | None = None,
              unknown: str = "unk") -> TokenVocab:
        """The vocabulary of `texts`: every token seen at least `min_count` times, most frequent
        first (ties in code-point order), cut so that len(vocab) <= max_size (specials
        included; None: no cap)."""
        min_count = _at_least("min_count", min_count, 1)
        if max_size is not None:
            max_size = _at_least("max_size", max_size, len(SPECIALS) + 1)
        probe = cls((), level, lowercase, unknown)
        counts: Counter = Counter()
        for text in texts:
            counts.update(probe.split(text))
        ranked = sorted((t for t, c in counts.items() if c >= min_count),
                        key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[:max_size - len(SPECIALS)]
        return cls(ranked, level, lowercase, unknown)

    def split(self, text: str) -> list[str]:
        """The tokens of `text` (lowercased first if the vocabulary says so)."""
        if not isinstance(text, str):
            raise TypeError(f"a text must be a str, got {type(text).__name__}")
        if self.lowercase:
            text = text.lower()
        return list(text) if self.level == "chars" else text.split()

    def __len__(self) -> int:
        return len(SPECIALS) + len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenVocab) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.tokens, self.level, self.lowercase, self.unknown))

    def __repr__(self) -> str:
        return (f"TokenVocab({len(self)} ids, {self.level}"
                f"{', lowercase' if self.lowercase else ''}, unknown={self.unknown})")

    def id(self, token: str) -> int:
        """The id of one token (UNK if absent)."""
        return self._index.get(token, UNK)

    def encode(self, text: str, where: str | None = None) -> np.ndarray:
        """int64 ids of the tokens of `text`, no specials added. A token not in the vocabulary
        is UNK, or with unknown="error" a DataError naming `where` (a file:line) and it."""
        tokens = self.split(text)
        ids = np.fromiter((self._index.get(t, UNK) for t in tokens), np.int64, len(tokens))
        if self.unknown == "error" and (ids == UNK).any():
            bad = tokens[int(np.argmax(ids == UNK))]
            raise DataError(f"the {self.level[:-1]} {excerpt(bad)} is not in the vocabulary "
                            f"built from the training split ({len(self)} ids; data.unknown "
                            "is error: set it to unk to read it as <unk>)", path=where)
        return ids

    def decode(self, ids) -> str:
        """The text of a 1-D sequence of ids: up to the first EOS, PAD and BOS dropped, UNK
        as U+FFFD (chars) or <unk> (words); characters joined with "", words with " "."""
        a = np.asarray(ids)
        if a.ndim != 1:
            raise ValueError(f"decode needs a 1-D sequence of ids, got shape {a.shape}")
        if a.size and a.dtype.kind not in "iu":
            raise ValueError(f"decode needs integer ids, got dtype {a.dtype}")
        a = a.astype(np.int64)
        if a.size and (a.min() < 0 or a.max() >= len(self)):
            bad = a[(a < 0) | (a >= len(self))][0]
            raise ValueError(f"id {int(bad)} is out of range for a vocabulary of {len(self)} "
                             f"(ids 0..{len(self) - 1})")
        ends = np.flatnonzero(a == EOS)
        if ends.size:
            a = a[:ends[0]]
        a = a[(a != PAD) & (a != BOS)]
        return ("" if self.level == "chars" else " ").join(self._text[i] for i in a.tolist())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the regular tokens in id order (id 4 first) and how texts are split."""
        return {"level": self.level, "lowercase": self.lowercase, "unknown": self.unknown,
                "specials": list(SPECIALS), "tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TokenVocab:
        if not isinstance(d, dict):
            raise DataError(f"token vocabulary: expected a mapping, got {type(d).__name__}")
        missing = [k for k in ("level", "lowercase", "unknown", "tokens") if k not in d]
        if missing:
            raise DataError(f"token vocabulary: missing {', '.join(missing)}")
        level, lowercase, unknown, tokens = d["level"], d["lowercase"], d["unknown"], d["tokens"]
        if level not in LEVELS:
            raise DataError(f"token vocabulary: level must be one of {', '.join(LEVELS)}, got "
                            f"{excerpt(level)}")
        if not isinstance(lowercase, bool):
            raise DataError("token vocabulary: lowercase must be true or false")
        if unknown not in UNKNOWN:
            raise DataError(f"token vocabulary: unknown must be one of {', '.join(UNKNOWN)}, "
                            f"got {excerpt(unknown)}")
        if list(d.get("specials", SPECIALS)) != list(SPECIALS):
            raise DataError(f"token vocabulary: specials must be {list(SPECIALS)} (ids 0..3)")
        if not (isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)):
            raise DataError("token vocabulary: tokens must be a list of strings")
        for i, t in enumerate(tokens):
            # what split() could produce: one character, or a word without whitespace
            ok = len(t) == 1 if level == "chars" else (t != "" and t.split() == [t])
            if not ok:
                what = "one character" if level == "chars" else "a word without whitespace"
                raise DataError(f"token vocabulary: token {i} ({excerpt(t)}) is not {what}")
        if len(set(tokens)) != len(tokens):
            dup = next(t for t in tokens if tokens.count(t) > 1)
            raise DataError(f"token vocabulary: token {excerpt(dup)} appears more than once")
        return cls(tokens, level, lowercase, unknown)


def pad_ids(sequences: list[np.ndarray], end: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """int64 [N, T] of the sequences padded at the end with PAD (each followed by `end` if
    given, e.g. EOS), T the longest, and their lengths (N,), `end` included."""
    extra = 0 if end is None else 1
    lengths = np.fromiter((len(s) + extra for s in sequences), np.int64, len(sequences))
    out = np.full((len(sequences), int(lengths.max(initial=1))), PAD, dtype=np.int64)
    for row, s in enumerate(sequences):
        out[row, :len(s)] = s
        if extra:
            out[row, len(s)] = end
    return out, lengths


def training_indices(n: int, labels: np.ndarray | None, split_spec, seed: int,
                     stratify: bool) -> np.ndarray:
    """The indices (into n samples) of the training split that nnctl.step.load_splits will
    cut after the loader returns: the same `split` on the same n, labels and seed. A loader
    builds its vocabulary from these samples only. `split_spec` has .val and .test; labels
    (N,) int64 matter only when stratify is True (load_splits stratifies 1-D integer labels).
    Fractions that `split` refuses give every index: load_splits then reports the config
    mistake itself."""
    y = np.zeros(n, np.int64) if labels is None else np.asarray(labels)
    try:
        train, _, _ = split(Dataset(np.arange(n), y), split_spec.val, split_spec.test, seed=seed,
                            stratify=stratify)
    except ValueError:
        return np.arange(n)
    return train.x


def _at_least(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)
