"""The `tune:` section: what a hyperparameter search optimises and over which keys.

A space key is any key path `--set` can reach (`optimizer.lr`, `model.layers.0.dense.units`);
each trial's values are applied exactly as `--set KEY=VALUE` would apply them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nnctl.config.validate import (Context, Invalid, boolean, choice, field, got, integer,
                                   nested, optional, string)

# a distribution is a one-key mapping: {log_uniform: [low, high]}
DISTRIBUTIONS = ("uniform", "log_uniform", "int", "log_int", "choice")


@dataclass(frozen=True)
class Distribution:
    """One search dimension: `kind` (see DISTRIBUTIONS) and its arguments."""

    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: int | None = None          # int ranges only: 16..128 in steps of 16
    choices: tuple = ()

    def describe(self) -> str:
        if self.kind == "choice":
            return f"choice({', '.join(str(c) for c in self.choices)})"
        step = f", step {self.step}" if self.step else ""
        return f"{self.kind}({self.low:g}, {self.high:g}{step})"


def distribution(v, path, ctx) -> Distribution:
    """{uniform: [lo, hi]}, {log_uniform: [lo, hi]}, {int: [lo, hi]} or {int: [lo, hi, step]},
    {log_int: [lo, hi]}, {choice: [a, b, ...]}."""
    if not isinstance(v, dict) or len(v) != 1:
        raise Invalid("expected a one-key mapping such as {log_uniform: [1e-4, 1e-1]}, "
                      f"{{int: [16, 128]}} or {{choice: [16, 32, 64]}}, got {got(v)}")
    (kind, args), = v.items()
    if kind not in DISTRIBUTIONS:
        choice(*DISTRIBUTIONS)(kind, path, ctx)  # raises with the suggestion
    if not isinstance(args, list) or not args:
        raise Invalid(f"{kind}: expected a list, e.g. {kind}: "
                      f"{'[16, 32, 64]' if kind == 'choice' else '[low, high]'}; got {got(args)}")
    if kind == "choice":
        if any(isinstance(a, (dict, list)) for a in args):
            raise Invalid("choice: expected a list of scalars (numbers, strings, true/false)")
        return Distribution("choice", choices=tuple(args))
    integral = kind in ("int", "log_int")
    sizes = (2, 3) if kind == "int" else (2,)
    numbers = all(not isinstance(a, bool) and isinstance(a, int if integral else (int, float))
                  for a in args)
    if len(args) not in sizes or not numbers:
        form = "[low, high] or [low, high, step] of integers" if kind == "int" else \
            "[low, high] of integers" if integral else "[low, high] of numbers"
        raise Invalid(f"{kind}: expected {form}, got {args}")
    low, high = args[0], args[1]
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise Invalid(f"{kind}: expected low < high, got [{low}, {high}]")
    if kind.startswith("log_") and low <= 0:
        raise Invalid(f"{kind}: expected low > 0 (a log scale), got {low}")
    step = args[2] if len(args) == 3 else None
    if step is not None and step < 1:
        raise Invalid(f"int: expected a step >= 1, got {step}")
    return Distribution(kind, low, high, step)


def search_space(v, path, ctx) -> dict:
    """A mapping from `--set` key paths to distributions, each checked and kept as written
    (plain data, so the resolved config saves it; `distribution` reads one)."""
    if not isinstance(v, dict) or not v:
        raise Invalid("expected a mapping from config keys to distributions, e.g. "
                      "{optimizer.lr: {log_uniform: [1e-4, 1e-1]}}, got " + got(v))
    out = {}
    for key, body in v.items():
        if not isinstance(key, str) or not key.strip(".") or "=" in key:
            ctx.error(path + (key,), "expected a config key path such as optimizer.lr")
            continue
        try:
            distribution(body, path + (key,), ctx)
            out[key] = body
        except Invalid as err:
            ctx.error(path + (key,), str(err))
    return out


@dataclass(frozen=True)
class PrunerSpec:
    """Optuna's MedianPruner: stop a trial whose metric at an epoch is worse than the median
    of the earlier trials at that epoch."""

    startup_trials: int = field(integer(min=0), 3, "trials that always run to the end before "
                                "any is pruned (the median needs a few)")
    warmup_epochs: int = field(integer(min=0), 5, "epochs a trial runs before it can be "
                               "pruned (early epochs say little)")
    enabled: bool = field(boolean, True, "false: every trial runs to the end")


@dataclass(frozen=True)
class TuneSpec:
    metric: str | None = field(optional(string), None, "what the search optimises, a "
                               "per-epoch metric such as val_accuracy (default: train.monitor); "
                               "a trial scores its best epoch")
    direction: str | None = field(optional(choice("maximize", "minimize")), None,
                                  "maximize or minimize (default: from the metric; losses and "
                                  "errors are minimised)")
    trials: int = field(integer(min=1), 20, "how many trials (--trials overrides)")
    space: dict = field(search_space, {}, "config key path (as --set writes it) -> distribution: "
                        "{uniform|log_uniform: [low, high]}, {int: [low, high(, step)]}, "
                        "{log_int: [low, high]} or {choice: [...]}")
    pruner: PrunerSpec = field(nested(PrunerSpec), PrunerSpec(),
                               "pruning of poor trials from their per-epoch metric")

    def validate(self, path, ctx: Context) -> None:
        if self.metric is not None and not (self.metric.startswith(("train_", "val_"))):
            ctx.error(path + ("metric",), f"expected a per-epoch metric such as val_loss or "
                                          f"val_accuracy, got {got(self.metric)}")

