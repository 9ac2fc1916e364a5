"""The run folder: runs/<config-name>-<timestamp>/ with the resolved config, metrics.jsonl
(one line per epoch), weights.npz, normalizer.json and summary.json.

Every file but the metrics log is written atomically (temp file in the same folder, fsync,
rename), so an interrupted run never leaves a half-written file behind; a write the OS refuses
(full disk, read-only mount) is a one-line WriteError naming the file. The metrics log is
appended to, so a crash can tear its last line: reading it keeps the complete records before
the tear. One process trains in a folder at a time (RunLock).
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Self

import numpy as np
import yaml

from nnctl.errors import NnctlError, UsageError


_UMASK = os.umask(0o022)
os.umask(_UMASK)


# The user named a path that cannot hold a file: a usage error (exit 2). Anything else (a full
# disk, an I/O error) happened to a usable path while working: a runtime error (exit 1).
PATH_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST,
                         errno.EISDIR, errno.ENOENT, errno.ENAMETOOLONG, errno.ELOOP})


def short_path(path, limit: int = 120) -> str:
    """A path for a one-line message: a 5,000-character one is cut, with its length."""
    text = str(path)
    return text if len(text) <= limit else f"{text[:limit - 40]}...{text[-20:]} " \
        f"({len(text):,} characters)"


def os_cause(err: OSError) -> str:
    """The OS's words for an error ("No space left on device"), without the path."""
    if err.strerror:
        return err.strerror
    return os.strerror(err.errno) if err.errno else str(err)


class WriteError(NnctlError):
    """A file nnctl had to write could not be written; the path and the OS's reason."""

    def __init__(self, path, err: OSError, hint: str = ""):
        self.path, self.os_error = Path(path), err
        self.exit_code = 2 if err.errno in PATH_ERRNOS else 1
        super().__init__(f"cannot write {short_path(path)}: {os_cause(err)}{hint}")

    def with_hint(self, hint: str) -> WriteError:
        """The same error, followed by what to do about it (e.g. how to resume)."""
        return WriteError(self.path, self.os_error, hint)


def atomic_write(path: Path, write) -> None:
    """Call write(file) on a temp file beside `path`, then rename it over `path`; the old
    file is untouched and no temp file is left when that fails (WriteError)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise WriteError(path, err) from None
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with _ignoring_os_errors():
            if os.path.exists(tmp):
                os.unlink(tmp)
        if isinstance(err, OSError):
            raise WriteError(path, err) from None
        raise


class _ignoring_os_errors:
    """Cleaning up after a failed write must not hide why it failed."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is not None and issubclass(kind, OSError)


def check_writable_folder(folder: Path, option: str) -> None:
    """Make `folder` (and its parents) and prove a file can be created in it, before any work
    that would be lost when writing later fails; UsageError naming `option` otherwise."""
    where = f"{option} {short_path(folder)}"
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{where}: not a folder (it is a file)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".nnctl-probe.", suffix=".tmp")
        os.close(fd)
        with _ignoring_os_errors():  # a resume's clean-up of leftover temp files may beat us
            os.unlink(probe)
    except OSError as err:
        raise UsageError(f"{where}: cannot write there ({os_cause(err)})") from None


def write_json(path: Path, data) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))


class RunDir:
    def __init__(self, path: Path):
        self.path = path
        self.metrics_path = path / "metrics.jsonl"
        self.metrics_warning = ""  # set when reading found a torn log (said once, on resume)

    @classmethod
    def create(cls, parent: Path, name: str) -> "RunDir":
        check_writable_folder(parent, "--out")
        stamp = time.strftime(STAMP)
        for k in range(1000):
            path = parent / (f"{name}-{stamp}" + (f"-{k}" if k else ""))
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                continue
            except OSError as err:
                raise WriteError(path, err) from None
        raise UsageError(f"--out {short_path(parent)}: could not create a fresh run folder "
                         "(1,000 names taken)")

    def write_config(self, resolved: dict) -> None:
        text = "# resolved config: every key, defaults filled in\n" + \
            yaml.safe_dump(resolved, sort_keys=False)
        atomic_write(self.path / "config.yaml", lambda f: f.write(text.encode()))

    def append_metrics(self, record: dict) -> None:
        """One JSON line per epoch in metrics.jsonl, and metrics.csv rewritten to match."""
        try:
            with open(self.metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:
            raise WriteError(self.metrics_path, err) from None
        self._write_csv()

    def read_metrics(self) -> list[dict]:
        """The epoch records; a torn or unreadable line (a crash or a full disk mid-append)
        ends them, and `metrics_warning` says what was dropped."""
        if not self.metrics_path.exists():
            return []
        records, lines = [], self.metrics_path.read_bytes().split(b"\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            record = _parse_record(line)
            if record is None:
                dropped = sum(1 for rest in lines[number - 1:] if rest.strip())
                self.metrics_warning = (
                    f"{self.metrics_path}:{number}: a torn or unreadable record "
                    f"({_excerpt(line)}); kept the {len(records)} complete records before it "
                    f"and dropped {dropped} line{'s' if dropped != 1 else ''}")
                break
            records.append(record)
        return records

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


def read_best(folder: Path) -> dict | None:
    """best.json of a run folder ({"epoch": N, <monitor>: value}); None when it is missing or
    unreadable (it is a record of the run, never a reason to fail)."""
    return read_json(Path(folder) / "best.json")


def read_json(path: Path) -> dict | None:
    """A small JSON object a run folder keeps (summary, best); None when missing, unreadable
    or not an object."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


STAMP = "%Y%m%d-%H%M%S"
# <config>-<YYYYmmdd-HHMMSS>[-k]: RunDir.create's names (k counts runs started in one second)
RUN_NAME = re.compile(r"(?P<config>.+)-(?P<stamp>\d{8}-\d{6})(?:-(?P<k>\d+))?")
TRIAL_NAME = re.compile(r"trial-(?P<number>\d+)")  # nnctl tune: <search folder>/trial-NNN
SEARCH_FILE = "search.json"  # what marks an nnctl tune search's folder
LATEST = "latest"
DEFAULT_RUNS = Path("runs")


def parse_run_name(name: str) -> tuple[str, str, int] | None:
    """(config name, timestamp, k) of a run folder's name; None for another name."""
    match = RUN_NAME.fullmatch(name)
    if match is None:
        return None
    return match["config"], match["stamp"], int(match["k"] or 0)


def run_folders(parent: Path, config: str | None = None) -> list[Path]:
    """The run folders directly in `parent` (of one config, or of all), oldest first.

    The order is the creation time written in each folder's name by RunDir.create (then its
    -k suffix, which counts one config's runs started within the same second), not the file
    system's times, which a copy, a sync or a resume changes. Runs of different configs
    started within one second tie on the time and are ordered by the suffix, then name."""
    try:
        children = list(Path(parent).iterdir())
    except OSError:
        return []
    found = []
    for child in children:
        parsed = parse_run_name(child.name)
        trial = TRIAL_NAME.fullmatch(child.name)
        if parsed is None and trial is not None:  # the trials of an nnctl tune search
            parsed = (None, "", int(trial["number"]))
        if parsed is None or (config is not None and parsed[0] != config):
            continue
        # an nnctl tune search's folder holds runs but is none
        if child.is_dir() and not (child / SEARCH_FILE).exists():
            found.append(((parsed[1], parsed[2], child.name), child))
    return [path for _, path in sorted(found)]


def resolve_run_dir(path) -> Path:
    """The run folder a command line names: the path itself where it exists; else
    `<parent>/<config>-latest` is the newest run of that config in <parent>, `<parent>/latest`
    the newest run of any config there, and a bare `latest` or `<config>-latest` looks in
    ./runs. "Newest" is by the creation time in the folder names (run_folders), so no
    symlink is needed. UsageError when there is no such run."""
    path = Path(path)
    name = path.name
    if path.exists() or not (name == LATEST or name.endswith("-" + LATEST)):
        return path
    parent = path.parent if path.parent != Path(".") else DEFAULT_RUNS
    config = None if name == LATEST else name[:-len(LATEST) - 1]
    found = run_folders(parent, config)
    if found:
        return found[-1]
    pattern = f"{config or '<config>'}-YYYYMMDD-HHMMSS"
    where = f"no run folder in {short_path(parent)}/" if parent.is_dir() else \
        f"no folder {short_path(parent)}"
    raise UsageError(f"{short_path(path)}: {where} (looked for {pattern}, as nnctl train "
                     f"names them)")


def _parse_record(line: bytes) -> dict | None:
    try:
        record = json.loads(line.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both
        return None
    return record if isinstance(record, dict) and isinstance(record.get("epoch"), int) else None


def _excerpt(line: bytes, limit: int = 40) -> str:
    text = repr(line[:limit])[1:]
    return text + ("..." if len(line) > limit else "")


LOCK_NAME = ".lock"


class RunLock:
    """Exclusive use of a run folder by this process: flock on `.lock` (holding our pid), held
    until release. The OS drops a flock when its process dies, so a kill -9 never leaves a
    folder locked: the next process takes the file over. The file is unlinked on release;
    a process that locked a file already unlinked retries on the new one."""

    def __init__(self, folder: Path):
        self.folder, self.path, self.fd = Path(folder), Path(folder) / LOCK_NAME, None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> Self:
        while self.fd is None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise UsageError(f"--resume {short_path(self.folder)}: cannot lock the run "
                                 f"folder ({os_cause(err)})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                raise UsageError(
                    f"{short_path(self.folder)} is in use by process {holder or '(unknown)'}, "
                    "which trains in it; wait for it to finish, or stop it, then resume"
                ) from None
            if _same_file(fd, self.path):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
            else:  # its holder released (and unlinked) it between our open and flock
                os.close(fd)
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        with _ignoring_os_errors():
            os.unlink(self.path)  # while still held, so nobody locks a file about to vanish
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def read_npz(path: Path, what: str, limits=None) -> dict[str, np.ndarray]:
    """Every array of an NPZ file; never unpickles, never waits on a FIFO, never allocates more
    than the archive declares (nor more than `limits`, a safe_npz.NpzLimits, allows), and
    anything unreadable is a one-line DataError naming `what` the file should have been."""
    from nnctl.train import safe_npz
    return safe_npz.read_npz(Path(path), what, limits or safe_npz.NpzLimits())


def load_weights(path: Path) -> dict[str, np.ndarray]:
    """Arrays of a run's weights.npz or best.npz."""
    return read_npz(path, "weights")
