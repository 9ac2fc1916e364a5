"""Normalisation layers: batch norm (running statistics for evaluation) and layer norm."""

from __future__ import annotations

from nnctl.errors import ShapeError
from nnctl.graph import Tensor, maximum
from nnctl.layers.base import Layer, register_layer
from nnctl.ops import collective


@register_layer
class BatchNorm(Layer):
    """y = (x - mean) / sqrt(var + eps) * gamma + beta over the batch (and spatial) axes of
    each channel (axis 1). Training uses the batch's statistics and moves the running ones
    (PyTorch's convention: running = (1 - momentum) running + momentum batch, the variance
    unbiased); evaluation uses the running ones."""

    kind = "batch_norm"

    def __init__(self, name, momentum=0.1, eps=1e-5, affine=True):
        super().__init__(name)
        self.momentum, self.eps, self.affine = momentum, eps, affine

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.momentum, spec.eps, spec.affine)

    def build(self, x: Tensor, rng) -> None:
        if x.ndim < 2:
            raise ShapeError(f"batch_norm needs input [batch, channels, ...], got "
                             f"{list(x.shape)}", scope=self.name)
        c = x.shape[1]
        self.axes = (0,) + tuple(range(2, x.ndim))
        self.shape = (1, c) + (1,) * (x.ndim - 2)  # broadcasts a per-channel vector
        self.running_mean = self.add_state("running_mean", (c,), "zeros", rng, x.dtype)
        self.running_var = self.add_state("running_var", (c,), "ones", rng, x.dtype)
        if self.affine:
            self.gamma = self.add_param("gamma", (c,), "ones", rng, x.dtype)
            self.beta = self.add_param("beta", (c,), "zeros", rng, x.dtype)

    def _unbiased(self, x: Tensor, m: float, count=None):
        """m n / (n - 1), n the values per channel (Bessel's correction of the running
        variance, as PyTorch): a number for a static batch, a 0-d Tensor for a symbolic one
        (or given: the global count of a synchronised batch)."""
        if count is not None:
            return count * m / maximum(count - 1.0, 1.0)
        n = x.size // x.shape[1]
        if isinstance(n, int):
            return m * n / max(n - 1, 1)
        count = x.apply("numel", axis=self.axes)
        return count * m / maximum(count - 1.0, 1.0)

    def forward(self, x: Tensor, training: bool) -> Tensor:
        if training:
            count = None
            if collective.world_size() > 1:  # data-parallel: the global batch's statistics
                count = x.apply("numel", axis=self.axes).apply("allreduce_sum")
                mean = x.sum(self.axes, keepdims=True).apply("allreduce_sum") / count
                centred = x - mean
                var = (centred * centred).sum(self.axes, keepdims=True) \
                    .apply("allreduce_sum") / count
            else:
                mean = x.mean(self.axes, keepdims=True)
                centred = x - mean
                var = (centred * centred).mean(self.axes, keepdims=True)
            m = self.momentum
            self.update_state(self.running_mean,
                              self.running_mean * (1 - m) + mean.reshape(-1) * m)
            self.update_state(self.running_var, self.running_var * (1 - m)
                              + var.reshape(-1) * self._unbiased(x, m, count))
        else:
            centred = x - self.running_mean.reshape(self.shape)
            var = self.running_var.reshape(self.shape)
        y = centred / (var + self.eps).sqrt()
        if self.affine:
            y = y * self.gamma.reshape(self.shape) + self.beta.reshape(self.shape)
        return y


@register_layer
class LayerNorm(Layer):
    """y = (x - mean) / sqrt(var + eps) * gamma + beta over the last axis of each sample."""

    kind = "layer_norm"

    def __init__(self, name, eps=1e-5, affine=True):
        super().__init__(name)
        self.eps, self.affine = eps, affine

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.eps, spec.affine)

    def build(self, x: Tensor, rng) -> None:
        f = x.shape[-1]
        if self.affine:
            self.gamma = self.add_param("gamma", (f,), "ones", rng, x.dtype)
            self.beta = self.add_param("beta", (f,), "zeros", rng, x.dtype)

    def forward(self, x: Tensor, training: bool) -> Tensor:
        centred = x - x.mean(-1, keepdims=True)
        var = (centred * centred).mean(-1, keepdims=True)
        y = centred / (var + self.eps).sqrt()
        if self.affine:
            y = y * self.gamma + self.beta
        return y
