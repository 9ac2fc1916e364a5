"""Checkpoints: everything needed to continue a run bit for bit, in a safe array format.

One NPZ file (read with allow_pickle=False: loading it can never run code) holding the
parameters (`param/<name>`), layer state (`state/<name>`), optimizer state (`optim/<key>`)
and a JSON document of the rest (`__meta__`, as uint8 bytes): epoch and step, the random
generators' states, partial-epoch sums, early-stopping bookkeeping, and the fingerprint of the
resolved config. Written atomically, so a crash mid-write leaves the previous checkpoint.
Read without trusting it: nnctl.train.safe_npz bounds what the archive may declare, and
nnctl.train.checkpoint_schema checks every field and array before a resume uses any.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from nnctl import __version__
from nnctl.errors import DataError
from nnctl.train.checkpoint_schema import FORMAT_VERSION, META, check_header, check_meta_blob
from nnctl.train.run_dir import atomic_write, read_npz
from nnctl.train.safe_npz import NO_LIMITS, NpzLimits, brief

# atomic_write's temp files: "." + the file's name + "." + mkstemp's 8 random characters;
# not the writability probe (check_writable_folder), which another process may make unlocked
_LEFTOVER = re.compile(r"\.(?!nnctl-probe\.).+\.[a-z0-9_]{8}\.tmp")
_MISSING = object()


def comparable(resolved: dict) -> dict:
    """The resolved config without what may change between a run and its resumption
    (the number of epochs: resuming may train for longer; the thread count: a machine
    setting, which changes float32 results only in round-off; the divergence test, which
    only decides when to stop: a run stopped by a false alarm resumes with another;
    restore_best, which only picks the weights a run ends on; where scalars are logged
    and the search of nnctl tune, which change nothing computed; and how data-parallel
    ranks communicate: a run may resume on another number of ranks or another transport)."""
    resolved = copy.deepcopy(resolved)
    resolved.get("train", {}).pop("epochs", None)
    resolved.get("train", {}).pop("threads", None)
    resolved.get("train", {}).pop("divergence", None)
    resolved.get("train", {}).pop("restore_best", None)  # only picks the weights a run ends on
    resolved.pop("logging", None)
    resolved.pop("tune", None)
    resolved.pop("distributed", None)
    return resolved


def fingerprint(resolved: dict) -> str:
    text = json.dumps(comparable(resolved), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Key paths where two resolved configs differ (for a message a user can act on)."""
    out = []
    for key in sorted(set(a) | set(b), key=str):
        path = f"{prefix}.{key}" if prefix else str(key)
        va, vb = a.get(key, _MISSING), b.get(key, _MISSING)  # a missing key is not a null one
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(differences(va, vb, path))
        elif va != vb:
            out.append(path)
    return out


def save_checkpoint(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    meta = {"format_version": FORMAT_VERSION, "nnctl_version": __version__, **meta}
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays, **{META: blob}))


def load_checkpoint(path: Path, limits: NpzLimits = NO_LIMITS) -> tuple[dict[str, np.ndarray],
                                                                       dict]:
    """(arrays, meta) of a checkpoint; DataError (one line) for anything unreadable. `limits`:
    the most its members may declare (CheckpointSchema.limits), checked before reading any."""
    arrays = read_npz(path, "checkpoint", limits)
    blob = arrays.pop(META, None)
    if blob is None:
        raise DataError("not an nnctl checkpoint (no metadata; a weights file?)", path=str(path))
    check_meta_blob(path, blob)
    try:
        meta = json.loads(blob.tobytes().decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise DataError(f"corrupt checkpoint metadata ({type(err).__name__}: "
                        f"{brief(str(err))})", path=str(path)) from None
    check_header(path, meta)
    return arrays, meta


def remove_leftover_temps(run_dir: Path) -> list[str]:
    """Delete the temp files a crash left in the middle of an atomic write (a partial
    checkpoint can be as big as the model). Only safe while this process holds the run
    folder's lock: no other writer can be mid-write then. The names removed."""
    removed = []
    with os.scandir(run_dir) as entries:
        for entry in entries:
            if not _LEFTOVER.fullmatch(entry.name):
                continue
            try:
                if entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                    removed.append(entry.name)
            except FileNotFoundError:  # gone already
                continue
    return removed


def split_arrays(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """{"param": {...}, "state": {...}, "optim": {...}} from the flat checkpoint keys."""
    groups: dict[str, dict] = {"param": {}, "state": {}, "optim": {}}
    for key, value in arrays.items():
        kind, _, name = key.partition("/")
        if kind in groups:
            groups[kind][name] = value
    return groups
