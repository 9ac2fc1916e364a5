"""Activation functions beyond relu/tanh/sigmoid: leaky_relu, elu, gelu, softplus.

Each is one registered op (rather than a composition) so that the forward pass is a single
stable kernel; the vjps are short Tensor expressions, so second order still works.
"""

from __future__ import annotations

import math

from nnctl.ops.elementwise import Unary
from nnctl.ops.registry import Aval, Sample, fail, register

_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_K = 0.044715


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
    """y = x if x > 0 else alpha (e^x - 1);  dx = g (1 if x > 0 else y + alpha)"""
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
        positive = x.step()
        return (g * (positive + (1.0 - positive) * (out + alpha)),)

    def samples(self):
        yield Sample(shapes=((3, 4),), low=-3.0, high=3.0, kinks=(0.0,))
        yield Sample(shapes=((2, 3, 2),), attrs={"alpha": 0.5}, kinks=(0.0,))


@register
class Gelu(Unary):
    """y = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the tanh approximation of
    x Phi(x) (PyTorch's gelu(approximate='tanh'), within 5e-4 of the erf form);
    dx = g (1/2 (1 + t) + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 0.044715 x^2))"""
    name = "gelu"

    def forward(self, xp, x):
        return 0.5 * x * (1.0 + xp.tanh(_GELU_C * (x + _GELU_K * x * x * x)))

    def scalar(self, x):
        inner = f"({_GELU_C!r} * ({x} + ((({_GELU_K!r} * {x}) * {x}) * {x})))"
        return f"((0.5 * {x}) * (1.0 + tanh({inner})))"

    def vjp(self, g, out, x):
        x2 = x * x
        t = ((x + _GELU_K * x2 * x) * _GELU_C).tanh()
        dt = (1.0 - t * t) * (_GELU_C * (1.0 + 3.0 * _GELU_K * x2))
        return (g * (0.5 * (1.0 + t) + 0.5 * x * dt),)

    def samples(self):
        yield Sample(shapes=((3, 4),), low=-4.0, high=4.0)
        yield Sample(shapes=((2, 3, 2),), low=-0.5, high=0.5)


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
