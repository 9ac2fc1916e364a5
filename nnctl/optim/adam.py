"""Adam (Kingma and Ba, 2015):
m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
p <- p - lr m_hat / (sqrt(v_hat) + eps), with m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)."""

from __future__ import annotations

import math

from nnctl.optim.base import Optimizer


class Adam(Optimizer):
    def __init__(self, xp, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(xp, lr, weight_decay)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m: dict[int, object] = {}
        self.v: dict[int, object] = {}

    def update(self, i, p, g):
        xp = self.xp
        if i not in self.m:
            self.m[i], self.v[i] = xp.zeros_like(p), xp.zeros_like(p)
        m, v = self.m[i], self.v[i]
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * (g * g)
        t = self.steps
        step = self.lr * math.sqrt(1 - self.beta2 ** t) / (1 - self.beta1 ** t)
        # NOTE: eps scaled so this equals the textbook m_hat / (sqrt(v_hat) + eps)
        p -= step * m / (xp.sqrt(v) + self.eps * math.sqrt(1 - self.beta2 ** t))
