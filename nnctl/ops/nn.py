"""Ops fused for numerical stability: softmax, log_softmax, cross-entropy, mean-squared error.

Each could be composed from exp/log/sum, but composed they overflow for large logits; fused,
they shift by the max first and their vjps are the short closed forms.
"""

from __future__ import annotations

from nnctl.ops.registry import (INT_DTYPES, REDUCTION, Aval, Op, Sample, fail, register,
                                require_float)
from nnctl.ops.reduce import kept, max_shifted, max_shifted_into
from nnctl.ops.shape import per_element


def _last_axis(x: Aval, axis: int) -> None:
    require_float(x)
    if not -x.ndim <= axis < x.ndim:
        fail(f"axis {axis} is out of range for {x}")


@register
class Softmax(Op):
    """y = e^(x - max) / sum e^(x - max) along axis;  dx = y (g - sum(g y))"""
    name = "softmax"
    kind = REDUCTION

    def infer(self, x: Aval, axis=-1) -> Aval:
        _last_axis(x, axis)
        return x

    def forward(self, xp, x, axis=-1):
        e = xp.exp(max_shifted(xp, x, axis)[0])
        e /= e.sum(axis=axis, keepdims=True)
        return e

    def workspace(self, x: Aval, axis=-1):
        m = kept(x, axis)
        return m, Aval(m.shape, "bool")

    def forward_into(self, xp, out, x, axis=-1, work=None):
        m, flag = work
        max_shifted_into(xp, x, axis, out, m, flag)
        xp.exp(out, out=out)
        xp.divide(out, out.sum(axis=axis, keepdims=True, out=m), out=out)
        return out

    def vjp(self, g, out, x, axis=-1):
        return (out * (g - (g * out).sum(axis, keepdims=True)),)

    def samples(self):
        yield Sample(shapes=((3, 5),))
        yield Sample(shapes=((2, 3, 4),), attrs={"axis": 1})


@register
class LogSoftmax(Op):
    """y = x - max - log sum e^(x - max) along axis;  dx = g - e^y sum(g)"""
    name = "log_softmax"
    kind = REDUCTION

    def infer(self, x: Aval, axis=-1) -> Aval:
        _last_axis(x, axis)
        return x

    def forward(self, xp, x, axis=-1):
        z = max_shifted(xp, x, axis)[0]
        return z - xp.log(xp.sum(xp.exp(z), axis=axis, keepdims=True))

    def workspace(self, x: Aval, axis=-1):
        m = kept(x, axis)
        return m, Aval(m.shape, "bool"), x

    def forward_into(self, xp, out, x, axis=-1, work=None):
        m, flag, e = work
        max_shifted_into(xp, x, axis, out, m, flag)
        xp.exp(out, out=e)
        xp.log(e.sum(axis=axis, keepdims=True, out=m), out=m)
        xp.subtract(out, m, out=out)
        return out

    def vjp(self, g, out, x, axis=-1):
        return (g - out.exp() * g.sum(axis, keepdims=True),)

    def samples(self):
        yield Sample(shapes=((3, 5),))
        yield Sample(shapes=((2, 3, 4),), attrs={"axis": 0})


def one_hot_into(xp, hits, rows, labels):
    """hits[..., k] = (labels == k), written into the bool array `hits` [..., depth] through
    `rows` (int64 scratch, one per label) without a temporary: a broadcast comparison would
    buffer two int64 operands per call. Labels outside [0, depth) hit nothing."""
    depth = hits.shape[-1]
    flat = labels.reshape(-1)
    # on a device the comparison, always: the range test below reads the labels on the host
    # (a sync on a GPU, and a captured graph may read nothing); on the CPU the scatter is
    # the faster way when every label is in range
    if xp.__name__ != "numpy" or \
            (flat.size and (int(flat.min()) < 0 or int(flat.max()) >= depth)):
        return xp.equal(labels[..., None], xp.arange(depth), out=hits)
    hits.fill(False)
    rows.fill(1)
    xp.cumsum(rows, out=rows)
    rows -= 1
    hits.reshape(-1, depth)[rows, flat] = True
    return hits


@register
class OneHot(Op):
    """y[..., k] = 1 if labels == k else 0;  no gradient (labels are integers)"""
    name = "one_hot"
    nondifferentiable = (0,)

    def infer(self, labels: Aval, depth: int, dtype: str = "float32") -> Aval:
        if labels.dtype not in INT_DTYPES:
            fail(f"one_hot needs integer labels, got {labels}")
        return Aval(labels.shape + (depth,), dtype)

    def forward(self, xp, labels, depth, dtype="float32"):
        return (labels[..., None] == xp.arange(depth)).astype(dtype)

    def workspace(self, labels: Aval, depth, dtype="float32"):
        return Aval(labels.shape + (depth,), "bool"), Aval((labels.size,), "int64")

    def forward_into(self, xp, out, labels, depth, dtype="float32", work=None):
        xp.copyto(out, one_hot_into(xp, *work, labels))
        return out

    def vjp(self, g, out, labels, depth, dtype="float32"):
        return (None,)

    def samples(self):
        yield Sample(shapes=((5,),), attrs={"depth": 4}, int_inputs={0: 4})


def _subtract_at_labels(xp, y, labels, work=None):
    """y[..., label] -= 1 in place for each position's label (none for one outside the
    classes, as a one-hot of it is zeros), through a mask: a broadcast comparison on small
    arrays, or `one_hot_into` the workspace (hits, rows) for large ones."""
    hits = (labels[..., None] == xp.arange(y.shape[-1]) if work is None
            else one_hot_into(xp, *work, labels))
    return xp.subtract(y, 1, out=y, where=hits)


@register
class SubOneHot(Op):
    """y = x - one_hot(labels, x.shape[-1]): the softmax cross-entropy gradient's pattern,
    one subtraction at each label instead of a dense one-hot (simplify.py rewrites to it);
    dx = g (labels outside [0, classes) subtract nothing, as one_hot)"""
    name = "sub_one_hot"
    nondifferentiable = (1,)
    arity = 2

    def infer(self, x: Aval, labels: Aval) -> Aval:
        require_float(x)
        if labels.dtype not in INT_DTYPES:
            fail(f"sub_one_hot needs integer labels, got {labels}")
        if labels.shape != x.shape[:-1]:
            fail(f"sub_one_hot: labels {list(labels.shape)} do not match x {list(x.shape)}")
        return x

    def forward(self, xp, x, labels):
        # a mask, not indexing: no range check of the labels needed (an out-of-range label
        # matches no class), and fewer calls (12 us against 28 for a [64, 10] batch)
        return _subtract_at_labels(xp, x.copy(), labels)

    def workspace(self, x: Aval, labels: Aval):
        return Aval(x.shape, "bool"), Aval((labels.size,), "int64")

    def forward_into(self, xp, out, x, labels, work=None):
        # large batches: through a one-hot mask, so no temporary grows with the batch
        if out is not x:
            xp.copyto(out, x)
        return _subtract_at_labels(xp, out, labels, work)

    def vjp(self, g, out, x, labels):
        return g, None

    def samples(self):
        yield Sample(shapes=((5, 4), (5,)), int_inputs={1: 4})
        yield Sample(shapes=((2, 3, 4), (2, 3)), int_inputs={1: 4})


@register
class SoftmaxXentGrad(Op):
    """y = (softmax(x) - one_hot(labels)) * s along the last axis, s a 0-d scale: the
    cross-entropy gradient as one kernel (simplify.py rewrites the three ops to it; NumPy's
    per-call cost decides small batches). dx = s p (g - sum(g p)) with p = softmax(x),
    ds = sum(g (p - one_hot(labels)))"""
    name = "softmax_xent_grad"
    kind = REDUCTION
    nondifferentiable = (1,)
    arity = 3

    def infer(self, x: Aval, labels: Aval, s: Aval) -> Aval:
        require_float(x)
        if labels.dtype not in INT_DTYPES or labels.shape != x.shape[:-1]:
            fail(f"softmax_xent_grad: labels {labels} do not fit x {x}")
        if s.shape != () or s.dtype != x.dtype:
            fail(f"softmax_xent_grad: the scale must be a 0-d {x.dtype}, got {s}")
        return x

    def forward(self, xp, x, labels, s):
        # the same calls as softmax, sub_one_hot and mul one after the other: the same bits
        e = xp.exp(max_shifted(xp, x, -1)[0])
        e /= e.sum(axis=-1, keepdims=True)
        _subtract_at_labels(xp, e, labels)
        e *= s
        return e

    def workspace(self, x: Aval, labels: Aval, s: Aval):
        m = kept(x, -1)
        return m, Aval(m.shape, "bool"), Aval(x.shape, "bool"), Aval((labels.size,), "int64")

    def forward_into(self, xp, out, x, labels, s, work=None):
        m, flag, hits, rows = work
        max_shifted_into(xp, x, -1, out, m, flag)
        xp.exp(out, out=out)
        xp.divide(out, out.sum(axis=-1, keepdims=True, out=m), out=out)
        _subtract_at_labels(xp, out, labels, (hits, rows))
        return xp.multiply(out, s, out=out)

    def vjp(self, g, out, x, labels, s):
        p = x.softmax(-1)
        gs = g * s
        return (p * (gs - (gs * p).sum(-1, keepdims=True)), None,
                (g * p.apply("sub_one_hot", labels)).sum())

    def samples(self):
        yield Sample(shapes=((4, 3), (4,), ()), int_inputs={1: 3})
        yield Sample(shapes=((2, 3, 4), (2, 3), ()), int_inputs={1: 4})


@register
class CrossEntropy(Op):
    """loss = mean over positions of logsumexp(x) - x[label], from logits [..., classes] and
    integer labels [...];  dx = g (softmax(x) - onehot(label)) / N (N = number of labels)"""
    name = "cross_entropy"
    nondifferentiable = (1,)
    arity = 2

    def infer(self, logits: Aval, labels: Aval) -> Aval:
        require_float(logits, "logits")
        if logits.ndim < 2:
            fail(f"cross_entropy needs logits of shape [batch, ..., classes], got {logits}")
        if labels.dtype not in INT_DTYPES:
            fail(f"cross_entropy needs integer class labels, got {labels}")
        if labels.shape != logits.shape[:-1]:
            fail(f"cross_entropy: labels {list(labels.shape)} do not match logits "
                 f"{list(logits.shape)}; expected {list(logits.shape[:-1])}")
        return Aval((), logits.dtype)

    def forward(self, xp, logits, labels):
        # logsumexp(logits) - logits[label], shifted by the max (a non-finite row is NaN
        # anyway); the label picked through a mask, as the one-hot it stands for (an
        # out-of-range label picks 0, as in the vjp); the fewest array calls, as small
        # batches are per-call bound (the workspace path below serves the large ones)
        m = logits.max(axis=-1, keepdims=True)
        lse = xp.log(xp.exp(logits - m).sum(axis=-1)) + m[..., 0]
        hit = labels[..., None] == xp.arange(logits.shape[-1])
        losses = lse - xp.where(hit, logits, 0).sum(axis=-1)
        return losses.sum() / losses.dtype.type(losses.size)

    def workspace(self, logits: Aval, labels: Aval):
        m = kept(logits, -1)
        return (logits, m, m, Aval(m.shape, "bool"), Aval(logits.shape, "bool"),
                Aval((labels.size,), "int64"))

    def forward_into(self, xp, out, logits, labels, work=None):
        z, m, lse, flag, target, rows = work
        max_shifted_into(xp, logits, -1, z, m, flag)
        xp.exp(z, out=z)
        xp.log(z.sum(axis=-1, keepdims=True, out=lse), out=lse)
        xp.add(lse, m, out=lse)
        one_hot_into(xp, target, rows, labels)
        z.fill(0)
        xp.copyto(z, logits, where=target)  # the picked logit, as forward's where()
        xp.subtract(lse, z.sum(axis=-1, keepdims=True, out=m), out=lse)
        return lse.mean(out=out)

    companion = ("softmax_xent_grad", "forward_with_gradient_into")

    def forward_with_gradient_into(self, xp, out, logits, labels, s, other, work=None):
        """The loss into `out` and softmax_xent_grad(logits, labels, s) into `other` in one
        pass: the maximum, the exponentials and their sums once instead of twice (the digits
        MLP's loss and gradient: 92 -> 55 us). The calls are each op's own in an order that
        keeps every operand, so the bits are the same; `work` is this op's workspace (None:
        small arrays, with temporaries, as `forward`)."""
        grad = other
        if work is None:
            m = logits.max(axis=-1, keepdims=True)
            xp.subtract(logits, m, out=grad)
            xp.exp(grad, out=grad)
            total = grad.sum(axis=-1, keepdims=True)
            hit = labels[..., None] == xp.arange(logits.shape[-1])
            losses = xp.log(total[..., 0]) + m[..., 0]
            losses -= xp.where(hit, logits, 0).sum(axis=-1)
            xp.copyto(out, losses.sum() / losses.dtype.type(losses.size))
            xp.divide(grad, total, out=grad)
            xp.subtract(grad, 1, out=grad, where=hit)
        else:
            z, m, lse, flag, hit, rows = work
            max_shifted_into(xp, logits, -1, grad, m, flag)
            xp.exp(grad, out=grad)
            xp.divide(grad, grad.sum(axis=-1, keepdims=True, out=lse), out=grad)
            xp.log(lse, out=lse)
            xp.add(lse, m, out=lse)
            one_hot_into(xp, hit, rows, labels)
            z.fill(0)
            xp.copyto(z, logits, where=hit)
            xp.subtract(lse, z.sum(axis=-1, keepdims=True, out=m), out=lse)
            lse.mean(out=out)
            xp.subtract(grad, 1, out=grad, where=hit)
        xp.multiply(grad, s, out=grad)
        return out

    def vjp(self, g, out, logits, labels):
        target = labels.one_hot(logits.shape[-1], logits.dtype)
        return (logits.softmax(-1) - target) * (g * per_element(logits, range(logits.ndim - 1))), \
            None

    def samples(self):
        yield Sample(shapes=((4, 3), (4,)), int_inputs={1: 3})
        yield Sample(shapes=((6, 5), (6,)), int_inputs={1: 5}, low=-6.0, high=6.0)
        yield Sample(shapes=((2, 3, 4), (2, 3)), int_inputs={1: 4})  # a sequence of labels
