"""Max pooling on the CPU as direct loops, compiled by numba (nnctl.jit) when it is on.

NumPy has no windowed argmax: pool.py's NumPy path reduces a 6-D strided view and, for the
gradient, compares every window element with the maximum, which made pooling 3/4 of a small
CNN's training step. These loops visit each window element once, in parallel over the
(image, channel) planes, which own disjoint parts of the output (no races).

Semantics match pool.py's NumPy path exactly: padding is skipped (it is -inf there), ties go
to the first maximum in row-major window order (PyTorch's CPU kernel), and a NaN in a window
is that window's maximum (the first NaN, as argmax takes it), so non-finite values propagate.
Kernels are compiled on first use and cached on disk.
"""

from __future__ import annotations

import math

_compiled: dict = {}


def _window_argmax(x, n, c, p, q, kh, kw, sh, sw, ph, pw):
    H, W = x.shape[2], x.shape[3]
    best = -math.inf
    bh, bw = -1, -1
    for i in range(kh):
        h = p * sh - ph + i
        if h < 0 or h >= H:
            continue
        for j in range(kw):
            w = q * sw - pw + j
            if w < 0 or w >= W:
                continue
            v = x[n, c, h, w]
            if bh < 0 or v > best or (v != v and best == best):
                best, bh, bw = v, h, w
    return bh, bw


def _max_pool(x, out, kh, kw, sh, sw, ph, pw):
    N, C, OH, OW = out.shape
    for nc in _prange(N * C):
        n, c = nc // C, nc % C
        for p in range(OH):
            for q in range(OW):
                h, w = _argmax(x, n, c, p, q, kh, kw, sh, sw, ph, pw)
                out[n, c, p, q] = x[n, c, h, w]


def _max_pool_grad(g, x, out, kh, kw, sh, sw, ph, pw):
    N, C, OH, OW = g.shape
    for nc in _prange(N * C):
        n, c = nc // C, nc % C
        out[n, c] = 0
        for p in range(OH):
            for q in range(OW):
                h, w = _argmax(x, n, c, p, q, kh, kw, sh, sw, ph, pw)
                out[n, c, h, w] += g[n, c, p, q]


def _max_pool_gather(v, x, out, kh, kw, sh, sw, ph, pw):
    N, C, OH, OW = out.shape
    for nc in _prange(N * C):
        n, c = nc // C, nc % C
        for p in range(OH):
            for q in range(OW):
                h, w = _argmax(x, n, c, p, q, kh, kw, sh, sw, ph, pw)
                out[n, c, p, q] = v[n, c, h, w]


_prange = range  # replaced by numba.prange in the compiled versions
_argmax = _window_argmax


def kernels():
    """{"forward", "grad", "gather"} compiled with numba (cached on disk), or None when the
    JIT is off."""
    from nnctl import jit

    nb = jit.numba()
    if nb is None:
        return None
    if not _compiled:
        global _prange, _argmax
        _argmax = nb.njit(cache=True, inline="always")(_window_argmax)
        _prange = nb.prange
        options = dict(cache=True, parallel=True, nogil=True)
        _compiled.update(forward=nb.njit(**options)(_max_pool),
                         grad=nb.njit(**options)(_max_pool_grad),
                         gather=nb.njit(**options)(_max_pool_gather))
    return _compiled
