"""NumPy references for the combine ops (concat, stack, where, maximum, minimum, clip), and
for the shape ops pad/take/scatter_add and the reductions logsumexp/variance added with them.

Written independently of nnctl's forwards: merged into the op table by test_op_table.py.
"""

from __future__ import annotations

import numpy as np


def _clip(x, low=None, high=None):
    lo = -np.inf if low is None else low
    hi = np.inf if high is None else high
    return np.where(x < lo, lo, np.where(x > hi, hi, x))


def _pad(x, pad_width):
    out = np.zeros(tuple(d + b + a for d, (b, a) in zip(x.shape, pad_width)), dtype=x.dtype)
    out[tuple(slice(b, b + d) for d, (b, _) in zip(x.shape, pad_width))] = x
    return out


def _scatter_add(x, indices, num_rows):
    # one-hot [*indices.shape, num_rows] contracted with x over the indices' axes
    onehot = np.eye(num_rows)[indices]
    k = np.ndim(indices)
    return np.tensordot(onehot, x, axes=(list(range(k)), list(range(k))))


def _logsumexp(x, axis=None, keepdims=False):
    return np.logaddexp.reduce(x, axis=axis, keepdims=keepdims)


REFERENCES = {
    "concat": lambda *xs, axis=0: np.concatenate(xs, axis=axis),
    "stack": lambda *xs, axis=0: np.stack(xs, axis=axis),
    "where": lambda cond, a, b: np.where(cond != 0, a, b),
    "maximum": lambda a, b: np.where(a >= b, a, b),
    "minimum": lambda a, b: np.where(a <= b, a, b),
    "clip": _clip,
    "pad": _pad,
    "take": lambda table, indices: table[indices],
    "scatter_add": _scatter_add,
    "logsumexp": _logsumexp,
}

F32_TOL = {"logsumexp": (1e-4, 1e-5), "scatter_add": (1e-4, 1e-5)}
