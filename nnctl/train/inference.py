"""Using a finished run: its metrics on a split (`evaluate`) and predictions for new inputs
(`predict`). The model is rebuilt from the run's resolved config and loaded with its weights;
the data are split and normalised exactly as in training (same seed, saved normaliser)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from nnctl.backend import Backend
from nnctl.config import load_config
from nnctl.data import Normalizer
from nnctl.errors import DataError, UsageError
from nnctl.train.run_dir import atomic_write, load_weights
from nnctl.train.trainer import Trainer

WEIGHTS = {"final": "weights.npz", "best": "best.npz"}


def load_run(run_dir: Path, backend: Backend, weights: str = "final") -> Trainer:
    """A Trainer for the run in `run_dir`, holding that run's weights (no run folder of its
    own: nothing is written)."""
    if not (run_dir / "config.yaml").is_file():
        raise DataError("not a run folder (no config.yaml)", path=str(run_dir))
    if weights not in WEIGHTS:
        raise UsageError(f"--weights: expected final or best, got {weights!r}")
    trainer = Trainer(load_config(run_dir / "config.yaml"), backend, out=None)
    path = run_dir / WEIGHTS[weights]
    arrays = load_weights(path)
    for names, target in ((trainer.param_names, trainer.params),
                          (trainer.state_names, trainer.states)):
        for i, name in enumerate(names):
            if name not in arrays or arrays[name].shape != tuple(target[i].shape):
                raise DataError(f"{name} is missing or has another shape; the weights do not "
                                "belong to this run's config", path=str(path))
            target[i] = backend.asarray(arrays[name])
    return trainer


def evaluate_run(run_dir: Path, backend: Backend, split: str = "test",
                 weights: str = "final") -> tuple[dict, np.ndarray | None]:
    """(metrics, confusion matrix or None) of the run's model on one split."""
    if split not in ("train", "val", "test"):
        raise UsageError(f"--split: expected train, val or test, got {split!r}")
    trainer = load_run(run_dir, backend, weights)
    if len(getattr(trainer.splits, split)) == 0:
        raise UsageError(f"the {split} split of this run is empty")
    return trainer.evaluate(split), trainer.confusion


def read_inputs(path: Path, feature_shape: tuple[int, ...], integer: bool) -> np.ndarray:
    """Features from an NPZ (array `x`, or its only array) or a CSV (numeric columns, an
    optional header row), checked against the model's input shape."""
    if not path.is_file():
        raise DataError("no such file", path=str(path))
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                keys = npz.files
                key = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise DataError(f"expected an array named 'x'; found {', '.join(keys)}",
                                    path=str(path))
                x = npz[key]
        except DataError:
            raise
        except Exception as err:
            raise DataError(f"unreadable .npz ({type(err).__name__}: {err})",
                            path=str(path)) from None
    else:
        x = _read_csv(path)
    if x.ndim == 1:
        x = x[:, None]
    n, want = len(x), int(np.prod(feature_shape))
    if n and x[0].size != want:
        raise DataError(f"each input has {x[0].size} values but the model takes "
                        f"{list(feature_shape)} ({want} values)", path=str(path))
    if integer:
        if not np.issubdtype(x.dtype, np.integer):
            raise DataError(f"the model reads integer token ids, got {x.dtype}", path=str(path))
    elif not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise DataError("inputs must be finite numbers (NaN or Inf found)", path=str(path))
    return x.reshape((n,) + tuple(feature_shape))


def _read_csv(path: Path) -> np.ndarray:
    try:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    except UnicodeDecodeError as err:
        raise DataError(f"not UTF-8 text ({err})", path=str(path)) from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if rows and not _numeric(rows[0]):
        rows = rows[1:]  # a header
    if not rows:
        raise DataError("no rows of numbers", path=str(path))
    width = len(rows[0])
    for line, row in enumerate(rows, 1):
        if len(row) != width or not _numeric(row):
            raise DataError(f"row {line}: expected {width} numbers, got {row!r}", path=str(path))
    return np.array([[float(c) for c in row] for row in rows])


def _numeric(row) -> bool:
    try:
        [float(c) for c in row]
        return True
    except ValueError:
        return False


def predict_run(run_dir: Path, inputs: Path, output: Path, backend: Backend,
                weights: str = "final") -> int:
    """Write predictions for `inputs` to `output` (.csv or .npz); returns how many."""
    if output.resolve() == inputs.resolve():
        raise UsageError("the output would overwrite the input file")
    if output.suffix not in (".csv", ".npz"):
        raise UsageError(f"-o: expected a .csv or .npz file, got {output.name}")
    trainer = load_run(run_dir, backend, weights)
    splits = trainer.splits
    integer = splits.vocab is not None
    x = read_inputs(inputs, splits.feature_shape, integer)
    if not integer:
        norm = Normalizer.from_dict(json.loads((run_dir / "normalizer.json").read_text()))
        x = norm.apply(x).astype(trainer.spec.train.dtype)  # as in training: per feature
    outputs = []
    size = trainer.spec.train.eval_batch_size
    for start in range(0, len(x), size):
        xb = backend.asarray(x[start:start + size])
        outputs.append(backend.to_host(trainer.forward(xb)))
    out = np.concatenate(outputs) if outputs else np.zeros((0,))
    if trainer.classification:
        z = out - out.max(axis=-1, keepdims=True)
        prob = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
        columns = {"class": prob.argmax(axis=-1), "probabilities": prob}
    else:
        columns = {"prediction": out}
    _write_predictions(output, columns)
    return len(x)


def _write_predictions(path: Path, columns: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        atomic_write(path, lambda f: np.savez(f, **columns))
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if "class" in columns:
        prob = columns["probabilities"].reshape(len(columns["class"]), -1)
        if columns["class"].ndim > 1:
            raise UsageError("sequence predictions need an .npz output")
        writer.writerow(["class"] + [f"p{k}" for k in range(prob.shape[1])])
        for c, p in zip(columns["class"], prob):
            writer.writerow([int(c)] + [f"{v:.6g}" for v in p])
    else:
        pred = columns["prediction"].reshape(len(columns["prediction"]), -1)
        writer.writerow([f"y{k}" for k in range(pred.shape[1])])
        for p in pred:
            writer.writerow([f"{v:.6g}" for v in p])
    atomic_write(path, lambda f: f.write(buffer.getvalue().encode()))
