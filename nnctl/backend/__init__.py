"""Backends: `get_backend("cpu" | "cuda")`, chosen once per run."""

from __future__ import annotations

from nnctl.backend.base import Backend
from nnctl.errors import BackendError

DEVICES = ("cpu", "cuda")


def get_backend(device: str) -> Backend:
    """The backend for `device`, or a BackendError that says what to install."""
    if device == "cpu":
        from nnctl.backend.numpy_backend import NumpyBackend
        return NumpyBackend()
    if device == "cuda":
        from nnctl.backend.cupy_backend import CupyBackend
        return CupyBackend()
    raise BackendError(f"unknown device {device!r}; expected one of: {', '.join(DEVICES)}")


__all__ = ["Backend", "BackendError", "DEVICES", "get_backend"]
