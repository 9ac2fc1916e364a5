"""The error types nnctl raises. Library code raises these; only the CLI turns them into exit codes.

Every error renders as one line that says where (file:line, key path, layer) and what was
expected, so a user never has to read a traceback to fix a config or a data file.
"""

from __future__ import annotations


class NnctlError(Exception):
    """Base class. `exit_code` is what the CLI exits with when this error reaches it."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


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
        return f"{where}{key}{self.message}"


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
        return prefix + self.detail


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
