"""The run folder: runs/<config-name>-<timestamp>/ with the resolved config, metrics.jsonl
(one line per epoch), weights.npz, normalizer.json and summary.json.

Every file but the metrics log is written atomically (temp file in the same folder, fsync,
rename), so an interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from nnctl.errors import DataError


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(path: Path, write) -> None:
    """Call write(file) on a temp file beside `path`, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, data) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))


class RunDir:
    def __init__(self, path: Path):
        self.path = path
        self.metrics_path = path / "metrics.jsonl"

    @classmethod
    def create(cls, parent: Path, name: str) -> "RunDir":
        parent.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for k in range(1000):
            path = parent / (f"{name}-{stamp}" + (f"-{k}" if k else ""))
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                continue
        raise FileExistsError(f"could not create a fresh run folder in {parent}")

    def write_config(self, resolved: dict) -> None:
        text = "# resolved config: every key, defaults filled in\n" + \
            yaml.safe_dump(resolved, sort_keys=False)
        atomic_write(self.path / "config.yaml", lambda f: f.write(text.encode()))

    def append_metrics(self, record: dict) -> None:
        """One JSON line per epoch in metrics.jsonl, and metrics.csv rewritten to match."""
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._write_csv()

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        lines = self.metrics_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def truncate_metrics(self, epochs: int) -> None:
        """Keep the records of the first `epochs` epochs (a resumed run rewrites the rest)."""
        kept = [r for r in self.read_metrics() if r.get("epoch", 0) <= epochs]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        atomic_write(self.metrics_path, lambda f: f.write(text.encode()))
        self._write_csv()

    def _write_csv(self) -> None:
        records = self.read_metrics()
        columns = list(dict.fromkeys(k for r in records for k in r))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        atomic_write(self.path / "metrics.csv", lambda f: f.write(buffer.getvalue().encode()))

    def save_best(self, arrays: dict[str, np.ndarray], info: dict) -> None:
        """The weights of the best epoch so far (by the monitored metric), and which it was."""
        atomic_write(self.path / "best.npz", lambda f: np.savez(f, **arrays))
        self.write_json("best.json", info)

    def save_weights(self, arrays: dict[str, np.ndarray]) -> None:
        atomic_write(self.path / "weights.npz", lambda f: np.savez(f, **arrays))

    def write_json(self, name: str, data) -> None:
        write_json(self.path / name, data)


def read_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    """Every array of an NPZ file; never unpickles (allow_pickle=False), and anything
    unreadable is a one-line DataError naming `what` the file should have been."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise DataError(f"no such {what}", path=str(path)) from None
    except Exception as err:  # zipfile, ValueError (pickled object arrays), OSError, ...
        raise DataError(f"unreadable {what} ({type(err).__name__}: {err})",
                        path=str(path)) from None


def load_weights(path: Path) -> dict[str, np.ndarray]:
    """Arrays of a run's weights.npz or best.npz."""
    return read_npz(path, "weights")
