"""Gradient clipping, as torch.nn.utils.clip_grad_norm_ and clip_grad_value_, without writing
into the gradients (a plan may return read-only views): clipped gradients are new arrays."""

from __future__ import annotations

import math


def clip_grad_norm(xp, grads: list, max_norm: float) -> tuple[list, float]:
    """Scale all gradients together so that their global L2 norm (all of them as one vector)
    is at most max_norm; return (gradients, norm before clipping).

    Above max_norm, each gradient becomes a new array g * max_norm / (norm + 1e-6), as PyTorch.
    At or below it, or when the norm is inf or nan, the very same arrays come back unchanged:
    the caller decides what a non-finite norm means.
    """
    # NOTE: one BLAS dot per gradient, in its own dtype as PyTorch computes it, with no
    # temporary array: the trainer measures this norm every step (it is how it notices a
    # non-finite gradient), and squaring into a float64 temporary cost ~9% of a small
    # model's step. The per-gradient sums are added up on the device (one sync in all).
    total = 0.0
    for g in grads:
        flat = g.ravel()
        total = total + xp.vdot(flat, flat).astype(xp.float64)
    norm = math.sqrt(float(total))
    if not math.isfinite(norm) or norm <= max_norm:
        return grads, norm
    scale = max_norm / (norm + 1e-6)
    return [g * scale for g in grads], norm  # a Python float keeps float32 arrays float32


def clip_grad_value(xp, grads: list, limit: float) -> list:
    """Each gradient clipped elementwise to [-limit, limit], as new arrays."""
    return [xp.clip(g, -limit, limit) for g in grads]
