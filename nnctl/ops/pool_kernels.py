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


def _window_argmax(xs, h0, w0, kh, kw):
    """(h, w) of the first maximum of the plane xs's window at (h0, w0), padding skipped; a
    NaN is the maximum (the first one)."""
    H, W = xs.shape
    best = -math.inf
    bh, bw = -1, -1
    for i in range(kh):
        h = h0 + i
        if h < 0 or h >= H:
            continue
        for j in range(kw):
            w = w0 + j
            if w < 0 or w >= W:
                continue
            v = xs[h, w]
            if bh < 0 or v > best or (v != v and best == best):
                best, bh, bw = v, h, w
    return bh, bw


def _max_pool_grad(g, x, out, kh, kw, sh, sw, ph, pw):
    N, C, OH, OW = g.shape
    for nc in _prange(N * C):
        n = nc // C
        xs, gs, ds = x[n, nc - n * C], g[n, nc - n * C], out[n, nc - n * C]
        ds[:, :] = 0
        for p in range(OH):
            for q in range(OW):
                h, w = _argmax(xs, p * sh - ph, q * sw - pw, kh, kw)
                ds[h, w] += gs[p, q]


def _max_pool_gather(v, x, out, kh, kw, sh, sw, ph, pw):
    """v at each window's maximum of x; the forward pass is gather(x, x)."""
    N, C, OH, OW = out.shape
    for nc in _prange(N * C):
        n = nc // C
        xs, vs, os = x[n, nc - n * C], v[n, nc - n * C], out[n, nc - n * C]
        for p in range(OH):
            for q in range(OW):
                h, w = _argmax(xs, p * sh - ph, q * sw - pw, kh, kw)
                os[p, q] = vs[h, w]


# 2x2 windows with stride 2 and no padding, by far the most common pooling, get loops with
# constant bounds that LLVM unrolls: ~20x the general loops' speed (docs/performance.md).

def _max_pool_2x2(x, out):
    N, C, OH, OW = out.shape
    for nc in _prange(N * C):
        n = nc // C
        xs, os = x[n, nc - n * C], out[n, nc - n * C]
        for p in range(OH):
            for q in range(OW):
                a, b = xs[2 * p, 2 * q], xs[2 * p, 2 * q + 1]
                c, d = xs[2 * p + 1, 2 * q], xs[2 * p + 1, 2 * q + 1]
                nan = (a != a) | (b != b) | (c != c) | (d != d)
                # max() vectorises; the value at the first maximum is the maximum (a NaN
                # anywhere makes the sum NaN, as the first NaN is the maximum)
                os[p, q] = (a + b + c + d) if nan else max(max(a, b), max(c, d))


def _max_pool_grad_2x2(g_bits, x, out_bits):
    """g and out are passed as integer views of their floats (int32 for float32): each of the
    four stores is g's bits AND a mask of all ones or zeros, so the loop has no branch to
    mispredict on random data (3x faster than selecting floats) and copies g exactly, a
    NaN or an infinity only to the window's maximum."""
    N, C, OH, OW = g_bits.shape
    H, W = x.shape[2], x.shape[3]
    for nc in _prange(N * C):
        n = nc // C
        xs, gs, ds = x[n, nc - n * C], g_bits[n, nc - n * C], out_bits[n, nc - n * C]
        if 2 * OH < H or 2 * OW < W:  # an odd edge no window covers
            ds[:, :] = 0
        for p in range(OH):
            for q in range(OW):
                a, b = xs[2 * p, 2 * q], xs[2 * p, 2 * q + 1]
                c, d = xs[2 * p + 1, 2 * q], xs[2 * p + 1, 2 * q + 1]
                m = max(max(a, b), max(c, d))
                # 1 at the first maximum, or at the first NaN (then no element equals m)
                ka = _int(a == m) | _int(a != a)
                kb = (_int(b == m) | _int(b != b)) & (1 - ka)
                kc = (_int(c == m) | _int(c != c)) & (1 - (ka | kb))
                kd = 1 - (ka | kb | kc)
                v = gs[p, q]
                ds[2 * p, 2 * q] = v & -ka
                ds[2 * p, 2 * q + 1] = v & -kb
                ds[2 * p + 1, 2 * q] = v & -kc
                ds[2 * p + 1, 2 * q + 1] = v & -kd


_prange = range  # replaced by numba.prange in the compiled versions
_int = int  # numpy.int32 in the compiled versions (a comparison as 0 or 1, no branch)
_argmax = _window_argmax


def kernels():
    """{"grad", "gather"} (the forward pass is gather(x, x)) and "forward_2x2", "grad_2x2"
    (2x2 windows, stride 2, no padding; they take no geometry; grad_2x2 takes g and out as
    integer views of the same width, see `bits`), each a (serial, parallel)
    pair compiled with numba (cached on disk; `pick` chooses), or None when the JIT is off."""
    from nnctl import jit

    nb = jit.numba()
    if nb is None:
        return None
    if not _compiled:
        global _prange, _argmax, _int
        import numpy as np
        _argmax = nb.njit(cache=True, inline="always")(_window_argmax)
        _prange, _int = nb.prange, np.int32
        loops = {"grad": _max_pool_grad, "gather": _max_pool_gather,
                 "forward_2x2": _max_pool_2x2, "grad_2x2": _max_pool_grad_2x2}
        for name, loop in loops.items():
            _compiled[name] = (
                nb.njit(cache=True, nogil=True, error_model="numpy")(loop),
                nb.njit(cache=True, nogil=True, parallel=True, error_model="numpy")(loop))
    return _compiled


def pick(compiled: dict, name: str, size: int):
    """The serial or the parallel loop `name`, for an input of `size` elements
    (`nnctl.jit.parallel_pays`)."""
    from nnctl import jit

    serial, parallel = compiled[name]
    return parallel if jit.parallel_pays(size) else serial


def bits(a):
    """A float array's integer view of the same width (float32 -> int32), for grad_2x2."""
    import numpy as np
    return a.view(np.int32 if a.dtype.itemsize == 4 else np.int64)
