"""A run's inference graph (nnctl.export.inference) as an ONNX model, checked by a runtime.

Every elementary op of the graph becomes one ONNX op or a few (nnctl's layers are already
made of elementary ops, so a layer needs no mapping of its own: an LSTM arrives unrolled
into matmuls and gates, a batch norm as its affine map on the running statistics). The
batch axis stays symbolic ("batch"): a shape that holds it is computed in the model from
the input's shape, so one file serves every batch size. Floats are exported as float32.

`to_onnx` refuses an op it cannot map before building anything, naming the op and its layer;
`verify` runs the written model in ONNX Runtime (or ONNX's reference evaluator) against
nnctl's own forward.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from nnctl.errors import NnctlError, UsageError
from nnctl.export.inference import InferenceGraph
from nnctl.graph.ir import Node
from nnctl.ops.registry import Dim

DEFAULT_OPSET = 17
MIN_OPSET = 14   # Reshape's allowzero, Squeeze/Unsqueeze/Slice axes as inputs
MAX_OPSET = 21
RTOL, ATOL = 1e-4, 1e-5  # float32 against nnctl's forward in the run's dtype


class ExportError(UsageError):
    """The graph holds something ONNX cannot express here (exit 2, nothing written)."""


class ExportMismatch(NnctlError):
    """The exported model computes something else than nnctl's forward (exit 1: a bug in a
    mapping, not in the user's input; nothing written)."""


class Emitter:
    """Collects ONNX nodes and initializers while the graph is walked."""

    def __init__(self, onnx, opset: int, batch_source: str):
        self.onnx, self.helper, self.opset = onnx, onnx.helper, opset
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0
        self._consts: dict = {}
        self._batch: str | None = None
        self._batch_source = batch_source

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def add(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs) -> str:
        out = self.fresh(hint or op_type)
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def add_outputs(self, op_type: str, inputs: list[str], count: int, hint: str,
                    **attrs) -> list[str]:
        """A node with `count` outputs (an LSTM's Y and Y_h); their names."""
        outs = [self.fresh(f"{hint}_out{k}") for k in range(count)]
        self.nodes.append(self.helper.make_node(op_type, inputs, outs, name=self.fresh(hint),
                                                **attrs))
        return outs

    def const(self, value, dtype: str) -> str:
        """An initializer holding `value` (deduplicated by value for small ones)."""
        array = np.asarray(value, dtype=onnx_numpy_dtype(dtype))
        key = (array.dtype.str, array.shape, array.tobytes()) if array.size <= 64 else None
        if key is not None and key in self._consts:
            return self._consts[key]
        name = self.fresh("const")
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        if key is not None:
            self._consts[key] = name
        return name

    def batch(self) -> str:
        """The batch size as a 1-D int64 tensor [B], read from the first input's shape."""
        if self._batch is None:
            shape = self.add("Shape", [self._batch_source], "input_shape")
            self._batch = self.add("Slice", [shape, self.const([0], "int64"),
                                             self.const([1], "int64")], "batch_size")
        return self._batch

    def shape(self, shape) -> str:
        """A shape as an int64 tensor; where it holds the symbolic batch, computed from the
        input's batch size."""
        if not any(isinstance(d, Dim) for d in shape):
            return self.const([int(d) for d in shape], "int64")
        pieces, static = [], []
        for d in shape:
            if isinstance(d, Dim):
                if static:
                    pieces.append(self.const(static, "int64"))
                    static = []
                b = self.batch()
                pieces.append(b if d.coef == 1 else
                              self.add("Mul", [b, self.const([d.coef], "int64")]))
            else:
                static.append(int(d))
        if static:
            pieces.append(self.const(static, "int64"))
        return pieces[0] if len(pieces) == 1 else self.add("Concat", pieces, "shape", axis=0)

    def reduce(self, op_type: str, x: str, axes, keepdims: bool) -> str:
        """A Reduce* op with its axes as an input (ReduceSum from opset 13, the rest from 18)
        or as an attribute (before)."""
        axes_input = op_type == "ReduceSum" or self.opset >= 18
        if axes is None:
            return self.add(op_type, [x], keepdims=int(keepdims))
        axes = [int(a) for a in (axes if isinstance(axes, (tuple, list)) else (axes,))]
        if axes_input:
            return self.add(op_type, [x, self.const(axes, "int64")], keepdims=int(keepdims))
        return self.add(op_type, [x], axes=axes, keepdims=int(keepdims))


def onnx_numpy_dtype(dtype: str):
    """The NumPy dtype an nnctl dtype is exported as: floats as float32."""
    return np.float32 if dtype.startswith("float") else np.dtype(dtype)


def _elem_type(onnx, dtype: str) -> int:
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(onnx_numpy_dtype(dtype)))


# ---- the op mappings: nnctl op -> ONNX nodes ---------------------------------------------------
# Each converter gets the emitter, the nnctl node and the ONNX names of its inputs, and returns
# the ONNX name of its output.

Converter = Callable[[Emitter, Node, list], str]
CONVERTERS: dict[str, Converter] = {}


def converts(*ops: str):
    def register(fn: Converter) -> Converter:
        for op in ops:
            CONVERTERS[op] = fn
        return fn
    return register


_DIRECT = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "maximum": "Max",
           "minimum": "Min", "neg": "Neg", "abs": "Abs", "exp": "Exp", "log": "Log",
           "sqrt": "Sqrt", "sin": "Sin", "cos": "Cos", "tanh": "Tanh", "sigmoid": "Sigmoid",
           "relu": "Relu", "sign": "Sign", "matmul": "MatMul"}


@converts(*_DIRECT)
def _direct(em: Emitter, node: Node, ins: list) -> str:
    return em.add(_DIRECT[node.op], ins, node.op)


@converts("pow")
def _pow(em, node, ins):
    if node.attrs["exponent"] == 2:
        return em.add("Mul", [ins[0], ins[0]], "square")
    return em.add("Pow", [ins[0], em.const(node.attrs["exponent"], node.aval.dtype)])


@converts("leaky_relu")
def _leaky_relu(em, node, ins):
    return em.add("LeakyRelu", ins, alpha=float(node.attrs.get("slope", 0.01)))


@converts("elu")
def _elu(em, node, ins):
    return em.add("Elu", ins, alpha=float(node.attrs.get("alpha", 1.0)))


@converts("softplus")
def _softplus(em, node, ins):
    # log(1 + exp(-|x|)) + max(x, 0), as nnctl computes it: no overflow for large x
    dtype = node.aval.dtype
    tail = em.add("Exp", [em.add("Neg", [em.add("Abs", ins)])])
    log = em.add("Log", [em.add("Add", [tail, em.const(1.0, dtype)])])
    return em.add("Add", [log, em.add("Max", [ins[0], em.const(0.0, dtype)])], "softplus")


@converts("step")
def _step(em, node, ins):
    greater = em.add("Greater", [ins[0], em.const(0.0, node.inputs[0].aval.dtype)])
    return em.add("Cast", [greater], "step", to=_elem_type(em.onnx, node.aval.dtype))


@converts("equal")
def _equal(em, node, ins):
    return em.add("Cast", [em.add("Equal", ins)], "equal",
                  to=_elem_type(em.onnx, node.aval.dtype))


@converts("where")
def _where(em, node, ins):
    cond = ins[0]
    if node.inputs[0].aval.dtype != "bool":
        cond = em.add("Cast", [cond], to=em.onnx.TensorProto.BOOL)
    return em.add("Where", [cond, ins[1], ins[2]])


@converts("clip")
def _clip(em, node, ins):
    dtype = node.aval.dtype
    low, high = node.attrs.get("low"), node.attrs.get("high")
    return em.add("Clip", [ins[0], "" if low is None else em.const(low, dtype),
                           "" if high is None else em.const(high, dtype)])


@converts("reshape")
def _reshape(em, node, ins):
    return em.add("Reshape", [ins[0], em.shape(node.attrs["shape"])], allowzero=1)


@converts("broadcast_to")
def _broadcast_to(em, node, ins):
    return em.add("Expand", [ins[0], em.shape(node.attrs["shape"])])


@converts("transpose")
def _transpose(em, node, ins):
    axes = node.attrs.get("axes")
    perm = list(axes) if axes is not None else list(range(len(node.aval.shape)))[::-1]
    return em.add("Transpose", ins, perm=[int(a) for a in perm])


@converts("concat")
def _concat(em, node, ins):
    return em.add("Concat", ins, axis=int(node.attrs.get("axis", 0)))


@converts("stack")
def _stack(em, node, ins):
    axis = int(node.attrs.get("axis", 0))
    axis = axis + len(node.aval.shape) if axis < 0 else axis
    axes = em.const([axis], "int64")
    return em.add("Concat", [em.add("Unsqueeze", [i, axes]) for i in ins], "stack", axis=axis)


@converts("pad")
def _pad(em, node, ins):
    widths = node.attrs["pad_width"]
    pads = [int(b) for b, _ in widths] + [int(a) for _, a in widths]
    return em.add("Pad", [ins[0], em.const(pads, "int64")], mode="constant")


@converts("take")
def _take(em, node, ins):
    return em.add("Gather", ins, axis=0)


@converts("one_hot")
def _one_hot(em, node, ins):
    dtype = node.aval.dtype
    return em.add("OneHot", [ins[0], em.const(node.attrs["depth"], "int64"),
                             em.const([0, 1], dtype)], axis=-1)


@converts("sum", "mean", "max")
def _reduce(em, node, ins):
    op_type = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax"}[node.op]
    return em.reduce(op_type, ins[0], node.attrs.get("axis"), node.attrs.get("keepdims", False))


@converts("logsumexp")
def _logsumexp(em, node, ins):
    # max + log(sum(exp(x - max))): the stable form nnctl computes
    axis, keepdims = node.attrs.get("axis"), node.attrs.get("keepdims", False)
    top = em.reduce("ReduceMax", ins[0], axis, True)
    total = em.reduce("ReduceSum", em.add("Exp", [em.add("Sub", [ins[0], top])]), axis, True)
    out = em.add("Add", [em.add("Log", [total]), top], "logsumexp")
    if keepdims:
        return out
    return em.add("Reshape", [out, em.shape(node.aval.shape)], allowzero=1)


@converts("softmax", "log_softmax")
def _softmax(em, node, ins):
    op_type = "Softmax" if node.op == "softmax" else "LogSoftmax"
    return em.add(op_type, ins, axis=int(node.attrs.get("axis", -1)))


@converts("numel")
def _numel(em, node, ins):
    x = node.inputs[0]
    axes = node.attrs.get("axis")
    axes = list(range(len(x.aval.shape))) if axes is None else list(axes)
    if not any(isinstance(x.aval.shape[a], Dim) for a in axes):
        n = int(np.prod([x.aval.shape[a] for a in axes]))
        return em.add("Identity", [em.const(n, node.aval.dtype)], "numel")
    sizes = em.add("Gather", [em.add("Shape", ins), em.const(axes, "int64")], axis=0)
    count = em.reduce("ReduceProd", sizes, None, False)
    return em.add("Cast", [count], "numel", to=_elem_type(em.onnx, node.aval.dtype))


def _pairs(value, default) -> list[int]:
    value = default if value is None else value
    return [int(value)] * 2 if isinstance(value, int) else [int(v) for v in value]


@converts("conv2d")
def _conv2d(em, node, ins):
    ph, pw = _pairs(node.attrs.get("padding"), 0)
    return em.add("Conv", ins, "conv", strides=_pairs(node.attrs.get("stride"), 1),
                  pads=[ph, pw, ph, pw], dilations=_pairs(node.attrs.get("dilation"), 1),
                  group=int(node.attrs.get("groups", 1)),
                  kernel_shape=[int(d) for d in node.inputs[1].aval.shape[2:]])


@converts("max_pool2d", "avg_pool2d")
def _pool(em, node, ins):
    kernel = _pairs(node.attrs["kernel"], 1)
    stride = _pairs(node.attrs.get("stride"), 1) if node.attrs.get("stride") is not None \
        else kernel
    ph, pw = _pairs(node.attrs.get("padding"), 0)
    attrs = dict(kernel_shape=kernel, strides=stride, pads=[ph, pw, ph, pw])
    if node.op == "avg_pool2d":
        return em.add("AveragePool", ins, count_include_pad=1, **attrs)
    return em.add("MaxPool", ins, **attrs)


@converts("getitem")
def _getitem(em, node, ins):
    shape = node.inputs[0].aval.shape
    index = tuple(node.attrs["index"])
    real = sum(1 for i in index if i is not None and i != "...")
    if "..." in index:
        at = index.index("...")
        index = index[:at] + (("slice", None, None, None),) * (len(shape) - real) + \
            index[at + 1:]
    else:
        index = index + (("slice", None, None, None),) * (len(shape) - real)
    starts, ends, axes, steps, squeeze, unsqueeze = [], [], [], [], [], []
    axis, out_rank = 0, 0
    for i in index:
        if i is None:
            unsqueeze.append(out_rank)
            out_rank += 1
            continue
        dim = shape[axis]
        if isinstance(i, tuple):
            out_rank += 1
            if not isinstance(dim, Dim):
                start, stop, step = slice(*i[1:]).indices(dim)
                if (start, stop, step) != (0, dim, 1):
                    if step < 0 and stop < 0:
                        stop = -dim - 1  # ONNX: before the first element
                    starts.append(start), ends.append(stop), axes.append(axis)
                    steps.append(step)
        else:
            start = i + dim if i < 0 else i
            starts.append(start), ends.append(start + 1), axes.append(axis), steps.append(1)
            squeeze.append(axis)
        axis += 1
    out = ins[0]
    if axes:
        out = em.add("Slice", [out, em.const(starts, "int64"), em.const(ends, "int64"),
                               em.const(axes, "int64"), em.const(steps, "int64")], "slice")
    if squeeze:
        out = em.add("Squeeze", [out, em.const(squeeze, "int64")])
    if unsqueeze:
        out = em.add("Unsqueeze", [out, em.const(unsqueeze, "int64")])
    if out is ins[0]:
        out = em.add("Identity", [out])
    return out


# ---- the model ---------------------------------------------------------------------------------

def unmapped(graph: InferenceGraph) -> list[str]:
    """'op (in layer)' for every op of the graph with no ONNX mapping, or that ONNX cannot
    run at inference (a random draw)."""
    missing = {}
    for node in graph.graph.nodes:
        if node.op in ("input", "parameter", "constant"):
            continue
        if node.op not in CONVERTERS:
            missing.setdefault(node.op, node.scope.split("/")[0] or "the model")
    return [f"{op} (layer {layer})" for op, layer in missing.items()]


def to_onnx(graph: InferenceGraph, opset: int = DEFAULT_OPSET, name: str = "nnctl",
            recurrent_nodes: bool = True):
    """The ONNX ModelProto of `graph`: inputs as in `nnctl predict` (raw rows) with a symbolic
    batch, the weights as initializers, one output `output`. With `recurrent_nodes`, each
    recurrent layer is one ONNX RNN / LSTM / GRU node per stacked layer
    (nnctl.export.onnx_recurrent), else its unrolled ops."""
    import onnx

    from nnctl.export.onnx_recurrent import emit_region, find_regions

    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"--opset: nnctl writes opsets {MIN_OPSET} to {MAX_OPSET}, got {opset}")
    missing = unmapped(graph)
    if missing:
        raise ExportError("no ONNX mapping for " + ", ".join(missing) + "; nothing was "
                          "written (docs/onnx.md lists the mapped ops)")
    helper = onnx.helper
    em = Emitter(onnx, opset, graph.inputs[0].name)
    names: dict[Node, str] = {}
    inputs = []
    for node in graph.inputs:
        names[node] = node.name
        dims = ["batch" if isinstance(d, Dim) else int(d) for d in node.aval.shape]
        inputs.append(helper.make_tensor_value_info(node.name,
                                                    _elem_type(onnx, node.aval.dtype), dims))

    def value(node: Node) -> str:
        """The ONNX name of a node's value; weights and constants are written on first use,
        so those only a fused layer's skipped ops read are not written at all."""
        if node not in names:
            if node.op == "parameter":
                em.initializers.append(onnx.numpy_helper.from_array(
                    np.asarray(graph.weights[node.name], onnx_numpy_dtype(node.aval.dtype)),
                    node.name))
                names[node] = node.name
            elif node.op == "constant":
                names[node] = em.const(_host(node.value), node.aval.dtype)
            else:
                raise ExportError(f"the graph reads {node.op} {node.name!r}, which the "
                                  "exported model does not feed")
        return names[node]

    regions = find_regions(graph.graph, graph.layers) if recurrent_nodes else {}
    inside = {n for r in regions.values() for n in r.nodes} - set(regions)
    for node in graph.graph.nodes:
        if node in names or node.is_leaf or node in inside:
            continue
        if node in regions:
            names[node] = emit_region(em, regions[node], value, graph.weights)
            continue
        names[node] = CONVERTERS[node.op](em, node, [value(i) for i in node.inputs])
    out = graph.output
    em.nodes.append(helper.make_node("Identity", [value(out)], ["output"], name="output"))
    dims = ["batch" if isinstance(d, Dim) else int(d) for d in out.aval.shape]
    output = helper.make_tensor_value_info("output", _elem_type(onnx, out.aval.dtype), dims)
    model_graph = helper.make_graph(em.nodes, name, inputs, [output], em.initializers)
    model = helper.make_model(model_graph, producer_name="nnctl",
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)  # what current runtimes read
    return model


def _host(value):
    return value.get() if hasattr(value, "get") else value


def check(model) -> None:
    """ONNX's own checker with shape inference (full_check); a failure is a bug in nnctl's
    mapping, reported as such."""
    import onnx
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as err:  # onnx raises ValidationError / InferenceError
        raise ExportMismatch(f"the ONNX checker rejects the exported model: {err}") from None


def run_model(model, arrays: list, input_names: list[str]) -> tuple[np.ndarray, str]:
    """(the model's output on `arrays`, the runtime's name): ONNX Runtime where installed,
    else ONNX's reference evaluator."""
    feeds = dict(zip(input_names, arrays))
    try:
        import onnxruntime
    except ImportError:
        from onnx.reference import ReferenceEvaluator
        return np.asarray(ReferenceEvaluator(model).run(None, feeds)[0]), \
            "ONNX's reference evaluator"
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, feeds)[0]), f"ONNX Runtime {onnxruntime.__version__}"


def compare(got: np.ndarray, want: np.ndarray) -> tuple[float, float, bool]:
    """(max absolute error, max error relative to |want| where |want| > atol, within
    rtol/atol everywhere)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return float("inf"), float("inf"), False
    diff = np.abs(got - want)
    big = np.abs(want) > ATOL
    rel = float((diff[big] / np.abs(want[big])).max()) if big.any() else 0.0
    return float(diff.max(initial=0.0)), rel, bool(np.all(diff <= ATOL + RTOL * np.abs(want)))


def verify(model, graph: InferenceGraph, samples, reference) -> list[str]:
    """Run `model` on each batch of `samples(batch)` (raw input arrays) and compare with
    `reference(arrays)` (nnctl's forward); a line per batch size. Raises ExportError, naming
    the batch size and the errors, where any output is outside rtol/atol."""
    lines = []
    names = [n.name for n in graph.inputs]
    for batch in (1, 7):
        arrays = samples(batch)
        want = reference(arrays)
        got, runtime = run_model(model, arrays, names)
        err, rel, ok = compare(got, want)
        line = (f"batch {batch}: max abs error {err:.2e}, max rel error {rel:.2e} "
                f"against nnctl's forward ({runtime})")
        if not ok:
            raise ExportMismatch(f"the exported model does not match nnctl's forward at {line} "
                              f"(allowed: rtol {RTOL:g}, atol {ATOL:g}); nothing was written")
        lines.append(line)
    return lines
