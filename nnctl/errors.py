"""The error types nnctl raises. Library code raises these; only the CLI turns them into exit codes.

Every error renders as one line that says where (file:line, key path, layer) and what was
expected, so a user never has to read a traceback to fix a config or a data file.
"""

from __future__ import annotations

import re

# C0 and C1 control characters (a line break, ESC of a terminal escape, DEL): never printed raw
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def one_line(text: str) -> str:
    """`text` with line breaks and other control characters escaped (\\n, \\x1b), so an
    echoed value can neither split the one-line message nor drive the terminal."""
    escapes = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return _CONTROL.sub(lambda m: escapes.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


def excerpt(value, limit: int = 24) -> str:
    """A short quoted excerpt of file contents: enough to find the mistake, never a whole
    row of someone's data (a password hash, say)."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return repr(text)


def capped(items, limit: int = 8) -> str:
    """`a, b, c, ... and 59,990 more`: a list in a message stays short."""
    items = list(items)
    shown = ", ".join(str(x) for x in items[:limit])
    more = len(items) - limit
    return f"{shown}, ... and {more:,} more" if more > 0 else shown


class NnctlError(Exception):
    """Base class. `exit_code` is what the CLI exits with when this error reaches it."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return one_line(self.message)


class ConfigError(NnctlError):
    """A config mistake: `file:line: key.path: message`."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key_path: str | None = None):
        self.file, self.line, self.key_path = file, line, key_path
        super().__init__(message)

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        key = f"{self.key_path}: " if self.key_path else ""
        return one_line(f"{where}{key}{self.message}")


class DataError(NnctlError):
    """A data file that is missing, unreadable, or does not fit the model."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class ShapeError(NnctlError):
    """A shape or dtype mismatch found while building the graph, naming the op and layer."""

    exit_code = 2

    def __init__(self, message: str, *, op: str | None = None, scope: str | None = None):
        self.op, self.scope, self.detail = op, scope, message
        super().__init__(message)

    def __str__(self) -> str:
        parts = []
        if self.scope:
            parts.append(f"layer {self.scope}")
        if self.op:
            parts.append(f"op {self.op}")
        prefix = (" / ".join(parts) + ": ") if parts else ""
        return one_line(prefix + self.detail)


class UsageError(NnctlError):
    """A command-line option with a value the command cannot use."""

    exit_code = 2


class BackendError(NnctlError):
    """The requested device cannot be used (no CuPy, no GPU)."""

    exit_code = 2


class TrainingError(NnctlError):
    """Training cannot go on, e.g. the loss became NaN or Inf."""

    exit_code = 3


class GradcheckError(NnctlError):
    """Analytic and numeric gradients disagree."""

    exit_code = 1
