"""sequence_pool: one vector per sequence from [batch, time, features], over the real steps.

With a padding mask m [batch, time] (1 at real steps, 0 at padding; padding at the end):

    mean:  y = sum_t m_t x_t / max(sum_t m_t, 1)
    max:   y = max_t (x_t + (m_t - 1) * 1e9)      exact at real values: (1 - 1) * 1e9 = 0
    last:  y = sum_t l_t x_t,  l_t = m_t * (1 - m_(t+1)),  m_(T) = 0

l is the one-hot of each sequence's last real step, built from the mask alone, so `last`
needs no lengths and its gradient reaches only that step. Without a mask these are the plain
mean over time, max over time and x[:, -1]. The output [batch, features] has no time axis,
so no mask.

A sequence with no real step gives 0 (mean, last) or about -1e9 (max).
"""

from __future__ import annotations

from nnctl.graph import Tensor
from nnctl.layers.base import Layer, register_layer, require_sequence

# Added to padded steps before max: far below any activation, yet finite, so a padded step's
# gradient is an exact 0 rather than a NaN from inf - inf.
PAD_SCORE = 1e9


@register_layer
class SequencePool(Layer):
    """Pools [batch, time, features] over time to [batch, features] by `mode` (mean, max or
    last), reading only the real steps when the input carries a padding mask."""

    kind = "sequence_pool"
    takes_mask = True
    modes = ("mean", "max", "last")

    def __init__(self, name: str, mode: str = "mean"):
        super().__init__(name)
        if mode not in self.modes:
            raise ValueError(f"sequence_pool mode must be one of {self.modes}, got {mode!r}")
        self.mode = mode

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.mode)

    def build(self, x: Tensor, rng) -> None:
        require_sequence(self, x)

    def forward(self, x: Tensor, training: bool, mask=None) -> Tensor:
        if mask is None:
            return {"mean": lambda: x.mean(1), "max": lambda: x.max(1),
                    "last": lambda: x[:, -1]}[self.mode]()
        m = mask.reshape(*mask.shape, 1)  # [batch, time, 1]: broadcasts over the features
        if self.mode == "mean":
            return (x * m).sum(1) / mask.sum(1, keepdims=True).maximum(1.0)
        if self.mode == "max":
            return (x + (m - 1) * PAD_SCORE).max(1)
        following = m[:, 1:].pad(((0, 0), (0, 1), (0, 0)))  # m_(t+1), with m_(T) = 0
        return (x * (m * (1 - following))).sum(1)

    def output_mask(self, x, mask, out):
        return None  # time is pooled away
