"""NumPy references for max pooling with the argmax as a node (nnctl/ops/pool.py:
max_pool2d_index, max_pool2d_scatter, max_pool2d_take), merged into the op table by
tests/ops/test_op_table.py. Written independently of nnctl: explicit loops over every window
and every position in it; the sample shapes are small."""

from __future__ import annotations

import numpy as np


def _two(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _geometry(shape, kernel, stride, padding):
    (kh, kw), (ph, pw) = _two(kernel), _two(padding)
    sh, sw = _two(kernel if stride is None else stride)
    return kh, kw, sh, sw, ph, pw, (shape[2] + 2 * ph - kh) // sh + 1, \
        (shape[3] + 2 * pw - kw) // sw + 1


def _windows(shape, kernel, stride, padding):
    """(n, c, p, q, k, row, col) for every window position k = i*KW + j, in row-major order;
    row and col in x (outside it in the padding)."""
    kh, kw, sh, sw, ph, pw, oh, ow = _geometry(shape, kernel, stride, padding)
    for n in range(shape[0]):
        for c in range(shape[1]):
            for p in range(oh):
                for q in range(ow):
                    for i in range(kh):
                        for j in range(kw):
                            yield n, c, p, q, i * kw + j, p * sh + i - ph, q * sw + j - pw


def _inside(shape, r, s):
    return 0 <= r < shape[2] and 0 <= s < shape[3]


def max_pool2d_index(x, kernel, stride=None, padding=(0, 0)):
    *_, oh, ow = _geometry(x.shape, kernel, stride, padding)
    best = np.full(x.shape[:2] + (oh, ow), -np.inf)
    index = np.zeros(x.shape[:2] + (oh, ow))
    seen = np.zeros(index.shape, dtype=bool)
    for n, c, p, q, k, r, s in _windows(x.shape, kernel, stride, padding):
        if not _inside(x.shape, r, s):  # the padding is no candidate
            continue
        if not seen[n, c, p, q] or x[n, c, r, s] > best[n, c, p, q]:  # the first maximum stays
            best[n, c, p, q], index[n, c, p, q], seen[n, c, p, q] = x[n, c, r, s], k, True
    return index


def max_pool2d_scatter(g, index, input_shape, kernel, stride=None, padding=(0, 0)):
    dx = np.zeros(input_shape)
    for n, c, p, q, k, r, s in _windows(input_shape, kernel, stride, padding):
        if k == index[n, c, p, q] and _inside(input_shape, r, s):
            dx[n, c, r, s] += g[n, c, p, q]
    return dx


def max_pool2d_take(v, index, kernel, stride=None, padding=(0, 0)):
    *_, oh, ow = _geometry(v.shape, kernel, stride, padding)
    y = np.zeros(v.shape[:2] + (oh, ow))
    for n, c, p, q, k, r, s in _windows(v.shape, kernel, stride, padding):
        if k == index[n, c, p, q] and _inside(v.shape, r, s):
            y[n, c, p, q] = v[n, c, r, s]
    return y


REFERENCES = {
    "max_pool2d_index": max_pool2d_index,
    "max_pool2d_scatter": max_pool2d_scatter,
    "max_pool2d_take": max_pool2d_take,
}
