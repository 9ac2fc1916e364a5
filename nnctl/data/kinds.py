"""Loaders of the data-set kinds that live in their own modules (text, tagging, audio,
sequence pairs): `dataset: <kind>` in a config -> `LOADERS[kind](spec, seed, dtype)`.

The built-in kinds (digits, spirals, npz, csv, ...) are dispatched in nnctl.step; a module
that adds a kind registers its loader here and its config spec in nnctl.config.schema's
DATASETS, so the two never drift apart.
"""

from __future__ import annotations

from typing import Callable

LOADERS: dict[str, Callable] = {}


def register_loader(kind: str):
    """Decorator: `fn(spec, seed: int, dtype: str) -> Dataset` loads `dataset: kind`."""
    def add(fn):
        LOADERS[kind] = fn
        return fn
    return add
