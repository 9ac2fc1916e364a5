"""col2im on the CPU as one gathering loop, compiled by numba (nnctl.jit) when it is on.

NumPy adds the columns back with one strided add per kernel offset over the whole input
(KH*KW passes through memory, each a 6-D strided walk). Gathering instead visits every input
element once and sums the column entries that were read from it, in the same kernel-offset
order and the same dtype as those adds, so the result is the same to the bit. Each input
element is written by one iteration: parallel over (image, channel) planes without races.
Kernels are compiled on first use and cached on disk.
"""

from __future__ import annotations

_compiled: dict = {}


def _col2im(cols, out, zero, kh, kw, sh, sw, ph, pw, dh, dw):
    """out[n, c, h, w] = the sum over kernel offsets (i, j) of cols[c, i, j, n, p, q] where
    output pixel (p, q) read input (h, w) through offset (i, j)."""
    N, C, H, W = out.shape
    OH, OW = cols.shape[4], cols.shape[5]
    for nc in _prange(N * C):
        n = nc // C
        c = nc - n * C
        for h in range(H):
            for w in range(W):
                acc = zero
                for i in range(kh):
                    r = h + ph - i * dh
                    if r < 0 or r % sh != 0 or r // sh >= OH:
                        continue
                    p = r // sh
                    for j in range(kw):
                        s = w + pw - j * dw
                        if s < 0 or s % sw != 0 or s // sw >= OW:
                            continue
                        acc += cols[c, i, j, n, p, s // sw]
                out[n, c, h, w] = acc


_prange = range  # numba.prange in the compiled versions


def col2im_kernels():
    """(serial, parallel) numba versions of the loop, or None when the JIT is off."""
    from nnctl import jit

    nb = jit.numba()
    if nb is None:
        return None
    if not _compiled:
        global _prange
        _prange = nb.prange
        _compiled["col2im"] = (
            nb.njit(cache=True, nogil=True, error_model="numpy")(_col2im),
            nb.njit(cache=True, nogil=True, parallel=True, error_model="numpy")(_col2im))
    return _compiled["col2im"]
