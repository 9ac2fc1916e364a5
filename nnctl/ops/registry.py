"""The op table: every elementary op is one `Op` subclass registered here.

An op holds, side by side, its shape/dtype inference (`infer`), its computation on the
backend's array module (`forward(xp, ...)`) and its derivative (`vjp`), written with Tensor
ops so that the backward pass is itself a graph. gradcheck, export and the op tests all read
`REGISTRY`, so a new op is added in exactly one place.

This module imports neither numpy nor the graph package: a vjp only uses the Tensor objects it
is handed (their operators and methods).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from nnctl.errors import ShapeError

FLOAT_DTYPES = ("float32", "float64", "float16")  # float16: mixed precision's compute dtype

# What an op is to the compiler (Op.kind):
ELEMENTWISE = "elementwise"  # each output element from the same-position input elements (after
#                               broadcasting): fusable into one generated loop
REDUCTION = "reduction"      # combines elements along axes (sum, max, softmax's normaliser, ...)
MOVEMENT = "movement"        # moves or repeats elements without computing: reshape, transpose,
#                               slicing, broadcast; a view of its input where the layout allows
OPAQUE = "opaque"            # a library kernel (matmul, conv): scheduled as a unit
KINDS = (ELEMENTWISE, REDUCTION, MOVEMENT, OPAQUE)
INT_DTYPES = ("int32", "int64")


class Dim:
    """A symbolic size: `coef` times the named size (the batch dimension `B`, or a multiple of
    it once a reshape folds other axes into it, e.g. `32*B` for [B, 32, H] -> [B*32, H]).

    A graph built on inputs of shape [B, ...] is shape-polymorphic in B: one compiled plan
    serves every batch size. Dims multiply and floor-divide by ints (and by each other when
    the result is an int), compare equal to the same multiple of the same name, and are never
    equal to an int; `resolve({"B": 64})` gives the concrete size.
    """

    __slots__ = ("name", "coef")

    def __init__(self, name: str = "B", coef: int = 1):
        if not isinstance(coef, int) or coef < 1:
            raise ValueError(f"a symbolic dim needs a positive int coefficient, got {coef!r}")
        self.name, self.coef = name, coef

    def resolve(self, sizes: dict) -> int:
        return self.coef * sizes[self.name]

    def __mul__(self, other):
        if isinstance(other, int) and not isinstance(other, bool):
            return Dim(self.name, self.coef * other) if other > 0 else 0
        return NotImplemented

    __rmul__ = __mul__

    def __floordiv__(self, other):
        if isinstance(other, Dim) and other.name == self.name and self.coef % other.coef == 0:
            return self.coef // other.coef
        if isinstance(other, int) and other > 0 and self.coef % other == 0:
            return Dim(self.name, self.coef // other)
        raise ShapeError(f"{self} is not divisible by {other}")

    def __add__(self, other):
        if isinstance(other, Dim) and other.name == self.name:
            return Dim(self.name, self.coef + other.coef)  # concat along the batch axis
        if other == 0:
            return self
        raise ShapeError(f"cannot add {other} to the symbolic size {self}")

    __radd__ = __add__

    def __eq__(self, other) -> bool:
        return isinstance(other, Dim) and other.name == self.name and other.coef == self.coef

    def __hash__(self) -> int:
        return hash((self.name, self.coef))

    def __bool__(self) -> bool:
        return True  # a batch is never empty

    def __repr__(self) -> str:
        return self.name if self.coef == 1 else f"{self.coef}*{self.name}"


def is_symbolic(shape) -> bool:
    return any(isinstance(d, Dim) for d in shape)


def resolve(value, sizes: dict):
    """`value` (a shape, an attribute: nested tuples, lists, dicts) with every Dim replaced by
    its size in `sizes`."""
    if isinstance(value, Dim):
        return value.resolve(sizes)
    if isinstance(value, tuple):
        return tuple(resolve(v, sizes) for v in value)
    if isinstance(value, list):
        return [resolve(v, sizes) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, sizes) for k, v in value.items()}
    return value


def contains_dim(value) -> bool:
    if isinstance(value, Dim):
        return True
    if isinstance(value, (tuple, list)):
        return any(contains_dim(v) for v in value)
    if isinstance(value, dict):
        return any(contains_dim(v) for v in value.values())
    return False


def is_size(d) -> bool:
    """A static non-negative int or a symbolic Dim."""
    return isinstance(d, Dim) or (isinstance(d, int) and not isinstance(d, bool) and d >= 0)


@dataclass(frozen=True)
class Aval:
    """The abstract value of a graph node: shape (ints, or a symbolic Dim for the batch) and
    dtype name."""

    shape: tuple
    dtype: str

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def itemsize(self) -> int:
        if self.dtype == "float16":
            return 2
        return 4 if self.dtype in ("float32", "int32") else 1 if self.dtype == "bool" else 8

    @property
    def nbytes(self):
        """Bytes of the value: an int, or a Dim (bytes per unit of the batch) when symbolic."""
        return self.size * self.itemsize

    @property
    def symbolic(self) -> bool:
        return is_symbolic(self.shape)

    def at(self, sizes: dict) -> "Aval":
        """This aval with its symbolic dims resolved."""
        return Aval(resolve(self.shape, sizes), self.dtype) if self.symbolic else self

    def __str__(self) -> str:
        return f"{self.dtype}{list(self.shape)}"


@dataclass(frozen=True)
class Sample:
    """One sample call of an op, for gradcheck and the op test table.

    `shapes` gives one shape per input. Float inputs are drawn uniformly from [low, high];
    inputs listed in `int_inputs` (index -> exclusive upper bound) are integer labels.
    `kinks` are points where the op is not differentiable: gradcheck keeps samples away
    from them (Chainer's dodge_nondifferentiable).
    """

    shapes: tuple[tuple[int, ...], ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    low: float = -2.0
    high: float = 2.0
    int_inputs: dict[int, int] = field(default_factory=dict)
    kinks: tuple[float, ...] = ()
    distinct: bool = False  # keep values apart (max ties would make the gradient ambiguous)


class Op:
    """Base class of an elementary op. Subclasses set `name` and override the four methods.

    `nondifferentiable` lists input indices that have no gradient (integer labels); the vjp
    returns None in those places. `twice_differentiable = False` excludes an op from the
    second-order check (its derivative is piecewise constant, e.g. relu's step).
    """

    name: str = ""
    kind: str = OPAQUE
    nondifferentiable: tuple[int, ...] = ()
    twice_differentiable: bool = True
    arity: int = 1
    # An op with a workspace runs `forward` and a copy on small arrays (a compiled plan's
    # SMALL_WORK), where NumPy's few calls cost less than its allocation-free path; False
    # where the workspace path is the cheaper one at every size (a sum as a GEMV).
    copy_small: bool = True
    # Another op this one computes in the same pass when a graph has both on the same
    # leading inputs (a loss and its gradient share the softmax): (its name, the method
    # `m(xp, out, *inputs, *its extra inputs, other=its buffer, work=this op's workspace or
    # None)` that writes both). A compiled plan pairs them (plan.py); the results must be
    # the bits each op's own kernel gives.
    companion: tuple[str, str] | None = None
    # Whether a compiled step holding this op can be captured as a CUDA graph and replayed
    # (nnctl/train/capture.py): its forward reads no device value on the host (no int() of a
    # device array, no result whose size depends on the data), copies no host data to the
    # device, and does the same device work at every run (nothing decided on the host from
    # values that change between runs). False where it does not hold.
    capturable: bool = True

    def infer(self, *avals: Aval, **attrs) -> Aval:
        raise NotImplementedError

    def forward(self, xp, *arrays, **attrs):
        raise NotImplementedError

    def workspace(self, *avals: Aval, **attrs) -> tuple:
        """Avals of the scratch arrays `forward_into` needs besides `out` (none by default).
        The memory plan places them in the arena, alive only while the op runs, and passes
        them as `work=(...)`: an op that needs temporaries still allocates nothing per step."""
        return ()

    def forward_into(self, xp, out, *arrays, **attrs):
        """Write the result into `out`, a preallocated array of the node's shape and dtype, and
        return it. The default computes, then copies; ops override it to write in place (a
        ufunc's `out=`, `matmul(out=)`), so a compiled plan allocates nothing per step.
        `out` never aliases an input unless the memory plan proved that safe."""
        result = self.forward(xp, *arrays, **attrs)
        xp.copyto(out, result, casting="unsafe")
        return out

    def vjp(self, g, out, *inputs, **attrs) -> tuple:
        raise NotImplementedError

    def samples(self) -> Iterable[Sample]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<op {self.name}>"


REGISTRY: dict[str, Op] = {}


def register(cls: type[Op]) -> type[Op]:
    """Add an op to the registry. Refuses, at import time, an op that lacks a rule."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    if cls.kind not in KINDS:
        raise TypeError(f"op {cls.name!r} has kind {cls.kind!r}; expected one of {KINDS}")
    if cls.name in REGISTRY:
        raise TypeError(f"op {cls.name!r} is registered twice")
    for method in ("infer", "forward", "vjp", "samples"):
        if getattr(cls, method) is getattr(Op, method):
            raise TypeError(f"op {cls.name!r} does not define {method}()")
    REGISTRY[cls.name] = cls()
    return cls


def unregister(name: str) -> None:
    """Remove an op (tests register deliberately wrong ops and must clean up)."""
    REGISTRY.pop(name, None)


# ---- inference helpers shared by the op modules ------------------------------------------

def fail(message: str) -> None:
    raise ShapeError(message)


def require_float(aval: Aval, what: str = "input") -> None:
    if aval.dtype not in FLOAT_DTYPES:
        fail(f"expected a float {what}, got {aval}")


def same_dtype(*avals: Aval) -> str:
    dtypes = {a.dtype for a in avals}
    if len(dtypes) != 1:
        fail("inputs have different dtypes: " + ", ".join(str(a) for a in avals))
    return avals[0].dtype


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy broadcasting of static shapes, with a message naming both shapes."""
    ndim = max(len(s) for s in shapes)
    out = []
    for axis in range(ndim):
        dims = {s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0}
        dims.discard(1)
        if len(dims) > 1:
            fail("shapes " + " and ".join(str(list(s)) for s in shapes) + " do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def normalize_axes(axis, ndim: int) -> tuple[int, ...]:
    """`axis` (None, int or sequence) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            fail(f"axis {a} is out of range for a {ndim}-D input")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        fail(f"repeated axis in {axes}")
    return tuple(sorted(out))
