"""Using a finished run: its metrics on a split (`evaluate`) and predictions for new inputs
(`predict`). The model is rebuilt from the run's resolved config and loaded with its weights;
the data are split and normalised exactly as in training (same seed, saved normaliser)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
from pathlib import Path

import numpy as np

from nnctl.backend import Backend
from nnctl.config import load_config
from nnctl.data import Normalizer
from nnctl.data.batching import batch_arrays
from nnctl.data.graphs import ADJACENCY
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
                 weights: str = "final", beam: int = 1
                 ) -> tuple[dict, np.ndarray | None, list | None]:
    """(metrics, confusion matrix or None, class names or None) of the run's model on one
    split; sequence-to-sequence metrics are decoded greedily on any split."""
    if split not in ("train", "val", "test"):
        raise UsageError(f"--split: expected train, val or test, got {split!r}")
    trainer = load_run(run_dir, backend, weights)
    if len(getattr(trainer.splits, split)) == 0:
        raise UsageError(f"the {split} split of this run is empty")
    return (trainer.evaluate(split, decoded=True, beam=beam), trainer.confusion,
            trainer.class_names())


def read_labelled(path: Path, trainer: Trainer):
    """A labelled file read as the run's own data was: a .csv with the run's label column,
    header and delimiter (for a run trained on other data: the last column, header detected),
    or an .npz with the run's x/y array names and its further inputs; then normalised with
    the run's normaliser and checked against its features and classes."""
    from nnctl.data import load_csv, load_npz
    spec, dtype = trainer.spec.data, trainer.spec.train.dtype
    if not path.is_file():
        raise DataError("no such file (expected a labelled .csv or .npz)", path=str(path))
    if path.suffix.lower() == ".npz":
        data = load_npz(path, getattr(spec, "x_key", "x"), getattr(spec, "y_key", "y"),
                        dtype=dtype, extra_keys=trainer.builder.extra_names)
    elif "tabular" in trainer.splits.info:  # the run's table: strings, gaps, names
        from nnctl.data import Dataset
        from nnctl.data.tabular import encode_rows
        table = trainer.splits.info["tabular"]
        x, y, ids = encode_rows(table, path, spec.delimiter,
                                trainer.splits.info.get("labels"))
        if y is None:
            raise DataError(f"no label column ({table.header[table.label]}); evaluate needs "
                            "labels", path=str(path))
        data = Dataset(x.astype(dtype), y if np.issubdtype(y.dtype, np.integer)
                       else y.astype(dtype), path.stem, extra=ids)
    elif path.suffix.lower() in (".csv", ".tsv", ".txt"):
        csv_run = spec.dataset == "csv"
        data = load_csv(path, spec.label_column if csv_run else -1,
                        spec.header if csv_run else None,
                        spec.delimiter if csv_run else ("\t" if path.suffix == ".tsv" else ","),
                        dtype=dtype)
    else:
        raise DataError("expected a labelled .csv or .npz file", path=str(path))
    splits = trainer.splits
    if splits.padded or splits.vocab is not None:
        raise UsageError("--data evaluates models of numeric features (csv, npz); for text "
                         "or sequence runs evaluate a split of the run's own data")
    if tuple(data.x.shape[1:]) != splits.feature_shape:
        raise DataError(f"each row has {list(data.x.shape[1:])} features; the model was "
                        f"trained on {list(splits.feature_shape)}", path=str(path))
    y = data.y
    if trainer.classification:
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"the labels are {y.dtype}; this classifier needs integer class "
                            "labels", path=str(path))
        if len(y) and (y.min() < 0 or y.max() >= splits.num_classes):
            raise DataError(f"labels must be classes 0..{splits.num_classes - 1}, found "
                            f"{int(y.min())}..{int(y.max())}", path=str(path))
    else:
        y = y.astype(dtype)
        y = y[:, None] if y.ndim == 1 else y
    x = splits.normalizer.apply(data.x).astype(dtype)
    extra = {k: v.astype(dtype) if np.issubdtype(v.dtype, np.floating) else v
             for k, v in data.extra.items()}
    return dataclasses.replace(data, x=x, y=y, extra=extra, info=splits.info)


def evaluate_file(run_dir: Path, backend: Backend, path: Path, weights: str = "final",
                  beam: int = 1) -> tuple[dict, np.ndarray | None, list | None]:
    """evaluate_run's figures on an external labelled file instead of a split; the metrics
    are named data_<metric>."""
    trainer = load_run(run_dir, backend, weights)
    data = read_labelled(path, trainer)
    if len(data) == 0:
        raise DataError("no labelled rows", path=str(path))
    trainer.splits = dataclasses.replace(trainer.splits, test=data)
    trainer.device_data["test"] = (backend.asarray(data.x), backend.asarray(data.y))
    metrics = trainer.evaluate("test", decoded=True, beam=beam)
    return ({"data_" + k.removeprefix("test_"): v for k, v in metrics.items()},
            trainer.confusion, trainer.class_names())


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


def predict_run(run_dir: Path, inputs: Path, output: Path | None, backend: Backend,
                weights: str = "final", beam: int = 1, report=None) -> int:
    """Write predictions for `inputs` to `output` (.csv or .npz; None: CSV on standard
    output); returns how many. A file that still has its label column (the run's, or an
    npz's y array) has it dropped; `report(line)` then receives the metric on those labels."""
    if output is not None and output.resolve() == inputs.resolve():
        raise UsageError("the output would overwrite the input file")
    if output is not None and output.suffix not in (".csv", ".npz"):
        raise UsageError(f"-o: expected a .csv or .npz file, got {output.name}")
    trainer = load_run(run_dir, backend, weights)
    splits = trainer.splits
    if ADJACENCY in splits.info.get("trim", {}):  # a graph model: a file of graphs
        columns, count = _predict_graphs(trainer, inputs)
        _write_predictions(output, columns)
        return count
    if splits.padded:  # texts: one per line
        columns = _predict_texts(trainer, inputs, beam)
        _write_predictions(output, columns)
        return len(next(iter(columns.values())))
    integer = splits.vocab is not None
    truth = None
    table = splits.info.get("tabular")
    if table is not None and inputs.suffix.lower() != ".npz":  # raw rows, strings and gaps
        from nnctl.data.tabular import encode_rows
        x, truth, ids = encode_rows(table, inputs, trainer.spec.data.delimiter,
                                    splits.info.get("labels"))
        x, names = splits.normalizer.apply(x).astype(trainer.spec.train.dtype), None
        extras = [ids[n] for n in trainer.builder.input_names]
    elif not integer and has_label_column(inputs, trainer):  # dropped, and scored
        data = read_labelled(inputs, trainer)
        x, truth, names = data.x, data.y, None
        extras = [data.extra[n] for n in trainer.builder.input_names]
    else:
        if inputs.suffix.lower() == ".wav" or (inputs.is_dir() and "sample_rate" in splits.info):
            x, names = read_wav_inputs(inputs, splits)
        else:
            x, names = read_inputs(inputs, splits.feature_shape, integer), None
        if not integer:
            norm = Normalizer.from_dict(json.loads((run_dir / "normalizer.json").read_text()))
            x = norm.apply(x).astype(trainer.spec.train.dtype)  # as in training: per feature
        extras = read_extra_inputs(inputs, trainer, len(x))
    outputs = []
    size = trainer.spec.train.eval_batch_size
    for start in range(0, len(x), size):
        batch = [a[start:start + size] for a in (x, *extras)]
        outputs.append(trainer.forward_arrays(batch))
    out = np.concatenate(outputs) if outputs else np.zeros((0,))
    if trainer.classification:
        z = out - out.max(axis=-1, keepdims=True)
        prob = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
        columns = {"class": prob.argmax(axis=-1), "probabilities": prob}
        labels = splits.info.get("labels")
        if labels is not None and prob.ndim == 2:
            columns["label"] = np.array([labels[c] for c in columns["class"]])
        if names is not None:
            columns["file"] = np.array(names)
    else:
        columns = {"prediction": out}
    if truth is not None and report is not None and len(x):
        if trainer.classification:
            report(f"accuracy on the {len(x)} labelled rows of {inputs.name}: "
                   f"{float(np.mean(columns['class'] == truth)):.4f}")
        else:
            error = out.reshape(truth.shape) - truth
            report(f"on the {len(x)} labelled rows of {inputs.name}: mae "
                   f"{float(np.abs(error).mean()):.4f}, rmse "
                   f"{float(np.sqrt((error ** 2).mean())):.4f}")
    _write_predictions(output, columns)
    return len(x)


def has_label_column(path: Path, trainer: Trainer) -> bool:
    """Whether a file of inputs still holds the labels: an .npz with the run's y array, or a
    CSV row with one column more than the model's features."""
    if not path.is_file():
        return False
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                return getattr(trainer.spec.data, "y_key", "y") in npz.files
        except Exception:  # read_inputs says what is wrong with the file
            return False
    if path.suffix.lower() not in (".csv", ".tsv", ".txt"):
        return False
    delimiter = getattr(trainer.spec.data, "delimiter", ",") if path.suffix != ".tsv" else "\t"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for _, r in zip(range(2), (r for r in csv.reader(f, delimiter=delimiter)
                                                 if any(c.strip() for c in r)))]
    except (UnicodeDecodeError, csv.Error, OSError):
        return False
    features = int(np.prod(trainer.splits.feature_shape))
    return any(len(r) == features + 1 for r in rows[-1:])


def read_graph_inputs(path: Path, trainer: Trainer):
    """Graphs to predict for, from a .jsonl or an .npz in the graphs_npz layout (labels may
    be there; they are ignored), padded as in training (undirected as the run's data)."""
    from nnctl.data.graphs import read_graphs_jsonl, read_graphs_npz, to_dataset
    if not path.is_file():
        raise DataError("no such file (expected graphs: .jsonl or .npz)", path=str(path))
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        graphs = read_graphs_jsonl(str(path), labelled=False)
    elif path.suffix.lower() == ".npz":
        graphs = read_graphs_npz(str(path), labelled=False)
    else:
        raise DataError("a graph model predicts for graphs in a .jsonl or .npz file "
                        "(docs/graphs.md)", path=str(path))
    width = trainer.splits.feature_shape[-1]
    if graphs[0].features.shape[1] != width:
        raise DataError(f"nodes have {graphs[0].features.shape[1]} features; the model was "
                        f"trained on {width}", path=str(path))
    undirected = getattr(trainer.spec.data, "undirected", True)
    data = to_dataset(graphs, path.stem, undirected, where=str(path))
    return dataclasses.replace(data, x=data.x.astype(trainer.spec.train.dtype), extra={
        k: v.astype(trainer.spec.train.dtype) for k, v in data.extra.items()})


def _predict_graphs(trainer: Trainer, path: Path) -> tuple[dict, int]:
    """Per graph: the class and probabilities; for a node classifier, per node (an .npz
    output: class [G, N], probabilities [G, N, C], nodes [G] the real node counts)."""
    data = read_graph_inputs(path, trainer)
    multiple = trainer.spec.train.pad_multiple
    names = trainer.builder.input_names
    outputs = []
    size = trainer.spec.train.eval_batch_size
    width = int(data.x_len.max())
    for start in range(0, len(data), size):
        idx = np.arange(start, min(start + size, len(data)))
        arrays = batch_arrays(data, idx, multiple, trainer.spec.train.dtype, names)
        out = trainer.forward_arrays([a for k, a in enumerate(arrays) if k != 1])  # no y
        if out.ndim == 3:  # per node: pad to the file's largest graph
            out = np.pad(out, ((0, 0), (0, width - out.shape[1]), (0, 0)))[:, :width]
        outputs.append(out)
    out = np.concatenate(outputs)
    z = out - out.max(axis=-1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    columns = {"class": prob.argmax(axis=-1), "probabilities": prob}
    labels = trainer.splits.info.get("labels")
    if labels is not None and prob.ndim == 2:
        columns["label"] = np.array([labels[c] for c in columns["class"]])
    if prob.ndim == 3:
        columns["nodes"] = data.x_len
    return columns, len(data)


def read_extra_inputs(path: Path, trainer: Trainer, n: int) -> list[np.ndarray]:
    """The further named inputs of a model (model.inputs) from the .npz's arrays of those
    names, one row per input, each of the shape the model was trained on."""
    names = trainer.builder.input_names
    if not names:
        return []
    if path.suffix != ".npz":
        raise DataError(f"this model also reads {', '.join(names)}: give an .npz with arrays "
                        f"x and {', '.join(names)}", path=str(path))
    train = trainer.splits.train.extra
    out = []
    with np.load(path, allow_pickle=False) as npz:
        for name in names:
            if name not in npz.files:
                raise DataError(f"expected an array named {name!r} (the model's input); found "
                                f"{', '.join(npz.files)}", path=str(path))
            a = npz[name]
            if a.shape[1:] != train[name].shape[1:] or len(a) != n:
                raise DataError(f"array {name!r} has shape {list(a.shape)}; expected "
                                f"[{n}, {', '.join(map(str, train[name].shape[1:]))}]",
                                path=str(path))
            out.append(a.astype(train[name].dtype))
    return out


def read_wav_inputs(path: Path, splits) -> tuple[np.ndarray, list[str]]:
    """Clips for an audio model: one WAV file, or every .wav in a folder (sorted), read at
    the run's sample rate and padded or cut to its clip length."""
    from nnctl.data.audio import fit_length, read_wav
    rate = splits.info.get("sample_rate")
    if rate is None:
        raise UsageError("this run's model does not read audio; give a .npz or .csv file")
    if not path.is_dir() and not path.is_file():
        raise DataError("no such file", path=str(path))
    files = sorted(path.glob("*.wav")) if path.is_dir() else [path]
    if not files:
        raise DataError("no .wav files in this folder", path=str(path))
    samples = splits.feature_shape[-1]
    x = np.stack([fit_length(read_wav(f, rate), samples) for f in files])
    return x.reshape((len(files),) + splits.feature_shape), [str(f) for f in files]


def read_texts(path: Path) -> list[str]:
    """The lines of a UTF-8 text file, one input each; an empty line is an error."""
    from nnctl.data.text import load_text
    lines = load_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise DataError("empty line; expected one input text per line",
                            path=f"{path}:{number}")
    return lines


def encode_texts(trainer: Trainer, texts: list[str], where: list[str]) -> tuple:
    """Token ids [n, longest] padded with PAD, and the lengths, checked against the longest
    input the model was trained for (`data.max_len`)."""
    vocab = trainer.splits.info["input"]
    limit = getattr(trainer.spec.data, "max_len", None) or trainer.splits.train.x.shape[1]
    encoded = []
    for text, at in zip(texts, where):
        ids = vocab.encode(text, where=at)
        if len(ids) > limit:
            raise DataError(f"{len(ids)} tokens, more than the model's max_len {limit}",
                            path=at)
        if len(ids) == 0:
            raise DataError("no tokens; expected some text", path=at)
        encoded.append(ids)
    lengths = np.array([len(e) for e in encoded], np.int64)
    x = np.zeros((len(encoded), int(lengths.max(initial=1))), np.int64)
    for i, ids in enumerate(encoded):
        x[i, :len(ids)] = ids
    return x, lengths


def _predict_texts(trainer: Trainer, path: Path, beam: int) -> dict:
    """Predictions for texts: a translation per line (sequence pairs), a tag per token
    (tagging), or a class per line (text classification)."""
    from nnctl.data.batching import steps_mask
    texts = read_texts(path)
    if trainer.splits.pairs:
        from nnctl.train.translate import translate
        where = [f"{path}:{i}" for i in range(1, len(texts) + 1)]
        return {"source": texts,
                "prediction": translate(trainer, texts, beam=beam, wheres=where)}
    where = [f"{path}:{i}" for i in range(1, len(texts) + 1)]
    x, lengths = encode_texts(trainer, texts, where)
    dtype = trainer.spec.train.dtype
    size = trainer.spec.train.eval_batch_size
    tagging = trainer.label_mask_at is not None
    rows, classes, probabilities = [], [], []
    weights = trainer.weights() if trainer.decoder is not None else None
    for start in range(0, len(x), size):
        xb, lb = x[start:start + size], lengths[start:start + size]
        xb = xb[:, :int(lb.max())]
        mask = steps_mask(lb, xb.shape[1], dtype)
        out = trainer.forward_arrays([xb, mask])
        if tagging:
            pred = trainer.decoder(out, mask > 0, weights) if trainer.decoder else \
                out.argmax(-1)
            rows.extend(p[:n] for p, n in zip(pred, lb))
        else:
            z = out - out.max(axis=-1, keepdims=True)
            prob = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
            classes.append(prob.argmax(-1))
            probabilities.append(prob)
    info = trainer.splits.info
    if tagging:
        tags = info.get("tags") or [str(k) for k in range(trainer.splits.num_classes)]
        return {"text": texts, "tags": [" ".join(tags[t] for t in r) for r in rows]}
    prob = np.concatenate(probabilities)
    cls = np.concatenate(classes)
    columns = {"class": cls, "probabilities": prob}
    if info.get("labels") is not None:
        columns["label"] = np.array([info["labels"][c] for c in cls])
    return columns


def _write_predictions(path: Path | None, columns: dict) -> None:
    """To `path` (.npz, or .csv), atomically; None: CSV on standard output."""
    if path is None and any(np.asarray(v).ndim > 2 for v in columns.values()):
        raise UsageError("these predictions have a value per step or node: give -o FILE.npz")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if path is not None and path.suffix == ".npz":
        atomic_write(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in
                                                    columns.items()}))
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if all(isinstance(v, list) for v in columns.values()):
        names = list(columns)  # texts (translations, tags): one row per input
        writer.writerow(names)
        for row in zip(*(columns[n] for n in names)):
            writer.writerow(row)
    elif "class" in columns:
        prob = columns["probabilities"].reshape(len(columns["class"]), -1)
        if columns["class"].ndim > 1:
            raise UsageError("sequence predictions need an .npz output")
        labels, files = columns.get("label"), columns.get("file")
        writer.writerow((["file"] if files is not None else []) + ["class"] +
                        (["label"] if labels is not None else []) +
                        [f"p{k}" for k in range(prob.shape[1])])
        for i, (c, p) in enumerate(zip(columns["class"], prob)):
            writer.writerow(([files[i]] if files is not None else []) + [int(c)] +
                            ([labels[i]] if labels is not None else []) +
                            [f"{v:.6g}" for v in p])
    else:
        pred = columns["prediction"].reshape(len(columns["prediction"]), -1)
        writer.writerow([f"y{k}" for k in range(pred.shape[1])])
        for p in pred:
            writer.writerow([f"{v:.6g}" for v in p])
    if path is None:
        sys.stdout.write(buffer.getvalue())
        sys.stdout.flush()
        return
    atomic_write(path, lambda f: f.write(buffer.getvalue().encode()))
