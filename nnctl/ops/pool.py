"""Pooling on [N, C, H, W] arrays: max_pool2d, avg_pool2d and their backward ops.

They read windows through conv.py's strided view (`_windows`) and add gradients back with
its adjoint (`_scatter_windows`). The backward ops are linear, and each one's vjp is written
with its siblings, so gradients of gradients stay in this family.

Max pooling's backward has two graphs, chosen by one switch (`argmax_in_graph`):

- **Off (the default, the CPU's graph).** dx = max_pool2d_grad(g, x), and its derivative
  max_pool2d_gather(v, x): each finds the window argmax again from x. On the CPU these are
  numba loops (pool_kernels.py) that fuse the search with the routing; the 2x2 gradient
  loop (0.5 ms on [64, 16, 28, 28] float32) beats a search and a separate routing
  (0.48 + 0.22 ms), so the CPU keeps this graph.
- **On (for a device).** The argmax is a node of the graph, found once:
  index = max_pool2d_index(x), dx = max_pool2d_scatter(g, index), and the second order's
  max_pool2d_take(v, index). The compiler turns the forward max_pool2d(x) of such a step into
  max_pool2d_take(x, index) (compile/conv_columns.py), and common-subexpression elimination
  merges every index of the same x: the forward, the gradient and a gradient of the gradient
  share one window search (on the GPU one kernel, window_kernels.py), and the backward no
  longer reads x. The scatter and the take are linear in their float input, each the other's
  adjoint. The index holds k = i*KW + j as a number in x's dtype, as `step` and `equal` give
  their 0 and 1: the op table differentiates float tensors only, and the index's derivative
  is zero where it exists.

Both graphs route ties to the first maximum in row-major window order and let a NaN win (the
first NaN), so they give the same values. The index never names the padding (as the numba
loops, unlike NumPy's argmax over the -inf-padded view, which the NumPy path of
max_pool2d_grad uses: in a window whose elements of x are all -inf, that path drops the
gradient in the padding, the index routes it to the first element). The graph is fixed when
the backward is built, by `argmax_in_graph(True)` around `grad` (or NNCTL_MAX_POOL_INDEX=1 in
the environment); the kernels then run on whatever backend the plan is compiled for.
"""

from __future__ import annotations

import contextlib
import contextvars
import os

from nnctl.ops.conv import _pair, _pool_shape, _scatter_windows, _windows
from nnctl.ops.registry import (FLOAT_DTYPES, INT_DTYPES, REGISTRY, Aval, Op, Sample, fail,
                                register, require_float, same_dtype)
from nnctl.ops.window_kernels import is_device, window_argmax

_ARGMAX_IN_GRAPH: contextvars.ContextVar = contextvars.ContextVar("argmax_in_graph",
                                                                   default=None)


def argmax_in_graph_enabled() -> bool:
    """Whether max_pool2d's vjp puts the window argmax in the graph (see the module)."""
    on = _ARGMAX_IN_GRAPH.get()
    return os.environ.get("NNCTL_MAX_POOL_INDEX", "0") == "1" if on is None else on


@contextlib.contextmanager
def argmax_in_graph(enabled: bool = True):
    """The switch: max_pool2d's backward built inside it finds the argmax once, as a node."""
    token = _ARGMAX_IN_GRAPH.set(bool(enabled))
    try:
        yield
    finally:
        _ARGMAX_IN_GRAPH.reset(token)

# ---- pooling ---------------------------------------------------------------------------------

def _pooled(x: tuple, kernel, stride=None, padding=(0, 0)) -> tuple:
    """The pooled shape of x for infer: an attr that is neither an int nor a sequence (a float
    kernel) is refused as a ShapeError here, not a TypeError in conv.py's _pair."""
    for value, name, minimum in ((kernel, "kernel", 1), (stride, "stride", 1),
                                 (padding, "padding", 0)):
        if not (value is None and name == "stride") and not isinstance(value, (int, tuple, list)):
            fail(f"{name} must be an int or a pair of ints >= {minimum}, got {value!r}")
    return _pool_shape(x, kernel, stride, padding)


def _pool_attrs(kernel, stride, padding):
    kernel = _pair(kernel, "kernel", 1)
    return kernel, _pair(kernel if stride is None else stride, "stride", 1), \
        _pair(padding, "padding", 0)


def _argmax(xp, x, kernel, stride=None, padding=(0, 0)):
    """Index (i*KW + j) of each window's first maximum, [N, C, OH, OW]; padding is -inf."""
    out_hw = _pool_shape(x.shape, kernel, stride, padding)[2:]
    kernel, stride, padding = _pool_attrs(kernel, stride, padding)
    view = _windows(xp, x, kernel, stride, padding, (1, 1), out_hw, fill=float("-inf"))
    n, c = x.shape[:2]
    return xp.argmax(view.reshape(n, c, kernel[0] * kernel[1], *out_hw), axis=2)


def _jit_loop(xp, which: str, x, kernel, stride, padding):
    """The numba loop for max pooling (pool_kernels.py), with its geometry bound, where the
    arrays are NumPy's, the JIT is on and x is large enough for it to pay (nnctl.jit.worth);
    else None (the NumPy path below)."""
    from nnctl import jit
    if xp.__name__ != "numpy" or x.dtype.name not in ("float32", "float64") or \
            not jit.worth(x.size):
        return None  # (numba has no float16: mixed precision's pooling takes NumPy's path)
    from nnctl.ops.pool_kernels import bits, kernels, pick
    compiled = kernels()
    if not compiled:
        return None
    (kh, kw), (sh, sw), (ph, pw) = _pool_attrs(kernel, stride, padding)
    if (kh, kw, sh, sw, ph, pw) == (2, 2, 2, 2, 0, 0) and which == "forward":
        return pick(compiled, "forward_2x2", x.size)
    if (kh, kw, sh, sw, ph, pw) == (2, 2, 2, 2, 0, 0) and which == "grad":
        grad = pick(compiled, "grad_2x2", x.size)
        return lambda g, x, out: grad(bits(g), x, bits(out))
    # gather (second order only) has no 2x2 loop: the general one
    if which == "forward":  # the value at each window's maximum: gather(x, x)
        gather = pick(compiled, "gather", x.size)
        return lambda x, out: gather(x, x, out, kh, kw, sh, sw, ph, pw)
    loop = pick(compiled, which, x.size)
    return lambda *arrays: loop(*arrays, kh, kw, sh, sw, ph, pw)


def _looped(op, xp, out, which: str, arrays: tuple, kernel, stride, padding):
    """`op.forward_into` through the numba loop where there is one (x is the last array),
    else the NumPy path (Op.forward_into: forward, then a copy)."""
    loop = _jit_loop(xp, which, arrays[-1], kernel, stride, padding)
    if loop is None:
        return Op.forward_into(op, xp, out, *arrays, kernel, stride, padding)
    loop(*arrays, out)
    return out


POOL_CASES = (  # (x shape, attrs)
    ((2, 2, 4, 4), {"kernel": (2, 2)}),
    ((2, 2, 5, 5), {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1)}),
    ((1, 3, 5, 6), {"kernel": (2, 3), "stride": (1, 2)}),  # overlapping windows
)


@register
class MaxPool2d(Op):
    """y[n,c,p,q] = max over the window at (p*sh - ph, q*sw - pw) of x (padding is -inf);
    dx = max_pool2d_grad(g, x): g routed to each window's first maximum"""
    name = "max_pool2d"

    def infer(self, x: Aval, kernel, stride=None, padding=(0, 0)) -> Aval:
        require_float(x, "x")
        return Aval(_pooled(x.shape, kernel, stride, padding), x.dtype)

    def forward(self, xp, x, kernel, stride=None, padding=(0, 0)):
        out_hw = _pool_shape(x.shape, kernel, stride, padding)[2:]
        kernel, stride, padding = _pool_attrs(kernel, stride, padding)
        view = _windows(xp, x, kernel, stride, padding, (1, 1), out_hw, fill=float("-inf"))
        return view.max(axis=(2, 3))

    def forward_into(self, xp, out, x, kernel, stride=None, padding=(0, 0)):
        return _looped(self, xp, out, "forward", (x,), kernel, stride, padding)

    def vjp(self, g, out, x, **attrs):
        if argmax_in_graph_enabled():
            index = x.apply("max_pool2d_index", **attrs)
            return (g.apply("max_pool2d_scatter", index, input_shape=x.shape, **attrs),)
        return (g.apply("max_pool2d_grad", x, **attrs),)

    def samples(self):
        for x, attrs in POOL_CASES:
            yield Sample(shapes=(x,), attrs=attrs, distinct=True)


@register
class MaxPool2dGrad(Op):
    """dx = g added at the position of each window's maximum in x (ties: the first in row-major
    window order, as PyTorch's CPU kernel); linear in g: d/dg = max_pool2d_gather(v, x);
    x only picks the positions, so its derivative is zero wherever it exists (None)"""
    name = "max_pool2d_grad"
    arity = 2
    nondifferentiable = (1,)

    def infer(self, g: Aval, x: Aval, kernel, stride=None, padding=(0, 0)) -> Aval:
        require_float(g, "g")
        dtype = same_dtype(g, x)
        expected = _pooled(x.shape, kernel, stride, padding)
        if g.shape != expected:
            fail(f"g {list(g.shape)} is not the pooled shape {list(expected)} of x {list(x.shape)}")
        return Aval(x.shape, dtype)

    def forward(self, xp, g, x, kernel, stride=None, padding=(0, 0)):
        if is_device(xp):  # the argmax kernel and the scatter's gather: no loop over offsets
            index = MAX_POOL2D_INDEX.forward(xp, x, kernel, stride, padding)
            return MAX_POOL2D_SCATTER.forward(xp, g, index, x.shape, kernel, stride, padding)
        index = _argmax(xp, x, kernel, stride, padding)
        kernel, stride, padding = _pool_attrs(kernel, stride, padding)
        kh, kw = kernel
        n, c, oh, ow = g.shape
        hits = index[:, :, None, :, :] == xp.arange(kh * kw).reshape(1, 1, -1, 1, 1)
        cols = (hits * g[:, :, None]).reshape(n, c, kh, kw, oh, ow)
        return _scatter_windows(xp, cols, x.shape, stride, padding, (1, 1))

    def forward_into(self, xp, out, g, x, kernel, stride=None, padding=(0, 0)):
        return _looped(self, xp, out, "grad", (g, x,), kernel, stride, padding)

    def vjp(self, gx, out, g, x, **attrs):
        return gx.apply("max_pool2d_gather", x, **attrs), None

    def samples(self):
        for x, attrs in POOL_CASES:
            y = _pool_shape(x, **attrs)
            yield Sample(shapes=(y, x), attrs=attrs, distinct=True)


@register
class MaxPool2dGather(Op):
    """y[n,c,p,q] = v at the position of the maximum of x's window (p, q): the adjoint of
    max_pool2d_grad in its first input;  dv = max_pool2d_grad(g, x), x: None (as there)"""
    name = "max_pool2d_gather"
    arity = 2
    nondifferentiable = (1,)

    def infer(self, v: Aval, x: Aval, kernel, stride=None, padding=(0, 0)) -> Aval:
        require_float(v, "v")
        dtype = same_dtype(v, x)
        if v.shape != x.shape:
            fail(f"v {list(v.shape)} and x {list(x.shape)} must have the same shape")
        return Aval(_pooled(x.shape, kernel, stride, padding), dtype)

    def forward(self, xp, v, x, kernel, stride=None, padding=(0, 0)):
        if is_device(xp):
            index = MAX_POOL2D_INDEX.forward(xp, x, kernel, stride, padding)
            return MAX_POOL2D_TAKE.forward(xp, v, index, kernel, stride, padding)
        index = _argmax(xp, x, kernel, stride, padding)
        kernel, stride, padding = _pool_attrs(kernel, stride, padding)
        n, c, oh, ow = index.shape
        view = _windows(xp, v, kernel, stride, padding, (1, 1), (oh, ow))
        cols = view.reshape(n, c, kernel[0] * kernel[1], oh, ow)
        return xp.take_along_axis(cols, index[:, :, None], axis=2)[:, :, 0]

    def forward_into(self, xp, out, v, x, kernel, stride=None, padding=(0, 0)):
        return _looped(self, xp, out, "gather", (v, x,), kernel, stride, padding)

    def vjp(self, g, out, v, x, **attrs):
        return g.apply("max_pool2d_grad", x, **attrs), None

    def samples(self):
        for x, attrs in POOL_CASES:
            yield Sample(shapes=(x, x), attrs=attrs, distinct=True)


# ---- max pooling with the argmax as a node (argmax_in_graph) -----------------------------------

def _check_index(index: Aval, pooled: tuple, what: str) -> None:
    if index.dtype not in FLOAT_DTYPES + INT_DTYPES:
        fail(f"index must hold window positions (floats or ints), got {index}")
    if index.shape != pooled:
        fail(f"index {list(index.shape)} is not the pooled shape {list(pooled)} of {what}")


@register
class MaxPool2dIndex(Op):
    """index[n,c,p,q] = k = i*KW + j of the first maximum of x's window (p, q) in row-major
    order among its elements of x (a NaN is the maximum, the first one), as a number in x's
    dtype;  dx = 0 where it exists (piecewise constant, as `step`)"""
    name = "max_pool2d_index"
    twice_differentiable = False

    def infer(self, x: Aval, kernel, stride=None, padding=(0, 0)) -> Aval:
        require_float(x, "x")
        return Aval(_pooled(x.shape, kernel, stride, padding), x.dtype)

    def forward(self, xp, x, kernel, stride=None, padding=(0, 0)):
        out_hw = _pool_shape(x.shape, kernel, stride, padding)[2:]
        return window_argmax(xp, x, *_pool_attrs(kernel, stride, padding), out_hw)

    def vjp(self, g, out, x, **attrs):
        return (None,)

    def samples(self):
        for x, attrs in POOL_CASES:
            yield Sample(shapes=(x,), attrs=attrs, distinct=True)


def _hits(xp, index, kernel):
    """[N, C, KH*KW, OH, OW]: True at each window's position `index`."""
    k = xp.arange(kernel[0] * kernel[1]).reshape(1, 1, -1, 1, 1)
    return index[:, :, None] == k


@register
class MaxPool2dScatter(Op):
    """dx = g added at each window's position `index` (max_pool2d_index: the window's
    maximum), positions in the padding dropped; linear in g: d/dg = max_pool2d_take(v, index);
    index only picks positions: None"""
    name = "max_pool2d_scatter"
    arity = 2
    nondifferentiable = (1,)

    def infer(self, g: Aval, index: Aval, input_shape, kernel, stride=None,
              padding=(0, 0)) -> Aval:
        require_float(g, "g")
        expected = _pooled(tuple(input_shape), kernel, stride, padding)
        if g.shape != expected:
            fail(f"g {list(g.shape)} is not the pooled shape {list(expected)} of x "
                 f"{list(input_shape)}")
        _check_index(index, expected, f"x {list(input_shape)}")
        return Aval(tuple(input_shape), g.dtype)

    def forward(self, xp, g, index, input_shape, kernel, stride=None, padding=(0, 0)):
        kernel, stride, padding = _pool_attrs(kernel, stride, padding)
        n, c, oh, ow = g.shape
        # g where the window's maximum is, else 0 (an infinite g reaches that one place only)
        cols = xp.where(_hits(xp, index, kernel), g[:, :, None], 0)
        cols = cols.reshape((n, c) + kernel + (oh, ow))
        dx = _scatter_windows(xp, cols, tuple(input_shape), stride, padding, (1, 1))
        return xp.ascontiguousarray(dx)

    def vjp(self, gx, out, g, index, input_shape, **attrs):
        return gx.apply("max_pool2d_take", index, **attrs), None

    def samples(self):
        for x, attrs in POOL_CASES:
            y = _pool_shape(x, **attrs)
            k = _pool_attrs(attrs["kernel"], attrs.get("stride"), attrs.get("padding", (0, 0)))[0]
            yield Sample(shapes=(y, y), attrs={"input_shape": x, **attrs},
                         int_inputs={1: k[0] * k[1]})


@register
class MaxPool2dTake(Op):
    """y[n,c,p,q] = v at window (p, q)'s position `index` (0 in the padding): the adjoint of
    max_pool2d_scatter in g;  dv = max_pool2d_scatter(g, index), index: None"""
    name = "max_pool2d_take"
    arity = 2
    nondifferentiable = (1,)

    def infer(self, v: Aval, index: Aval, kernel, stride=None, padding=(0, 0)) -> Aval:
        require_float(v, "v")
        pooled = _pooled(v.shape, kernel, stride, padding)
        _check_index(index, pooled, f"v {list(v.shape)}")
        return Aval(pooled, v.dtype)

    def forward(self, xp, v, index, kernel, stride=None, padding=(0, 0)):
        kernel, stride, padding = _pool_attrs(kernel, stride, padding)
        n, c, oh, ow = index.shape
        view = _windows(xp, v, kernel, stride, padding, (1, 1), (oh, ow))
        cols = view.reshape(n, c, kernel[0] * kernel[1], oh, ow)
        at = index[:, :, None].astype(xp.intp)
        return xp.take_along_axis(cols, at, axis=2)[:, :, 0]

    def vjp(self, g, out, v, index, **attrs):
        return g.apply("max_pool2d_scatter", index, input_shape=v.shape, **attrs), None

    def samples(self):
        for x, attrs in POOL_CASES:
            y = _pool_shape(x, **attrs)
            k = _pool_attrs(attrs["kernel"], attrs.get("stride"), attrs.get("padding", (0, 0)))[0]
            yield Sample(shapes=(x, y), attrs=attrs, int_inputs={1: k[0] * k[1]})


MAX_POOL2D_INDEX, MAX_POOL2D_SCATTER, MAX_POOL2D_TAKE = (
    REGISTRY[op.name] for op in (MaxPool2dIndex, MaxPool2dScatter, MaxPool2dTake))


@register
class AvgPool2d(Op):
    """y[n,c,p,q] = mean of x's window at (p*sh - ph, q*sw - pw), padding counted as zeros
    (PyTorch's count_include_pad=True);  dx = avg_pool2d_grad(g)"""
    name = "avg_pool2d"

    def infer(self, x: Aval, kernel, stride=None, padding=(0, 0)) -> Aval:
        require_float(x, "x")
        return Aval(_pooled(x.shape, kernel, stride, padding), x.dtype)

    def forward(self, xp, x, kernel, stride=None, padding=(0, 0)):
        out_hw = _pool_shape(x.shape, kernel, stride, padding)[2:]
        kernel, stride, padding = _pool_attrs(kernel, stride, padding)
        view = _windows(xp, x, kernel, stride, padding, (1, 1), out_hw)
        return view.sum(axis=(2, 3)) / (kernel[0] * kernel[1])

    def vjp(self, g, out, x, **attrs):
        return (g.apply("avg_pool2d_grad", input_shape=x.shape, **attrs),)

    def samples(self):
        for x, attrs in POOL_CASES:
            yield Sample(shapes=(x,), attrs=attrs)


@register
class AvgPool2dGrad(Op):
    """dx = g / (KH*KW) added over each window (the adjoint of avg_pool2d);  d/dg = avg_pool2d(v)"""
    name = "avg_pool2d_grad"

    def infer(self, g: Aval, input_shape, kernel, stride=None, padding=(0, 0)) -> Aval:
        require_float(g, "g")
        expected = _pooled(tuple(input_shape), kernel, stride, padding)
        if g.shape != expected:
            fail(f"g {list(g.shape)} is not the pooled shape {list(expected)} of x "
                 f"{list(input_shape)}")
        return Aval(tuple(input_shape), g.dtype)

    def forward(self, xp, g, input_shape, kernel, stride=None, padding=(0, 0)):
        kernel, stride, padding = _pool_attrs(kernel, stride, padding)
        n, c, oh, ow = g.shape
        share = g / (kernel[0] * kernel[1])
        cols = xp.broadcast_to(share[:, :, None, None], (n, c) + kernel + (oh, ow))
        return _scatter_windows(xp, cols, tuple(input_shape), stride, padding, (1, 1))

    def vjp(self, gx, out, g, input_shape, **attrs):
        return (gx.apply("avg_pool2d", **attrs),)

    def samples(self):
        for x, attrs in POOL_CASES:
            yield Sample(shapes=(_pool_shape(x, **attrs),), attrs={"input_shape": x, **attrs})
