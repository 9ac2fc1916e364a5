"""Neural comparators (siamese models): layers that compare the embeddings one shared tower
gives two or three inputs, and the losses that train such a tower.

A siamese model applies one sub-network (layers with `shares:`) to the left and the right
sample, then compares the two embeddings: `distance` gives one number per pair, small for
"same"; `triplet_distance` gives an anchor's distances to a positive and a negative sample;
`difference` gives |a - b| for a dense "same / different" head trained with cross-entropy.
Everything is elementary Tensor ops: reverse-mode AD gives every gradient.
"""

from __future__ import annotations

from nnctl.errors import ShapeError
from nnctl.graph import Tensor
from nnctl.graph.tensor import concat, where
from nnctl.layers.base import Layer, register_layer

METRICS = ("euclidean", "squared_euclidean", "cosine")
# Added under the square root of the euclidean distance and of each norm of the cosine: the
# derivative of sqrt(s) is 1 / (2 sqrt(s)), infinite at s = 0, so identical embeddings (the
# same sample on both sides, or a collapsed tower) would give NaN gradients. With eps the
# distance of identical embeddings is sqrt(eps) = 1e-6 and its gradient is exactly 0 there.
# 1e-12 is far below any distance that matters and still a normal float32.
EPS = 1e-12


def pair_distance(a: Tensor, b: Tensor, metric: str) -> Tensor:
    """Distance of each row pair over the last axis, keeping it: [..., D] x2 -> [..., 1].

    euclidean:         sqrt(sum_k (a_k - b_k)^2 + eps)
    squared_euclidean: sum_k (a_k - b_k)^2
    cosine:            1 - sum_k a_k b_k / (sqrt(sum_k a_k^2 + eps) sqrt(sum_k b_k^2 + eps))
    """
    if metric == "cosine":
        dot = (a * b).sum(axis=-1, keepdims=True)
        norm_a = ((a * a).sum(axis=-1, keepdims=True) + EPS).sqrt()
        norm_b = ((b * b).sum(axis=-1, keepdims=True) + EPS).sqrt()
        return 1.0 - dot / (norm_a * norm_b)
    diff = a - b
    squared = (diff * diff).sum(axis=-1, keepdims=True)
    if metric == "squared_euclidean":
        return squared
    if metric == "euclidean":
        return (squared + EPS).sqrt()
    raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")


class _Comparison(Layer):
    """A merge of `arity` embeddings of one shape."""

    merge = True
    arity = 2
    what = ""  # the inputs, for messages

    def __init__(self, name: str, metric: str = "euclidean"):
        super().__init__(name)
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
        self.metric = metric

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.metric)

    def _check(self, xs: list[Tensor]) -> None:
        if len(xs) != self.arity:
            raise ShapeError(f"{self.kind} compares {self.arity} inputs ({self.what}), got "
                             f"{len(xs)}", scope=self.name)
        if len({tuple(x.shape[1:]) for x in xs}) != 1:
            raise ShapeError(f"{self.kind} needs embeddings of one shape, got "
                             + ", ".join(str(list(x.shape)) for x in xs), scope=self.name)

    def output_mask(self, xs, masks, out):
        return None  # one number per sample: no time axis left


@register_layer
class Distance(_Comparison):
    """The distance of two embeddings a, b [B, D] -> d [B, 1] (over the last axis):

        euclidean:         d = sqrt(sum_k (a_k - b_k)^2 + eps)            (eps = 1e-12)
        squared_euclidean: d = sum_k (a_k - b_k)^2
        cosine:            d = 1 - a.b / (sqrt(|a|^2 + eps) sqrt(|b|^2 + eps))

    eps keeps the gradient finite (exactly 0) where a = b. Small d means "same"."""

    kind = "distance"
    what = "left, right"

    def forward(self, xs: list[Tensor], training: bool) -> Tensor:
        self._check(xs)
        return pair_distance(xs[0], xs[1], self.metric)


@register_layer
class TripletDistance(_Comparison):
    """An anchor's distances to a positive and a negative embedding, [B, D] x3 -> [B, 2]:

        out[:, 0] = d(anchor, positive),  out[:, 1] = d(anchor, negative)

    with d one of the `distance` layer's metrics. The triplet loss wants out[:, 0] smaller."""

    kind = "triplet_distance"
    arity = 3
    what = "anchor, positive, negative"

    def forward(self, xs: list[Tensor], training: bool) -> Tensor:
        self._check(xs)
        anchor, positive, negative = xs
        return concat([pair_distance(anchor, positive, self.metric),
                       pair_distance(anchor, negative, self.metric)], axis=-1)


@register_layer
class Difference(Layer):
    """The elementwise absolute difference |a - b| of two embeddings of one shape (same shape
    out): symmetric in a and b, so a dense head on it (then cross-entropy on same = 1 /
    different = 0) gives the same answer whichever sample is left."""

    kind = "difference"
    merge = True

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name)

    def forward(self, xs: list[Tensor], training: bool) -> Tensor:
        if len(xs) != 2 or xs[0].shape[1:] != xs[1].shape[1:]:
            raise ShapeError("difference needs two inputs of one shape, got "
                             + ", ".join(str(list(x.shape)) for x in xs), scope=self.name)
        return (xs[0] - xs[1]).abs()


# ---- losses (the StepBuilder's `loss: contrastive` and `loss: triplet`) ---------------------

def contrastive_loss(d: Tensor, y: Tensor, margin: float) -> Tensor:
    """Hadsell, Chopra & LeCun (2006): pull "same" pairs together, push "different" pairs
    at least `margin` apart. d [B, 1] distances, y [B] int (1 same, 0 different):

        L = mean_i [ y_i d_i^2 + (1 - y_i) max(0, margin - d_i)^2 ]
    """
    d = d[:, 0]
    pull = d * d
    push = (margin - d).relu()
    return where(y, pull, push * push).mean()


def triplet_loss(d: Tensor, margin: float) -> Tensor:
    """Schroff et al. (2015), FaceNet: the anchor nearer its positive than its negative by
    `margin`. d [B, 2] = (d(anchor, positive), d(anchor, negative)):

        L = mean_i max(0, d_ap,i - d_an,i + margin)
    """
    return (d[:, 0] - d[:, 1] + margin).relu().mean()
