"""Read data files (NPZ, CSV) into a Dataset. Every problem with a file is a one-line DataError.

Nothing here unpickles: np.load always runs with allow_pickle=False (architecture note A5).
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import os
import re
from pathlib import Path

import numpy as np

from nnctl.data.dataset import Dataset, check_class_labels
from nnctl.errors import DataError, capped, excerpt

# The shipped data sets live next to the package in a source checkout; NNCTL_DATASETS points
# elsewhere (an installed package, a test fixture).
DATASETS_DIR = Path(os.environ.get("NNCTL_DATASETS") or
                    Path(__file__).resolve().parents[2] / "datasets")

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members / an empty zip
_NPY_MAGIC = b"\x93NUMPY"


def _datasets_dir() -> Path:
    # Read the variable at call time too, so setting it after import still works.
    env = os.environ.get("NNCTL_DATASETS")
    return Path(env) if env else DATASETS_DIR


def _check_file(path: Path, expected: str) -> None:
    if not path.exists():
        raise DataError(f"no such file; expected {expected}", path=str(path))
    if not path.is_file():
        raise DataError(f"not a regular file; expected {expected}", path=str(path))


def load_digits(path: str | os.PathLike | None = None) -> Dataset:
    """The 8x8 UCI digits shipped in datasets/digits.npz: x float32 (1797, 64) in 0..16, y 0..9."""
    p = Path(path) if path is not None else _datasets_dir() / "digits.npz"
    if not p.exists():
        raise DataError("no such file; expected the shipped digits data set (regenerate it "
                        "with datasets/make_digits.py, or set NNCTL_DATASETS)", path=str(p))
    ds = load_npz(p)
    if ds.x.shape[1:] != (64,) or ds.num_classes is None:
        raise DataError(f"expected digits with x of shape (N, 64) and integer labels, got x "
                        f"{ds.x.shape} and y {ds.y.dtype}", path=str(p))
    ds.name = "digits"
    return ds


def load_npz(path: str | os.PathLike, x_key: str = "x", y_key: str = "y",
             dtype: str = "float32", extra_keys: tuple[str, ...] = (),
             class_labels: bool = True) -> Dataset:
    """Read arrays x_key (features) and y_key (labels/targets) from a NumPy .npz archive;
    features and float targets become `dtype` (the run's train.dtype). `extra_keys` are
    further per-sample arrays, the model inputs of those names (Dataset.extra).
    class_labels=False: integer labels are targets too (0/1 per label of a binary or
    multi-label loss), not class ids."""
    p = Path(path)
    where = str(p)
    expected = f"an .npz archive with arrays '{x_key}' and '{y_key}'"
    _check_file(p, expected)
    try:
        # We open the file (not np.load) so it is closed even when zipfile gives up on it.
        with open(p, "rb") as f, _open_npz(f, where, expected) as npz:
            keys = list(npz.files)
            arrays = {}
            for key in (x_key, y_key, *extra_keys):
                if key not in keys:
                    raise DataError(f"no array named {excerpt(key)}; the file has "
                                    f"{capped(excerpt(k) for k in keys) or 'no arrays'}",
                                    path=where)
                arrays[key] = _read_member(npz, key, where)
    except DataError:
        raise
    except Exception as e:
        # Broad on purpose: a corrupt member can fail anywhere in zipfile, zlib or numpy's
        # header parser (BadZipFile, zlib.error, EOFError, ValueError, even SyntaxError).
        raise DataError(f"cannot read as .npz (corrupt or truncated?): "
                        f"{type(e).__name__}: {e}", path=where) from None
    data = _to_dataset(arrays[x_key], arrays[y_key], x_key, y_key, where, p.stem, dtype,
                       class_labels)
    for key in extra_keys:
        a = arrays[key]
        if a.ndim == 0 or len(a) != len(data):
            raise DataError(f"array {excerpt(key)} has shape {list(a.shape)}; expected one "
                            f"row per sample ({len(data)})", path=where)
        if not (np.issubdtype(a.dtype, np.number) and np.isfinite(a).all()):
            raise DataError(f"array {excerpt(key)} must hold finite numbers", path=where)
    return dataclasses.replace(data, extra={k: arrays[k] for k in extra_keys})


def _open_npz(f, where: str, expected: str):
    magic = f.read(6)
    f.seek(0)
    # Check the magic ourselves: np.load calls any non-zip, non-npy file "pickled data".
    if magic.startswith(_NPY_MAGIC):
        raise DataError(f"is a single .npy array; expected {expected} (save with np.savez)",
                        path=where)
    if magic[:4] not in _ZIP_MAGIC:
        raise DataError(f"not an .npz (zip) archive; expected {expected}", path=where)
    return np.load(f, allow_pickle=False)


def _read_member(npz, key: str, where: str) -> np.ndarray:
    try:
        a = npz[key]
    except ValueError as e:
        if "Object arrays" in str(e) or "pickled" in str(e):
            raise DataError(f"array '{key}' holds Python objects (dtype=object), which would "
                            "need pickle; expected a numeric array", path=where) from None
        raise
    if not isinstance(a, np.ndarray):  # numpy hands back raw bytes for a non-.npy member
        raise DataError(f"member '{key}' is not a .npy array; expected {key}.npy written by "
                        "np.savez", path=where)
    return a


def _to_dataset(x: np.ndarray, y: np.ndarray, x_key: str, y_key: str, where: str,
                name: str, dtype: str = "float32", class_labels: bool = True) -> Dataset:
    for key, a in ((x_key, x), (y_key, y)):
        if a.dtype.kind not in "biuf":  # bool, int, uint, float; not complex/str/datetime/void
            raise DataError(f"array '{key}' has dtype {a.dtype}; expected numbers "
                            "(integer or float)", path=where)
        if a.ndim == 0:
            raise DataError(f"array '{key}' is a scalar; expected one row per sample",
                            path=where)
    if len(x) != len(y):
        raise DataError(f"'{x_key}' has {len(x)} samples but '{y_key}' has {len(y)}; expected "
                        "the same number", path=where)
    if len(x) == 0:
        raise DataError("no samples (empty arrays); expected at least one", path=where)
    # A 1-D x is N scalar samples: give it the (N, 1) feature axis every model expects.
    x = x.reshape(len(x), -1) if x.ndim == 1 else x
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
        x = x.astype(dtype)
    _check_finite(x, f"array '{x_key}'", where)  # after the cast: huge float64 become inf
    if y.dtype.kind in "biu" and class_labels:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise DataError(f"integer labels '{y_key}' have shape {y.shape}; expected (N,) "
                            "class labels", path=where)
        if y.min() < 0:
            raise DataError(f"labels '{y_key}' include negative value {int(y.min())}; "
                            "expected class labels 0..K-1", path=where)
        top = int(np.argmax(y))  # before the int64 cast, which would wrap a huge uint64
        check_class_labels(int(y[top]), len(np.unique(y)), f"class label {int(y[top])} at "
                           f"index {top} of '{y_key}'", where)
        y = y.astype(np.int64)
    else:
        if y.ndim > 2:
            raise DataError(f"targets '{y_key}' have shape {y.shape}; expected (N,) or (N, k)",
                            path=where)
        with np.errstate(over="ignore", invalid="ignore"):
            y = y.astype(dtype)
        _check_finite(y, f"targets '{y_key}'", where)
    return Dataset(x, y, name)


def _check_finite(a: np.ndarray, what: str, where: str) -> None:
    bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    if bad.any():
        raise DataError(f"{what} has NaN or Inf in {int(bad.sum())} sample(s), first at index "
                        f"{int(np.argmax(bad))}; expected finite numbers", path=where)


_INT_RE = re.compile(r"^[+-]?\d+$")


def read_csv_rows(p: Path, delimiter: str, expected: str,
                  rows_expected: str) -> list[tuple[int, list[str]]]:
    """(line number, cells) of each non-blank row of a UTF-8 CSV file (line numbers kept for
    messages); one-line DataErrors for a missing, unreadable or empty file."""
    where = str(p)
    _check_file(p, expected)
    try:
        with open(p, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter=delimiter)
            rows = [(reader.line_num, row) for row in reader
                    if any(cell.strip() for cell in row)]
    except UnicodeDecodeError:
        raise DataError(f"not a UTF-8 text file; expected {expected}", path=where) from None
    except (csv.Error, OSError) as e:
        raise DataError(f"cannot read as CSV: {e}", path=where) from None
    if not rows:
        raise DataError(f"empty file; expected {rows_expected}", path=where)
    return rows


def load_csv(path: str | os.PathLike, label_column: int | str = -1, header: bool | None = None,
             delimiter: str = ",", dtype: str = "float32") -> Dataset:
    """Read a CSV of numbers: one sample per row, one column holding the label.

    header=None detects a header row (a first row in which no cell is a number).
    label_column is an index (negative counts from the end) or a header name. Labels written
    as integers ("3") become int64 class labels; any other number ("3.0", "0.5") makes all of
    them regression targets. Features and targets become `dtype` (the run's train.dtype)."""
    p = Path(path)
    where = str(p)
    rows = read_csv_rows(p, delimiter, "a CSV file of numbers",
                         "rows of comma-separated numbers")

    if header is None:
        header = not any(_is_number(cell) for cell in rows[0][1])
    names = [c.strip() for c in rows[0][1]] if header else None
    data = rows[1:] if header else rows
    if not data:
        raise DataError("has a header but no data rows", path=where)

    ncols = len(names) if names is not None else len(data[0][1])
    first_line = rows[0][0]
    for line, row in data:
        if len(row) != ncols:
            raise DataError(f"line {line}: has {len(row)} columns, expected {ncols} "
                            f"(as on line {first_line})", path=where)
    if ncols < 2:
        raise DataError(f"has {ncols} column; expected at least one feature column and a "
                        "label column", path=where)
    label = _label_index(label_column, names, ncols, where)

    values = np.empty((len(data), ncols), dtype=np.float64)
    for i, (line, row) in enumerate(data):
        for j, cell in enumerate(row):
            try:
                values[i, j] = float(cell)
            except ValueError:
                hint = " (if it is a header, pass header=True)" if i == 0 and not header else ""
                raise DataError(f"line {line}, column {j + 1}: {excerpt(cell.strip())} is not "
                                f"a number{hint}", path=where) from None

    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
        x = np.delete(values, label, axis=1).astype(dtype)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"line {data[i][0]}: NaN or Inf in a feature column; expected finite "
                        "numbers", path=where)
    y_raw = values[:, label]
    if not np.isfinite(y_raw).all():
        i = int(np.argmax(~np.isfinite(y_raw)))
        raise DataError(f"line {data[i][0]}: label is NaN or Inf; expected a finite number",
                        path=where)
    if all(_INT_RE.match(row[label].strip()) for _, row in data):
        y = _class_labels(data, label, where)
    else:
        with np.errstate(over="ignore"):
            y = y_raw.astype(dtype)
        if not np.isfinite(y).all():
            i = int(np.argmax(~np.isfinite(y)))
            raise DataError(f"line {data[i][0]}: label {excerpt(data[i][1][label].strip())} "
                            f"does not fit in {dtype}; expected a finite {dtype} target",
                            path=where)
    return Dataset(x, y, p.stem)


def _class_labels(data: list, label: int, where: str) -> np.ndarray:
    """Integer label cells as int64 class labels, read exactly (float() would round 2**63+5
    and the int64 cast wrap it), range-checked before any model is sized by them."""
    labels = [int(row[label]) for _, row in data]
    low, high = min(labels), max(labels)
    if low < 0:
        i = labels.index(low)
        raise DataError(f"line {data[i][0]}: class label {low} is negative; expected labels "
                        "0..K-1 (write regression targets as floats, e.g. -1.0)", path=where)
    i = labels.index(high)
    check_class_labels(high, len(set(labels)), f"line {data[i][0]}: class label {high}", where)
    return np.asarray(labels, dtype=np.int64)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _label_index(label_column: int | str, names: list[str] | None, ncols: int,
                 where: str) -> int:
    if isinstance(label_column, str):
        if names is None:
            raise DataError(f"label column {label_column!r} is a name, but the file has no "
                            "header row; pass a column index or add a header", path=where)
        if names.count(label_column) != 1:
            close = difflib.get_close_matches(label_column, names, n=1)
            hint = f"; did you mean {excerpt(close[0])}?" if close else ""
            problem = "is not unique" if label_column in names else "not found"
            raise DataError(f"label column {excerpt(label_column)} {problem}; columns are "
                            f"{capped(excerpt(n, 16) for n in names)}{hint}", path=where)
        return names.index(label_column)
    if isinstance(label_column, bool) or not isinstance(label_column, (int, np.integer)):
        raise DataError(f"label column must be an index or a header name, got "
                        f"{label_column!r}", path=where)
    if not -ncols <= label_column < ncols:
        raise DataError(f"label column {label_column} is out of range; the file has {ncols} "
                        f"columns (use 0..{ncols - 1} or -1..-{ncols})", path=where)
    return int(label_column) % ncols
