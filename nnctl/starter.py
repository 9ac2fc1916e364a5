"""A first config for a user's own data file (`nnctl init DATA_FILE`): the columns or arrays
as nnctl reads them, the label it picked, a sensible model, and the keys worth changing, as a
commented YAML file that `nnctl train` accepts as it is."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nnctl.data.tabular import as_number, has_header, is_missing, read_rows, table_labels
from nnctl.errors import DataError

LABEL_NAMES = ("label", "labels", "target", "class", "y", "species", "outcome", "category")


def starter_config(data: Path, config: Path) -> str:
    """The YAML text of a config at `config` for the data file `data` (.csv/.tsv or .npz)."""
    path = os.path.relpath(data.resolve(), config.resolve().parent)
    if data.suffix.lower() == ".npz":
        body, task = _npz(data, path)
    elif data.suffix.lower() in (".csv", ".tsv", ".txt"):
        body, task = _csv(data, path)
    else:
        raise DataError("nnctl init reads a .csv (or .tsv) or an .npz file", path=str(data))
    return "\n".join([
        f"# A first config for {data.name}, written by `nnctl init`. Check the label and the",
        "# column types below, then: nnctl validate THIS_FILE && nnctl train THIS_FILE",
        "# (every key: docs/config.md; tabular data: docs/tabular.md).",
        "seed: 0",
        *body,
        "model:",
        "  layers:  # a multilayer perceptron; widen or deepen it for harder data",
        "    - dense: {units: 64, activation: relu}",
        "    - dropout: 0.1",
        "    - dense: {units: 64, activation: relu}",
        "    - dense: {units: " + ("classes}" if task == "classes" else "1}"),
        *(["loss: cross_entropy", "metrics: [accuracy, f1_macro]"] if task == "classes" else
          ["loss: mse            # or l1, huber (docs/losses.md)", "metrics: [mae, rmse, r2]"]),
        "optimizer: {name: adam, lr: 0.001}  # lr is the first thing to tune (nnctl tune)",
        "train:",
        "  epochs: 50",
        "  batch_size: 32",
        "  monitor: " + ("val_accuracy" if task == "classes" else "val_loss") +
        "   # the best epoch's weights are kept",
        "  patience: 10          # stop after 10 epochs without improvement",
        "",
    ])


def _csv(data: Path, path: str) -> tuple[list[str], str]:
    delimiter = "\t" if data.suffix.lower() == ".tsv" else ","
    rows = read_rows(data, delimiter)
    header = has_header(rows)
    first = rows[0][1]
    names = [c.strip() for c in first] if header else [f"column {j + 1}"
                                                       for j in range(len(first))]
    body = rows[1:] if header else rows
    if not body or len(names) < 2:
        raise DataError("expected a header row, data rows and at least two columns",
                        path=str(data))
    lowered = [n.lower() for n in names]
    label = next((lowered.index(n) for n in LABEL_NAMES if n in lowered), len(names) - 1)
    lines = [line for line, _ in body]
    y, class_names = table_labels([r[label] for _, r in body], lines, str(data))
    task = "classes" if np.issubdtype(y.dtype, np.integer) else "regression"
    out = ["data:", "  dataset: csv", f"  path: {path}",
           f"  label_column: {names[label] if header else label}"
           + ("   # found by its name" if lowered[label] in LABEL_NAMES else
              "   # the last column; name the label column here"),
           "  split: {val: 0.15, test: 0.15}",
           "  normalize: standard",
           "  impute: mean          # numeric gaps: mean, median, most_frequent or constant"]
    described = []
    for j, name in enumerate(names):
        if j == label:
            continue
        cells = [r[j] for _, r in body]
        present = [c for c in cells if not is_missing(c)]
        numeric = all(as_number(c) is not None for c in present)
        gaps = len(cells) - len(present)
        kind = "numeric" if numeric else f"categorical ({len(set(c.strip() for c in present))}" \
            " categories)"
        described.append(f"  #   {name}: {kind}" + (f", {gaps} missing" if gaps else ""))
    what = (f"{len(class_names)} classes: {', '.join(class_names[:8])}"
            + (", ..." if len(class_names) > 8 else "")) if class_names else \
        (f"{len(np.unique(y))} classes" if task == "classes" else "a number (regression)")
    out += ["  # inferred from the file (types are inferred again from the training split;",
            "  # override one with columns: {NAME: numeric | categorical | ignore}):",
            *described,
            f"  # label {names[label]}: {what}"]
    return out, task


def _npz(data: Path, path: str) -> tuple[list[str], str]:
    try:
        with np.load(data, allow_pickle=False) as npz:
            arrays = {k: (npz[k].shape, npz[k].dtype) for k in npz.files}
    except Exception as err:
        raise DataError(f"cannot read as .npz: {type(err).__name__}: {err}",
                        path=str(data)) from None
    if "x" not in arrays or "y" not in arrays:
        raise DataError(f"expected arrays x and y; the file has {', '.join(arrays) or 'none'}",
                        path=str(data))
    (y_shape, y_dtype) = arrays["y"]
    task = "classes" if np.issubdtype(y_dtype, np.integer) and len(y_shape) <= 1 else \
        "regression"
    out = ["data:", "  dataset: npz", f"  path: {path}", "  split: {val: 0.15, test: 0.15}",
           "  normalize: standard",
           f"  # x: {list(arrays['x'][0])} {arrays['x'][1]}; y: {list(y_shape)} {y_dtype} ("
           + ("class labels" if task == "classes" else "regression targets") + ")"]
    others = [k for k in arrays if k not in ("x", "y")]
    if others:
        out.append(f"  # further arrays (model inputs via inputs: [...]): {', '.join(others)}")
    return out, task
