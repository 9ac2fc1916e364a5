"""Fused optimizer updates: one numba kernel per optimizer, one pass over memory.

Imported only when a step first runs with the JIT on (`nnctl.jit.enabled()`), never when
`nnctl.optim` is imported. The kernels are plain functions of this file, compiled with
`cache=True`: numba keeps their machine code in `__pycache__` beside this file (or in its
user-wide cache when that is not writable), so a later process pays no compile.

Each kernel updates a parameter `p` and its state arrays in place, reading each gradient
element once. Arrays are flat (1-D, C-contiguous) and all of the parameter's dtype. The
scalars come in `c`, a small array of that same dtype which the optimizer fills before each
step: the learning rate changes every step (schedules), so no scalar is a compile-time
constant, and each one is rounded to the parameter's dtype as NumPy rounds a Python float
next to a float32 array. The kernels do the same elementwise operations, in the same order and
precision, as the NumPy path in each optimizer's `update` (no fastmath: no reassociation, no
fused multiply-add), so the two paths agree to float round-off; on this machine, bit for bit.

Weight decay, in every kernel: c[DECAY] multiplies p first (1 - lr wd for AdamW's decoupled
decay, else exactly 1), and with `l2` the gradient becomes g + c[WD] p. `error_model="numpy"`:
a division by zero gives inf or nan as in NumPy (no exception check, so the loops vectorize).
`*_parallel` runs the same kernel over CHUNK-sized slices on numba's thread pool; the
optimizer picks it at call time for large parameters.
"""

from __future__ import annotations

import math

import numba

#: elements per slice of a parallel call (64 KiB of float32 per array)
CHUNK = 16384

#: c[DECAY] and c[WD] in every kernel; each optimizer's own scalars follow from FIRST
DECAY, WD, FIRST = 0, 1, 2

_jit = dict(cache=True, error_model="numpy")
_parallel = dict(cache=True, error_model="numpy", parallel=True)


# SGD: c = [decay, wd, lr, momentum]

@numba.njit(**_jit)
def sgd(p, g, c, l2):
    """p <- p - lr g."""
    decay, wd, lr = c[0], c[1], c[2]
    for i in range(p.size):
        pi = p[i] * decay
        gi = g[i]
        if l2:
            gi = gi + wd * pi
        p[i] = pi - lr * gi


@numba.njit(**_jit)
def sgd_momentum(p, g, v, c, l2, nesterov, first):
    """v <- mu v + g (first step: v <- g);  p <- p - lr (g + mu v if nesterov else v)."""
    decay, wd, lr, mu = c[0], c[1], c[2], c[3]
    for i in range(p.size):
        pi = p[i] * decay
        gi = g[i]
        if l2:
            gi = gi + wd * pi
        vi = v[i] * mu + gi
        if first:
            vi = gi
        v[i] = vi
        d = gi + mu * vi if nesterov else vi
        p[i] = pi - lr * d


# Adam: c = [decay, wd, 1 - b1, b1, 1 - b2, b2, eps sqrt(1 - b2^t), lr sqrt(1 - b2^t) / (1 - b1^t)]

@numba.njit(**_jit)
def adam(p, g, m, v, c, l2):
    """m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    p <- p - step (m / (sqrt(v) + eps_hat)), the bias corrections folded into the scalars."""
    decay, wd, omb1, b1, omb2, b2 = c[0], c[1], c[2], c[3], c[4], c[5]
    eps, step = c[6], c[7]
    for i in range(p.size):
        pi = p[i] * decay
        gi = g[i]
        if l2:
            gi = gi + wd * pi
        mi = m[i] * b1 + gi * omb1
        t = gi * gi
        vi = v[i] * b2 + t * omb2
        m[i] = mi
        v[i] = vi
        t = mi / (math.sqrt(vi) + eps)
        p[i] = pi - t * step


# RMSprop: c = [decay, wd, 1 - alpha, alpha, eps, momentum, lr]

@numba.njit(**_jit)
def rmsprop(p, g, s, c, l2):
    """s <- alpha s + (1 - alpha) g^2;  p <- p - lr g / (sqrt(s) + eps)."""
    decay, wd, oma, alpha, eps, lr = c[0], c[1], c[2], c[3], c[4], c[6]
    for i in range(p.size):
        pi = p[i] * decay
        gi = g[i]
        if l2:
            gi = gi + wd * pi
        t = gi * gi
        si = s[i] * alpha + t * oma
        s[i] = si
        d = gi / (math.sqrt(si) + eps)
        p[i] = pi - d * lr


@numba.njit(**_jit)
def rmsprop_momentum(p, g, s, b, c, l2):
    """s <- alpha s + (1 - alpha) g^2;  b <- mu b + g / (sqrt(s) + eps);  p <- p - lr b."""
    decay, wd, oma, alpha, eps, mu, lr = c[0], c[1], c[2], c[3], c[4], c[5], c[6]
    for i in range(p.size):
        pi = p[i] * decay
        gi = g[i]
        if l2:
            gi = gi + wd * pi
        t = gi * gi
        si = s[i] * alpha + t * oma
        s[i] = si
        bi = b[i] * mu + gi / (math.sqrt(si) + eps)
        b[i] = bi
        p[i] = pi - bi * lr


# Adagrad: c = [decay, wd, eps, lr]

@numba.njit(**_jit)
def adagrad(p, g, s, c, l2):
    """s <- s + g^2;  p <- p - lr g / (sqrt(s) + eps)."""
    decay, wd, eps, lr = c[0], c[1], c[2], c[3]
    for i in range(p.size):
        pi = p[i] * decay
        gi = g[i]
        if l2:
            gi = gi + wd * pi
        si = s[i] + gi * gi
        s[i] = si
        d = gi / (math.sqrt(si) + eps)
        p[i] = pi - d * lr


# The parallel forms: the kernel above on CHUNK-sized slices, on numba's thread pool.

@numba.njit(**_parallel)
def sgd_parallel(p, g, c, l2):
    n = p.size
    for k in numba.prange((n + CHUNK - 1) // CHUNK):
        lo, hi = k * CHUNK, min(n, (k + 1) * CHUNK)
        sgd(p[lo:hi], g[lo:hi], c, l2)


@numba.njit(**_parallel)
def sgd_momentum_parallel(p, g, v, c, l2, nesterov, first):
    n = p.size
    for k in numba.prange((n + CHUNK - 1) // CHUNK):
        lo, hi = k * CHUNK, min(n, (k + 1) * CHUNK)
        sgd_momentum(p[lo:hi], g[lo:hi], v[lo:hi], c, l2, nesterov, first)


@numba.njit(**_parallel)
def adam_parallel(p, g, m, v, c, l2):
    n = p.size
    for k in numba.prange((n + CHUNK - 1) // CHUNK):
        lo, hi = k * CHUNK, min(n, (k + 1) * CHUNK)
        adam(p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], c, l2)


@numba.njit(**_parallel)
def rmsprop_parallel(p, g, s, c, l2):
    n = p.size
    for k in numba.prange((n + CHUNK - 1) // CHUNK):
        lo, hi = k * CHUNK, min(n, (k + 1) * CHUNK)
        rmsprop(p[lo:hi], g[lo:hi], s[lo:hi], c, l2)


@numba.njit(**_parallel)
def rmsprop_momentum_parallel(p, g, s, b, c, l2):
    n = p.size
    for k in numba.prange((n + CHUNK - 1) // CHUNK):
        lo, hi = k * CHUNK, min(n, (k + 1) * CHUNK)
        rmsprop_momentum(p[lo:hi], g[lo:hi], s[lo:hi], b[lo:hi], c, l2)


@numba.njit(**_parallel)
def adagrad_parallel(p, g, s, c, l2):
    n = p.size
    for k in numba.prange((n + CHUNK - 1) // CHUNK):
        lo, hi = k * CHUNK, min(n, (k + 1) * CHUNK)
        adagrad(p[lo:hi], g[lo:hi], s[lo:hi], c, l2)
