"""SGD with (Nesterov) momentum, in PyTorch's formulation:
v <- mu v + g;  p <- p - lr v  (Nesterov: p <- p - lr (g + mu v))."""

from __future__ import annotations

from nnctl.optim.base import Optimizer


class SGD(Optimizer):
    slots = ("velocity",)
    velocity: dict[int, object]  # momentum buffer, per parameter (absent without momentum)

    def __init__(self, xp, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(xp, lr, weight_decay)
        self.momentum, self.nesterov = momentum, nesterov

    def update(self, i, p, g):
        if self.momentum:
            v = self.velocity.get(i)
            if v is None:
                v = self.velocity[i] = self.xp.array(g, copy=True)
            else:
                v *= self.momentum
                v += g
            g = g + self.momentum * v if self.nesterov else v
        p -= self.lr * g

    def update_graph(self, p, g, state, step):
        p, g = self.decay_graph(p, g)
        if not self.momentum:
            return p - self.lr * g, {}
        # the velocity starts at zero, so the first step's mu v + g is `update`'s copy of g
        v = state["velocity"] * self.momentum + g
        d = g + self.momentum * v if self.nesterov else v
        return p - self.lr * d, {"velocity": v}

    def graph_slots(self):
        return self.slots if self.momentum else ()

    def coefficients(self):
        return (self.lr, self.momentum)

    def fused_state(self, i, p):
        if not self.momentum:
            return (), False
        v = self.velocity.get(i)
        if v is None:  # set to the gradient by the first kernel call, as `update` copies it
            v = self.velocity[i] = self.xp.zeros_like(p)
            return (v,), True
        return (v,), False

    def fused(self, kernels, p, g, states, c, l2, parallel, first):
        if not states:
            (kernels.sgd_parallel if parallel else kernels.sgd)(p, g, c, l2)
        elif parallel:
            kernels.sgd_momentum_parallel(p, g, states[0], c, l2, self.nesterov, first)
        else:
            kernels.sgd_momentum(p, g, states[0], c, l2, self.nesterov, first)
