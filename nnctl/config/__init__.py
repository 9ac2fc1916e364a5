"""Configs: safe YAML loading, validation into typed specs, and errors with file:line."""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from nnctl.config.loader import LoadedYaml, format_path, load_yaml, load_yaml_text
from nnctl.config.schema import DEFAULT_METRICS, RunSpec
from nnctl.config.validate import Context, error_at, override_for, parse, reported, to_dict
from nnctl.errors import ConfigError, excerpt


@dataclass(frozen=True)
class Config:
    """A validated run config and where it came from, for messages that point into the file."""

    spec: RunSpec
    source: LoadedYaml
    path: Path
    overrides: dict = dataclasses.field(default_factory=dict, compare=False)  # path -> --set

    @property
    def name(self) -> str:
        return self.path.stem

    def error(self, key_path: tuple, message: str) -> ConfigError:
        """A ConfigError pointing at `key_path` in this file, or at the --set that set it (for
        mistakes found after validation, such as a shape mismatch found building the model)."""
        key_path = tuple(key_path)
        if override_for(self.overrides, key_path) is None:
            if key_path == ("data",):  # a data error is about the data file, maybe --set's
                for key in DATA_FILE_KEYS:
                    if ("data", key) in self.overrides:
                        return ConfigError(message, key_path="data",
                                           file=f"--set {self.overrides[('data', key)]}")
            inside = [text for p, text in self.overrides.items() if p[:len(key_path)] == key_path]
            if inside:  # the file's line, and the --set that changed something in there
                message += f" (with {', '.join(f'--set {t}' for t in inside[:3])})"
        return error_at(self.source, self.overrides, key_path, message)

    def resolved(self) -> dict:
        return to_dict(self.spec)


TRAIN_METRICS = ("accuracy", "bits_per_char", "mae", "rmse")  # also reported for train_
DATA_FILE_KEYS = ("path", "images", "labels")


def _resolve_monitor(spec: RunSpec, source: LoadedYaml, overridden: dict) -> RunSpec:
    """train.monitor: default val_loss (train_loss without a validation split); it must name
    a metric the run reports, which is known now, before anything trains."""
    has_val = spec.data.split.val > 0
    monitor = spec.train.monitor or ("val_loss" if has_val else "train_loss")
    known = ["train_loss"] + [f"train_{m}" for m in spec.metrics if m in TRAIN_METRICS]
    if has_val:
        known += ["val_loss"] + [f"val_{m}" for m in spec.metrics]
    if monitor not in known:
        ctx = Context(source, overrides=overridden)
        why = "" if has_val or not monitor.startswith("val_") else \
            " (data.split.val is 0: there is no validation split)"
        ctx.error(("train", "monitor"), f"'{monitor}' is not a reported metric{why}; "
                                        f"expected one of: {', '.join(known)}")
        raise ctx.errors[0]
    return dataclasses.replace(spec, train=dataclasses.replace(spec.train, monitor=monitor))


def load_config(path: str | os.PathLike, overrides: list[str] | tuple = ()) -> Config:
    """Read and validate a run config, with `--set key.path=value` overrides applied.
    Raises ConfigError listing every mistake."""
    source = load_yaml(path)
    return config_from(source, Path(path), overrides)


def apply_overrides(source: LoadedYaml, overrides) -> tuple[LoadedYaml, dict]:
    """The YAML data with each `key.path=value` set (values parsed as YAML scalars or flow
    collections, with the same safe loader), and the key paths they set."""
    data, done = copy.deepcopy(source.data), {}
    for text in overrides:
        key, sep, raw = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError("expected KEY=VALUE, e.g. optimizer.lr=0.01", file=f"--set {text}")
        try:
            value = load_yaml_text(f"value: {raw}", file=f"--set {text}").data["value"]
        except ConfigError as err:
            raise ConfigError(f"cannot read the value {excerpt(raw, 40)} ({err.message})",
                              file=f"--set {text}") from None
        path = tuple(int(p) if p.lstrip("-").isdigit() else p for p in key.strip().split("."))
        node = data
        for depth, part in enumerate(path[:-1]):
            if isinstance(node, list) and not _has(node, part):
                raise ConfigError(f"{format_path(path[:depth + 1])}: no such list item (the "
                                  f"list has {len(node)})", file=f"--set {text}")
            child = node[part] if _has(node, part) else None
            if isinstance(child, str) and depth == 0 and part in TAGS:
                child = node[part] = {TAGS[part]: child}  # `optimizer: adam` -> {name: adam}
            if not isinstance(child, (dict, list)):
                if not isinstance(node, dict):
                    raise ConfigError(f"{format_path(path[:depth + 1])} is not a mapping or "
                                      "list here", file=f"--set {text}")
                child = node[part] = {}
            node = child
        if isinstance(node, list) and not _has(node, path[-1]):
            raise ConfigError(f"{format_path(path)}: no such list item (the list has "
                              f"{len(node)})", file=f"--set {text}")
        node[path[-1]] = value
        done[path] = text
    return LoadedYaml(data, source.marks, source.file), done


TAGS = {"data": "dataset", "optimizer": "name", "loss": "name"}  # sections a string can name


def _has(node, key) -> bool:
    if isinstance(node, dict):
        return key in node
    return isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node)


def config_from(source: LoadedYaml, path: Path, overrides=()) -> Config:
    base = path.resolve().parent
    source, overridden = apply_overrides(source, overrides)
    ctx = Context(source, base, overridden)
    spec = parse(RunSpec, source.data, (), ctx)
    if ctx.errors:
        raise reported(ctx.errors)
    if spec.metrics is None:
        spec = dataclasses.replace(spec, metrics=list(DEFAULT_METRICS[spec.loss.name]))
    spec = _resolve_monitor(spec, source, overridden)
    files = {key: str((base / value).resolve()) for key in DATA_FILE_KEYS
             if (value := getattr(spec.data, key, None)) is not None}
    if files:  # relative data paths are relative to the config file
        spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, **files))
    return Config(spec, source, path, overridden)


__all__ = ["Config", "ConfigError", "LoadedYaml", "config_from", "load_config", "load_yaml",
           "load_yaml_text"]
