"""Memory pre-flight: the bytes a run will hold, compared with what the machine allows, before
anything big is allocated.

A config can ask for far more memory than there is (a dense 20000x20000 with Adam, a label
of 10**9 sizing the output layer); without this check the run fails a minute later inside
NumPy with a traceback. The model is built once more with a stand-in random generator that
draws nothing, so its parameter shapes are known for free, and its training and evaluation
steps are compiled for their memory plans (the compiled plan knows its arena's bytes before it
allocates them). The estimate:

    parameters and layer state
    + optimizer slots (Adam: two per parameter) + a clipped copy of the gradients if clipping
    + the training step's arena at train.batch_size (activations and gradients)
    + the evaluation step's arena at train.eval_batch_size

is compared with /proc/meminfo's MemAvailable and, when one is set, RLIMIT_AS (ulimit -v)
less the address space the process already uses. Too much is a ConfigError at the model
section (exit 2) that gives the estimate and the limit.
"""

from __future__ import annotations

import math
import resource
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnctl.errors import ConfigError


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


# ---- what the machine allows ---------------------------------------------------------------

def _meminfo_available(path: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _address_space_used(path: Path = Path("/proc/self/status")) -> int:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def available_memory() -> tuple[int, str] | None:
    """(bytes this process may still allocate, where that figure comes from), the tighter of
    MemAvailable and RLIMIT_AS; None where neither is known (then nothing is checked)."""
    limits = []
    free = _meminfo_available()
    if free is not None:
        limits.append((free, "MemAvailable in /proc/meminfo"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        left = max(soft - _address_space_used(), 0)
        where = f"RLIMIT_AS (ulimit -v) of {human(soft)}, less {human(soft - left)} in use"
        limits.append((left, where))
    return min(limits) if limits else None


# ---- what the run will hold ----------------------------------------------------------------

class _Nothing:
    """What the stand-in generator draws: a value with a shape and no elements. Initialisers
    scale and cast it (`rng.uniform(...).astype(dtype)`, `rng.standard_normal(shape) * s`)."""

    def astype(self, dtype, *args, **kwargs):
        return self

    def _same(self, *args):
        return self

    __mul__ = __rmul__ = __add__ = __radd__ = __sub__ = __rsub__ = _same
    __truediv__ = __rtruediv__ = __neg__ = __abs__ = _same


class _DrawsNothing:
    """A stand-in for the init generator, so the dry build allocates no parameter values:
    whatever an initialiser draws (uniform, standard_normal, normal, ...) is a _Nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: _Nothing()


@dataclass
class Estimate:
    parameters: int
    optimizer: int
    train_step: int
    eval_step: int
    batch: int
    eval_batch: int
    clipping: bool = False

    @property
    def total(self) -> int:
        return self.parameters + self.optimizer + self.train_step + self.eval_step

    def describe(self) -> str:
        state = "optimizer state and clipped gradients" if self.clipping else "optimizer state"
        return (f"parameters {human(self.parameters)}, {state} "
                f"{human(self.optimizer)}, training step at batch {self.batch} "
                f"{human(self.train_step)}, evaluation at batch {self.eval_batch} "
                f"{human(self.eval_step)}")


def _nbytes(tensors) -> int:
    total = 0
    for t in tensors:
        total += math.prod(int(d) for d in t.shape) * np.dtype(t.dtype).itemsize
    return total


def _every_result(outputs, batch: int) -> int:
    """Bytes of every op result of the uncompiled graph at `batch`, each in its own aligned
    buffer: an upper bound on the compiled plan's arena, known without compiling."""
    from nnctl.compile.memory import ALIGN, nbytes_at
    from nnctl.graph.ir import Graph
    graph = Graph([t.node for t in outputs])
    return sum(nbytes_at(n, {"B": batch}) + ALIGN for n in graph.nodes if not n.is_leaf)


def _planned(outputs, feeds, batch: int) -> int:
    from nnctl.backend import get_backend
    from nnctl.compile import compile_graph
    return compile_graph(outputs, feeds, get_backend("cpu"), capacity={"B": batch},
                         jit=False).peak_bytes


def estimate(config, splits, allowed: float = 0) -> Estimate:
    """The bytes of `config`'s run on `splits`, with no parameter allocated. The steps'
    arenas are the compiled plans' (compiling an unrolled LSTM takes a second or two), unless
    the cheap upper bound already fits in `allowed`."""
    from nnctl.optim import make_optimizer
    from nnctl.step import StepBuilder

    t = config.spec.train
    builder = StepBuilder(config, splits, _DrawsNothing())
    params = _nbytes(builder.params.values())
    states = _nbytes(builder.states.values())
    slots = len(make_optimizer(config.spec.optimizer, np).slots)
    clipped = 1 if (t.clip_norm is not None or t.clip_value is not None) else 0
    batch = min(t.batch_size, max(len(splits.train), 1))
    steps = ((builder.training_step(), batch), (builder.evaluation_step(), t.eval_batch_size))
    arenas = [_every_result(outputs, b) for (outputs, _), b in steps]
    fixed = params + states + params * (slots + clipped)
    if fixed + sum(arenas) > allowed:
        arenas = [_planned(outputs, feeds, b) for (outputs, feeds), b in steps]
    return Estimate(params + states, params * (slots + clipped), arenas[0], arenas[1], batch,
                    t.eval_batch_size, bool(clipped))


def check_memory(config, splits, available=None) -> None:
    """Refuse a run whose planned memory exceeds what the machine allows: one line with the
    estimate and the limit (ConfigError at the model section, exit 2)."""
    limit = (available or available_memory)()
    if limit is None:
        return
    allowed, source = limit
    try:
        planned = estimate(config, splits, allowed)
    except MemoryError:  # even the shapes-only build did not fit (a huge zero-filled bias)
        raise too_much(config, None, allowed, source) from None
    if planned.total > allowed:
        raise too_much(config, planned, allowed, source)


def too_much(config, planned: Estimate | None, allowed: int, source: str) -> ConfigError:
    """The one-line refusal, at the config's model section (or the --set that changed it)."""
    need = (f"about {human(planned.total)} of memory ({planned.describe()})"
            if planned is not None else "more memory than that even to plan its model")
    return config.error(("model",), f"the run needs {need}, but {human(allowed)} is available "
                                    f"({source}); make the model smaller or lower "
                                    "train.batch_size / train.eval_batch_size")
