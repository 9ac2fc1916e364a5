"""Adagrad (Duchi, Hazan and Singer, 2011), in torch.optim.Adagrad's formulation (no lr decay):
g <- g + wd p;  s <- s + g^2 (s starts at initial_accumulator_value);
p <- p - lr g / (sqrt(s) + eps)."""

from __future__ import annotations

from nnctl.optim.base import Optimizer


class Adagrad(Optimizer):
    slots = ("sum",)
    sum: dict[int, object]  # s, per parameter

    def __init__(self, xp, lr: float = 0.01, eps: float = 1e-10, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0):
        super().__init__(xp, lr, weight_decay)
        self.eps, self.initial_accumulator_value = eps, initial_accumulator_value

    def update(self, i, p, g):
        xp = self.xp
        s = self.sum.get(i)
        if s is None:
            s = self.sum[i] = xp.full_like(p, self.initial_accumulator_value)
        t = self._scratch(i, p)
        xp.multiply(g, g, out=t)
        s += t
        xp.sqrt(s, out=t)
        t += self.eps
        xp.divide(g, t, out=t)
        t *= self.lr
        p -= t

    def update_graph(self, p, g, state, step):
        p, g = self.decay_graph(p, g)
        s = state["sum"] + g * g  # starts at initial_accumulator_value, as in `update`
        return p - g / (s.sqrt() + self.eps) * self.lr, {"sum": s}

    def coefficients(self):
        return (self.eps, self.lr)

    def fused_state(self, i, p):
        s = self.sum.get(i)
        if s is None:
            s = self.sum[i] = self.xp.full_like(p, self.initial_accumulator_value)
        return (s,), False

    def fused(self, kernels, p, g, states, c, l2, parallel, first):
        (kernels.adagrad_parallel if parallel else kernels.adagrad)(p, g, states[0], c, l2)
