"""Tensor: the user-facing handle on a graph node, with operator overloading.

A Tensor made from data computes at once (eager, handy in tests and a REPL); a Tensor built
on symbolic leaves (inputs, parameters) only records the graph, which the trainer compiles.
Both use the same op definitions from the registry.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Sequence

from nnctl.errors import NnctlError, ShapeError
from nnctl.graph.ir import Node, current_scope
import nnctl.ops  # noqa: F401  (fills the registry)
from nnctl.ops.registry import FLOAT_DTYPES, REGISTRY, Aval, normalize_axes

_GELU_C = 0.7978845608028654  # sqrt(2 / pi)
_GELU_K = 0.044715

# Gradients stored by Tensor.backward(), keyed weakly by leaf node (PyTorch's `.grad` feel
# without putting mutable state on the immutable node).
_GRADS: "weakref.WeakKeyDictionary[Node, Any]" = weakref.WeakKeyDictionary()

# How Tensor.backward() computes leaf gradients: installed by nnctl.autodiff when it is
# imported (autodiff sits above graph in the layering, so graph never imports it).
_leaf_gradients: Callable[["Tensor", Any], dict] | None = None


def set_backward(leaf_gradients: Callable[["Tensor", Any], dict]) -> None:
    """Install `leaf_gradients(tensor, grad_output) -> {leaf node: host array}`, the function
    behind Tensor.backward(); nnctl.autodiff does this on import."""
    global _leaf_gradients
    _leaf_gradients = leaf_gradients


def _array_module(values: Sequence[Any]):
    for v in values:
        if type(v).__module__.split(".")[0] == "cupy":
            import cupy
            return cupy
    import numpy
    return numpy


def apply(op_name: str, *inputs: "Tensor", **attrs) -> "Tensor":
    """Create the node `op_name(*inputs, **attrs)`; compute it at once if every input has a value."""
    op = REGISTRY[op_name]
    nodes = tuple(t.node for t in inputs)
    try:
        aval = op.infer(*(n.aval for n in nodes), **attrs)
    except ShapeError as err:
        raise ShapeError(err.detail, op=op_name, scope=current_scope()) from None
    value = None
    if all(n.value is not None for n in nodes) and not aval.symbolic:  # B: no size yet
        values = [n.value for n in nodes]
        value = op.forward(_array_module(values), *values, **attrs)
        # NOTE: NumPy turns Python-float constants into float64 (e.g. broadcast_to(1.0)),
        # so keep every eager value in the dtype its node declares
        if getattr(value, "dtype", None) is not None and str(value.dtype) != aval.dtype:
            value = value.astype(aval.dtype)
    return Tensor(node=Node(op_name, nodes, attrs, aval, scope=current_scope(), value=value))


def constant(value, dtype: str | None = None) -> "Tensor":
    """A constant. Python numbers stay Python numbers (backend-neutral scalars)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        dtype = dtype or "float64"
        cast = float(value) if dtype in FLOAT_DTYPES else int(value)
        return Tensor(node=Node("constant", (), {}, Aval((), dtype), scope=current_scope(),
                                value=cast))
    return Tensor(value, dtype=dtype)


def input_placeholder(name: str, shape: Sequence[int], dtype: str) -> "Tensor":
    """A symbolic input, fed a new array on every run of the compiled plan."""
    return Tensor(node=Node("input", (), {}, Aval(tuple(shape), dtype), name=name))


def parameter(name: str, shape: Sequence[int], dtype: str) -> "Tensor":
    """A symbolic trainable parameter; its value lives with the model, not in the graph."""
    return Tensor(node=Node("parameter", (), {}, Aval(tuple(shape), dtype), name=name,
                            scope=current_scope()))


def random_bernoulli(shape: Sequence[int], p: float, dtype: str) -> "Tensor":
    """A fresh 0/1 mask (1 with probability p) drawn from the backend's RNG on every run."""
    return Tensor(node=Node("random", (), {"distribution": "bernoulli", "p": float(p)},
                            Aval(tuple(shape), dtype), scope=current_scope()))


def _index_attr(key) -> tuple:
    key = key if isinstance(key, tuple) else (key,)
    out = []
    for k in key:
        if isinstance(k, slice):
            out.append(("slice", k.start, k.stop, k.step))
        elif k is Ellipsis:
            out.append("...")
        elif k is None or (isinstance(k, int) and not isinstance(k, bool)):
            out.append(k)
        else:
            raise TypeError(f"Tensor indices must be ints, slices, None or ..., got {k!r}")
    return tuple(out)


class Tensor:
    """A value in the graph: its elements (when known), shape, dtype and producing op."""

    __slots__ = ("node",)
    __array_priority__ = 1000  # NumPy defers `array * tensor` to Tensor.__rmul__

    def __init__(self, data=None, dtype: str | None = None, *, requires_grad: bool = False,
                 node: Node | None = None):
        if node is None:
            xp = _array_module([data])
            array = xp.asarray(data, dtype=dtype)
            node = Node("constant", (), {"requires_grad": True} if requires_grad else {},
                        Aval(tuple(array.shape), str(array.dtype)), scope=current_scope(),
                        value=array)
        self.node = node

    # ---- what a tensor is ---------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.node.aval.shape

    @property
    def dtype(self) -> str:
        return self.node.aval.dtype

    @property
    def ndim(self) -> int:
        return self.node.aval.ndim

    @property
    def size(self) -> int:
        return self.node.aval.size

    @property
    def op(self) -> str:
        return self.node.op

    @property
    def value(self):
        """The elements as a backend array, or None for a symbolic tensor."""
        return self.node.value

    def numpy(self):
        if self.node.value is None:
            raise NnctlError(f"{self!r} is symbolic and has no value; compile and run its graph")
        value = self.node.value
        if hasattr(value, "get"):  # a CuPy array
            return value.get()
        import numpy
        return numpy.asarray(value)

    def item(self) -> float:
        return self.numpy().item()

    @property
    def grad(self):
        """The gradient stored by the last `backward()` through this leaf, or None."""
        return _GRADS.get(self.node)

    def backward(self, grad_output=None) -> None:
        """Store d(self)/d(leaf) in `.grad` of every leaf created with requires_grad=True."""
        if _leaf_gradients is None:
            raise NnctlError("Tensor.backward() needs nnctl.autodiff: import it (or use "
                             "nnctl.Tensor, which does) before calling backward()")
        _GRADS.update(_leaf_gradients(self, grad_output))

    def __repr__(self) -> str:
        kind = self.node.op if self.node.value is None else "value"
        text = f"Tensor({kind}, shape={list(self.shape)}, dtype={self.dtype}"
        value = self.node.value
        if value is not None and getattr(value, "size", 0) <= 16:  # small constants: show them
            import numpy as np  # values are host arrays here; a device array shows its own
            array = value.get() if hasattr(value, "get") else np.asarray(value)
            text += ", value=" + np.array2string(array, precision=4, separator=", ",
                                                  threshold=16).replace("\n", "")
        return text + ")"

    def __iter__(self):
        raise TypeError("a Tensor is not iterable; index it instead")

    def apply(self, op_name: str, *others, **attrs) -> "Tensor":
        """The registry op `op_name` on (self, *others): how a vjp calls an op that has no
        Tensor method of its own (the ops package cannot import `apply`)."""
        return apply(op_name, self, *(self._lift(o) for o in others), **attrs)

    # ---- arithmetic -------------------------------------------------------------------------
    def _lift(self, other) -> "Tensor":
        return other if isinstance(other, Tensor) else constant(other, self.dtype)

    def __add__(self, other): return apply("add", self, self._lift(other))
    def __radd__(self, other): return apply("add", self._lift(other), self)
    def __sub__(self, other): return apply("sub", self, self._lift(other))
    def __rsub__(self, other): return apply("sub", self._lift(other), self)
    def __mul__(self, other): return apply("mul", self, self._lift(other))
    def __rmul__(self, other): return apply("mul", self._lift(other), self)
    def __truediv__(self, other): return apply("div", self, self._lift(other))
    def __rtruediv__(self, other): return apply("div", self._lift(other), self)
    def __neg__(self): return apply("neg", self)
    def __matmul__(self, other): return apply("matmul", self, self._lift(other))
    def __rmatmul__(self, other): return apply("matmul", self._lift(other), self)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):  # x^y = e^(y ln x), defined for x > 0
            return (exponent * self.log()).exp()
        if hasattr(exponent, "item") and getattr(exponent, "ndim", 1) == 0:
            exponent = exponent.item()  # a NumPy scalar: store a plain number in the graph
        return apply("pow", self, exponent=exponent)

    def __rpow__(self, base):
        return (self * self._lift(base).log()).exp()

    def __getitem__(self, key):
        return apply("getitem", self, index=_index_attr(key))

    # ---- pointwise ---------------------------------------------------------------------------
    def exp(self): return apply("exp", self)
    def log(self): return apply("log", self)
    def sqrt(self): return apply("sqrt", self)
    def abs(self): return apply("abs", self)
    def sin(self): return apply("sin", self)
    def cos(self): return apply("cos", self)
    def tanh(self): return apply("tanh", self)
    def sigmoid(self): return apply("sigmoid", self)
    def relu(self): return apply("relu", self)
    def sign(self): return apply("sign", self)
    def step(self): return apply("step", self)
    def equal(self, other): return apply("equal", self, self._lift(other))

    # ---- reductions and shapes -----------------------------------------------------------
    def sum(self, axis=None, keepdims: bool = False):
        return apply("sum", self, axis=self._axes(axis), keepdims=keepdims)

    def mean(self, axis=None, keepdims: bool = False):
        return apply("mean", self, axis=self._axes(axis), keepdims=keepdims)

    def max(self, axis=None, keepdims: bool = False):
        return apply("max", self, axis=self._axes(axis), keepdims=keepdims)

    def _axes(self, axis):
        if axis is None:
            return None
        try:
            return normalize_axes(axis, self.ndim)
        except ShapeError as err:
            raise ShapeError(err.detail, scope=current_scope()) from None

    def reshape(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) \
            else tuple(shape)
        if shape.count(-1) == 1:
            known = 1
            for d in shape:
                known *= d if d != -1 else 1
            shape = tuple(self.size // known if known and d == -1 else d for d in shape)
        if shape == self.shape:
            return self
        return apply("reshape", self, shape=shape)

    def transpose(self, *axes):
        axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) \
            else tuple(axes) or tuple(reversed(range(self.ndim)))
        axes = tuple(a % self.ndim for a in axes) if self.ndim else axes
        return apply("transpose", self, axes=axes)

    @property
    def T(self):
        return self.transpose()

    @property
    def mT(self):
        """Swap the last two axes (batched matrix transpose)."""
        axes = list(range(self.ndim))
        axes[-2], axes[-1] = axes[-1], axes[-2]
        return self.transpose(tuple(axes))

    def broadcast_to(self, shape):
        shape = tuple(shape)
        return self if shape == self.shape else apply("broadcast_to", self, shape=shape)

    def sum_to(self, shape):
        """Sum over broadcast axes so the result has `shape`: the one unbroadcast."""
        shape = tuple(shape)
        if shape == self.shape:
            return self
        lead = self.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(
            i + lead for i, d in enumerate(shape) if d == 1 and self.shape[i + lead] != 1)
        return self.sum(axes, keepdims=True).reshape(shape)

    def scatter_index(self, index, shape):
        return apply("scatter_index", self, index=tuple(index), shape=tuple(shape))

    # ---- neural-network ops ------------------------------------------------------------------
    def softmax(self, axis: int = -1): return apply("softmax", self, axis=axis)
    def log_softmax(self, axis: int = -1): return apply("log_softmax", self, axis=axis)

    def one_hot(self, depth: int, dtype: str = "float32"):
        return apply("one_hot", self, depth=depth, dtype=dtype)

    def cross_entropy(self, labels: "Tensor"):
        return apply("cross_entropy", self, labels)

    def mse(self, target: "Tensor"):
        """mean((self - target)^2), shapes equal (no broadcasting: a [4, 1] target against a
        [4, 3] prediction is a mistake, not a broadcast). Composed: fusion makes it one loop."""
        target = self._lift(target)
        if target.shape != self.shape:
            raise ShapeError(f"mse: prediction {list(self.shape)} and target "
                             f"{list(target.shape)} differ", op="mse", scope=current_scope())
        d = self - target
        return (d * d).mean()

    # ---- combining, selecting and more activations ---------------------------------------
    def where(self, condition, other):
        """`self` where `condition` (bool or nonzero) holds, else `other` (PyTorch's order)."""
        return where(condition, self, other)

    def maximum(self, other): return maximum(self, other)
    def minimum(self, other): return minimum(self, other)

    def clip(self, low=None, high=None):
        """Clip into [low, high]; either bound may be None. The gradient is 1 inside, bounds
        included, and 0 outside."""
        return apply("clip", self, low=low, high=high)

    def pad(self, pad_width):
        """Zero padding: `pad_width` holds one (before, after) pair per axis."""
        return apply("pad", self, pad_width=tuple(tuple(p) for p in pad_width))

    def take(self, indices):
        """Rows of this table at integer `indices` (any shape): indices.shape + shape[1:]."""
        return apply("take", self, indices if isinstance(indices, Tensor) else Tensor(indices))

    def scatter_add(self, indices, num_rows: int):
        """Rows of self summed into zeros(num_rows, ...) at `indices` (the vjp of take)."""
        indices = indices if isinstance(indices, Tensor) else Tensor(indices)
        return apply("scatter_add", self, indices, num_rows=num_rows)

    def split(self, sizes_or_sections, axis: int = 0) -> list["Tensor"]:
        """Pieces along `axis`: an int n gives n equal pieces, a list gives the pieces' sizes.

            >>> a, b = Tensor(np.arange(5.0)).split([2, 3])   # [0, 1] and [2, 3, 4]
        """
        if not -self.ndim <= axis < self.ndim:
            raise ShapeError(f"axis {axis} is out of range for a {self.ndim}-D input",
                             op="split", scope=current_scope())
        axis %= self.ndim
        dim = self.shape[axis]
        if isinstance(sizes_or_sections, int):
            n = sizes_or_sections
            if n <= 0 or dim % n:
                raise ShapeError(f"cannot split axis {axis} of size {dim} into {n} equal "
                                 "pieces", op="split", scope=current_scope())
            sizes = [dim // n] * n
        else:
            sizes = [int(s) for s in sizes_or_sections]
            if any(s < 0 for s in sizes) or sum(sizes) != dim:
                raise ShapeError(f"split sizes {sizes} do not add up to {dim}, the size of "
                                 f"axis {axis}", op="split", scope=current_scope())
        pieces, start = [], 0
        for s in sizes:
            pieces.append(self[(slice(None),) * axis + (slice(start, start + s),)])
            start += s
        return pieces

    def logsumexp(self, axis=None, keepdims: bool = False):
        return apply("logsumexp", self, axis=self._axes(axis), keepdims=keepdims)

    def var(self, axis=None, keepdims: bool = False):
        """Population variance (ddof 0) over axes."""
        centred = self - self.mean(axis, keepdims=True)  # as NumPy's var: the mean first
        return (centred * centred).mean(axis, keepdims=keepdims)

    def leaky_relu(self, slope: float = 0.01): return apply("leaky_relu", self, slope=slope)
    def elu(self, alpha: float = 1.0): return apply("elu", self, alpha=alpha)

    def gelu(self):
        """GELU in its tanh approximation (PyTorch's approximate='tanh'):
        0.5 x (1 + tanh(u)) with u = c (x + k x^3), computed as x sigmoid(2u), the same
        function: 1 + tanh(u) cancels to 0 for x below about -10 (float64; -5 in float32),
        where sigmoid keeps full relative precision (issue 8's audit)."""
        # composed (fusion makes it one loop; AD gives its derivative)
        return self * (2.0 * _GELU_C * (self + _GELU_K * self * self * self)).sigmoid()

    def softplus(self): return apply("softplus", self)


def _tensors(*values) -> list[Tensor]:
    """Tensors for `values`; Python numbers take the dtype of the first Tensor among them."""
    like = next((v for v in values if isinstance(v, Tensor)), None)
    return [v if isinstance(v, Tensor) else like._lift(v) if like is not None else Tensor(v)
            for v in values]


def concat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis: concat([a [2, 3], b [4, 3]]) is [6, 3]."""
    return apply("concat", *_tensors(*tensors), axis=axis)


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Stack same-shaped tensors along a new axis: stack([a [3], b [3]]) is [2, 3]."""
    return apply("stack", *_tensors(*tensors), axis=axis)


def where(cond, a, b) -> Tensor:
    """a where cond (bool, or nonzero numbers) holds, else b; a or b may be a number. cond
    gets no gradient."""
    cond = cond if isinstance(cond, Tensor) else Tensor(cond)
    return apply("where", cond, *_tensors(a, b))


def maximum(a, b) -> Tensor:
    """Elementwise max; at ties the gradient is shared half/half."""
    return apply("maximum", *_tensors(a, b))


def minimum(a, b) -> Tensor:
    """Elementwise min; at ties the gradient is shared half/half."""
    return apply("minimum", *_tensors(a, b))
