"""Optimizers, made from the config's optimizer spec; gradient clipping; lr schedules."""

from __future__ import annotations

from nnctl.optim.adagrad import Adagrad
from nnctl.optim.adam import Adam
from nnctl.optim.adamw import AdamW
from nnctl.optim.base import Optimizer
from nnctl.optim.clip import clip_grad_norm, clip_grad_value
from nnctl.optim.rmsprop import RMSprop
from nnctl.optim.schedules import make_schedule, with_warmup
from nnctl.optim.sgd import SGD

OPTIMIZER_NAMES = ("sgd", "adam", "adamw", "rmsprop", "adagrad")


def make_optimizer(spec, xp) -> Optimizer:
    """The optimizer an optimizer spec describes; `spec.name` picks it, and its other fields
    are named as the constructor's keywords."""
    name = spec.name
    if name == "sgd":
        return SGD(xp, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov,
                   weight_decay=spec.weight_decay)
    if name in ("adam", "adamw"):
        cls = Adam if name == "adam" else AdamW
        return cls(xp, lr=spec.lr, beta1=spec.beta1, beta2=spec.beta2, eps=spec.eps,
                   weight_decay=spec.weight_decay)
    if name == "rmsprop":
        return RMSprop(xp, lr=spec.lr, alpha=spec.alpha, eps=spec.eps, momentum=spec.momentum,
                       weight_decay=spec.weight_decay)
    if name == "adagrad":
        return Adagrad(xp, lr=spec.lr, eps=spec.eps, weight_decay=spec.weight_decay,
                       initial_accumulator_value=spec.initial_accumulator_value)
    raise ValueError(f"unknown optimizer {name!r} (expected one of {', '.join(OPTIMIZER_NAMES)})")


__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Optimizer", "OPTIMIZER_NAMES",
           "make_optimizer", "clip_grad_norm", "clip_grad_value", "make_schedule", "with_warmup"]
