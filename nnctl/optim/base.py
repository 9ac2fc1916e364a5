"""Optimizers update parameter arrays in place with the backend's array module.

They run outside the graph: the compiled plan returns gradients, the optimizer applies them.
Gradients are only read, never written (a plan may return read-only broadcast views).
"""

from __future__ import annotations


class Optimizer:
    def __init__(self, xp, lr: float, weight_decay: float = 0.0):
        self.xp, self.lr, self.weight_decay = xp, lr, weight_decay
        self.steps = 0

    def step(self, params: list, grads: list) -> None:
        self.steps += 1
        for i, (p, g) in enumerate(zip(params, grads)):
            if self.weight_decay:
                g = g + self.weight_decay * p  # L2 penalty (1/2) wd |p|^2 folded into the gradient
            self.update(i, p, g)

    def update(self, i: int, p, g) -> None:
        raise NotImplementedError
