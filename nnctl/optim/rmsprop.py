"""RMSprop (Hinton's lecture notes), in torch.optim.RMSprop's formulation (not centered):
g <- g + wd p;  s <- alpha s + (1 - alpha) g^2;  d = g / (sqrt(s) + eps);
with momentum: b <- mu b + d, p <- p - lr b;  without: p <- p - lr d.
s and b start at zero; there is no bias correction."""

from __future__ import annotations

from nnctl.optim.base import Optimizer


class RMSprop(Optimizer):
    slots = ("square_avg", "momentum_buffer")
    square_avg: dict[int, object]  # s, per parameter
    momentum_buffer: dict[int, object]  # b, per parameter (absent without momentum)

    def __init__(self, xp, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(xp, lr, weight_decay)
        self.alpha, self.eps, self.momentum = alpha, eps, momentum

    def update(self, i, p, g):
        xp = self.xp
        s = self.square_avg.get(i)
        if s is None:
            s = self.square_avg[i] = xp.zeros_like(p)
        t = self._scratch(i, p)  # in place throughout, as Adam
        xp.multiply(g, g, out=t)
        t *= 1 - self.alpha
        s *= self.alpha
        s += t
        xp.sqrt(s, out=t)
        t += self.eps
        xp.divide(g, t, out=t)
        if self.momentum:
            b = self.momentum_buffer.get(i)
            if b is None:
                b = self.momentum_buffer[i] = xp.zeros_like(p)
            b *= self.momentum
            b += t
            xp.multiply(b, self.lr, out=t)
        else:
            t *= self.lr
        p -= t

    def update_graph(self, p, g, state, step):
        p, g = self.decay_graph(p, g)
        s = state["square_avg"] * self.alpha + g * g * (1 - self.alpha)
        d = g / (s.sqrt() + self.eps)
        if not self.momentum:
            return p - d * self.lr, {"square_avg": s}
        b = state["momentum_buffer"] * self.momentum + d
        return p - b * self.lr, {"square_avg": s, "momentum_buffer": b}

    def graph_slots(self):
        return self.slots if self.momentum else ("square_avg",)

    def coefficients(self):
        return (1 - self.alpha, self.alpha, self.eps, self.momentum, self.lr)

    def fused_state(self, i, p):
        s = self.square_avg.get(i)
        if s is None:
            s = self.square_avg[i] = self.xp.zeros_like(p)
        if not self.momentum:
            return (s,), False
        b = self.momentum_buffer.get(i)
        if b is None:
            b = self.momentum_buffer[i] = self.xp.zeros_like(p)
        return (s, b), False

    def fused(self, kernels, p, g, states, c, l2, parallel, first):
        if len(states) == 2:
            kernel = kernels.rmsprop_momentum_parallel if parallel else kernels.rmsprop_momentum
        else:
            kernel = kernels.rmsprop_parallel if parallel else kernels.rmsprop
        kernel(p, g, *states, c, l2)
