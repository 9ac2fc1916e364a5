"""Checkpoints: everything needed to continue a run bit for bit, in a safe array format.

One NPZ file (read with allow_pickle=False: loading it can never run code) holding the
parameters (`param/<name>`), layer state (`state/<name>`), optimizer state (`optim/<key>`)
and a JSON document of the rest (`__meta__`, as uint8 bytes): epoch and step, the random
generators' states, partial-epoch sums, early-stopping bookkeeping, and the fingerprint of the
resolved config. Written atomically, so a crash mid-write leaves the previous checkpoint.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np

from nnctl import __version__
from nnctl.errors import DataError
from nnctl.train.run_dir import atomic_write, read_npz

FORMAT_VERSION = 1
META = "__meta__"


def comparable(resolved: dict) -> dict:
    """The resolved config without what may change between a run and its resumption
    (the number of epochs: resuming may train for longer; the thread count: a machine
    setting, which changes float32 results only in round-off)."""
    resolved = copy.deepcopy(resolved)
    resolved.get("train", {}).pop("epochs", None)
    resolved.get("train", {}).pop("threads", None)
    return resolved


def fingerprint(resolved: dict) -> str:
    text = json.dumps(comparable(resolved), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Key paths where two resolved configs differ (for a message a user can act on)."""
    out = []
    for key in sorted(set(a) | set(b), key=str):
        path = f"{prefix}.{key}" if prefix else str(key)
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(differences(va, vb, path))
        elif va != vb:
            out.append(path)
    return out


def save_checkpoint(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    meta = {"format_version": FORMAT_VERSION, "nnctl_version": __version__, **meta}
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays, **{META: blob}))


def load_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, meta) of a checkpoint; DataError (one line) for anything unreadable."""
    arrays = read_npz(path, "checkpoint")
    blob = arrays.pop(META, None)
    if blob is None or blob.dtype != np.uint8:
        raise DataError("not an nnctl checkpoint (no metadata)", path=str(path))
    try:
        meta = json.loads(blob.tobytes().decode())
    except (UnicodeDecodeError, ValueError) as err:
        raise DataError(f"corrupt checkpoint metadata ({err})", path=str(path)) from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise DataError(f"checkpoint format {meta.get('format_version') if isinstance(meta, dict) else '?'}"
                        f" is not the supported format {FORMAT_VERSION}", path=str(path))
    return arrays, meta


def split_arrays(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """{"param": {...}, "state": {...}, "optim": {...}} from the flat checkpoint keys."""
    groups: dict[str, dict] = {"param": {}, "state": {}, "optim": {}}
    for key, value in arrays.items():
        kind, _, name = key.partition("/")
        if kind in groups:
            groups[kind][name] = value
    return groups
