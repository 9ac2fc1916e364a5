"""A test backend that reproduces CUDA-graph capture on the CPU (NumPy underneath).

On CUDA, `stream.begin_capture()` ... `stream.end_capture()` records kernel launches and
device copies without running them; `graph.launch()` re-runs exactly those launches, on the
same device addresses, with the arguments frozen at capture (a Python scalar handed to a kernel
is baked in). A step that reads a per-step value from anywhere but a fixed device buffer
replays a stale value, and a host read of a device value during capture is an error. None of
that shows on NumPy, so this backend reproduces it:

- Its arrays follow the strict backend's rule (strict.py: no implicit conversion to NumPy),
  and outside a capture they behave like it.
- `capture(fn)` runs `fn` once, recording every array-module call, ufunc, array method,
  operator and indexing, with its array arguments by reference, its scalars by value and its
  result arrays kept. Nothing of it "runs": when the capture ends, every array that existed
  before it is put back as it was (a snapshot taken before a call first touches it), the
  RNG's state too, and the arrays made during it hold garbage (NaN) until a launch.
- `graph.launch()` re-runs the recorded calls in order, writing each result into the array
  kept at capture (in place), so later calls read the new values, as kernels on fixed
  addresses do. (`empty` is not re-run: it launches nothing on a GPU.)
- During a capture, what CuPy refuses raises CaptureError, naming the call and the line of
  the caller: a device value read on the host (`float()`, `int()`, `bool()`, `.get()`,
  `.item()`, `to_host`, `synchronize`), a host->device transfer (`.set()`, `asarray` of host
  data, a host array or an index list passed to a call), and an op whose result's shape
  depends on the data (`nonzero`, `unique`, a boolean-mask index), which needs a sync.

tests/backend/test_recording.py checks the recorder itself; the op table and a compiled
training step go through it there and in tests/train/test_capture.py.
"""

from __future__ import annotations

import operator
import traceback
import types

import numpy as np

from nnctl.backend.strict import ImplicitTransfer, StrictArray, StrictBackend, _unwrap


class CaptureError(RuntimeError):
    """Something CUDA (or CuPy) refuses during stream capture."""


# calls whose result's size depends on the data: CuPy reads a count back to the host
DATA_DEPENDENT = frozenset({"nonzero", "flatnonzero", "argwhere", "unique", "extract",
                            "compress", "unique_counts", "unique_values", "unique_inverse",
                            "unique_all"})
# calls that make a device array from their first argument: a transfer when it is host data
FROM_DATA = frozenset({"asarray", "array", "asanyarray", "ascontiguousarray", "asfortranarray"})
# calls that launch nothing on a GPU: a replay leaves their arrays as they are
NO_KERNEL = frozenset({"empty", "empty_like"})

_active = None  # the capture in progress (one at a time, as on one stream)


def _culprit() -> str:
    """Where the refused call came from: the innermost frame outside this module and NumPy."""
    for frame in reversed(traceback.extract_stack()[:-1]):
        name = frame.filename.replace("\\", "/")
        if name.endswith("nnctl/backend/recording.py") or "/numpy/" in name:
            continue
        return f"{name}:{frame.lineno} in {frame.name}"
    return "an unknown caller"


def _refuse(what: str, why: str):
    raise CaptureError(f"{what} during CUDA-graph capture, at {_culprit()}: {why}")


def _host_read(what: str):
    if _active is not None:
        _refuse(what, "a device value read on the host is a sync, which CUDA refuses while "
                      "a stream captures; keep the value on the device (a device array the "
                      "graph writes) and read it after the launch")


def _root(a: np.ndarray) -> np.ndarray:
    """The array that owns a's memory. An `as_strided` view's base is NumPy's helper object
    (stride_tricks.DummyArray), whose own `base` is the array: followed through too."""
    while True:
        base = a.base
        if not isinstance(base, np.ndarray):
            base = getattr(base, "base", None)
        if not isinstance(base, np.ndarray):
            return a
        a = base


def _arrays(value, found: list) -> list:
    """Every NumPy array in value (nested tuples, lists, dicts, slices)."""
    if isinstance(value, np.ndarray):
        found.append(value)
    elif isinstance(value, (tuple, list)):
        for v in value:
            _arrays(v, found)
    elif isinstance(value, dict):
        for v in value.values():
            _arrays(v, found)
    return found


def _host_data(value) -> bool:
    """Whether value holds a host array (a NumPy array, or a list standing for one)."""
    if isinstance(value, np.ndarray):
        return True
    if isinstance(value, (tuple, list)):
        return any(_host_data(v) for v in value)
    if isinstance(value, dict):
        return any(_host_data(v) for v in value.values())
    return False


def _host_index(key) -> bool:
    """Whether an index holds a list or a host array, which CuPy copies to the device."""
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, (list, np.ndarray)) for k in keys)


def _to_device(value):
    """A result as the device would hold it: a NumPy scalar is a 0-d device array on CuPy."""
    if isinstance(value, np.generic):
        return np.array(value)
    if isinstance(value, tuple):
        return tuple(_to_device(v) for v in value)
    if isinstance(value, list):
        return [_to_device(v) for v in value]
    return value


def _wrap(value):
    if isinstance(value, np.ndarray):
        return RecordingArray(value)
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _refresh(kept, new) -> None:
    """Write a replayed result into the array kept at capture (nothing for a view of the
    same memory, which the replay has written already)."""
    if isinstance(kept, np.ndarray):
        if new is kept or not kept.flags.writeable or \
                (isinstance(new, np.ndarray) and np.may_share_memory(kept, new)):
            return
        np.copyto(kept, new, casting="unsafe")
    elif isinstance(kept, (tuple, list)):
        for k, n in zip(kept, new):
            _refresh(k, n)


class _Capture:
    """The calls recorded so far and what to put back when the capture ends."""

    def __init__(self):
        self.calls: list = []  # (label, fn, args, kwargs, result), arrays unwrapped
        self.saved: dict = {}  # id(root) -> (root, copy before the capture first touched it)
        self.states: dict = {}  # id(bit generator) -> (bit generator, state)
        self.fresh: dict = {}  # id(root) -> root, for arrays made during the capture
        self.inputs: dict = {}  # id(root) -> root: arrays from before the capture it reads

    def before(self, label: str, args, kwargs, raw, owners=(), rng=None) -> None:
        """Refuse a host array among the (wrapped) arguments; snapshot every array from
        before the capture that the call may write (those in `raw`, the unwrapped
        arguments, and `owners`)."""
        if _host_data((args, kwargs)):
            _refuse(f"a host array passed to {label}()", "a host->device transfer, which "
                    "CuPy refuses while a stream captures; copy it into a device buffer "
                    "before the launch")
        for a in _arrays(raw, list(owners)):
            root = _root(a)
            if id(root) not in self.fresh and id(root) not in self.saved:
                self.saved[id(root)] = (root, root.copy())
                self.inputs[id(root)] = root
        if rng is not None and id(rng) not in self.states:
            self.states[id(rng)] = (rng, rng.state)

    def record(self, label, fn, args, kwargs, result) -> None:
        self.calls.append((label, fn, args, kwargs, result))
        for a in _arrays(result, []):
            root = _root(a)
            if id(root) not in self.saved:
                self.fresh[id(root)] = root

    def end(self) -> None:
        """Undo what running the calls did: a capture launches nothing."""
        for root, copy in self.saved.values():
            if root.flags.writeable:
                np.copyto(root, copy)
        for rng, state in self.states.values():
            rng.state = state
        for root in self.fresh.values():
            if root.flags.writeable and root.dtype.kind in "fc":
                root.fill(np.nan)  # no kernel has run: the graph's arrays hold garbage


def _call(label: str, fn, args, kwargs, owners=(), rng=None):
    """Run one device call; during a capture, check it, record it and keep its result."""
    raw_args, raw_kwargs = _unwrap(args), _unwrap(kwargs)
    capture = _active
    if capture is None:
        return _wrap(_to_device(fn(*raw_args, **raw_kwargs)))
    if label in DATA_DEPENDENT:
        _refuse(f"{label}()", "its result's size depends on the data, which CuPy reads back "
                              "to the host (a sync)")
    capture.before(label, args, kwargs, (raw_args, raw_kwargs),
                   [o.a if isinstance(o, StrictArray) else o for o in owners], rng)
    result = _to_device(fn(*raw_args, **raw_kwargs))
    capture.record(label, fn, raw_args, raw_kwargs, result)
    return _wrap(result)


class RecordingArray(StrictArray):
    """A device array of the recording backend (NumPy underneath, strict's rules)."""

    __slots__ = ()

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        label = ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"
        return _call(label, getattr(ufunc, method), inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _call(func.__name__, func, args, kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = getattr(self.a, name)
        if not callable(value):
            return _wrap(value)  # metadata, or a view of the same memory (.T): no kernel
        if name in ("item", "tolist", "tobytes"):
            _host_read(f".{name}()")
        return lambda *args, **kwargs: _call(name, value, args, kwargs, owners=(self,))

    def __getitem__(self, key):
        if _active is not None:
            if any(isinstance(k, RecordingArray) and k.a.dtype == bool
                   for k in (key if isinstance(key, tuple) else (key,))):
                _refuse("a boolean-mask index", "its result's size depends on the data, which "
                                                "CuPy reads back to the host (a sync)")
            if _host_index(key):
                _refuse("an index list or host array", "CuPy copies it to the device: a "
                        "host->device transfer, refused while a stream captures")
        return _call("getitem", operator.getitem, (self, key), {}, owners=(self,))

    def __setitem__(self, key, value):
        if _active is not None and (_host_index(key) or isinstance(value, np.ndarray)):
            _refuse("an index list or host array", "CuPy copies it to the device: a "
                    "host->device transfer, refused while a stream captures")
        _call("setitem", operator.setitem, (self, key, value), {}, owners=(self,))

    def __iter__(self):
        return (self[k] for k in range(len(self)))

    def __float__(self) -> float:
        _host_read("float() of a device array")
        return float(self.a)

    def __int__(self) -> int:
        _host_read("int() of a device array")
        return int(self.a)

    def __index__(self) -> int:
        _host_read("a device array used as an index or size")
        return int(self.a)

    def __bool__(self) -> bool:
        _host_read("bool() of a device array (an `if` on a device value)")
        return bool(self.a)

    def __repr__(self) -> str:
        _host_read("repr() of a device array")
        return f"RecordingArray({self.a!r})"

    def get(self):
        _host_read(".get()")
        return self.a.copy()

    def set(self, host) -> None:
        if _active is not None:
            _refuse(".set()", "a host->device copy, which CuPy refuses while a stream "
                              "captures; fill the buffer before the launch")
        self.a[...] = host


class _RecordingModule:
    """The array module: NumPy's names (and submodules), recorded during a capture."""

    def __init__(self, base=np, name: str = "nnctl_recording"):
        self._base, self.__name__ = base, name

    def __getattr__(self, name):
        value = getattr(self._base, name)
        if isinstance(value, types.ModuleType):
            module = _RecordingModule(value, f"{self.__name__}.{name}")
            setattr(self, name, module)
            return module
        if isinstance(value, np.ufunc):
            ufunc = _RecordingUfunc(value)
            setattr(self, name, ufunc)
            return ufunc
        if callable(value) and not isinstance(value, type):
            def call(*args, **kwargs):
                if _active is not None and name in FROM_DATA and args and \
                        not isinstance(args[0], StrictArray):
                    _refuse(f"{name}() of host data", "a host->device transfer, which CuPy "
                            "refuses while a stream captures; fill a device buffer before "
                            "the launch (or `fill` it with the scalar)")
                return _call(name, value, args, kwargs)
            call.__name__ = name
            setattr(self, name, call)
            return call
        return value  # dtypes, constants, classes


class _RecordingUfunc:
    def __init__(self, ufunc):
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args, **kwargs):
        return _call(self.__name__, self._ufunc, args, kwargs)

    def __getattr__(self, name):
        value = getattr(self._ufunc, name)
        if not callable(value):
            return value
        return lambda *args, **kwargs: _call(f"{self.__name__}.{name}", value, args, kwargs)


class _RecordingGenerator:
    """A NumPy generator writing into device arrays. Its draws are recorded like kernels
    that advance a state held on the device (CuPy's generators keep theirs there): a replay
    draws new numbers, the ones an eager run would have drawn next."""

    def __init__(self, generator):
        self.generator = generator
        self.bit_generator = generator.bit_generator

    def random(self, *args, **kwargs):
        return _call("random", self.generator.random, args, kwargs, rng=self.bit_generator)


class RecordedGraph:
    """What `RecordingBackend.capture` returns: `launch()` re-runs the recorded calls;
    `result` is what the captured function returned (arrays every launch writes)."""

    def __init__(self, capture: _Capture, result):
        self._calls = capture.calls
        self.result = result
        self.labels = [c[0] for c in capture.calls]  # what was recorded, in order
        # arrays from before the capture the graph reads or writes: its static buffers
        self.static = list(capture.inputs.values())

    def __len__(self) -> int:
        return len(self._calls)

    def launch(self) -> None:
        for label, fn, args, kwargs, kept in self._calls:
            if label in NO_KERNEL:
                continue
            _refresh(kept, _to_device(fn(*args, **kwargs)))


class RecordingBackend(StrictBackend):
    """The strict backend plus CUDA-graph capture as CUDA does it (tests only)."""

    name = "recording"

    def __init__(self):
        self.xp = _RecordingModule()

    def rng(self, seed):
        return _RecordingGenerator(np.random.default_rng(seed))

    def asarray(self, host_array, dtype=None):
        if isinstance(host_array, StrictArray):
            return host_array if dtype is None else host_array.astype(dtype)
        if _active is not None:
            _refuse("asarray() of host data", "a host->device transfer, which CuPy refuses "
                    "while a stream captures; copy into a device buffer before the launch")
        array = np.asarray(host_array, dtype=dtype)
        return RecordingArray(array if array.flags.c_contiguous else np.ascontiguousarray(array))

    def to_host(self, array):
        if isinstance(array, StrictArray):
            _host_read("to_host()")
            return array.a.copy()
        return np.asarray(array)

    def synchronize(self) -> None:
        _host_read("synchronize()")

    def capture(self, fn) -> RecordedGraph:
        """Record `fn()` as CUDA stream capture does (nothing runs until `launch`)."""
        global _active
        if _active is not None:
            raise CaptureError("a capture is in progress already")
        capture = _active = _Capture()
        try:
            result = fn()
        finally:
            _active = None
            capture.end()
        return RecordedGraph(capture, result)


__all__ = ["CaptureError", "ImplicitTransfer", "RecordedGraph", "RecordingArray",
           "RecordingBackend"]
