"""Ops that combine or select between tensors: concat, stack, where, maximum, minimum, clip.

concat and stack are variadic (`arity = None`). Their vjps slice `g` back into pieces with
getitem, so no split op is needed (Tensor.split is getitem too).
"""

from __future__ import annotations

from nnctl.ops.blocks import constant_block
from nnctl.ops.elementwise import _BROADCAST_SHAPES, Binary, Unary
from nnctl.ops.registry import (ELEMENTWISE, FLOAT_DTYPES, INT_DTYPES, MOVEMENT, Aval, Op,
                                Sample, broadcast_shapes, fail, register, require_float,
                                same_dtype)


def _shapes(xs) -> str:
    return ", ".join(str(list(x.shape)) for x in xs)


def _check_axis(axis, ndim: int, what: str) -> None:
    if not isinstance(axis, int) or isinstance(axis, bool) or not -ndim <= axis < ndim:
        fail(f"{what}: axis {axis!r} is out of range for {ndim}-D results")


@register
class Concat(Op):
    """y = [x1, x2, ...] joined along an existing axis;  dxi = g sliced at xi's place"""
    name = "concat"
    kind = MOVEMENT
    arity = None

    def infer(self, *xs: Aval, axis: int = 0) -> Aval:
        if not xs:
            fail("concat needs at least one input")
        dtype = same_dtype(*xs)
        ndim = xs[0].ndim
        if ndim == 0:
            fail("cannot concatenate 0-D inputs; use stack")
        _check_axis(axis, ndim, "concat")
        axis %= ndim
        rest = {x.shape[:axis] + x.shape[axis + 1:] for x in xs}
        if any(x.ndim != ndim for x in xs) or len(rest) > 1:
            fail(f"concat along axis {axis}: shapes {_shapes(xs)} differ on another axis")
        shape = list(xs[0].shape)
        shape[axis] = sum(x.shape[axis] for x in xs)
        return Aval(tuple(shape), dtype)

    def forward(self, xp, *xs, axis=0):
        return xp.concatenate(xs, axis=axis)

    def forward_into(self, xp, out, *xs, axis=0):
        return xp.concatenate(xs, axis=axis, out=out)

    def vjp(self, g, out, *xs, axis=0):
        axis %= g.ndim
        gxs, start = [], 0
        for x in xs:
            stop = start + x.shape[axis]
            gxs.append(g[(slice(None),) * axis + (slice(start, stop),)])
            start = stop
        return tuple(gxs)

    def samples(self):
        yield Sample(shapes=((2, 3), (4, 3)), attrs={"axis": 0})
        yield Sample(shapes=((2, 3), (2, 1), (2, 2)), attrs={"axis": 1})
        yield Sample(shapes=((2, 3, 4), (2, 2, 4)), attrs={"axis": -2})
        yield Sample(shapes=((2, 0), (2, 3)), attrs={"axis": 1})  # an empty piece
        yield Sample(shapes=((3,),), attrs={"axis": 0})  # a single input


@register
class Stack(Op):
    """y = [x1, x2, ...] stacked along a new axis;  dxi = g[..., i, ...] at that axis"""
    name = "stack"
    kind = MOVEMENT
    arity = None

    def infer(self, *xs: Aval, axis: int = 0) -> Aval:
        if not xs:
            fail("stack needs at least one input")
        dtype = same_dtype(*xs)
        if len({x.shape for x in xs}) > 1:
            fail(f"stack needs inputs of one shape, got {_shapes(xs)}")
        shape = xs[0].shape
        _check_axis(axis, len(shape) + 1, "stack")
        axis %= len(shape) + 1
        return Aval(shape[:axis] + (len(xs),) + shape[axis:], dtype)

    def forward(self, xp, *xs, axis=0):
        return xp.stack(xs, axis=axis)

    def vjp(self, g, out, *xs, axis=0):
        axis %= g.ndim
        return tuple(g[(slice(None),) * axis + (i,)] for i in range(len(xs)))

    def samples(self):
        yield Sample(shapes=((3,), (3,)), attrs={"axis": 0})
        yield Sample(shapes=((2, 3), (2, 3), (2, 3)), attrs={"axis": 2})
        yield Sample(shapes=((2, 3), (2, 3)), attrs={"axis": -2})
        yield Sample(shapes=((), ()), attrs={"axis": 0})  # scalars into a vector
        yield Sample(shapes=((4,),), attrs={"axis": 1})


@register
class Where(Op):
    """y = a where cond else b (cond: bool, or nonzero numbers);  da = g where cond, db = the
    rest of g; cond has no gradient"""
    name = "where"
    kind = ELEMENTWISE
    arity = 3
    nondifferentiable = (0,)

    def infer(self, cond: Aval, a: Aval, b: Aval) -> Aval:
        if cond.dtype not in ("bool",) + INT_DTYPES + FLOAT_DTYPES:
            fail(f"where needs a bool or numeric condition, got {cond}")
        dtype = same_dtype(a, b)
        require_float(a)
        return Aval(broadcast_shapes(cond.shape, a.shape, b.shape), dtype)

    def forward(self, xp, cond, a, b):
        return xp.where(cond, a, b)

    def scalar(self, cond, a, b):
        return f"where({cond}, {a}, {b})"

    def vjp(self, g, out, cond, a, b):
        ga = g.where(cond, 0.0)
        return None, ga.sum_to(a.shape), (g - ga).sum_to(b.shape)

    def samples(self):
        # int_inputs draws the condition as 0/1 integers
        yield Sample(shapes=((3, 4), (3, 4), (3, 4)), int_inputs={0: 2})
        yield Sample(shapes=((3, 4), (3, 1), (4,)), int_inputs={0: 2})
        yield Sample(shapes=((2, 1, 3), (4, 1), ()), int_inputs={0: 2})


class _Extremum(Binary):
    def vjp(self, g, out, a, b):
        # NOTE: a's share is 1, 0 or 1/2 at a tie (a subgradient; max's vjp shares ties too)
        wa = self._a_wins(a, b).sign() * 0.5 + 0.5
        return (g * wa).sum_to(a.shape), (g * (1.0 - wa)).sum_to(b.shape)

    def samples(self):
        for sa, sb in _BROADCAST_SHAPES:
            yield Sample(shapes=(sa, sb), distinct=True)


@register
class Maximum(_Extremum):
    """y = max(a, b) elementwise;  da = g [a > b], db = g [b > a], ties share g half/half"""
    name = "maximum"

    def forward(self, xp, a, b):
        return xp.maximum(a, b)

    def forward_into(self, xp, out, a, b):
        return xp.maximum(a, b, out=out)

    def scalar(self, a, b):
        return f"maximum({a}, {b})"

    @staticmethod
    def _a_wins(a, b):
        return a - b


@register
class Minimum(_Extremum):
    """y = min(a, b) elementwise;  da = g [a < b], db = g [b < a], ties share g half/half"""
    name = "minimum"

    def forward(self, xp, a, b):
        return xp.minimum(a, b)

    def forward_into(self, xp, out, a, b):
        return xp.minimum(a, b, out=out)

    def scalar(self, a, b):
        return f"minimum({a}, {b})"

    @staticmethod
    def _a_wins(a, b):
        return b - a


@register
class Clip(Unary):
    """y = min(max(x, low), high), either bound may be None;  dx = g [low <= x <= high]"""
    name = "clip"
    kind = ELEMENTWISE

    def infer(self, x: Aval, low=None, high=None) -> Aval:
        for bound in (low, high):
            if bound is not None and (not isinstance(bound, (int, float))
                                      or isinstance(bound, bool)):
                fail(f"clip needs numbers or None as bounds, got {bound!r}")
        if low is None and high is None:
            fail("clip needs a low or a high bound")
        if low is not None and high is not None and low > high:
            fail(f"clip: low {low} is above high {high}")
        return super().infer(x)

    def forward(self, xp, x, low=None, high=None):
        if low is not None:
            x = xp.maximum(x, low)
        if high is not None:
            x = xp.minimum(x, high)
        return x

    def forward_into(self, xp, out, x, low=None, high=None):
        def bound(value):
            return constant_block(xp, value, out.shape, out.dtype)
        if low is None:
            return xp.minimum(x, bound(high), out=out)
        xp.maximum(x, bound(low), out=out)
        return out if high is None else xp.minimum(out, bound(high), out=out)

    def scalar(self, x, low=None, high=None):
        if low is not None:
            x = f"maximum({x}, {float(low)!r})"
        return x if high is None else f"minimum({x}, {float(high)!r})"

    def vjp(self, g, out, x, low=None, high=None):
        # NOTE: inclusive at the bounds, like PyTorch's clamp: a clipped value clipped again
        # (or a value sitting exactly on the bound) still passes its gradient
        if low is not None:
            g = g * (1.0 - (low - x).step())
        if high is not None:
            g = g * (1.0 - (x - high).step())
        return (g,)

    def samples(self):
        yield Sample(shapes=((3, 4),), attrs={"low": -1.0, "high": 1.0}, kinks=(-1.0, 1.0))
        yield Sample(shapes=((3, 4),), attrs={"low": 0.5, "high": None}, kinks=(0.5,))
        yield Sample(shapes=((2, 3, 2),), attrs={"low": None, "high": 0}, kinks=(0.0,))
