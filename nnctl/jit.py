"""The CPU JIT switch: numba, imported only when a plan or an optimizer first needs a kernel.

Generated kernels are cached on disk (numba's `cache=True` on source files written under
`cache_dir()`), so a second run of the same model pays no compile. The pure-NumPy path stays:
it is used where numba is not installed, or when the JIT is switched off with the
environment variable `NNCTL_JIT=0` or `set_enabled(False)` (tests compare both paths).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import os
from pathlib import Path

_state: dict = {"enabled": None}


def available() -> bool:
    """numba is installed (checked without importing it)."""
    return importlib.util.find_spec("numba") is not None


def enabled() -> bool:
    """Kernels are generated with numba: installed, and not switched off."""
    if _state["enabled"] is None:
        _state["enabled"] = os.environ.get("NNCTL_JIT", "1").strip().lower() not in (
            "0", "false", "no", "off") and available()
    return _state["enabled"]


# A model whose arrays are all smaller than this never imports numba: its start-up (import
# and loading cached kernels: about a second) would outweigh what it saves (the trainer
# holds the JIT back for it, and an op kernel of its own, like pooling, starts here).
MIN_SIZE = 1 << 16
# A fused elementwise kernel runs on numba from this many elements on, once the model is
# large enough to have paid numba's start-up: one dispatch (~1-3 us) then beats the ufunc
# calls of a group of two or more (each ~1-1.5 us plus a pass over memory).
KERNEL_MIN_SIZE = 1 << 10
# An optimizer uses its fused kernels when the model has at least this many parameters.
MIN_TOTAL = 1 << 16
# Loops on numba's thread pool (fused kernels, pooling, optimizer updates) only from this
# many elements, and only when the pool has more than one thread: waking the pool costs
# milliseconds when another process (or OpenBLAS's spinning threads) holds a core, measured
# ~16 ms on the busy 2-core machine (docs/performance.md); set it to 0 to always use it.
PARALLEL_MIN_SIZE = 1 << 20


# False inside `held_back()`: a plan whose model is small runs on NumPy even for its few
# large arrays (an evaluation batch), so the process never pays numba's start-up for them
_allowed: contextvars.ContextVar[bool] = contextvars.ContextVar("jit_allowed", default=True)


def worth(size: int, minimum: int | None = None) -> bool:
    """Use a numba kernel for an array of `size` elements: the JIT is on, not held back, and
    the array is large enough for it to pay (`minimum`, MIN_SIZE by default)."""
    return size >= (MIN_SIZE if minimum is None else minimum) and _allowed.get() and enabled()


def parallel_pays(size: int) -> bool:
    """Run a loop of `size` elements on numba's thread pool (numba is imported: the caller
    is about to run a numba kernel)."""
    if size < PARALLEL_MIN_SIZE:
        return False
    import numba as nb
    return nb.get_num_threads() > 1


@contextlib.contextmanager
def held_back():
    """No numba kernel inside the block (the NumPy path runs, same results to round-off)."""
    token = _allowed.set(False)
    try:
        yield
    finally:
        _allowed.reset(token)


def set_enabled(on: bool | None) -> None:
    """Switch the JIT on or off for plans compiled from now on (None: back to the default)."""
    _state["enabled"] = None if on is None else bool(on) and available()


def numba():
    """The numba module (imported on first use), or None when the JIT is off."""
    if not enabled():
        return None
    import numba as nb
    return nb


def cache_dir() -> Path:
    """Where generated kernel sources (and numba's cache beside them) live:
    $NNCTL_CACHE_DIR, else $XDG_CACHE_HOME/nnctl/kernels, else ~/.cache/nnctl/kernels."""
    root = os.environ.get("NNCTL_CACHE_DIR")
    if root:
        path = Path(root)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "nnctl" / "kernels"
    path.mkdir(parents=True, exist_ok=True)
    return path
