"""plot_run(run_dir): training curves (and a confusion matrix) from a run folder, as PNGs.

Reads `metrics.jsonl` (one JSON object per epoch: `epoch`, `train_<metric>`,
`val_<metric>`, timings) and writes `plots/loss.png` and one `plots/<metric>.png` per other
metric, train and validation on one set of axes. If the run folder has `confusion.json`
(`{"labels": [...], "matrix": [[...]]}`, rows true, columns predicted), it also writes
`plots/confusion.png`.

matplotlib is optional (`pip install 'nnctl[plot]'`). It is imported only here, when a plot
is drawn, and only through its object API with the Agg canvas: no pyplot, so no global
backend is switched and no window opens. Without it plot_run raises UsageError. The run
folder is checked first, so a bad folder is a DataError with or without matplotlib.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from nnctl.errors import DataError, UsageError
from nnctl.extras import install_hint

NOT_CURVES = {"epoch", "seconds", "samples_per_s"}  # keys that are not train/val metrics
SPLITS = ("train", "val")
INSTALL = "nnctl plot needs matplotlib: " + install_hint("plot", "matplotlib")

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The epoch records of a run folder's metrics.jsonl; DataError if it is missing or bad."""
    run = Path(run_dir)
    if not run.is_dir():
        raise DataError("not a run folder (no such directory)", path=str(run))
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise DataError("no metrics.jsonl: not a run folder, or no epoch finished",
                        path=str(path))
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read: {err}", path=str(path)) from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"line {number}: not JSON ({err.msg})", path=str(path)) from None
        if not isinstance(record, dict):
            raise DataError(f"line {number}: expected a JSON object per epoch", path=str(path))
        records.append(record)
    if not records:
        raise DataError("no epochs recorded", path=str(path))
    return records


def read_confusion(run_dir: str | os.PathLike) -> tuple[list[str], list[list[int]]] | None:
    """(labels, matrix) from confusion.json, or None where the run folder has none."""
    path = Path(run_dir) / "confusion.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read: {err}", path=str(path)) from None
    labels = data.get("labels") if isinstance(data, dict) else None
    matrix = data.get("matrix") if isinstance(data, dict) else None
    k = len(labels) if isinstance(labels, list) else -1
    if (k < 1 or not isinstance(matrix, list) or len(matrix) != k
            or any(not isinstance(r, list) or len(r) != k for r in matrix)
            or any(not _number(v) for r in matrix for v in r)):
        raise DataError('expected {"labels": [k names], "matrix": [k rows of k numbers]}',
                        path=str(path))
    return [str(label) for label in labels], matrix


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def curves(records: list[dict]) -> dict[str, dict[str, tuple[list, list]]]:
    """metric -> split -> (epochs, values), "loss" first, then the rest in first-seen order.
    Epochs where a value is missing or not a finite number are left out."""
    found: dict[str, dict[str, tuple[list, list]]] = {}
    for i, record in enumerate(records):
        epoch = record.get("epoch", i + 1)
        for key, value in record.items():
            split, _, metric = key.partition("_")
            if key in NOT_CURVES or split not in SPLITS or not metric:
                continue
            xs, ys = found.setdefault(metric, {}).setdefault(split, ([], []))
            if _number(value) and math.isfinite(value):
                xs.append(epoch)
                ys.append(value)
    return dict(sorted(found.items(), key=lambda kv: kv[0] != "loss"))


def _save(fig, path: Path) -> None:
    """Render to a temp file beside `path`, then rename: never a half-written PNG."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise UsageError(INSTALL) from None
    return Figure, FigureCanvasAgg, MaxNLocator


def plot_run(run_dir: str | os.PathLike) -> list[Path]:
    """Write the run's plots under `<run_dir>/plots/`; the paths written, loss.png first."""
    run = Path(run_dir)
    records = read_metrics(run)
    confusion = read_confusion(run)
    Figure, Canvas, MaxNLocator = _matplotlib()
    out = run / "plots"
    out.mkdir(exist_ok=True)
    written = []
    for metric, by_split in curves(records).items():
        fig = Figure(figsize=(6, 4))
        Canvas(fig)
        ax = fig.add_subplot()
        for split, style in zip(SPLITS, ("-o", "--s")):
            if split in by_split and by_split[split][0]:
                xs, ys = by_split[split]
                ax.plot(xs, ys, style, markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric.replace("_", " "))
        ax.set_title(f"{run.name}: {metric.replace('_', ' ')}")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        fig.tight_layout()
        path = out / f"{metric}.png"
        _save(fig, path)
        written.append(path)
    if confusion is not None:
        written.append(_plot_confusion(Figure, Canvas, *confusion, out / "confusion.png",
                                       run.name))
    return written


def _plot_confusion(Figure, Canvas, labels, matrix, path: Path, title: str) -> Path:
    k = len(labels)
    side = min(4 + 0.4 * k, 16)
    fig = Figure(figsize=(side, side))
    Canvas(fig)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels, rotation=90 if k > 10 else 0)
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: confusion matrix")
    if k <= 20:  # counts stay legible
        top = max((v for r in matrix for v in r), default=0)
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=8,
                        color="white" if top and v > top / 2 else "black")
    fig.tight_layout()
    _save(fig, path)
    return path
