"""Activation functions beyond relu/tanh/sigmoid: leaky_relu, elu, softplus.

Each is one registered op, not a composition, because its stable form needs what the op set
lacks (expm1 for elu, log1p for softplus) or a branch (leaky_relu); the vjps are short Tensor
expressions, so second order still works. gelu is a composition (Tensor.gelu): fusion runs
it as one loop.
"""

from __future__ import annotations

from nnctl.ops.elementwise import Unary
from nnctl.ops.registry import Aval, Sample, fail, register


def _number(op: str, what: str, value) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        fail(f"{op} needs a number as {what}, got {value!r}")


@register
class LeakyRelu(Unary):
    """y = x if x > 0 else slope x;  dx = g (1 if x > 0 else slope)"""
    name = "leaky_relu"

    def infer(self, x: Aval, slope=0.01) -> Aval:
        _number(self.name, "slope", slope)
        return super().infer(x)

    def forward(self, xp, x, slope=0.01):
        return xp.where(x > 0, x, x * slope)

    def scalar(self, x, slope=0.01):
        return f"where(({x} > 0.0), {x}, ({x} * {float(slope)!r}))"

    def vjp(self, g, out, x, slope=0.01):
        return (g * (x.step() * (1.0 - slope) + slope),)

    def samples(self):
        yield Sample(shapes=((3, 4),), kinks=(0.0,))
        yield Sample(shapes=((2, 3, 2),), attrs={"slope": 0.2}, kinks=(0.0,))


@register
class Elu(Unary):
    """y = x if x > 0 else alpha (e^x - 1);  dx = g (1 if x > 0 else alpha e^x)"""
    name = "elu"

    def infer(self, x: Aval, alpha=1.0) -> Aval:
        _number(self.name, "alpha", alpha)
        return super().infer(x)

    def forward(self, xp, x, alpha=1.0):
        # NOTE: min(x, 0) keeps expm1 of the unused branch from overflowing for large x
        return xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0)))

    def scalar(self, x, alpha=1.0):
        return f"where(({x} > 0.0), {x}, ({float(alpha)!r} * expm1(minimum({x}, 0.0))))"

    def vjp(self, g, out, x, alpha=1.0):
        # NOTE: alpha e^x, not y + alpha: that cancels to 0 for x < -37 (float64), where
        # the derivative is tiny but not 0; min(x, 0) keeps e^x finite on the unused side
        positive = x.step()
        return (g * (positive + (1.0 - positive) * (x.minimum(0.0).exp() * alpha)),)

    def samples(self):
        yield Sample(shapes=((3, 4),), low=-3.0, high=3.0, kinks=(0.0,))
        yield Sample(shapes=((2, 3, 2),), attrs={"alpha": 0.5}, kinks=(0.0,))


@register
class Softplus(Unary):
    """y = log(1 + e^x), computed as log1p(e^-|x|) + max(x, 0);  dx = g sigmoid(x)"""
    name = "softplus"

    def forward(self, xp, x):
        return xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(x, 0)

    def scalar(self, x):
        return f"(log1p(exp((-abs({x})))) + maximum({x}, 0.0))"

    def vjp(self, g, out, x):
        return (g * x.sigmoid(),)

    def samples(self):
        yield Sample(shapes=((3, 4),), low=-4.0, high=4.0)
        yield Sample(shapes=((2, 5),), low=-30.0, high=30.0)
