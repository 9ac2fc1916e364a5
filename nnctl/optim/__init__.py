"""Optimizers, made from the config's optimizer spec."""

from __future__ import annotations

from nnctl.optim.adam import Adam
from nnctl.optim.base import Optimizer
from nnctl.optim.sgd import SGD


def make_optimizer(spec, xp) -> Optimizer:
    """The optimizer an SGDSpec or AdamSpec describes."""
    if spec.name == "sgd":
        return SGD(xp, spec.lr, spec.momentum, spec.nesterov, spec.weight_decay)
    if spec.name == "adam":
        return Adam(xp, spec.lr, spec.beta1, spec.beta2, spec.eps, spec.weight_decay)
    raise ValueError(f"unknown optimizer {spec.name!r}")


__all__ = ["SGD", "Adam", "Optimizer", "make_optimizer"]
