"""Raw YAML data + marks -> typed specs, with every mistake reported as one line:

    configs/x.yaml:7: model.layers[1].dense.units: expected a positive integer, got -3

Specs are frozen dataclasses whose fields carry a `check` in their metadata (see `field`).
The validator walks data and specs together, collects every error with its key path, and
raises them all at once, so a user fixes a config in one round.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from pathlib import Path
from typing import Any, Callable

from nnctl.config.loader import LoadedYaml, format_path
from nnctl.errors import ConfigError, excerpt

REQUIRED = dataclasses.MISSING
# errors shown in full; beyond these a config with 60,000 unknown keys gets one summary line
MAX_REPORTED = 10


class Invalid(Exception):
    """A value failed its check; the validator adds file, line and key path."""


class Context:
    """Collects errors while validating one file."""

    def __init__(self, source: LoadedYaml, base_dir: Path = Path("."),
                 overrides: dict[tuple, str] | None = None):
        self.source, self.base_dir = source, base_dir
        self.overrides = overrides or {}  # key path -> the --set text that put it there
        self.errors: list[ConfigError] = []

    def error(self, path: tuple, message: str) -> None:
        self.errors.append(error_at(self.source, self.overrides, path, message))

    @property
    def reporting(self) -> bool:
        """Whether another error would still be shown in full (worth a costly hint)."""
        return len(self.errors) < MAX_REPORTED


def override_for(overrides: dict, path: tuple) -> str | None:
    """The `--set` text that put the value at `path` (or an ancestor of it) there."""
    for k in range(len(path), 0, -1):
        if path[:k] in overrides:
            return overrides[path[:k]]
    return None


def error_at(source: LoadedYaml, overrides: dict, path: tuple, message: str) -> ConfigError:
    """A ConfigError at `path`: blamed on the --set that set it, else on the file's line."""
    text = override_for(overrides, path)
    if text is not None:
        return ConfigError(message, file=f"--set {text}", key_path=format_path(path))
    return ConfigError(message, file=source.file, line=source.line_of(path),
                       key_path=format_path(path))


def reported(errors: list[ConfigError]) -> ConfigError:
    """The first error, carrying the next few as `others` and a count of the rest."""
    first = errors[0]
    first.others = errors[1:MAX_REPORTED]
    if len(errors) > MAX_REPORTED:
        first.others.append(ConfigError(f"... and {len(errors) - MAX_REPORTED:,} more errors"))
    return first


Check = Callable[[Any, tuple, Context], Any]


def field(check: Check, default=REQUIRED, doc: str = ""):
    """A spec field: `check(value, path, ctx)` parses the raw value or raises Invalid."""
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value),
                                 metadata={"check": check, "doc": doc})
    return dataclasses.field(default=default, metadata={"check": check, "doc": doc})


def got(value) -> str:
    """How a bad value is shown in a message: a long string only as a short excerpt."""
    if isinstance(value, str):
        return excerpt(value, 40)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null (nothing)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def suggest(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (expected one of: {', '.join(str(o) for o in options)})"


# ---- scalar checks -------------------------------------------------------------------------

# NOTE: sizes are capped so that a typo such as `units: 1000000000000` is a config error
# rather than a MemoryError deep inside NumPy
MAX_INT = 10**9


def integer(min: int | None = None, what: str | None = None, max: int = MAX_INT) -> Check:
    what = what or ("a positive integer" if min == 1 else
                    "a non-negative integer" if min == 0 else "an integer")

    def check(v, path, ctx):
        if isinstance(v, bool) or not isinstance(v, int) or (min is not None and v < min):
            raise Invalid(f"expected {what}, got {got(v)}")
        if abs(v) > max:
            raise Invalid(f"expected {what} of at most {max:,}, got {v:,}")
        return v
    return check


def number(low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False, what: str | None = None) -> Check:
    if what is None:
        lo = "" if low is None else ("> " if low_open else ">= ") + f"{low:g}"
        hi = "" if high is None else ("< " if high_open else "<= ") + f"{high:g}"
        what = "a number" + (f" {lo}" if lo else "") + (" and" if lo and hi else "") + \
            (f" {hi}" if hi else "")

    def check(v, path, ctx):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise Invalid(f"expected {what}, got {got(v)}")
        bad = (low is not None and (v <= low if low_open else v < low)) or \
              (high is not None and (v >= high if high_open else v > high))
        if bad or not math.isfinite(v):
            raise Invalid(f"expected {what}, got {got(v)}")
        return float(v)
    return check


def boolean(v, path, ctx):
    if not isinstance(v, bool):
        raise Invalid(f"expected true or false, got {got(v)}")
    return v


def string(v, path, ctx):
    if not isinstance(v, str) or not v:
        raise Invalid(f"expected a non-empty string, got {got(v)}")
    return v


def choice(*options: str) -> Check:
    def check(v, path, ctx):
        if v not in options:
            if isinstance(v, str):
                raise Invalid(f"unknown value {got(v)}{suggest(v, options)}")
            raise Invalid(f"expected one of: {', '.join(options)}; got {got(v)}")
        return v
    check.options = options
    return check


def optional(inner: Check) -> Check:
    def check(v, path, ctx):
        return None if v is None else inner(v, path, ctx)
    return check


def one_of(*checks: Check, what: str) -> Check:
    """The first check that accepts the value wins (e.g. an int index or a column name)."""
    def check(v, path, ctx):
        for c in checks:
            try:
                return c(v, path, ctx)
            except Invalid:
                pass
        raise Invalid(f"expected {what}, got {got(v)}")
    return check


def list_of(item: Check, min_len: int = 0, what: str = "a list") -> Check:
    def check(v, path, ctx):
        if not isinstance(v, list):
            raise Invalid(f"expected {what}, got {got(v)}")
        if len(v) < min_len:
            raise Invalid(f"expected {what} with at least {min_len} item(s), got {len(v)}")
        out = []
        for i, x in enumerate(v):
            try:
                out.append(item(x, path + (i,), ctx))
            except Invalid as err:
                ctx.error(path + (i,), str(err))
        return out
    return check


# ---- structured checks --------------------------------------------------------------------

def parse(cls, raw, path: tuple, ctx: Context, skip: tuple[str, ...] = ()):
    """Validate the mapping `raw` into the dataclass `cls`; None if it had errors.

    A class may define `shorthand`: the field that a bare scalar fills (`dropout: 0.2`), and
    `validate(self, path, ctx)` for checks across fields.
    """
    shorthand = getattr(cls, "shorthand", None)
    if shorthand and not isinstance(raw, dict):
        raw = {shorthand: raw}
    if not isinstance(raw, dict):
        ctx.error(path, f"expected a mapping, got {got(raw)}")
        return None
    specs = [f for f in dataclasses.fields(cls) if f.init and "check" in f.metadata]
    names = [f.name for f in specs]
    errors_before = len(ctx.errors)
    for key in raw:
        if key not in names and key not in skip:
            # difflib per key is what makes 60,000 unknown keys slow: hint only those shown
            ctx.error(path + (key,), "unknown key" + (suggest(key, names) if ctx.reporting
                                                      else ""))
    values = {}
    for f in specs:
        if f.name in raw:
            try:
                values[f.name] = f.metadata["check"](raw[f.name], path + (f.name,), ctx)
            except Invalid as err:
                ctx.error(path + (f.name,), str(err))
        elif f.default is REQUIRED and f.default_factory is REQUIRED:
            kind = "section" if path == () else "key"
            ctx.error(path, f"missing required {kind} '{f.name}'")
    if len(ctx.errors) > errors_before:
        return None
    spec = cls(**values)
    if hasattr(spec, "validate"):
        spec.validate(path, ctx)
    return spec


def nested(cls) -> Check:
    def check(v, path, ctx):
        return parse(cls, v, path, ctx)
    return check


def tagged(tag: str, classes: dict[str, type], what: str, default: str | None = None) -> Check:
    """A mapping whose `tag` key picks the spec class (`optimizer: {name: adam, lr: ...}`);
    a bare string is the tag alone (`optimizer: adam`)."""
    def check(v, path, ctx):
        if isinstance(v, str):
            v = {tag: v}
        if not isinstance(v, dict):
            raise Invalid(f"expected a mapping with '{tag}', got {got(v)}")
        name = v.get(tag, default)
        if name is None:
            raise Invalid(f"missing required key '{tag}' (one of: {', '.join(classes)})")
        if not isinstance(name, str):
            ctx.error(path + (tag,), f"expected the {what}'s name (one of: "
                                     f"{', '.join(classes)}), got {got(name)}")
            return None
        if name not in classes:
            ctx.error(path + (tag,), f"unknown {what} {got(name)}{suggest(name, classes)}")
            return None
        return parse(classes[name], v, path, ctx)
    return check


def single_key(classes: dict[str, type], what: str) -> Check:
    """A one-key mapping whose key picks the spec class (`- dense: {units: 64}`)."""
    def check(v, path, ctx):
        if not isinstance(v, dict) or len(v) != 1:
            raise Invalid(f"expected a {what} written as a one-key mapping such as "
                          f"'{next(iter(classes))}: {{...}}', got {got(v)}")
        (kind, body), = v.items()
        if kind not in classes:
            ctx.error(path + (kind,), f"unknown {what} type {got(kind)}{suggest(kind, classes)}")
            return None
        return parse(classes[kind], {} if body is None else body, path + (kind,), ctx)
    return check


def to_dict(spec) -> Any:
    """A spec back to plain data, as the resolved config of a run (defaults filled in)."""
    if dataclasses.is_dataclass(spec):
        body = {f.name: to_dict(getattr(spec, f.name)) for f in dataclasses.fields(spec)
                if "check" in f.metadata}
        kind = getattr(type(spec), "kind", None)
        return {kind: body} if kind else body
    if isinstance(spec, (list, tuple)):
        return [to_dict(x) for x in spec]
    return spec
