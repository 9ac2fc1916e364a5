"""How many threads BLAS (NumPy's OpenBLAS or MKL) and numba's thread pool may use.

`nnctl train --threads N` (and evaluate, predict, sample, gradcheck) or the config key
`train.threads`; the option wins. The default is 1 thread. Measured on a 2-core machine
(docs/performance.md, "Threads"): the OpenBLAS threads of a GEMM busy-wait for each other,
so when another process holds a core, every small GEMM split across two threads waits for a
descheduled partner, and a training run gets 2-8x slower (single steps up to 100x), while
with the cores idle the second thread gains the shipped configs 0-20% per step. One thread
also keeps runs byte-identical whatever the machine's load (float32 GEMM results change with
the thread count).

`auto` takes the cores this process may use (CPU affinity, cgroup quota, physical cores, the
smallest), less those that other processes keep busy while nnctl samples /proc/stat for
0.1 s, and at least 1. Its count depends on the load at start-up, so two runs may differ in
float round-off.

Nothing here imports NumPy or threadpoolctl at module level (`nnctl --help` stays fast).
"""

from __future__ import annotations

import math
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from nnctl.errors import UsageError

DEFAULT = 1
AUTO = "auto"
MAX_THREADS = 1024
#: a core counts as free for `auto` when other processes use at most this fraction of it
BUSY_SLACK = 0.25
SAMPLE_SECONDS = 0.1


def parse_threads(value: str | int | None, where: str = "--threads") -> int | str | None:
    """A thread request from the command line: a positive integer, 'auto', or None (unset).
    Anything else is a UsageError (one line, exit code 2)."""
    if value is None:
        return None
    text = str(value).strip()
    if text.lower() == AUTO:
        return AUTO
    try:
        n = int(text)
    except ValueError:
        n = None
    if n is None or n < 1 or n > MAX_THREADS:
        raise UsageError(f"{where}: expected a positive integer (at most {MAX_THREADS}) or "
                         f"'auto', got '{value}'")
    return n


# ---- what the machine offers ------------------------------------------------------------------

def affinity() -> set[int]:
    """The CPUs this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def physical_cores(cpus: set[int], sysfs: Path = Path("/sys/devices/system/cpu")) -> int:
    """How many physical cores the logical CPUs `cpus` sit on (hyper-threads of one core count
    once); len(cpus) where the topology cannot be read."""
    cores = set()
    for cpu in cpus:
        topology = sysfs / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return len(cpus)
        cores.add((package, core))
    return len(cores) or len(cpus)


def cgroup_cpus(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (cgroup v2 `cpu.max`, v1
    `cpu.cfs_quota_us`), or None when there is none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """min(CPUs in the affinity mask, physical cores among them, cgroup quota rounded up)."""
    cpus = affinity()
    n = min(len(cpus), physical_cores(cpus))
    quota = cgroup_cpus()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


# ---- the load of other processes --------------------------------------------------------------

def read_cpu_ticks(cpus: set[int], text: str | None = None) -> tuple[int, int] | None:
    """(busy, total) clock ticks of the CPUs `cpus`, summed, from /proc/stat; None off Linux.
    Busy is user + nice + system + irq + softirq + steal; idle and iowait are not."""
    if text is None:
        try:
            text = Path("/proc/stat").read_text()
        except OSError:
            return None
    busy = total = 0
    seen = False
    for line in text.splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        values = [int(v) for v in fields[:8]] + [0] * (8 - len(fields[:8]))
        user, nice, system, idle, iowait, irq, softirq, steal = values
        busy += user + nice + system + irq + softirq + steal
        total += user + nice + system + idle + iowait + irq + softirq + steal
        seen = True
    return (busy, total) if seen else None


def own_ticks() -> float:
    """CPU time of this process (all its threads), in /proc/stat clock ticks."""
    t = os.times()
    return (t.user + t.system) * _clock_ticks()


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (AttributeError, ValueError, OSError):
        return 100


def other_busy_cores(before: tuple[int, int], after: tuple[int, int], own: float,
                     cpus: int) -> float:
    """CPUs kept busy by other processes between two `read_cpu_ticks` samples of `cpus`
    CPUs, with `own` ticks of this process taken out."""
    busy, total = after[0] - before[0], after[1] - before[1]
    if total <= 0:
        return 0.0
    return max(0.0, busy - own) / total * cpus


def measure_other_load(cpus: set[int], seconds: float = SAMPLE_SECONDS,
                       sleep: Callable[[float], None] = time.sleep) -> float | None:
    """How many of `cpus` other processes keep busy, measured over `seconds` while this
    process sleeps; on a system without /proc/stat, the 1-minute load average; else None."""
    first = read_cpu_ticks(cpus)
    if first is None:
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return None
    mine = own_ticks()
    sleep(seconds)
    second = read_cpu_ticks(cpus)
    if second is None:
        return None
    return other_busy_cores(first, second, own_ticks() - mine, len(cpus))


def auto_threads(usable: int | None = None,
                 other_load: Callable[[], float | None] | None = None) -> int:
    """The cores this process may use, less those other processes keep busy; at least 1.
    A core counts as taken when others use more than BUSY_SLACK of it."""
    usable = usable_cores() if usable is None else usable
    if usable <= 1:
        return 1
    busy = (other_load or (lambda: measure_other_load(affinity())))()
    if busy is None:
        return usable
    return max(1, min(usable, math.floor(usable - busy + BUSY_SLACK)))


def resolve(requested: int | str | None) -> int:
    """The thread count for a request: an integer as given, 'auto' measured, None the default."""
    if requested is None:
        return DEFAULT
    if requested == AUTO:
        return auto_threads()
    return int(requested)


# ---- applying a count -------------------------------------------------------------------------

#: read by a BLAS or OpenMP runtime when it loads: one loaded after the limit is set (numba
#: loads SciPy's OpenBLAS and libgomp when it compiles a parallel kernel) starts with n threads
LOAD_TIME_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS",
                  "BLIS_NUM_THREADS")


def _set_environ(values: dict[str, str]) -> Callable[[], None]:
    """Set environment variables; returns a function that puts the old values back."""
    before = {var: os.environ.get(var) for var in values}
    os.environ.update(values)

    def undo():
        for var, value in before.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
    return undo


def _limit_blas(n: int):
    """Limit every thread pool threadpoolctl finds (BLAS, OpenMP) to n, and the ones loaded
    later through LOAD_TIME_VARS. Returns a function that undoes both."""
    undo_env = _set_environ({var: str(n) for var in LOAD_TIME_VARS})
    import numpy  # noqa: F401  (loads NumPy's BLAS, so that threadpoolctl can find it)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # a process that has not loaded BLAS yet still obeys the variables
        return undo_env
    limiter = threadpool_limits(limits=n)

    def undo():
        limiter.restore_original_limits()
        undo_env()
    return undo


def _limit_numba(n: int) -> Callable[[], None]:
    """numba's pool: set_num_threads when numba is already imported (at most the pool's size),
    else NUMBA_NUM_THREADS for when it is. Returns a function that puts the old value back
    (a pool created meanwhile keeps its size)."""
    numba = sys.modules.get("numba")
    if numba is not None and hasattr(numba, "set_num_threads"):
        before = numba.get_num_threads()
        numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
        return lambda: numba.set_num_threads(before)
    undo_env = _set_environ({"NUMBA_NUM_THREADS": str(n)})

    def undo():
        # NOTE: numba imported meanwhile read the variable, and every compile re-reads it:
        # a different value then (its pool already launched) is a RuntimeError, so it stays
        if sys.modules.get("numba") is None:
            undo_env()
    return undo


def configure_threads(requested: int | str | None) -> int:
    """Set BLAS and numba to the thread count for `requested` (an integer, 'auto' or None for
    the default) for the rest of the process; returns the count chosen."""
    n = resolve(requested)
    _limit_blas(n)
    _limit_numba(n)
    return n


@contextmanager
def use_threads(requested: int | str | None) -> Iterator[int]:
    """configure_threads for the duration of a block (a CLI command), then the limits as they
    were: a command run in-process (tests) leaves nothing behind."""
    n = resolve(requested)
    undo_blas = _limit_blas(n)
    undo_numba = _limit_numba(n)
    try:
        yield n
    finally:
        undo_numba()
        undo_blas()


def blas_threads() -> int | None:
    """The largest thread count of the BLAS libraries loaded in this process (NumPy's, and
    SciPy's once numba has loaded it) as threadpoolctl reports it; None: no BLAS found."""
    import numpy  # noqa: F401  (loads the BLAS)
    from threadpoolctl import threadpool_info
    counts = [int(p["num_threads"]) for p in threadpool_info() if p.get("user_api") == "blas"]
    return max(counts) if counts else None
