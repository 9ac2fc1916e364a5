"""Adam (Kingma and Ba, 2015):
m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
p <- p - lr m_hat / (sqrt(v_hat) + eps), with m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t).
weight_decay is an L2 penalty added to g, as torch.optim.Adam; AdamW decays the weights."""

from __future__ import annotations

import math

from nnctl.optim.base import Optimizer


class Adam(Optimizer):
    slots = ("m", "v")
    m: dict[int, object]  # first-moment average, per parameter
    v: dict[int, object]  # second-moment average

    def __init__(self, xp, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(xp, lr, weight_decay)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def update(self, i, p, g):
        xp = self.xp
        if i not in self.m:
            self.m[i], self.v[i] = xp.zeros_like(p), xp.zeros_like(p)
        m, v, t = self.m[i], self.v[i], self._scratch(i, p)
        # NOTE: every step writes into preallocated arrays: the update is memory-bound, and
        # temporaries were a third of a training step's time on a 270k-parameter MLP
        xp.multiply(g, 1 - self.beta1, out=t)
        m *= self.beta1
        m += t
        xp.multiply(g, g, out=t)
        t *= 1 - self.beta2
        v *= self.beta2
        v += t
        k = self.steps
        correction1, correction2 = 1 - self.beta1 ** k, 1 - self.beta2 ** k
        # p -= lr * m_hat / (sqrt(v_hat) + eps), with the corrections folded into scalars
        xp.sqrt(v, out=t)
        t += self.eps * math.sqrt(correction2)
        xp.divide(m, t, out=t)
        t *= self.lr * math.sqrt(correction2) / correction1
        p -= t

    def update_graph(self, p, g, state, step):
        p, g = self.decay_graph(p, g)
        m = state["m"] * self.beta1 + g * (1 - self.beta1)
        v = state["v"] * self.beta2 + g * g * (1 - self.beta2)
        # the bias corrections of step `step`, folded into two scalars as `update` folds them
        correction1, correction2 = 1 - self.beta1 ** step, 1 - self.beta2 ** step
        denominator = v.sqrt() + self.eps * math.sqrt(correction2)
        new_p = p - m / denominator * (self.lr * math.sqrt(correction2) / correction1)
        return new_p, {"m": m, "v": v}

    def coefficients(self):
        k = self.steps
        correction1, correction2 = 1 - self.beta1 ** k, 1 - self.beta2 ** k
        return (1 - self.beta1, self.beta1, 1 - self.beta2, self.beta2,
                self.eps * math.sqrt(correction2),
                self.lr * math.sqrt(correction2) / correction1)

    def fused_state(self, i, p):
        if i not in self.m:
            self.m[i], self.v[i] = self.xp.zeros_like(p), self.xp.zeros_like(p)
        return (self.m[i], self.v[i]), False

    def fused(self, kernels, p, g, states, c, l2, parallel, first):
        (kernels.adam_parallel if parallel else kernels.adam)(p, g, *states, c, l2)
