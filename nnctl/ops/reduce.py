"""Reductions over axes: sum, mean, max, logsumexp, variance (with keepdims).

`axis` arrives normalised by the Tensor method: a sorted tuple of non-negative axes.
"""

from __future__ import annotations

from nnctl.ops.registry import REDUCTION, Aval, Op, Sample, register, require_float
from nnctl.ops.shape import per_element

_AXES = ((None, False), ((1,), False), ((0,), True), ((0, 2), False), ((1, 2), True))


def _reduced(x: Aval, axis, keepdims) -> Aval:
    axes = range(x.ndim) if axis is None else axis
    if keepdims:
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    else:
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return Aval(shape, x.dtype)


def _keep(g, x, axis, keepdims):
    """g with the reduced axes restored as size 1, so it broadcasts against x."""
    if keepdims:
        return g
    axes = range(x.ndim) if axis is None else axis
    return g.reshape(tuple(1 if i in axes else d for i, d in enumerate(x.shape)))


def max_shifted(xp, x, axis=None, guard: bool = False):
    """(x - m, m) with m = max of x over axes (keepdims), the shift that keeps e^x from
    overflowing: the one place it is written (softmax, log_softmax, logsumexp, cross_entropy).
    `guard` replaces a non-finite maximum by 0, which only logsumexp needs (an all -inf row
    then gives -inf, not inf - inf); the others give NaN on such a row either way."""
    m = x.max(axis=axis, keepdims=True)  # NOTE: the method: np.max adds ~5 us of Python
    if guard:
        m = xp.where(xp.isfinite(m), m, 0)
    return x - m, m


def max_shifted_into(xp, x, axis, z, m, flag):
    """`max_shifted` without temporaries: z = x - m into z, m (keepdims) into m; `flag` is a
    bool scratch of m's shape."""
    x.max(axis=axis, keepdims=True, out=m)
    xp.isfinite(m, out=flag)
    xp.logical_not(flag, out=flag)
    xp.copyto(m, 0, where=flag)
    xp.subtract(x, m, out=z)
    return z, m


def kept(x: Aval, axis) -> Aval:
    """The aval of a keepdims reduction of x over `axis` (an int or a tuple of ints)."""
    axes = {a % x.ndim for a in ((axis,) if isinstance(axis, int) else axis)}
    return Aval(tuple(1 if i in axes else d for i, d in enumerate(x.shape)), x.dtype)


def _leading(x, axis) -> int:
    """How many leading axes a reduction over `axis` covers exactly (0: not a leading block)."""
    if axis is None or not axis or tuple(axis) != tuple(range(len(axis))) or len(axis) >= x.ndim:
        return 0
    return len(axis)


def logsumexp(xp, x, axis=None, keepdims=False, guard: bool = True):
    z, m = max_shifted(xp, x, axis, guard)
    s = xp.exp(z, out=z).sum(axis=axis, keepdims=keepdims)
    return xp.log(s) + (m if keepdims else xp.squeeze(m, axis=axis))


class Reduce(Op):
    kind = REDUCTION
    def infer(self, x: Aval, axis=None, keepdims=False) -> Aval:
        require_float(x)
        return _reduced(x, axis, keepdims)

    def samples(self):
        for axis, keepdims in _AXES:
            yield Sample(shapes=((2, 3, 4),), attrs={"axis": axis, "keepdims": keepdims},
                         distinct=True)


@register
class Sum(Reduce):
    """y = sum of x over axes;  dx = g broadcast back to x's shape"""
    name = "sum"
    copy_small = False  # the GEMV is the cheaper path at every size (2.9 us vs 5.5 on 64x128)

    def forward(self, xp, x, axis=None, keepdims=False):
        return x.sum(axis=axis, keepdims=keepdims)

    def workspace(self, x: Aval, axis=None, keepdims=False):
        k = _leading(x, axis)
        if not k:
            return ()
        rows = 1
        for d in x.shape[:k]:
            rows *= d
        return (Aval((rows,), x.dtype),)

    def forward_into(self, xp, out, x, axis=None, keepdims=False, work=()):
        if work and x.flags.c_contiguous:
            # a sum over leading axes (a bias gradient) is ones @ x: one BLAS GEMV, 3x faster
            # than NumPy's reduction over a tall axis, and no reduction buffer
            ones = work[0]
            ones.fill(1)
            xp.matmul(ones, x.reshape(ones.shape[0], -1), out=out.reshape(-1))
            return out
        return x.sum(axis=axis, keepdims=keepdims, out=out)

    def vjp(self, g, out, x, axis=None, keepdims=False):
        return (_keep(g, x, axis, keepdims).broadcast_to(x.shape),)


@register
class Mean(Reduce):
    """y = mean of x over axes;  dx = g / n broadcast back"""
    name = "mean"

    def forward(self, xp, x, axis=None, keepdims=False):
        return x.mean(axis=axis, keepdims=keepdims)

    def forward_into(self, xp, out, x, axis=None, keepdims=False):
        return x.mean(axis=axis, keepdims=keepdims, out=out)

    def vjp(self, g, out, x, axis=None, keepdims=False):
        return (_keep(g, x, axis, keepdims).broadcast_to(x.shape) * per_element(x, axis),)


@register
class Max(Reduce):
    """y = max of x over axes;  dx = g at the maxima (shared equally between ties)"""
    name = "max"

    def forward(self, xp, x, axis=None, keepdims=False):
        return x.max(axis=axis, keepdims=keepdims)

    def forward_into(self, xp, out, x, axis=None, keepdims=False):
        return x.max(axis=axis, keepdims=keepdims, out=out)

    def vjp(self, g, out, x, axis=None, keepdims=False):
        mask = x.equal(_keep(out, x, axis, keepdims))
        count = mask.sum(axis, keepdims=True)
        return (_keep(g, x, axis, keepdims) / count * mask,)


@register
class LogSumExp(Reduce):
    """y = m + log sum e^(x - m) over axes, m = max x;  dx = g e^(x - y)"""
    name = "logsumexp"

    def forward(self, xp, x, axis=None, keepdims=False):
        return logsumexp(xp, x, axis, keepdims)

    def vjp(self, g, out, x, axis=None, keepdims=False):
        return (_keep(g, x, axis, keepdims) * (x - _keep(out, x, axis, keepdims)).exp(),)

    def samples(self):
        yield from super().samples()
        yield Sample(shapes=((3, 4),), attrs={"axis": (1,), "keepdims": False},
                     low=700.0, high=710.0)  # e^x alone would overflow
