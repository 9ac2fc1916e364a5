"""AdamW (Loshchilov and Hutter, 2019), as torch.optim.AdamW: decoupled weight decay
p <- p - lr wd p, then the Adam step on the unchanged gradient (no L2 term in g)."""

from __future__ import annotations

from nnctl.optim.adam import Adam


class AdamW(Adam):
    decoupled_weight_decay = True

    def __init__(self, xp, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(xp, lr, beta1, beta2, eps, weight_decay)
