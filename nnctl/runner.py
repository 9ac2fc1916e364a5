"""Run an nnctl model with NumPy alone: inference without the framework.

`nnctl export-graph RUN -f json -o model.json` writes a finished run's inference graph (the
run's input normalisation first, so it takes the same raw rows as `nnctl predict`); the run's
weights.npz, or `nnctl export-weights RUN --names nnctl --format safetensors|npz`, holds its
parameters. This file reads both and computes the model's output. It imports only the
standard library and NumPy, so it can be copied anywhere (a server, a notebook, a device
with only NumPy) and read in one sitting: one small function per op, in the table `OPS`.

    python runner.py model.json weights.npz inputs.npz [-o out.csv|out.npz]

    from runner import Model
    model = Model.load("model.json", "weights.npz")
    scores = model.run(x)              # the model's output (raw scores for a classifier)
    columns = model.predict(x)         # what `nnctl predict` writes: class, probabilities

docs/runner.md describes the JSON format and the measured agreement with nnctl.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import struct
import sys
from pathlib import Path

import numpy as np

FORMAT, VERSION = "nnctl-inference", 1


class RunnerError(ValueError):
    """A problem with the graph, the weights or the inputs; the message is one line."""


# ---- the op table: one function per op of an inference graph ----------------------------------
# Each takes the node's input arrays and its attributes, and computes what the op's `forward`
# in nnctl/ops computes (the same formulas, so float32 results agree to rounding).

def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _windows(x, kernel, stride, padding, dilation=(1, 1), fill=0.0):
    """The windows of x [N, C, H, W] padded with `fill`: [N, C, OH, OW, KH, KW]."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    view = np.lib.stride_tricks.sliding_window_view(x, span, axis=(2, 3))
    return view[:, :, ::sh, ::sw, ::dh, ::dw]


def conv2d(x, w, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlation as PyTorch's Conv2d: x [N, C, H, W], w [O, C/groups, KH, KW]."""
    o, cg, kh, kw = w.shape
    view = _windows(x, (kh, kw), _pair(stride), _pair(padding), _pair(dilation))
    n, c, oh, ow = view.shape[:4]
    cols = view.transpose(0, 1, 4, 5, 2, 3).reshape(n, groups, cg * kh * kw, oh * ow)
    y = w.reshape(groups, o // groups, cg * kh * kw) @ cols  # [N, groups, O/groups, OH*OW]
    return y.reshape(n, o, oh, ow)


def max_pool2d(x, kernel, stride=None, padding=0):
    kernel = _pair(kernel)
    stride = kernel if stride is None else _pair(stride)
    return _windows(x, kernel, stride, _pair(padding), fill=-np.inf).max(axis=(-2, -1))


def avg_pool2d(x, kernel, stride=None, padding=0):
    """The window's mean with the padding counted as zeros (count_include_pad)."""
    kernel = _pair(kernel)
    stride = kernel if stride is None else _pair(stride)
    window = _windows(x, kernel, stride, _pair(padding))
    return window.sum(axis=(-2, -1)) / (kernel[0] * kernel[1])


def getitem(x, index):
    """x[index]; the index is stored as a list of ints, None (a new axis), "..." and
    ["slice", start, stop, step]."""
    def one(i):
        if isinstance(i, (list, tuple)):
            return slice(*i[1:])
        return Ellipsis if i == "..." else i
    return x[tuple(one(i) for i in index)]


def matmul(a, b):
    """a @ b; [..., M, K] @ [K, N] as one product of all the rows, as nnctl computes it (the
    same float32 sums, bit for bit, and faster than NumPy's product per leading index)."""
    if b.ndim == 2 and a.ndim > 2 and a.flags.c_contiguous:
        return (a.reshape(-1, a.shape[-1]) @ b).reshape(a.shape[:-1] + b.shape[1:])
    return a @ b


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def logsumexp(x, axis=None, keepdims=False):
    m = x.max(axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)  # an all -inf row gives -inf, not inf - inf
    total = np.log(np.exp(x - m).sum(axis=axis, keepdims=keepdims))
    return total + (m if keepdims else np.squeeze(m, axis=axis))


def numel(x, axis=None):
    """How many elements a reduction over `axis` reads, as a 0-d array of x's dtype."""
    axes = range(x.ndim) if axis is None else axis
    return np.asarray(np.prod([x.shape[a] for a in axes], dtype=np.int64), dtype=x.dtype)


def softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)  # no overflow for large x


def clip(x, low=None, high=None):
    if low is not None:
        x = np.maximum(x, low)
    return x if high is None else np.minimum(x, high)


OPS = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "maximum": np.maximum, "minimum": np.minimum, "neg": np.negative, "abs": np.abs,
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "sin": np.sin, "cos": np.cos,
    "tanh": np.tanh, "sign": np.sign, "matmul": matmul,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "relu": lambda x: np.maximum(x, 0),
    "pow": lambda x, exponent: x ** exponent,
    "leaky_relu": lambda x, slope=0.01: np.where(x > 0, x, x * slope),
    "elu": lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))),
    "softplus": softplus,
    "step": lambda x: (x > 0).astype(x.dtype),
    "equal": lambda a, b: (a == b).astype(a.dtype),
    "where": np.where,
    "clip": clip,
    "reshape": lambda x, shape: x.reshape(shape),
    "broadcast_to": lambda x, shape: np.broadcast_to(x, shape),
    "transpose": lambda x, axes: x.transpose(axes),
    "concat": lambda *xs, axis=0: np.concatenate(xs, axis=axis),
    "stack": lambda *xs, axis=0: np.stack(xs, axis=axis),
    "pad": lambda x, pad_width: np.pad(x, pad_width),
    "take": lambda table, indices: np.take(table, indices, axis=0),
    "one_hot": lambda labels, depth, dtype="float32":
        (labels[..., None] == np.arange(depth)).astype(dtype),
    "sum": lambda x, axis=None, keepdims=False: x.sum(axis=axis, keepdims=keepdims),
    "mean": lambda x, axis=None, keepdims=False: x.mean(axis=axis, keepdims=keepdims),
    "max": lambda x, axis=None, keepdims=False: x.max(axis=axis, keepdims=keepdims),
    "logsumexp": logsumexp,
    "softmax": softmax,
    "log_softmax": log_softmax,
    "numel": numel,
    "conv2d": conv2d,
    "max_pool2d": max_pool2d,
    "avg_pool2d": avg_pool2d,
    "getitem": getitem,
}


# ---- sizes: the batch is symbolic in the graph ------------------------------------------------

_SYMBOLIC = re.compile(r"^(?:(\d+)\*)?B$")  # "B", or "k*B" where a reshape folded k rows in


def size(dim, batch: int | None):
    """A size from the graph: an int as it is, "B" / "k*B" resolved for this batch (left as
    it is while the batch is not known)."""
    match = _SYMBOLIC.match(dim) if isinstance(dim, str) else None
    if match is None or batch is None:
        return dim
    return int(match.group(1) or 1) * batch


def _resolve(value, batch: int | None = None):
    """An attribute with every symbolic size resolved for `batch`; lists become tuples, as
    NumPy's axis arguments need."""
    if isinstance(value, (list, tuple)):
        return tuple(_resolve(v, batch) for v in value)
    if isinstance(value, dict):
        return {k: _resolve(v, batch) for k, v in value.items()}
    return size(value, batch)


def _symbolic(value) -> bool:
    if isinstance(value, (list, dict)):
        return any(_symbolic(v) for v in (value.values() if isinstance(value, dict) else value))
    return isinstance(value, str) and _SYMBOLIC.match(value) is not None


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


# ---- weights: .npz through NumPy, .safetensors read by hand -----------------------------------

_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
                       "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A safetensors file: an 8-byte little-endian header length, a JSON header naming each
    tensor's dtype, shape and byte range (data_offsets, from the end of the header), then the
    raw little-endian bytes."""
    data = path.read_bytes()
    if len(data) < 8:
        raise RunnerError(f"{path}: not a safetensors file (too short)")
    (length,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8:8 + length])
    except (ValueError, UnicodeDecodeError):
        raise RunnerError(f"{path}: not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise RunnerError(f"{path}: not a safetensors file (the header is not a JSON object)")
    body = memoryview(data)[8 + length:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info.get("dtype")
        start, stop = info.get("data_offsets", (0, -1))
        shape = tuple(info.get("shape", ()))
        if dtype == "BF16":  # the top half of a float32
            raw = np.frombuffer(body[start:stop], "<u2").astype(np.uint32) << 16
            tensors[name] = raw.view(np.float32).reshape(shape)
            continue
        if dtype not in _SAFETENSORS_DTYPES:
            raise RunnerError(f"{path}: tensor {name!r} has dtype {dtype}, which this runner "
                              "does not read")
        want = int(np.prod(shape, dtype=np.int64)) * np.dtype(_SAFETENSORS_DTYPES[dtype]).itemsize
        if not 0 <= start <= stop <= len(body) or stop - start != want:
            raise RunnerError(f"{path}: tensor {name!r} has a bad byte range {[start, stop]}")
        tensors[name] = np.frombuffer(body[start:stop], _SAFETENSORS_DTYPES[dtype]).reshape(shape)
    return tensors


def read_weights(path) -> dict[str, np.ndarray]:
    """Named arrays from an .npz (NumPy's own, no pickles) or a .safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise RunnerError(f"{path}: no such file")
    with path.open("rb") as f:
        magic = f.read(4)
    if path.suffix == ".safetensors" or (path.suffix != ".npz" and magic != b"PK\x03\x04"):
        return read_safetensors(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as err:
        raise RunnerError(f"{path}: not a readable .npz ({err})") from None


# ---- the model --------------------------------------------------------------------------------

class Model:
    """An inference graph with its weights, ready to run on NumPy arrays."""

    def __init__(self, graph: dict, weights: dict[str, np.ndarray]):
        if graph.get("format") != FORMAT:
            raise RunnerError(f"not an nnctl inference graph (format {graph.get('format')!r}, "
                              f"expected {FORMAT!r}: nnctl export-graph RUN -f json writes one)")
        if graph.get("version") != VERSION:
            raise RunnerError(f"inference graph version {graph.get('version')!r}; this runner "
                              f"reads version {VERSION}")
        self.title = graph.get("title", "")
        self.classification = bool(graph.get("classification"))
        self.labels = graph.get("labels")
        missing = [key for key in ("inputs", "output", "nodes") if key not in graph]
        if missing:
            raise RunnerError(f"the inference graph has no {missing[0]!r}")
        self.nodes = graph["nodes"]  # in topological order: a node's inputs come before it
        by_id = {node["id"]: node for node in self.nodes}
        self.inputs = [(entry["name"], by_id[entry["id"]]) for entry in graph["inputs"]]
        self.output = graph["output"]
        for node in self.nodes:  # every op known before any weight is read
            if node["op"] not in ("input", "parameter", "constant") and node["op"] not in OPS:
                raise RunnerError(f"unknown op {node['op']!r} at node {node['id']} "
                                  f"({node.get('scope') or node.get('name') or 'unnamed'}); "
                                  f"this runner knows {len(OPS)} ops (docs/runner.md)")
        self.values: dict[int, np.ndarray] = {}  # parameters and constants, by node id
        for node in self.nodes:
            if node["op"] == "parameter":
                self.values[node["id"]] = self._weight(node, weights)
            elif node["op"] == "constant":
                self.values[node["id"]] = np.asarray(node["value"], dtype=node["dtype"])
        # (node id, op function, input ids, attrs, whether attrs hold a symbolic size)
        self.steps = [(node["id"], OPS[node["op"]], node["inputs"], _resolve(node["attrs"]),
                       _symbolic(node["attrs"])) for node in self.nodes
                      if node["op"] not in ("input", "parameter", "constant")]
        self._frees = self._last_readers()

    @classmethod
    def load(cls, graph_json, weights) -> Model:
        """The model in the JSON file `graph_json` with its weights: a path to an .npz or
        .safetensors file, or a dict of name -> array."""
        path = Path(graph_json)
        if not path.is_file():
            raise RunnerError(f"{path}: no such file")
        try:
            graph = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise RunnerError(f"{path}: not JSON ({err})") from None
        if not isinstance(graph, dict):
            raise RunnerError(f"{path}: not an nnctl inference graph")
        if not isinstance(weights, dict):
            weights = read_weights(weights)
        return cls(graph, weights)

    def _weight(self, node: dict, weights: dict) -> np.ndarray:
        name = node["name"]
        if name not in weights:
            raise RunnerError(f"the weights have no {name!r} (node {node['id']}); write them "
                              "with nnctl export-weights RUN --names nnctl, or use the run's "
                              "weights.npz")
        value = np.asarray(weights[name])
        if list(value.shape) != node["shape"]:
            raise RunnerError(f"weight {name!r} has shape {_shape_text(value.shape)}, the "
                              f"graph expects {_shape_text(node['shape'])}")
        return value.astype(node["dtype"])

    def _last_readers(self) -> dict[int, list[int]]:
        """For each node, the intermediate values it reads last, so they can be freed."""
        last = {}
        for node in self.nodes:
            for i in node["inputs"]:
                last[i] = node["id"]
        frees: dict[int, list[int]] = {}
        for value, reader in last.items():
            if value != self.output and value not in self.values:
                frees.setdefault(reader, []).append(value)
        return frees

    @property
    def input_names(self) -> list[str]:
        return [name for name, _ in self.inputs]

    def run(self, *arrays, **named) -> np.ndarray:
        """The model's output for the inputs, given in feed order or by name (raw rows, as
        for `nnctl predict`; "B" in a shape is any batch size)."""
        feeds = self._feeds(arrays, named)
        batch = self._batch(feeds)
        values = dict(self.values)
        for (name, node), array in zip(self.inputs, feeds):
            values[node["id"]] = array
        for node_id, op, inputs, attrs, symbolic in self.steps:
            if symbolic:  # a reshape or broadcast to a shape that holds the batch
                attrs = _resolve(attrs, batch)
            values[node_id] = op(*(values[i] for i in inputs), **attrs)
            for done in self._frees.get(node_id, ()):
                del values[done]
        return np.asarray(values[self.output])

    def _feeds(self, arrays, named) -> list[np.ndarray]:
        names = self.input_names
        if len(arrays) > len(names):
            raise RunnerError(f"the model takes {len(names)} inputs ({', '.join(names)}), "
                              f"got {len(arrays)}")
        unknown = set(named) - set(names)
        if unknown:
            raise RunnerError(f"the model has no input {sorted(unknown)[0]!r}; its inputs are "
                              f"{', '.join(names)}")
        given = dict(zip(names, arrays)) | named
        feeds = []
        for name, node in self.inputs:
            if name not in given:
                raise RunnerError(f"input {name!r} is missing; the model takes "
                                  f"{', '.join(names)}")
            feeds.append(_as_input(name, np.asarray(given[name]), node["dtype"]))
        return feeds

    def _batch(self, feeds: list[np.ndarray]) -> int:
        """The batch size the inputs share, each input's shape checked against the graph's:
        the batch is read off the first symbolic axis, then every size must match."""
        batch, source = None, None
        for (name, node), array in zip(self.inputs, feeds):
            shape = node["shape"]
            if array.ndim != len(shape):
                raise _shape_error(name, shape, array.shape)
            for want, have in zip(shape, array.shape):
                match = _SYMBOLIC.match(want) if isinstance(want, str) else None
                if batch is None and match is not None:
                    batch, source = have // int(match.group(1) or 1), name
                if size(want, batch) != have:
                    # a batch that disagrees with an earlier input's: say where B came from
                    known = match is not None and source != name
                    raise _shape_error(name, shape, array.shape,
                                       f"; here {batch}, as in {source!r}" if known else "")
        return 1 if batch is None else batch

    def predict(self, *arrays, **named) -> dict[str, np.ndarray]:
        """What `nnctl predict` writes: for a classifier the class, the probabilities (softmax
        over the last axis) and the label where the run has label names; else the output."""
        out = self.run(*arrays, **named)
        if not self.classification:
            return {"prediction": out}
        z = out - out.max(axis=-1, keepdims=True)
        prob = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
        columns = {"class": prob.argmax(axis=-1), "probabilities": prob}
        if self.labels is not None and prob.ndim == 2:
            columns["label"] = np.array([self.labels[c] for c in columns["class"]])
        return columns


def _shape_error(name: str, shape, got, note: str = "") -> RunnerError:
    return RunnerError(f"input {name!r}: expected shape {_shape_text(shape)} (B: any batch "
                       f"size{note}), got {_shape_text(got)}")


def _as_input(name: str, array: np.ndarray, dtype: str) -> np.ndarray:
    """`array` in the input's dtype; token ids must be whole numbers."""
    if np.issubdtype(np.dtype(dtype), np.integer) and not np.issubdtype(array.dtype, np.integer):
        if not (np.issubdtype(array.dtype, np.number) and np.all(np.mod(array, 1) == 0)):
            raise RunnerError(f"input {name!r} holds token ids ({dtype}); got non-integer "
                              f"values of {array.dtype}")
    elif not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
        raise RunnerError(f"input {name!r}: expected numbers, got {array.dtype}")
    return array.astype(dtype, copy=False)


# ---- the command line -------------------------------------------------------------------------

def read_inputs(path: Path, model: Model) -> dict[str, np.ndarray]:
    """The model's inputs from an .npz (arrays named as the inputs; `x`, or a single array,
    for the first) or a .csv of numeric rows (an optional header; single-input models)."""
    if not path.is_file():
        raise RunnerError(f"{path}: no such file")
    names = model.input_names
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except (OSError, ValueError) as err:
            raise RunnerError(f"{path}: not a readable .npz ({err})") from None
        if names[0] not in arrays and len(arrays) == 1:
            arrays = {names[0]: next(iter(arrays.values()))}
        missing = [name for name in names if name not in arrays]
        if missing:
            raise RunnerError(f"{path}: no array named {missing[0]!r} (the model's inputs: "
                              f"{', '.join(names)}; found {', '.join(arrays) or 'none'})")
        return {name: arrays[name] for name in names}
    if path.suffix != ".csv":
        raise RunnerError(f"{path}: expected inputs as .npz or .csv")
    if len(names) > 1:
        raise RunnerError(f"{path}: this model takes {len(names)} inputs ({', '.join(names)}); "
                          "give them as arrays of an .npz")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RunnerError(f"{path}: not UTF-8 text") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if rows and not _numeric(rows[0]):
        rows = rows[1:]  # a header
    if not rows or not all(_numeric(r) and len(r) == len(rows[0]) for r in rows):
        raise RunnerError(f"{path}: expected rows of numbers, all of one length")
    x = np.array([[float(c) for c in row] for row in rows])
    feature_shape = list(model.inputs[0][1]["shape"][1:])
    if x.shape[1] != int(np.prod(feature_shape, dtype=np.int64)):
        raise RunnerError(f"input {names[0]!r}: each row has {x.shape[1]} values, the model "
                          f"takes {_shape_text(feature_shape)} per row")
    return {names[0]: x.reshape([len(x)] + feature_shape)}


def _numeric(row) -> bool:
    try:
        [float(c) for c in row]
        return True
    except ValueError:
        return False


def write_predictions(columns: dict[str, np.ndarray], out: Path | None) -> None:
    """As `nnctl predict` writes them: .npz of the columns, or CSV (standard output without
    `out`): class, label, p0... for a classifier; y0... otherwise."""
    if out is not None and out.suffix == ".npz":
        np.savez(out, **columns)
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if "class" in columns:
        if columns["class"].ndim > 1:
            raise RunnerError("sequence predictions need an .npz output (-o out.npz)")
        prob, labels = columns["probabilities"], columns.get("label")
        writer.writerow(["class"] + (["label"] if labels is not None else []) +
                        [f"p{k}" for k in range(prob.shape[1])])
        for i, (c, p) in enumerate(zip(columns["class"], prob)):
            writer.writerow([int(c)] + ([labels[i]] if labels is not None else []) +
                            [f"{v:.6g}" for v in p])
    else:
        pred = columns["prediction"].reshape(len(columns["prediction"]), -1)
        writer.writerow([f"y{k}" for k in range(pred.shape[1])])
        for p in pred:
            writer.writerow([f"{v:.6g}" for v in p])
    if out is None:
        sys.stdout.write(buffer.getvalue())
    else:
        out.write_text(buffer.getvalue(), encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="runner.py", description="Predictions of an exported nnctl model, with NumPy "
        "alone: the same columns as nnctl predict.")
    parser.add_argument("graph", type=Path, help="the inference graph (nnctl export-graph RUN "
                        "-f json -o model.json)")
    parser.add_argument("weights", type=Path, help="the weights: the run's weights.npz, or "
                        "nnctl export-weights RUN --names nnctl (.npz or .safetensors)")
    parser.add_argument("inputs", type=Path, help="raw inputs: .npz (arrays named as the "
                        "model's inputs, or x) or .csv (numeric rows, single-input models)")
    parser.add_argument("-o", "--output", type=Path, help="where to write (.csv or .npz); "
                        "without it, CSV on standard output")
    args = parser.parse_args(argv)
    try:
        if args.output is not None and args.output.suffix not in (".csv", ".npz"):
            raise RunnerError(f"-o: expected a .csv or .npz file, got {args.output.name}")
        model = Model.load(args.graph, args.weights)
        columns = model.predict(**read_inputs(args.inputs, model))
        write_predictions(columns, args.output)
    except (RunnerError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.output is not None:
        print(f"wrote {len(next(iter(columns.values())))} predictions to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
