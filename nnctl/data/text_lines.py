"""Texts from table files, and the `text` data kind (classify a text: label and text per line).

A file is UTF-8. A .csv is read with the csv module (a header row names the columns, quoted
fields may hold commas); any other file (.tsv, .txt) is split at tabs with no quoting, as
tab-separated corpora write it (a text may hold quote characters freely). Every mistake is
one DataError naming file:line, so a user can open the file at the line and fix it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from nnctl.data.dataset import Dataset
from nnctl.data.kinds import register_loader
from nnctl.data.text import read_utf8
from nnctl.data.tokens import TokenVocab, pad_ids, training_indices
from nnctl.errors import DataError, capped, excerpt


def has_header(path: str, header: bool | None) -> bool:
    """header: None means a .csv or .tsv file starts with a header row, a .txt file not."""
    if header is not None:
        return header
    return Path(path).suffix.lower() in (".csv", ".tsv")


def read_columns(path: str, header: bool | None,
                 columns: dict[str, tuple[int | str | None, int]]
                 ) -> tuple[list[str], dict[str, list[str]]]:
    """The examples of a table file: (where, one 'file:line' per example; each role's
    column). columns maps a role (e.g. "text") to (the configured column: a header name, an
    index (negative from the end) or None, the index used without a header); None with a
    header means the column named as the role."""
    rows = _rows(path)
    header = has_header(path, header)
    first_line, names = (rows[0][0], rows[0][1]) if rows else (1, [])
    if header:
        rows = rows[1:]
    if not rows:
        raise DataError("no examples" + (" below the header" if header else ""), path=path)
    width = len(names) if header else len(rows[0][1])
    picks = {role: _column(path, first_line, header, names, width, role, given, index)
             for role, (given, index) in columns.items()}
    what = "fields" if Path(path).suffix.lower() == ".csv" else "tab-separated fields"
    for line, fields in rows:
        if len(fields) != width:
            hint = " (a tab inside a text?)" if len(fields) > width and "tab" in what else ""
            raise DataError(f"{len(fields)} {what}, expected {width} as in line {first_line}"
                            f"{hint}", path=f"{path}:{line}")
    wheres = [f"{path}:{line}" for line, _ in rows]
    return wheres, {role: [fields[i] for _, fields in rows] for role, i in picks.items()}


def _rows(path: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every record; an empty line is a DataError."""
    p = Path(path)
    text = read_utf8(path)
    if p.suffix.lower() == ".csv":
        return _csv_rows(path, text)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise DataError("empty line; expected one example per line", path=f"{path}:{number}")
        rows.append((number, line.split("\t")))
    return rows


def _csv_rows(path: str, text: str) -> list[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text))
    rows, start = [], 1
    try:
        for fields in reader:
            # a quoted field may span lines: a record starts after the previous one ended
            if not fields or not any(f.strip() for f in fields):
                raise DataError("empty line; expected one example per line",
                                path=f"{path}:{start}")
            rows.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as e:
        raise DataError(f"not valid CSV: {e}", path=f"{path}:{reader.line_num}") from None
    return rows


def _column(path: str, line: int, header: bool, names: list[str], width: int, role: str,
            given: int | str | None, index: int) -> int:
    """The index of a role's column (see read_columns)."""
    key = f"data.{role}_column"
    if given is None:
        given = role if header else index
    if isinstance(given, str):
        if not header:
            raise DataError(f"{key} {excerpt(given)} names a column, but the file has no "
                            "header row (data.header); give a column index", path=path)
        stripped = [n.strip() for n in names]
        if given.strip() not in stripped:
            raise DataError(f"no column {excerpt(given)} in the header ({capped(stripped)}); set "
                            f"{key}, or data.header: false if the file has no header row",
                            path=f"{path}:{line}")
        return stripped.index(given.strip())
    if not -width <= given < width:
        raise DataError(f"{key} is {given}, but the rows have {width} fields (columns "
                        f"0..{width - 1})", path=f"{path}:{line}")
    return given % width


def encode_texts(vocab: TokenVocab, texts: list[str], wheres: list[str], max_len: int | None,
                 truncate: bool, key: str = "max_len") -> list[np.ndarray]:
    """Each text's ids. A text with no tokens, or with more than max_len tokens (unless
    truncate: then cut to its first max_len), is a DataError at its line. `key` names the
    config key of the limit in the message."""
    out = []
    for text, where in zip(texts, wheres):
        if not text.strip():
            raise DataError("empty text; expected some tokens", path=where)
        ids = vocab.encode(text, where)
        if max_len is not None and len(ids) > max_len:
            if not truncate:
                raise DataError(f"{len(ids)} tokens, more than {key} {max_len} (raise "
                                f"data.{key} or set data.truncate: true)", path=where)
            ids = ids[:max_len]
        out.append(ids)
    return out


def vocab_options(spec) -> dict:
    """The TokenVocab.build keywords a text spec's keys give."""
    return dict(level=spec.tokens, lowercase=spec.lowercase, min_count=spec.min_count,
                max_size=spec.max_size, unknown=spec.unknown)


@register_loader("text")
def load_text_classes(spec, seed: int, dtype: str) -> Dataset:
    """`dataset: text`: x int64 [N, T] token ids padded with PAD, x_len, y int64 (N,) the
    label ids (label names in sorted order: info["labels"]), info["input"] the TokenVocab
    built from the training split."""
    wheres, cols = read_columns(spec.path, spec.header,
                                {"label": (spec.label_column, 0), "text": (spec.text_column, 1)})
    labels = [label.strip() for label in cols["label"]]
    for label, where in zip(labels, wheres):
        if not label:
            raise DataError("empty label; expected a class name", path=where)
    names = sorted(set(labels))
    ids = {name: i for i, name in enumerate(names)}
    y = np.array([ids[label] for label in labels], dtype=np.int64)
    texts = cols["text"]
    train = training_indices(len(texts), y, spec.split, seed, stratify=True)
    vocab = TokenVocab.build((texts[i] for i in train), **vocab_options(spec))
    x, x_len = pad_ids(encode_texts(vocab, texts, wheres, spec.max_len, spec.truncate))
    return Dataset(x, y, Path(spec.path).stem, x_len=x_len,
                   info={"input": vocab, "labels": names})
