"""Real tabular data: CSV files whose cells are strings as well as numbers, with gaps.

A table becomes numbers the way Ludwig and scikit-learn's ColumnTransformer do it, every
statistic learned from the training split only:

- column types inferred from the training rows (a column whose present cells are all
  numbers is numeric, any other categorical), overridable per column in the config
  (`columns: {zip: categorical, id: ignore}`);
- numeric gaps (an empty cell, NA, NaN, N/A, null, None, ?) filled by an imputation strategy,
  per column or for all: mean, median, most_frequent or constant (`fill`);
- categorical columns one-hot encoded over the training split's categories (sorted); a
  category the training split never showed, at validation, test or prediction time, encodes
  as all zeros (no column fires), and a gap is such an unknown unless the column imputes
  most_frequent or a constant. With `encoding: embedding` a column is instead a further
  model input of its name holding ids (0 unknown, 1.. the sorted categories) for an
  `embedding` layer, its vocabulary size in Dataset.info["input_vocab"];
- string labels become classes numbered in sorted order of their names, which are kept
  (Dataset.info["labels"]) so that predict and evaluate print names.

The fitted TableEncoder is kept in Dataset.info["tabular"] (saved in the run folder's
data.json through its to_dict) and used again by `nnctl predict` on raw rows.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nnctl.data.dataset import Dataset, split
from nnctl.data.kinds import register_loader
from nnctl.data.loaders import load_csv, read_csv_rows
from nnctl.errors import DataError

MISSING = {"", "na", "nan", "n/a", "null", "none", "?"}
TYPES = ("numeric", "categorical", "ignore")
IMPUTE = ("mean", "median", "most_frequent", "constant")


def is_missing(cell: str) -> bool:
    return cell.strip().lower() in MISSING


def as_number(cell: str) -> float | None:
    """The cell's finite number, or None (a word, a gap, NaN or Inf)."""
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class Column:
    """One feature column's encoding, fitted on the training rows."""

    def __init__(self, name: str, index: int, kind: str, impute: str, fill,
                 encoding: str = "onehot"):
        self.name, self.index, self.kind = name, index, kind
        self.impute, self.fill, self.encoding = impute, fill, encoding
        self.value: float | None = None  # a numeric column's stand-in for a gap
        self.categories: list[str] = []  # a categorical column's one-hot order
        self.stand_in: str | None = None  # a categorical gap's category, if imputed

    def fit(self, cells: list[str], where: str) -> None:
        present = [c.strip() for c in cells if not is_missing(c)]
        if self.kind == "numeric":
            numbers = []
            for c in present:
                v = as_number(c)
                if v is None:
                    raise DataError(f"column {self.name!r} is numeric but holds "
                                    f"{c[:40]!r}; declare it categorical under data.columns",
                                    path=where)
                numbers.append(v)
            self.value = self._stand_in(np.array(numbers), where)
        elif self.kind == "categorical":
            self.categories = sorted(set(present))
            if self.impute == "most_frequent" and present:
                values, counts = np.unique(present, return_counts=True)
                self.stand_in = str(values[int(np.argmax(counts))])
            elif self.impute == "constant":
                self.stand_in = str(self.fill)

    def _stand_in(self, numbers: np.ndarray, where: str) -> float:
        if self.impute == "constant":
            return float(self.fill)
        if not len(numbers):
            raise DataError(f"column {self.name!r} has no values in the training split to "
                            f"impute from; use impute: constant", path=where)
        if self.impute == "mean":
            return float(numbers.mean())
        if self.impute == "median":
            return float(np.median(numbers))
        values, counts = np.unique(numbers, return_counts=True)
        return float(values[int(np.argmax(counts))])

    @property
    def embedded(self) -> bool:
        return self.kind == "categorical" and self.encoding == "embedding"

    @property
    def width(self) -> int:
        if self.embedded:
            return 0  # a model input of its own (ids)
        return {"numeric": 1, "categorical": len(self.categories), "ignore": 0}[self.kind]

    def ids(self, cells: list[str]) -> np.ndarray:
        """An embedded column's ids: 0 for an unknown category (or a gap), k + 1 for the
        k-th training category."""
        position = {c: k + 1 for k, c in enumerate(self.categories)}
        return np.array([position.get(self.stand_in if is_missing(c) and self.stand_in
                                      is not None else c.strip(), 0) for c in cells],
                        dtype=np.int64)

    def encode(self, cells: list[str], lines: list, where: str) -> np.ndarray:
        """[rows, width] for this column's cells."""
        out = np.zeros((len(cells), self.width))
        if self.kind == "numeric":
            for i, c in enumerate(cells):
                if is_missing(c):
                    out[i, 0] = self.value
                else:
                    v = as_number(c)
                    if v is None:
                        raise DataError(f"line {lines[i]}: column {self.name!r} is numeric, "
                                        f"got {c.strip()[:40]!r}", path=where)
                    out[i, 0] = v
        elif self.kind == "categorical" and not self.embedded:
            position = {c: k for k, c in enumerate(self.categories)}
            for i, c in enumerate(cells):
                c = self.stand_in if is_missing(c) and self.stand_in is not None else c.strip()
                k = position.get(c)
                if k is not None:  # an unknown category (or a gap) fires no column
                    out[i, k] = 1.0
        return out

    def to_dict(self) -> dict:
        d = {"name": self.name, "type": self.kind}
        if self.kind == "numeric":
            d.update(impute=self.impute, value=self.value)
        elif self.kind == "categorical":
            d.update(categories=self.categories, missing=self.stand_in,
                     encoding=self.encoding)
        return d


class TableEncoder:
    """Feature columns (in file order, the label left out) encoded side by side."""

    def __init__(self, header: list[str], label: int, columns: list[Column]):
        self.header, self.label, self.columns = header, label, columns

    @property
    def feature_names(self) -> list[str]:
        names = []
        for col in self.columns:
            if col.kind == "numeric":
                names.append(col.name)
            elif col.kind == "categorical" and not col.embedded:
                names += [f"{col.name}={c}" for c in col.categories]
        return names

    @property
    def embedded(self) -> list[Column]:
        return [c for c in self.columns if c.embedded]

    def ids(self, rows: list[list[str]], has_label: bool = True) -> dict[str, np.ndarray]:
        """{column name: ids} of the embedded columns (model inputs of those names)."""
        shift = lambda j: j if has_label or j < self.label else j - 1  # noqa: E731
        return {c.name: c.ids([r[shift(c.index)] for r in rows]) for c in self.embedded}

    def encode(self, rows: list[list[str]], lines: list, where: str,
               has_label: bool = True) -> np.ndarray:
        """[rows, features]: rows of the file's cells (with the label column when
        `has_label`, else the feature columns only)."""
        if not rows:
            return np.zeros((0, len(self.feature_names)))
        offset = lambda j: j if has_label or j < self.label else j - 1  # noqa: E731
        parts = [col.encode([r[offset(col.index)] for r in rows], lines, where)
                 for col in self.columns]
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(rows), 0))

    def to_dict(self) -> dict:
        return {"label": self.header[self.label], "columns": [c.to_dict() for c in
                                                              self.columns]}


def read_rows(path: Path, delimiter: str) -> list[tuple[int, list[str]]]:
    """(line number, cells) of each non-blank row."""
    where = str(path)
    rows = read_csv_rows(path, delimiter, "a CSV file", "a header and rows")
    width = len(rows[0][1])
    for line, row in rows:
        if len(row) != width:
            raise DataError(f"line {line}: has {len(row)} columns, expected {width} (as on "
                            f"line {rows[0][0]})", path=where)
    return rows


def has_header(rows: list[tuple[int, list[str]]]) -> bool:
    """A first row of names: no cell is a number, and no cell reappears in its column below
    (a row of category values would)."""
    first = rows[0][1]
    if any(as_number(c) is not None for c in first) or len(rows) < 2:
        return False
    below = [set(r[j].strip() for _, r in rows[1:]) for j in range(len(first))]
    return not any(c.strip() in seen for c, seen in zip(first, below))


def is_plain_numeric(rows: list[tuple[int, list[str]]]) -> bool:
    """Every cell a number: the table the plain CSV reader (nnctl.data.load_csv) reads."""
    return all(as_number(c) is not None for _, r in rows for c in r)


def label_index(label_column, names: list[str], width: int, where: str) -> int:
    if isinstance(label_column, str):
        if label_column not in names:
            raise DataError(f"no column named {label_column!r}; the header has "
                            f"{', '.join(names)}", path=where)
        return names.index(label_column)
    if not -width <= label_column < width:
        raise DataError(f"label_column {label_column} is out of range for {width} columns",
                        path=where)
    return label_column % width


def table_labels(cells: list[str], lines: list, where: str) -> tuple[np.ndarray, list | None]:
    """(y, class names or None): integers are classes, other numbers regression targets,
    words class names (numbered in sorted order)."""
    for i, c in enumerate(cells):
        if is_missing(c):
            raise DataError(f"line {lines[i]}: the label is missing", path=where)
    stripped = [c.strip() for c in cells]
    numbers = [as_number(c) for c in stripped]
    if all(v is not None for v in numbers):
        if all(v == int(v) and "." not in c and "e" not in c.lower()
               for v, c in zip(numbers, stripped)) and min(numbers) >= 0:
            return np.array([int(c) for c in stripped], dtype=np.int64), None
        return np.array(numbers, dtype=np.float64), None
    names = sorted(set(stripped))
    position = {n: k for k, n in enumerate(names)}
    return np.array([position[c] for c in stripped], dtype=np.int64), names


def check_not_mixed(cells: list[str], lines: list, j: int, name: str, header: bool,
                    where: str) -> None:
    """A column of numbers with a few words is most likely a typo, not categories: say
    where, unless the config declares the column's type."""
    numbers = [as_number(c) is not None for c in cells if not is_missing(c)]
    if any(numbers) and not all(numbers):
        i = next(k for k, c in enumerate(cells) if not is_missing(c) and as_number(c) is None)
        column = f"column {j + 1}" + (f" ({name})" if header else "")
        raise DataError(f"line {lines[i]}, {column}: {cells[i].strip()[:40]!r} is not a number, "
                        "but the column's other cells are; fix the cell, or declare the "
                        f"column under data.columns ({name}: categorical)", path=where)


def train_rows(y: np.ndarray, spec, seed: int) -> np.ndarray:
    """The row indices load_splits will put in the training split (the same call of
    `split` on the same labels and seed); all rows where the fractions are refused (the
    config error is load_splits' to report)."""
    try:
        parts = split(Dataset(np.arange(len(y)), y), spec.split.val, spec.split.test,
                      seed=seed, stratify=np.issubdtype(y.dtype, np.integer))
    except ValueError:
        return np.arange(len(y))
    return np.sort(parts[0].x)


def fit_table(rows, spec, seed: int, where: str, header: bool):
    """(encoder, data rows, their line numbers, y, class names) of a table with strings or
    gaps whose first row is a header or not."""
    first = rows[0][1]
    names = [c.strip() for c in first] if header else [f"column {j + 1}"
                                                       for j in range(len(first))]
    body = rows[1:] if header else rows
    if not body:
        raise DataError("has a header but no data rows", path=where)
    label = label_index(spec.label_column, names, len(names), where)
    lines = [line for line, _ in body]
    y, class_names = table_labels([r[label] for _, r in body], lines, where)
    train = train_rows(y, spec, seed)
    overrides = dict(spec.columns or {})
    unknown = [k for k in overrides if k not in names]
    if unknown:
        raise DataError(f"data.columns names {unknown[0]!r}, which is not a column; the "
                        f"header has {', '.join(names)}", path=where)
    columns = []
    for j, name in enumerate(names):
        if j == label:
            continue
        o = overrides.get(name, {})
        if "type" not in o:
            check_not_mixed([r[j] for _, r in body], lines, j, name, header, where)
        cells = [body[i][1][j] for i in train]
        kind = o.get("type") or ("numeric" if all(
            as_number(c) is not None for c in cells if not is_missing(c)) else "categorical")
        impute = o.get("impute") or spec.impute
        fill = o.get("fill", spec.fill)
        encoding = o.get("encoding", "onehot")
        if encoding == "embedding" and kind != "categorical":
            raise DataError(f"column {name!r}: encoding embedding is for categorical columns",
                            path=where)
        if impute == "constant" and fill is None:
            raise DataError(f"column {name!r}: impute constant needs a fill value "
                            "(data.fill or the column's fill)", path=where)
        col = Column(name, j, kind, impute, fill, encoding)
        col.fit(cells, where)
        columns.append(col)
    encoder = TableEncoder(names, label, columns)
    return encoder, body, lines, y, class_names


def load_table(spec, seed: int, dtype: str) -> Dataset | None:
    """`dataset: csv` for a table with strings or gaps (None for a table of numbers only,
    which nnctl.data.load_csv reads as before)."""
    path = Path(spec.path)
    where = str(path)
    rows = read_rows(path, spec.delimiter)
    header = spec.header if spec.header is not None else has_header(rows)
    if is_plain_numeric(rows[1:] if header else rows) and not spec.columns:
        return None
    encoder, body, lines, y, class_names = fit_table(rows, spec, seed, where, header)
    x = encoder.encode([r for _, r in body], lines, where)
    if not x.shape[1]:
        raise DataError("no feature columns left for the input x (every column is the label, "
                        "ignored or embedded)", path=where)
    info = {"tabular": encoder}
    if encoder.embedded:
        info["input_vocab"] = {c.name: len(c.categories) + 1 for c in encoder.embedded}
    if class_names is not None:
        info["labels"] = class_names
    if not np.issubdtype(y.dtype, np.integer):
        y = y.astype(dtype)
    return Dataset(x.astype(dtype), y, path.stem, info=info,
                   extra=encoder.ids([r for _, r in body]))


def encode_rows(encoder: TableEncoder, path: Path, delimiter: str, names: list | None,
                ) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """A file of rows for a fitted table (predict, evaluate --data): its features, its
    labels (class numbers by the run's names) when it still has the label column, and the
    ids of its embedded columns. The header, if any, is recognised by the run's column
    names."""
    where = str(path)
    rows = read_rows(path, delimiter)
    first = [c.strip() for c in rows[0][1]]
    label_name = encoder.header[encoder.label]
    header = first == encoder.header or first == [n for n in encoder.header
                                                  if n != label_name]
    body = rows[1:] if header else rows
    width = len(rows[0][1])
    has_label = width == len(encoder.header)
    if not has_label and width != len(encoder.header) - 1:
        raise DataError(f"rows have {width} columns; the run's table has "
                        f"{len(encoder.header)} with the label ({label_name}) or "
                        f"{len(encoder.header) - 1} without", path=where)
    lines = [line for line, _ in body]
    x = encoder.encode([r for _, r in body], lines, where, has_label)
    ids = encoder.ids([r for _, r in body], has_label)
    if not has_label:
        return x, None, ids
    cells = [r[encoder.label].strip() for _, r in body]
    if names is None:
        y, _ = table_labels(cells, lines, where)
        return x, y, ids
    position = {n: k for k, n in enumerate(names)}
    for i, c in enumerate(cells):
        if c not in position:
            raise DataError(f"line {lines[i]}: label {c[:40]!r} is not one of the run's "
                            f"classes ({', '.join(names)})", path=where)
    return x, np.array([position[c] for c in cells], dtype=np.int64), ids


@register_loader("csv")
def load_csv_kind(spec, seed: int, dtype: str) -> Dataset:
    """`dataset: csv`: a table with strings or gaps through the TableEncoder, a table of
    numbers only through nnctl.data.load_csv (exactly as before)."""
    table = load_table(spec, seed, dtype)
    if table is not None:
        return table
    return load_csv(spec.path, spec.label_column, spec.header, spec.delimiter, dtype=dtype)
