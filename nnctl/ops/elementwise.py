"""Elementwise ops: arithmetic with NumPy broadcasting, and the pointwise functions.

Binary ops undo broadcasting in their vjp with `sum_to`, the single unbroadcast (STYLE R4).
"""

from __future__ import annotations

import contextlib

from nnctl.ops.blocks import constant_block
from nnctl.ops.registry import (ELEMENTWISE, Aval, Op, Sample, broadcast_shapes, fail,
                                register, require_float, same_dtype)

_BROADCAST_SHAPES = (((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((), (2, 3)),
                     ((2, 1, 3), (4, 1)))


def _as_float(xp, mask, *like):
    """A boolean mask as 0/1 in the inputs' float dtype (an input may be a Python float)."""
    dtype = next((v.dtype for v in like if hasattr(v, "dtype")), "float64")
    return xp.asarray(mask).astype(dtype)


def _overflow_expected(xp):
    """Silences NumPy's overflow warning where an inf is the step to the right limit (CuPy
    has no floating-point error state)."""
    errstate = getattr(xp, "errstate", None)
    return errstate(over="ignore") if errstate else contextlib.nullcontext()


class Unary(Op):
    arity = 1
    kind = ELEMENTWISE

    def infer(self, x: Aval, **attrs) -> Aval:
        require_float(x)
        return x


class Binary(Op):
    arity = 2
    kind = ELEMENTWISE

    def infer(self, a: Aval, b: Aval, **attrs) -> Aval:
        dtype = same_dtype(a, b)
        require_float(a)
        return Aval(broadcast_shapes(a.shape, b.shape), dtype)

    def samples(self):
        for sa, sb in _BROADCAST_SHAPES:
            yield Sample(shapes=(sa, sb))


@register
class Add(Binary):
    """y = a + b;  da = g, db = g"""
    name = "add"

    def forward(self, xp, a, b):
        return a + b

    def forward_into(self, xp, out, a, b):
        return xp.add(a, b, out=out)

    def scalar(self, a, b):
        return f"({a} + {b})"

    def vjp(self, g, out, a, b):
        return g.sum_to(a.shape), g.sum_to(b.shape)


@register
class Sub(Binary):
    """y = a - b;  da = g, db = -g"""
    name = "sub"

    def forward(self, xp, a, b):
        return a - b

    def forward_into(self, xp, out, a, b):
        return xp.subtract(a, b, out=out)

    def scalar(self, a, b):
        return f"({a} - {b})"

    def vjp(self, g, out, a, b):
        return g.sum_to(a.shape), (-g).sum_to(b.shape)


@register
class Mul(Binary):
    """y = a * b;  da = g b, db = g a"""
    name = "mul"

    def forward(self, xp, a, b):
        return a * b

    def forward_into(self, xp, out, a, b):
        return xp.multiply(a, b, out=out)

    def scalar(self, a, b):
        return f"({a} * {b})"

    def vjp(self, g, out, a, b):
        return (g * b).sum_to(a.shape), (g * a).sum_to(b.shape)


@register
class Div(Binary):
    """y = a / b;  da = g / b, db = -g a / b^2"""
    name = "div"

    def forward(self, xp, a, b):
        return a / b

    def forward_into(self, xp, out, a, b):
        return xp.divide(a, b, out=out)

    def scalar(self, a, b):
        return f"({a} / {b})"

    def vjp(self, g, out, a, b):
        gb = g / b
        return gb.sum_to(a.shape), (-gb * a / b).sum_to(b.shape)

    def samples(self):
        for sa, sb in _BROADCAST_SHAPES:
            yield Sample(shapes=(sa, sb), kinks=(0.0,), low=-2.0, high=2.0)


@register
class Neg(Unary):
    """y = -x;  dx = -g"""
    name = "neg"

    def forward(self, xp, x):
        return -x

    def forward_into(self, xp, out, x):
        return xp.negative(x, out=out)

    def scalar(self, x):
        return f"(-{x})"

    def vjp(self, g, out, x):
        return (-g,)

    def samples(self):
        yield Sample(shapes=((3, 4),))


@register
class Pow(Unary):
    """y = x^p for a constant real p;  dx = g p x^(p-1)"""
    name = "pow"

    def infer(self, x: Aval, exponent: float) -> Aval:
        if not isinstance(exponent, (int, float)) or isinstance(exponent, bool):
            fail(f"pow needs a constant number as exponent, got {exponent!r}")
        return super().infer(x)

    def forward(self, xp, x, exponent):
        return x ** exponent

    def forward_into(self, xp, out, x, exponent):
        # NOTE: `x ** p` takes NumPy's shortcuts for these exponents; so does this
        shortcut = {2: xp.square, 0.5: xp.sqrt, -1: xp.reciprocal, 1: xp.positive}
        if exponent in shortcut:
            return shortcut[exponent](x, out=out)
        if exponent == 0:
            out.fill(1.0)
            return out
        return xp.power(x, exponent, out=out)

    def scalar(self, x, exponent):
        shortcut = {2: f"({x} * {x})", 0.5: f"sqrt({x})", -1: f"(1.0 / {x})", 1: x, 0: "1.0"}
        return shortcut.get(exponent, f"pow({x}, {float(exponent)!r})")

    def vjp(self, g, out, x, exponent):
        if exponent == 0:
            return (g * 0.0,)
        if exponent == 1:
            return (g,)
        return (g * exponent * x ** (exponent - 1),)

    def samples(self):
        for p in (2, 3, 0.5, -1.5):
            yield Sample(shapes=((3, 4),), attrs={"exponent": p}, low=0.5, high=2.0)
        yield Sample(shapes=((3, 4),), attrs={"exponent": 2})  # integer power of negatives


@register
class Exp(Unary):
    """y = e^x;  dx = g y"""
    name = "exp"

    def forward(self, xp, x):
        return xp.exp(x)

    def forward_into(self, xp, out, x):
        return xp.exp(x, out=out)

    def scalar(self, x):
        return f"exp({x})"

    def vjp(self, g, out, x):
        return (g * out,)

    def samples(self):
        yield Sample(shapes=((3, 4),))


@register
class Log(Unary):
    """y = ln x;  dx = g / x"""
    name = "log"

    def forward(self, xp, x):
        return xp.log(x)

    def forward_into(self, xp, out, x):
        return xp.log(x, out=out)

    def scalar(self, x):
        return f"log({x})"

    def vjp(self, g, out, x):
        return (g / x,)

    def samples(self):
        yield Sample(shapes=((3, 4),), low=0.2, high=3.0)


@register
class Sqrt(Unary):
    """y = sqrt x;  dx = g / (2 y)"""
    name = "sqrt"

    def forward(self, xp, x):
        return xp.sqrt(x)

    def forward_into(self, xp, out, x):
        return xp.sqrt(x, out=out)

    def scalar(self, x):
        return f"sqrt({x})"

    def vjp(self, g, out, x):
        return (g * 0.5 / out,)

    def samples(self):
        yield Sample(shapes=((3, 4),), low=0.2, high=3.0)


@register
class Abs(Unary):
    """y = |x|;  dx = g sign(x)"""
    name = "abs"

    def forward(self, xp, x):
        return xp.abs(x)

    def forward_into(self, xp, out, x):
        return xp.absolute(x, out=out)

    def scalar(self, x):
        return f"abs({x})"

    def vjp(self, g, out, x):
        return (g * x.sign(),)

    def samples(self):
        yield Sample(shapes=((3, 4),), kinks=(0.0,))


@register
class Sin(Unary):
    """y = sin x;  dx = g cos x"""
    name = "sin"

    def forward(self, xp, x):
        return xp.sin(x)

    def forward_into(self, xp, out, x):
        return xp.sin(x, out=out)

    def scalar(self, x):
        return f"sin({x})"

    def vjp(self, g, out, x):
        return (g * x.cos(),)

    def samples(self):
        yield Sample(shapes=((3, 4),), low=-4.0, high=4.0)


@register
class Cos(Unary):
    """y = cos x;  dx = -g sin x"""
    name = "cos"

    def forward(self, xp, x):
        return xp.cos(x)

    def forward_into(self, xp, out, x):
        return xp.cos(x, out=out)

    def scalar(self, x):
        return f"cos({x})"

    def vjp(self, g, out, x):
        return (-g * x.sin(),)

    def samples(self):
        yield Sample(shapes=((3, 4),), low=-4.0, high=4.0)


@register
class Tanh(Unary):
    """y = tanh x;  dx = g (1 - y^2)"""
    name = "tanh"

    def forward(self, xp, x):
        return xp.tanh(x)

    def forward_into(self, xp, out, x):
        return xp.tanh(x, out=out)

    def scalar(self, x):
        return f"tanh({x})"

    def vjp(self, g, out, x):
        return (g * (1.0 - out * out),)

    def samples(self):
        yield Sample(shapes=((3, 4),), low=-3.0, high=3.0)


@register
class Sigmoid(Unary):
    """y = 1 / (1 + e^-x);  dx = g y (1 - y)

    Computed as written: every step keeps its relative precision for x < 0 too (e^-x is
    large, not cancelled), so y stays right down to the smallest normal number (x = -87
    in float32, -708 in float64); below, e^-x overflows and y is 0, as in PyTorch. The tanh
    form 0.5 tanh(x/2) + 0.5 cancels for x < 0: 0 from x = -38 in float64.
    """
    name = "sigmoid"

    def forward(self, xp, x):
        with _overflow_expected(xp):  # e^-x = inf gives the right limit, 0
            return 1.0 / (1.0 + xp.exp(-x))

    def forward_into(self, xp, out, x):
        with _overflow_expected(xp):
            xp.negative(x, out=out)
            xp.exp(out, out=out)
        xp.add(out, 1.0, out=out)
        return xp.reciprocal(out, out=out)

    def scalar(self, x):
        return f"(1.0 / (1.0 + exp((-{x}))))"

    def vjp(self, g, out, x):
        return (g * out * (1.0 - out),)

    def samples(self):
        yield Sample(shapes=((3, 4),), low=-4.0, high=4.0)


@register
class Relu(Unary):
    """y = max(x, 0);  dx = g step(x)"""
    name = "relu"

    def forward(self, xp, x):
        return xp.maximum(x, 0)

    def forward_into(self, xp, out, x):
        return xp.maximum(x, constant_block(xp, 0.0, out.shape, out.dtype), out=out)

    def scalar(self, x):
        return f"maximum({x}, 0.0)"

    def vjp(self, g, out, x):
        # NOTE: step(out), not step(x): equal everywhere (relu(x) > 0 exactly where x > 0,
        # NaN included), and then x has no reader but relu, so fusion folds the bias add
        # before it into one kernel (the pre-activation is never stored)
        return (g * out.step(),)

    def samples(self):
        yield Sample(shapes=((3, 4),), kinks=(0.0,))


# ---- piecewise-constant helpers: their derivative is zero wherever it exists -------------

@register
class Sign(Unary):
    """y = sign(x);  dx = 0 (almost everywhere)"""
    name = "sign"

    def forward(self, xp, x):
        return xp.sign(x)

    def forward_into(self, xp, out, x):
        return xp.sign(x, out=out)

    def scalar(self, x):
        return f"sign({x})"

    def vjp(self, g, out, x):
        return (None,)

    def samples(self):
        yield Sample(shapes=((3, 4),), kinks=(0.0,))


@register
class Step(Unary):
    """y = 1 if x > 0 else 0 (Heaviside);  dx = 0 (almost everywhere)"""
    name = "step"

    def forward(self, xp, x):
        return _as_float(xp, x > 0, x)

    def forward_into(self, xp, out, x):
        return xp.greater(x, 0, out=out)

    def scalar(self, x):
        return f"where(({x} > 0.0), 1.0, 0.0)"

    def vjp(self, g, out, x):
        return (None,)

    def samples(self):
        yield Sample(shapes=((3, 4),), kinks=(0.0,))


@register
class Equal(Binary):
    """y = 1 where a == b else 0, as floats;  no gradient (used for max's vjp)"""
    name = "equal"
    nondifferentiable = (0, 1)

    def forward(self, xp, a, b):
        return _as_float(xp, a == b, a, b)

    def forward_into(self, xp, out, a, b):
        return xp.equal(a, b, out=out)

    def scalar(self, a, b):
        return f"where(({a} == {b}), 1.0, 0.0)"

    def vjp(self, g, out, a, b):
        return None, None
