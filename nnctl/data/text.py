"""Character-level text: a vocabulary, text files, next-character windows, the shipped words.

A text is a Python str; a Vocabulary maps each of its characters to an int64 id. Id 0 is
always the boundary character "\\n", which separates words (or lines) in every corpus here.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np

from nnctl.data.dataset import Dataset
from nnctl.data.loaders import _datasets_dir
from nnctl.errors import DataError

BOUNDARY = "\n"


class Vocabulary:
    """The characters of a text: id 0 is BOUNDARY ("\\n"), ids 1.. are the other distinct
    characters in code-point order. The character set alone decides the ids, so two
    vocabularies built from texts with the same characters are equal."""

    def __init__(self, text: str):
        if not isinstance(text, str):
            raise TypeError(f"Vocabulary needs a str, got {type(text).__name__}")
        self.chars: tuple[str, ...] = (BOUNDARY,) + tuple(sorted(set(text) - {BOUNDARY}))
        self._index = {c: i for i, c in enumerate(self.chars)}
        codes = np.array([ord(c) for c in self.chars], dtype=np.int64)
        self._order = np.argsort(codes)        # ids sorted by code point
        self._sorted_codes = codes[self._order]
        self._chars_array = np.array(self.chars, dtype="<U1")

    @property
    def boundary_id(self) -> int:
        return 0

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.chars == other.chars

    def __hash__(self) -> int:
        return hash(self.chars)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} chars: {''.join(self.chars[1:])!r})"

    def __contains__(self, char: object) -> bool:
        return char in self._index

    def encode(self, text: str) -> np.ndarray:
        """int64 ids (len(text),). DataError naming the first character not in the vocabulary."""
        if not isinstance(text, str):
            raise TypeError(f"encode needs a str, got {type(text).__name__}")
        if not text:
            return np.zeros(0, dtype=np.int64)
        # UTF-32 gives one 4-byte code point per character: the lookup is one searchsorted.
        codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64)
        pos = np.minimum(np.searchsorted(self._sorted_codes, codes), len(self) - 1)
        unknown = self._sorted_codes[pos] != codes
        if unknown.any():
            i = int(np.argmax(unknown))
            raise DataError(f"character {text[i]!r} at position {i} is not in the vocabulary "
                            f"of {len(self)} characters")
        return self._order[pos].astype(np.int64)

    def decode(self, ids) -> str:
        """The string for a 1-D sequence of ids (a list or an integer array)."""
        a = np.asarray(ids)
        if a.ndim != 1:
            raise ValueError(f"decode needs a 1-D sequence of ids, got shape {a.shape}")
        if a.size == 0:
            return ""
        if a.dtype.kind not in "iu":
            raise ValueError(f"decode needs integer ids, got dtype {a.dtype}")
        if a.min() < 0 or a.max() >= len(self):
            bad = a[(a < 0) | (a >= len(self))][0]
            raise ValueError(f"id {int(bad)} is out of range for a vocabulary of "
                             f"{len(self)} characters (ids 0..{len(self) - 1})")
        return "".join(self._chars_array[a].tolist())

    def to_dict(self) -> dict[str, Any]:
        # A list of one-character strings: JSON escapes "\n" and any other character.
        return {"chars": list(self.chars)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocabulary:
        try:
            chars = d["chars"]
        except (KeyError, TypeError):
            raise DataError("vocabulary: expected a mapping with a 'chars' list") from None
        if not (isinstance(chars, (list, tuple)) and chars
                and all(isinstance(c, str) and len(c) == 1 for c in chars)):
            raise DataError("vocabulary: 'chars' must be a non-empty list of one-character "
                            "strings")
        vocab = cls("".join(chars))
        if vocab.chars != tuple(chars):
            raise DataError("vocabulary: 'chars' must be '\\n' followed by the other "
                            "characters, unique and in code-point order (as to_dict writes "
                            "them)")
        return vocab


def read_utf8(path: str | os.PathLike) -> str:
    """A UTF-8 text file as a str, possibly empty. "\r\n" and "\r" become "\n"; a leading
    BOM is dropped. DataError if the file is missing, not a regular file or not UTF-8 (naming
    the line of the first undecodable byte)."""
    p = Path(path)
    where = str(p)
    if not p.exists():
        raise DataError("no such file; expected a UTF-8 text file", path=where)
    if not p.is_file():
        raise DataError("not a regular file; expected a UTF-8 text file", path=where)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", path=where) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"not UTF-8 text: byte 0x{raw[e.start]:02x} at offset {e.start} "
                        "cannot be decoded (save the file as UTF-8)",
                        path=f"{where}:{line}") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def load_text(path: str | os.PathLike) -> str:
    """read_utf8, and DataError if the file is empty."""
    text = read_utf8(path)
    if not text:
        raise DataError("empty file; expected some text", path=str(path))
    return text


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def char_windows(text: str, vocab: Vocabulary, seq_len: int, stride: int | None = None,
                 name: str = "text") -> Dataset:
    """Next-character prediction windows over a text.

    Window k starts at t = k * stride: x[k] = ids[t : t + seq_len] and y[k] = ids[t + 1 :
    t + seq_len + 1], both int64 (N, seq_len), so y is x shifted left by one step.
    stride defaults to seq_len (windows do not overlap). Every window is whole: the last
    characters that do not fill one are left out. DataError if the text has fewer than
    seq_len + 1 characters."""
    seq_len = _check_positive("seq_len", seq_len)
    stride = seq_len if stride is None else _check_positive("stride", stride)
    ids = vocab.encode(text)
    if len(ids) < seq_len + 1:
        raise DataError(f"text has {len(ids)} characters; windows of seq_len={seq_len} need "
                        f"at least {seq_len + 1}")
    n = (len(ids) - seq_len - 1) // stride + 1
    idx = (np.arange(n) * stride)[:, None] + np.arange(seq_len)
    return Dataset(ids[idx], ids[idx + 1], name)


def load_words(path: str | os.PathLike | None = None, seq_len: int = 32,
               stride: int | None = None) -> tuple[Dataset, Vocabulary]:
    """The shipped English word list (datasets/words.txt, 20,000 words) as next-character
    windows, and its vocabulary ("\\n" and a-z, 27 characters).

    The words are read one per line (blank lines and surrounding spaces ignored) and joined
    with "\\n", with a final "\\n", so every word ends with the boundary id 0."""
    p = Path(path) if path is not None else _datasets_dir() / "words.txt"
    if path is None and not p.exists():
        raise DataError("no such file; expected the shipped word list (regenerate it with "
                        "datasets/make_words.py, or set NNCTL_DATASETS)", path=str(p))
    words = [w for w in (line.strip() for line in load_text(p).split("\n")) if w]
    if not words:
        raise DataError("no words (only blank lines); expected one word per line",
                        path=str(p))
    text = "\n".join(words) + "\n"
    vocab = Vocabulary(text)
    return char_windows(text, vocab, seq_len, stride, name="words"), vocab
