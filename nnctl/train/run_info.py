"""What a run folder says about its run, read without touching it: the config, the status
(completed, early stopped, interrupted, failed, or running now), the epochs done, the best
monitored value and the test metrics. `nnctl runs` lists and compares runs from these.

Everything here is best effort: a run folder is a record, and a missing or torn file (a run
killed mid-write, one still running) leaves a field empty instead of failing the listing.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nnctl.train.run_dir import (LOCK_NAME, STAMP, RunDir, parse_run_name, read_best,
                                 read_json)


@dataclass
class RunInfo:
    path: Path
    config_name: str
    status: str  # completed, early_stopped, interrupted, failed, running
    epochs_done: int
    epochs: int | None  # train.epochs of the resolved config
    monitor: str | None
    best: float | None  # the best value of `monitor` so far
    best_epoch: int | None
    weights_epoch: int | None  # the epoch weights.npz is from (finished runs)
    test: dict[str, float] = field(default_factory=dict)  # test_<metric> -> value
    started: str = ""  # "YYYY-MM-DD HH:MM:SS", from the folder's name
    config: dict = field(default_factory=dict)  # the resolved config.yaml
    error: str = ""


def is_run_folder(path: Path) -> bool:
    """A folder nnctl train made: it holds the resolved config.yaml."""
    return path.is_dir() and (path / "config.yaml").is_file()


def read_run(path: Path) -> RunInfo:
    """The run in folder `path`, as far as its files tell."""
    path = Path(path)
    parsed = parse_run_name(path.name)
    summary = read_json(path / "summary.json") or {}
    config = _read_config(path / "config.yaml")
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    records = RunDir(path).read_metrics()
    monitor = train.get("monitor") if isinstance(train.get("monitor"), str) else None
    best, best_epoch = _best(path, monitor)
    epochs = train.get("epochs")
    return RunInfo(
        path=path,
        config_name=str(summary.get("config") or (parsed[0] if parsed else path.name)),
        status=run_status(path, summary, len(records)),
        epochs_done=len(records),
        epochs=epochs if isinstance(epochs, int) else None,
        monitor=monitor, best=best, best_epoch=best_epoch,
        weights_epoch=summary.get("weights_epoch"),
        test={k: v for k, v in summary.items()
              if k.startswith("test_") and isinstance(v, (int, float))},
        started=_started(parsed[1]) if parsed else "",
        config=config,
        error=str(summary.get("error") or ""))


def run_status(path: Path, summary: dict, epochs_logged: int) -> str:
    """running while a live process holds the folder's lock; else what summary.json says;
    interrupted with no summary.json (the process died before it could write one) or with
    one older than the log (a resume of the run died: the summary is of its earlier part)."""
    if _locked_by_live_process(path / LOCK_NAME):
        return "running"
    status, done = summary.get("status"), summary.get("epochs_completed")
    if not isinstance(status, str) or isinstance(done, int) and epochs_logged > done:
        return "interrupted"
    return status


def _locked_by_live_process(lock: Path) -> bool:
    """RunLock's file names its holder's pid and is removed on release; one left behind by a
    killed process names a pid that is gone (checked without taking the lock, so a listing
    never gets in a trainer's way)."""
    try:
        pid = int(lock.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, owned by someone else
        return True
    return True


def _read_config(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _best(path: Path, monitor: str | None) -> tuple:
    """(best value, its epoch) from best.json, which every improving epoch rewrites."""
    info = read_best(path) or {}
    value, epoch = info.get(monitor), info.get("epoch")
    if isinstance(value, (int, float)) and isinstance(epoch, int):
        return value, epoch
    return None, None


def _started(stamp: str) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.strptime(stamp, STAMP))
    except ValueError:
        return stamp


def flatten(config, prefix: str = "") -> dict[str, object]:
    """A nested config as {"optimizer.lr": 0.01, "model.layers.0.dense.units": 64, ...}."""
    if isinstance(config, dict):
        items = config.items()
    elif isinstance(config, list):
        items = enumerate(config)
    else:
        return {prefix: config}
    out: dict[str, object] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    if not out and prefix:  # an empty section or list is a value too
        out[prefix] = config
    return out


MISSING = object()


def config_differences(runs: list[RunInfo]) -> list[tuple[str, list]]:
    """The config keys whose values are not the same in every run, in the first run's key
    order (keys only some runs have: MISSING for the others)."""
    flat = [flatten(r.config) for r in runs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    out = []
    for key in keys:
        values = [f.get(key, MISSING) for f in flat]
        if any(_json(v) != _json(values[0]) for v in values[1:]):
            out.append((key, values))
    return out


def _json(value) -> str:
    return "\0missing" if value is MISSING else json.dumps(value, sort_keys=True, default=str)
