"""Hyperparameter search: `nnctl tune` runs trials of one config with Optuna.

Each trial is the config with its sampled values applied exactly as `--set KEY=VALUE` would
apply them, trained into an ordinary run folder (trial-NNN under the search's folder). A trial
scores the best epoch of the tuned metric; Optuna's TPE sampler (seeded from the config's
seed) proposes the next values, and its median pruner ends a trial whose per-epoch metric
falls below the median of the earlier trials at the same epoch. The search's folder ends with
trials.csv (every trial) and best.yaml (the best trial's resolved config, ready to train).

Optuna is an optional extra (`pip install 'nnctl[tune]'`), imported only here.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nnctl.backend import Backend
from nnctl.config import TRAIN_METRICS, Config, load_config, load_yaml_text
from nnctl.config.tune_specs import Distribution, TuneSpec, distribution
from nnctl.config.validate import Context, Invalid
from nnctl.errors import ConfigError, TrainingError, UsageError
from nnctl.train import Trainer
from nnctl.train.events import TrainerEvents
from nnctl.train.run_dir import RunDir, WriteError, check_writable_folder, write_json
from nnctl.train.tensorboard_log import with_tensorboard
from nnctl.train.trainer import MAXIMISED, Interrupted

INSTALL = "pip install 'nnctl[tune]'"
SEARCH_FILE = "search.json"  # marks a search's folder: it holds runs (trial-NNN), is none
# `--space optimizer.lr=log_uniform(1e-4, 1e-1)`: a distribution written as a call
SPACE_OPTION = re.compile(r"^\s*([^=\s]+)\s*=\s*([a-z_]+)\s*\((.*)\)\s*$")


@dataclass
class TrialResult:
    """One trial as the table and trials.csv show it."""

    number: int                  # 1-based, as in the folder name trial-NNN
    params: dict                 # key path -> the value applied
    state: str = "running"       # complete, pruned or failed
    value: float | None = None   # the metric at the trial's best epoch
    best_epoch: int | None = None
    epochs: int = 0              # epochs trained
    seconds: float = 0.0
    run_dir: str = ""
    error: str = ""


@dataclass(frozen=True)
class Target:
    """What the search optimises: a per-epoch metric and its direction."""

    metric: str
    direction: str  # maximize or minimize

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "maximize" else a < b


def require_optuna() -> None:
    if importlib.util.find_spec("optuna") is None:
        raise UsageError(f"nnctl tune needs Optuna: {INSTALL}")


# ---- what to search ---------------------------------------------------------------------------

def parse_space_option(text: str) -> tuple[str, Distribution]:
    """`KEY=KIND(ARGS)` from the command line, e.g. `optimizer.lr=log_uniform(1e-4, 1e-1)` or
    `model.layers.0.dense.units=choice(16, 32, 64)`; arguments are read as YAML scalars."""
    match = SPACE_OPTION.match(text)
    if match is None:
        raise UsageError(f"--space {text}: expected KEY=KIND(ARGS), e.g. "
                         "optimizer.lr=log_uniform(1e-4, 1e-1) or "
                         "train.batch_size=choice(16, 32, 64)")
    key, kind, args = match.groups()
    try:
        values = load_yaml_text(f"value: [{args}]", file=f"--space {text}").data["value"]
        return key, distribution({kind: values}, ("space", key), Context(None))
    except (ConfigError, Invalid) as err:
        message = err.message if isinstance(err, ConfigError) else str(err)
        raise UsageError(f"--space {text}: {message}") from None


def search_space(config: Config, options: list[str]) -> tuple[dict[str, Distribution], dict]:
    """The distributions by key path: the config's tune.space, then --space (which replaces a
    key the config names), and where each came from (for messages)."""
    spec = config.spec.tune or TuneSpec()
    space = {key: distribution(body, ("tune", "space", key), Context(None))
             for key, body in spec.space.items()}
    origin = {key: ("config", key) for key in space}
    for text in options:
        key, dist = parse_space_option(text)
        space[key], origin[key] = dist, ("option", text)
    if not space:
        raise UsageError(f"{config.path}: nothing to search: add a tune.space section (e.g. "
                         "tune: {space: {optimizer.lr: {log_uniform: [1e-4, 1e-1]}}}) or "
                         "--space KEY=KIND(ARGS)")
    return space, origin


def target(config: Config) -> Target:
    """tune.metric (default train.monitor) and its direction (default: from its name), checked
    against the metrics the run reports before any trial runs."""
    spec = config.spec.tune or TuneSpec()
    metric = spec.metric or config.spec.train.monitor
    known = reported_metrics(config)
    if metric not in known:
        raise config.error(("tune", "metric"), f"'{metric}' is not a reported metric; expected "
                                               f"one of: {', '.join(known)}")
    direction = spec.direction or \
        ("maximize" if metric.partition("_")[2] in MAXIMISED else "minimize")
    return Target(metric, direction)


def reported_metrics(config: Config) -> list[str]:
    """The per-epoch metrics of a run of this config (the keys of metrics.jsonl, less lr)."""
    spec = config.spec
    known = ["train_loss"] + [f"train_{m}" for m in spec.metrics if m in TRAIN_METRICS]
    if spec.data.split.val > 0:
        known += ["val_loss"] + [f"val_{m}" for m in spec.metrics]
    return known


def corners(dist: Distribution) -> list:
    """The values at the edges of a distribution, and a float between them for a float range:
    checking them finds a key the config cannot take (a list item that is not there, units of
    0.5, a float range over an integer key) before any trial runs."""
    if dist.kind == "choice":
        return list(dist.choices)
    if dist.kind == "uniform":
        return [dist.low, (dist.low + dist.high) / 2, dist.high]
    if dist.kind == "log_uniform":
        return [dist.low, math.sqrt(dist.low * dist.high), dist.high]
    return [dist.low, dist.high]


def set_text(key: str, value) -> str:
    """A trial's value as the --set text that applies it."""
    return f"{key}={'true' if value is True else 'false' if value is False else value}"


def check_space(path: Path, overrides: list[str], base: Config, space: dict,
                origin: dict) -> None:
    """Load the config with each edge of each distribution applied, so that a key --set cannot
    reach, or a value the key refuses, is one clear line now rather than a failed trial."""
    for key, dist in space.items():
        for value in corners(dist):
            try:
                load_config(path, [*overrides, set_text(key, value)])
            except ConfigError as err:
                where, name = origin[key]
                detail = f"{err.key_path}: {err.message}" if err.key_path else err.message
                message = f"{dist.describe()} can draw {value}, which the config refuses: " \
                    + detail
                if where == "option":
                    raise UsageError(f"--space {name}: {message}") from None
                raise base.error(("tune", "space", key), message) from None


# ---- running trials -----------------------------------------------------------------------------

class Pruned(Exception):
    """The pruner ended this trial (it finished its last epoch cleanly)."""


class TrialEvents(TrainerEvents):
    """Reports each epoch's metric to Optuna and, when the pruner says so, ends the trial after
    this epoch: the trainer's epoch budget is cut to the epochs done, so the run folder ends as
    any finished run does (weights, summary), and the search records the trial as pruned."""

    def __init__(self, trial, trainer: Trainer, goal: Target):
        self.trial, self.trainer, self.goal = trial, trainer, goal
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.pruned_at: int | None = None

    def on_epoch_end(self, record: dict) -> None:
        value, epoch = float(record[self.goal.metric]), record["epoch"]
        if math.isfinite(value) and (self.best is None or self.goal.better(value, self.best)):
            self.best, self.best_epoch = value, epoch
        self.trial.report(value, epoch)
        if self.pruned_at is None and epoch < self.trainer.epochs and self.trial.should_prune():
            self.pruned_at = epoch
            self.trainer.epochs = epoch  # the loop ends after this epoch, as at its last


class Search:
    """One search: the config, its space and target, and the trials run so far."""

    def __init__(self, path: Path, overrides: list[str], space_options: list[str], out: Path,
                 backend: Backend, trials: int | None = None, timeout: float | None = None,
                 on_trial: Callable[[TrialResult], None] | None = None):
        require_optuna()
        self.path, self.overrides = Path(path), list(overrides)
        self.base = load_config(path, overrides)
        self.space, origin = search_space(self.base, space_options)
        self.goal = target(self.base)
        check_space(self.path, self.overrides, self.base, self.space, origin)
        spec = self.base.spec.tune or TuneSpec()
        self.pruning = spec.pruner
        self.trials = trials or spec.trials
        self.timeout = timeout
        self.backend = backend
        self.on_trial = on_trial or (lambda result: None)
        check_writable_folder(out, "--out")
        self.folder = RunDir.create(out, f"{self.base.name}-tune").path
        self.results: list[TrialResult] = []
        self.write_search()

    def run(self) -> list[TrialResult]:
        """Run the trials (all, or as many as start before the timeout); the results, best
        first. trials.csv and best.yaml are written even when the search is interrupted."""
        import optuna
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # the CLI reports each trial
        # TPE needs a few random trials to start from; a third of a short search
        sampler = optuna.samplers.TPESampler(seed=self.base.spec.seed,
                                             n_startup_trials=max(2, min(10, self.trials // 3)))
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=self.pruning.startup_trials,
            n_warmup_steps=self.pruning.warmup_epochs) if self.pruning.enabled \
            else optuna.pruners.NopPruner()
        study = optuna.create_study(direction=self.goal.direction, sampler=sampler,
                                    pruner=pruner)
        try:
            study.optimize(self._objective, n_trials=self.trials, timeout=self.timeout,
                           catch=(TrainingError,))
        except Interrupted as err:
            done = sum(r.state in ("complete", "pruned") for r in self.results)
            raise Interrupted(f"search stopped in trial {len(self.results)} ({err}); the "
                              f"{done} finished trial(s) are in "
                              f"{self.folder / 'trials.csv'}") from None
        finally:
            self.write_results()
        return self.ranked()

    def _objective(self, trial) -> float:
        import optuna
        params = {key: suggest(trial, key, dist) for key, dist in self.space.items()}
        result = TrialResult(trial.number + 1, params)
        self.results.append(result)
        started = time.perf_counter()
        try:
            self._train(trial, result)
        except TrainingError as err:  # diverged: a poor corner of the space, not a bug
            result.state, result.error = "failed", str(err)
            raise
        finally:
            result.seconds = round(time.perf_counter() - started, 3)
            if result.state == "running":  # stopped by Ctrl-C or an error that ends the search
                result.state = "stopped"
            self.on_trial(result)
        if result.state == "pruned":
            raise optuna.TrialPruned()
        return result.value

    def _train(self, trial, result: TrialResult) -> None:
        config = load_config(self.path, [*self.overrides,
                                         *(set_text(k, v) for k, v in result.params.items())])
        trainer = Trainer(config, self.backend, None, out=self.folder)
        run = self.folder / f"trial-{result.number:03d}"
        try:
            run.mkdir()
        except OSError as err:
            raise WriteError(run, err) from None
        trainer.run = RunDir(run)  # the trial's folder, named by its number
        # an interrupted trial continues from its own resolved config, which has its values
        trainer.resume_command = "nnctl train"
        result.run_dir = str(run)
        listener = TrialEvents(trial, trainer, self.goal)
        trainer.events = with_tensorboard(config, listener)
        summary = trainer.fit()
        result.epochs = summary["epochs_completed"]
        result.value, result.best_epoch = listener.best, listener.best_epoch
        result.state = "pruned" if listener.pruned_at is not None else "complete"
        if result.value is None:  # every epoch's metric was NaN: nothing to rank it by
            raise TrainingError(f"{self.goal.metric} was never finite")
        run_dir = RunDir(run)
        summary = dict(summary, status="pruned") if result.state == "pruned" else summary
        summary.pop("plots", None)
        run_dir.write_json("summary.json", dict(summary, tune={
            "trial": result.number, "params": result.params, "metric": self.goal.metric,
            "value": result.value, "best_epoch": result.best_epoch, "state": result.state}))

    # ---- results --------------------------------------------------------------------------------
    def ranked(self) -> list[TrialResult]:
        """Complete trials best first, then pruned ones (by their best epoch), then failed."""
        order = {"complete": 0, "pruned": 1}
        sign = -1.0 if self.goal.direction == "maximize" else 1.0
        return sorted(self.results, key=lambda r: (
            order.get(r.state, 2), sign * r.value if r.value is not None else 0.0, r.number))

    def best(self) -> TrialResult | None:
        done = [r for r in self.ranked() if r.state == "complete"]
        return done[0] if done else None

    def write_results(self) -> None:
        keys = list(self.space)
        rows = [{"rank": rank, "trial": r.number, "state": r.state,
                 self.goal.metric: "" if r.value is None else r.value,
                 "best_epoch": r.best_epoch or "", "epochs": r.epochs, "seconds": r.seconds,
                 **{k: r.params.get(k, "") for k in keys}, "run_dir": r.run_dir,
                 "error": r.error}
                for rank, r in enumerate(self.ranked(), 1)]
        path = self.folder / "trials.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["trial"])
            writer.writeheader()
            writer.writerows(rows)
        best = self.best()
        if best is not None:
            resolved = (Path(best.run_dir) / "config.yaml").read_text(encoding="utf-8")
            settings = " ".join(f"--set {set_text(k, v)}" for k, v in best.params.items())
            header = (f"# best of nnctl tune {self.path}: trial {best.number}, "
                      f"{self.goal.metric} {best.value:.6g} at epoch {best.best_epoch}\n"
                      f"# its values: {settings}\n")
            (self.folder / "best.yaml").write_text(header + resolved, encoding="utf-8")
        self.write_search(best)

    def write_search(self, best: TrialResult | None = None) -> None:
        """search.json: what is searched and the best trial so far. Written as the search
        starts too, so that the folder is known for a search, not a run, while it runs."""
        write_json(self.folder / SEARCH_FILE, {
            "config": str(self.path), "overrides": self.overrides,
            "metric": self.goal.metric, "direction": self.goal.direction,
            "space": {k: dataclasses.asdict(d) for k, d in self.space.items()},
            "best_trial": best.number if best else None})


def suggest(trial, key: str, dist: Distribution):
    """One value of `dist` from Optuna's trial, under the key path's name."""
    if dist.kind == "choice":
        return trial.suggest_categorical(key, list(dist.choices))
    if dist.kind in ("int", "log_int"):
        return trial.suggest_int(key, int(dist.low), int(dist.high), step=dist.step or 1,
                                 log=dist.kind == "log_int")
    return trial.suggest_float(key, float(dist.low), float(dist.high),
                               log=dist.kind == "log_uniform")
