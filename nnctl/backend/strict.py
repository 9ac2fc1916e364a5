"""A test backend with CuPy's rule on the CPU: a device array never turns into a NumPy array
implicitly.

CuPy refuses `numpy.asarray(device_array)` (and so every NumPy call that would need one): a
host copy must be asked for (`.get()`, `to_host`). A NumPy-only call hidden in an op's forward
or in the trainer therefore works on the CPU and breaks on the GPU. This backend's arrays
(`StrictArray`, NumPy underneath) behave like CuPy's: arithmetic, methods, indexing and the
array module's functions work and return device arrays; NumPy's functions dispatch to them
(as NumPy's own functions do on CuPy arrays, through __array_function__ and
__array_ufunc__); `np.asarray(a)` raises. Running the op table and a training step on it
(tests/backend/test_strict.py) finds such calls without a GPU.
"""

from __future__ import annotations

import types

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from nnctl.backend.base import Backend


class ImplicitTransfer(TypeError):
    """A device array was used where a NumPy array is needed (a GPU would refuse it)."""


def _unwrap(value):
    if isinstance(value, StrictArray):
        return value.a
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def _wrap(value):
    if isinstance(value, np.ndarray):
        return StrictArray(value)
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class StrictArray(NDArrayOperatorsMixin):
    """A 'device' array: NumPy underneath, no implicit way back to NumPy."""

    __slots__ = ("a",)
    #: explicit reads of device values (get, float, int, bool): each is a sync on a GPU, so
    #: tests count them (a sync-free training step makes none)
    host_reads = 0

    def __init__(self, array: np.ndarray):
        self.a = array

    def __array__(self, dtype=None, copy=None):
        raise ImplicitTransfer("implicit conversion of a device array to a NumPy array "
                               "(CuPy refuses it): use the array module's functions, or "
                               "to_host for an explicit copy")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        result = getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs))
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def __getattr__(self, name):
        if name.startswith("__"):  # __array_interface__ and the like would hand NumPy the data
            raise AttributeError(name)
        value = getattr(self.a, name)
        if callable(value):
            return lambda *args, **kwargs: _wrap(value(*_unwrap(args), **_unwrap(kwargs)))
        return _wrap(value)

    def __getitem__(self, key):
        return _wrap(self.a[_unwrap(key)])

    def __setitem__(self, key, value):
        self.a[_unwrap(key)] = _unwrap(value)

    def __len__(self) -> int:
        return len(self.a)

    def __iter__(self):
        return (_wrap(v) for v in self.a)

    def __float__(self) -> float:  # explicit, as on CuPy (a synchronising copy)
        StrictArray.host_reads += 1
        return float(self.a)

    def __int__(self) -> int:
        StrictArray.host_reads += 1
        return int(self.a)

    def __index__(self) -> int:
        StrictArray.host_reads += 1
        return int(self.a)

    def __bool__(self) -> bool:
        StrictArray.host_reads += 1
        return bool(self.a)

    def __repr__(self) -> str:
        return f"StrictArray({self.a!r})"

    def get(self):
        """The explicit host copy (CuPy's ndarray.get)."""
        StrictArray.host_reads += 1
        return self.a.copy()

    def set(self, host) -> None:
        """Fill from a host array (CuPy's ndarray.set)."""
        self.a[...] = host


class _StrictModule:
    """The array module: NumPy's names (and submodules: lib.stride_tricks, linalg), taking
    and giving device arrays."""

    def __init__(self, base=np, name: str = "nnctl_strict"):
        self._base, self.__name__ = base, name

    def __getattr__(self, name):
        value = getattr(self._base, name)
        if isinstance(value, types.ModuleType):
            module = _StrictModule(value, f"{self.__name__}.{name}")
            setattr(self, name, module)
            return module
        if isinstance(value, np.ufunc):  # calls and its methods (add.at, add.reduce)
            ufunc = _StrictUfunc(value)
            setattr(self, name, ufunc)
            return ufunc
        if callable(value) and not isinstance(value, type):
            def call(*args, **kwargs):
                return _wrap(value(*_unwrap(args), **_unwrap(kwargs)))
            call.__name__ = name
            setattr(self, name, call)
            return call
        return value  # dtypes, constants, classes


class _StrictUfunc:
    def __init__(self, ufunc):
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args, **kwargs):
        return _wrap(self._ufunc(*_unwrap(args), **_unwrap(kwargs)))

    def __getattr__(self, name):
        value = getattr(self._ufunc, name)
        if not callable(value):
            return value
        return lambda *args, **kwargs: _wrap(value(*_unwrap(args), **_unwrap(kwargs)))


class _StrictGenerator:
    """A NumPy generator writing into device arrays (the backend's RNG)."""

    def __init__(self, generator):
        self.generator = generator
        self.bit_generator = generator.bit_generator

    def random(self, *args, out=None, **kwargs):
        return _wrap(self.generator.random(*args, out=_unwrap(out), **kwargs))


class StrictBackend(Backend):
    """CPU arithmetic under the GPU's rules (tests only; not a --device)."""

    name = "strict"
    defers_reads = True  # as CuPy: the trainer keeps a step's checks on the device

    def __init__(self):
        self.xp = _StrictModule()

    def rng(self, seed):
        return _StrictGenerator(np.random.default_rng(seed))

    def asarray(self, host_array, dtype=None):
        if isinstance(host_array, StrictArray):
            return host_array if dtype is None else host_array.astype(dtype)
        array = np.asarray(host_array, dtype=dtype)
        return StrictArray(array if array.flags.c_contiguous else np.ascontiguousarray(array))

    def to_host(self, array):
        return array.get() if isinstance(array, StrictArray) else np.asarray(array)
