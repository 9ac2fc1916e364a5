"""The losses beyond cross-entropy and MSE, composed from elementary Tensor ops.

Each function returns the loss of every element (or every sample, for the multi-class focal
loss), unreduced; `mean_over` reduces it, over a padding mask where there is one. Reverse-mode
AD gives every gradient, so each form is chosen to stay finite and precise in both passes:

- binary cross-entropy on logits uses softplus (log1p(e^-|z|) + max(z, 0)), never log(sigmoid);
- 1 - p of a softmax or sigmoid is computed as the probability of the other outcomes (a sum of
  positive terms, or sigmoid(-z)), not as a difference that cancels when p is near 1;
- (1 - p)^gamma takes a floor at the dtype's smallest normal number, so that gamma < 1 at a
  saturated prediction gives a zero gradient instead of 0 x inf = NaN.

The definitions follow PyTorch (BCEWithLogitsLoss, L1Loss, HuberLoss, SmoothL1Loss, reduction
'mean') and, for the focal losses, Lin et al. 2017 (multi-class, softmax) and torchvision's
sigmoid_focal_loss (binary and multi-label). docs/losses.md states them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from nnctl.errors import ShapeError
from nnctl.graph import Tensor


def _same_shape(name: str, out: Tensor, target: Tensor) -> None:
    # a [B, 1] target against a [B, K] output is a mistake, never a broadcast (as Tensor.mse)
    if tuple(out.shape) != tuple(target.shape):
        raise ShapeError(f"{name}: prediction {list(out.shape)} and target "
                         f"{list(target.shape)} differ", op=name)


def _per_class(values: float | Sequence[float], out: Tensor, name: str):
    """A number, or a constant [K] broadcast along the last axis of `out`."""
    if isinstance(values, (int, float)):
        return float(values)
    if len(values) != out.shape[-1]:
        raise ShapeError(f"{name} has {len(values)} values but the output has {out.shape[-1]} "
                         "per sample on its last axis", op=name)
    return Tensor(np.asarray(values, dtype=out.dtype))


def _floor(dtype: str) -> float:
    """The smallest normal number of `dtype`: a floor that keeps x^gamma's gradient finite."""
    return float(np.finfo(dtype).tiny)


def bce_with_logits(logits: Tensor, target: Tensor,
                    pos_weight: float | Sequence[float] | None = None) -> Tensor:
    """Binary cross-entropy of each logit z against its target y in [0, 1]:
    -(w y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))) with w = pos_weight (default 1),
    computed as (1 - y) z + (1 + (w - 1) y) softplus(-z): PyTorch's BCEWithLogitsLoss with
    reduction='none'. pos_weight: a number, or one per label (the last axis)."""
    _same_shape("bce_with_logits", logits, target)
    log_weight = 1.0
    if pos_weight is not None:
        w = _per_class(pos_weight, logits, "pos_weight")
        log_weight = target * (w - 1.0) + 1.0
    return (1.0 - target) * logits + log_weight * (-logits).softplus()


def l1(pred: Tensor, target: Tensor) -> Tensor:
    """|pred - target| (PyTorch's L1Loss, reduction='none'); the gradient at 0 is 0."""
    _same_shape("l1", pred, target)
    return (pred - target).abs()


def huber(pred: Tensor, target: Tensor, delta: float = 1.0) -> Tensor:
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta), d = pred - target (PyTorch's
    HuberLoss). Written as 0.5 q^2 + delta (|d| - q) with q = min(|d|, delta): one form, no
    branch, and the gradient d inside, delta sign(d) outside."""
    _same_shape("huber", pred, target)
    a = (pred - target).abs()
    q = a.minimum(delta)
    return q * q * 0.5 + (a - q) * delta


def smooth_l1(pred: Tensor, target: Tensor, beta: float = 1.0) -> Tensor:
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (PyTorch's SmoothL1Loss):
    huber(delta=beta) / beta, and plain |d| for beta = 0."""
    if beta == 0:
        return l1(pred, target)
    return huber(pred, target, beta) * (1.0 / beta)


def _pow(base: Tensor, gamma: float) -> Tensor | float:
    """base^gamma for base in [0, 1]; 1 for gamma = 0 (also at base 0, as PyTorch's 0^0)."""
    if gamma == 0:
        return 1.0
    if gamma == 1:
        return base
    return base.maximum(_floor(base.dtype)) ** float(gamma)


def focal(logits: Tensor, labels: Tensor, gamma: float = 2.0,
          alpha: Sequence[float] | None = None) -> Tensor:
    """Multi-class focal loss (Lin et al. 2017, softmax form) of scores [..., C] against integer
    labels [...]: -alpha_t (1 - p_t)^gamma log p_t, per labelled position. p_t is the softmax
    probability of the label; alpha (one weight per class; default none) gives alpha_t.
    gamma = 0 without alpha is cross-entropy."""
    classes = logits.shape[-1]
    onehot = labels.one_hot(classes, logits.dtype)
    logp = logits.log_softmax(-1)
    log_pt = (logp * onehot).sum(-1)
    # 1 - p_t as the probability of the other classes: no cancellation near p_t = 1
    rest = (logits.softmax(-1) * (1.0 - onehot)).sum(-1)
    loss = -(_pow(rest, gamma) * log_pt)
    if alpha is not None:
        loss = loss * (onehot * _per_class(alpha, logits, "alpha")).sum(-1)
    return loss


def sigmoid_focal(logits: Tensor, target: Tensor, gamma: float = 2.0,
                  alpha: float | None = 0.25) -> Tensor:
    """Binary / multi-label focal loss, torchvision.ops.sigmoid_focal_loss with
    reduction='none': bce(z, y) (1 - p_t)^gamma alpha_t, where p = sigmoid(z),
    p_t = p y + (1 - p)(1 - y) and alpha_t = alpha y + (1 - alpha)(1 - y) (alpha None: 1)."""
    ce = bce_with_logits(logits, target)
    # 1 - p_t = y sigmoid(-z) + (1 - y) sigmoid(z): each term exact where p_t is near 1
    miss = target * (-logits).sigmoid() + (1.0 - target) * logits.sigmoid()
    loss = ce * _pow(miss, gamma)
    if alpha is not None:
        loss = loss * (target * (2.0 * alpha - 1.0) + (1.0 - alpha))
    return loss


def mean_over(terms: Tensor, mask: Tensor | None = None) -> Tensor:
    """The mean of all terms; with a mask of the terms' shape (1 at real steps), the sum over
    the real ones divided by their number (a batch of none gives 0)."""
    if mask is None:
        return terms.mean()
    return (terms * mask).sum() / mask.sum().maximum(1.0)
