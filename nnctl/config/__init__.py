"""Configs: safe YAML loading, validation into typed specs, and errors with file:line."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from nnctl.config.loader import LoadedYaml, format_path, load_yaml, load_yaml_text
from nnctl.config.schema import DEFAULT_METRICS, RunSpec
from nnctl.config.validate import Context, parse, to_dict
from nnctl.errors import ConfigError


@dataclass(frozen=True)
class Config:
    """A validated run config and where it came from, for messages that point into the file."""

    spec: RunSpec
    source: LoadedYaml
    path: Path

    @property
    def name(self) -> str:
        return self.path.stem

    def error(self, key_path: tuple, message: str) -> ConfigError:
        """A ConfigError pointing at `key_path` in this file (for mistakes found after
        validation, such as a shape mismatch discovered while building the model)."""
        return ConfigError(message, file=self.source.file, line=self.source.line_of(key_path),
                           key_path=format_path(key_path))

    def resolved(self) -> dict:
        return to_dict(self.spec)


def load_config(path: str | os.PathLike) -> Config:
    """Read and validate a run config. Raises ConfigError listing every mistake."""
    source = load_yaml(path)
    return config_from(source, Path(path))


def config_from(source: LoadedYaml, path: Path) -> Config:
    base = path.resolve().parent
    ctx = Context(source, base)
    spec = parse(RunSpec, source.data, (), ctx)
    if ctx.errors:
        first = ctx.errors[0]
        first.others = ctx.errors[1:]
        raise first
    if spec.metrics is None:
        spec = dataclasses.replace(spec, metrics=list(DEFAULT_METRICS[spec.loss.name]))
    data_path = getattr(spec.data, "path", None)
    if data_path is not None:  # relative data paths are relative to the config file
        spec = dataclasses.replace(spec, data=dataclasses.replace(
            spec.data, path=str((base / data_path).resolve())))
    return Config(spec, source, path)


__all__ = ["Config", "ConfigError", "LoadedYaml", "config_from", "load_config", "load_yaml",
           "load_yaml_text"]
