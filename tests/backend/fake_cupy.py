"""A stand-in for `cupy` that runs nnctl's CUDA backend on the CPU, its kernels compiled for the
host with g++.

Install it in a test with `fake_cupy.install(monkeypatch)` (sys.modules["cupy"], and CuPy's
0-d results, below); then `nnctl.backend.get_backend("cuda")` builds a CupyBackend on it.

- The array module is nnctl's strict test backend (nnctl/backend/strict.py): NumPy underneath,
  with CuPy's rule that a device array never turns into a NumPy array implicitly. `asarray`
  and `array` copy host data "to the device" (a fresh C-contiguous buffer), as CuPy does.
  Where NumPy returns a scalar (`vdot`, a reduction, a ufunc of 0-d arrays) CuPy returns a
  0-d device array: `install` makes the strict arrays do so too (strict._wrap patched for
  the test).
- `ElementwiseKernel(in_params, out_params, operation, name, ...)` follows CuPy's
  `cupy/_core/_kernel.pyx` (ParameterInfo, _decide_params_type_core, _broadcast,
  _get_out_args_with_params, _get_elementwise_kernel_code):
  - a parameter's type is a one-letter placeholder (bound from the array arguments, outputs
    first) or a NumPy dtype name spelled exactly as `numpy.dtype(t).name` (released CuPy raises
    `ValueError('Wrong type float')` for "float", "double", ...); `raw` passes the array whole;
  - an array argument of a fixed-type parameter must have exactly that dtype, and a
    placeholder's arrays must agree (TypeError 'Type is mismatched'); scalars take the
    parameter's type;
  - the non-raw arrays, inputs and given outputs, broadcast to one shape; a given non-raw output
    must have that shape ('Out shape is mismatched'); outputs not given are allocated;
  - `size=` only when no non-raw array is given ('Specified 'size' can be used only if all of
    the ndarray are 'raw''); without it and without a non-raw array, 'Loop size is undecided.';
  - a NumPy (host) array argument is refused with TypeError, as CuPy refuses it.
  The kernel becomes one host C++ function that loops i over the elements: the non-raw arrays
  broadcast and made C-contiguous on the host (outputs written back), an input element a
  `const T&`, an output element a `T&`, a raw array an indexable `x[k]` / `x.size()` over its
  C-order elements (CuPy's CArray), the placeholders typedef'd, the preamble above it.
- `RawModule(code=...)`: the CUDA source itself is compiled for the host (`__global__` and
  `__device__` defined away, `blockIdx`/`blockDim`/`threadIdx` globals), with a launcher per
  `extern "C" __global__` function that loops over the grid and the block. A call
  `f(grid, block, args)` passes each device array's data pointer as it stands (no copy: a
  kernel that assumes a layout reads what a GPU would read) and each scalar by its dtype; a
  scalar whose dtype is not the parameter's type, or an array whose dtype is not the pointer's,
  raises (on a GPU it would read garbage).
- Libraries are compiled with `g++ -O1 -shared -fPIC -ffp-contract=off` (no fused multiply-add,
  as `--fmad=false`) into one temporary folder and cached by source text; `COMPILES` lists each
  compile, so a test can check that kernels are built once.
- `cuda.runtime.getDeviceCount()` is 1; `cuda.Stream.null.synchronize()`,
  `cuda.Device().synchronize()` and `cuda.get_current_stream()` do nothing. `FakeCupy` has no
  stream capture (train.cuda_graphs falls back to eager steps, with a notice);
  `install(monkeypatch, capture=True)` gives `CapturingFakeCupy`, built on nnctl's recording
  backend (nnctl/backend/recording.py): `cuda.Stream(non_blocking=True)`, `begin_capture`,
  `end_capture` and the graph's `launch` as CUDA does them, kernel launches recorded with the
  other calls and replayed on the same arrays.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import shutil
import subprocess
import tempfile
import types
from pathlib import Path

import numpy as np

from nnctl.backend import recording
from nnctl.backend.recording import RecordingArray, _RecordingModule
from nnctl.backend.strict import StrictArray, _StrictModule

#: (kind, name) of every g++ compile this process ran
COMPILES: list[tuple[str, str]] = []
#: kernel name -> launches, this process
LAUNCHES: dict[str, int] = {}
#: kernel objects made (ElementwiseKernel, RawModule.get_function), this process
MADE: list[str] = []
_LIBRARIES: dict[str, ctypes.CDLL] = {}
_FOLDER: list[Path] = []

HOST_PRELUDE = r"""
#include <cmath>
#include <cstring>
#include <cstdint>
using namespace std;
#define __device__
#define __global__
#define __host__
#define __forceinline__ inline
struct nnctl_dim3 { unsigned int x, y, z; };
static nnctl_dim3 threadIdx, blockIdx, blockDim, gridDim;

static inline unsigned short nnctl_f2h(float f) {  // round to nearest even, as __float2half
  unsigned int x; memcpy(&x, &f, 4);
  unsigned int sign = (x >> 16) & 0x8000u, mant = x & 0x7fffffu;
  int exp = (int)((x >> 23) & 0xff);
  if (exp == 0xff) return (unsigned short)(sign | 0x7c00u | (mant ? 0x200u | (mant >> 13) : 0u));
  int e = exp - 127 + 15;
  if (e >= 0x1f) return (unsigned short)(sign | 0x7c00u);
  if (e <= 0) {
    if (e < -10) return (unsigned short)sign;
    mant |= 0x800000u;
    int shift = 14 - e;
    unsigned int half = mant >> shift, rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) half++;
    return (unsigned short)(sign | half);
  }
  unsigned int half = ((unsigned int)e << 10) | (mant >> 13), rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) half++;
  return (unsigned short)(sign | half);
}
static inline float nnctl_h2f(unsigned short h) {
  unsigned int sign = (unsigned int)(h & 0x8000u) << 16, mant = h & 0x3ffu, x;
  int exp = (h >> 10) & 0x1f;
  if (exp == 0x1f) x = sign | 0x7f800000u | (mant << 13);
  else if (exp == 0) {
    if (!mant) x = sign;
    else {
      int e = -1;
      do { e++; mant <<= 1; } while (!(mant & 0x400u));
      x = sign | ((unsigned int)(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else x = sign | ((unsigned int)(exp - 15 + 127) << 23) | (mant << 13);
  float f; memcpy(&f, &x, 4); return f;
}
// CuPy's float16 (cupy/_core/include/cupy/carray.cuh): stored as half, computed as float
struct float16 {
  unsigned short bits;
  float16() {}
  float16(float v) : bits(nnctl_f2h(v)) {}
  float16(double v) : bits(nnctl_f2h((float)v)) {}
  float16(int v) : bits(nnctl_f2h((float)v)) {}
  float16(long long v) : bits(nnctl_f2h((float)v)) {}
  float16(bool v) : bits(nnctl_f2h(v ? 1.0f : 0.0f)) {}
  operator float() const { return nnctl_h2f(bits); }
  float16 operator-() const { float16 r; r.bits = (unsigned short)(bits ^ 0x8000u); return r; }
  float16& operator+=(float v) { *this = float16((float)*this + v); return *this; }
  float16& operator-=(float v) { *this = float16((float)*this - v); return *this; }
  float16& operator*=(float v) { *this = float16((float)*this * v); return *this; }
  float16& operator/=(float v) { *this = float16((float)*this / v); return *this; }
};
static inline bool isnan(float16 v) { return std::isnan((float)v); }
static inline bool isinf(float16 v) { return std::isinf((float)v); }
static inline bool isfinite(float16 v) { return std::isfinite((float)v); }

// CuPy's CArray as a raw parameter: x[k] is the k-th element in C order, x.size() the count
template <typename T> struct nnctl_raw {
  T* data_;
  long long size_;
  T& operator[](long long k) const { return data_[k]; }
  long long size() const { return size_; }
};
struct nnctl_indexer { long long size_; long long size() const { return size_; } };
"""

# dtype name -> (the C type in kernels, the ctypes type of a scalar)
_TYPES = {
    "bool": ("bool", ctypes.c_bool), "int8": ("signed char", ctypes.c_int8),
    "int16": ("short", ctypes.c_int16), "int32": ("int", ctypes.c_int32),
    "int64": ("long long", ctypes.c_int64), "uint8": ("unsigned char", ctypes.c_uint8),
    "uint16": ("unsigned short", ctypes.c_uint16), "uint32": ("unsigned int", ctypes.c_uint32),
    "uint64": ("unsigned long long", ctypes.c_uint64), "float16": ("float16", ctypes.c_uint16),
    "float32": ("float", ctypes.c_float), "float64": ("double", ctypes.c_double),
}
# the C spellings RawModule kernels use for their parameters -> dtype
_C_NAMES = {"bool": "bool", "char": "int8", "signed char": "int8", "unsigned char": "uint8",
            "short": "int16", "unsigned short": "uint16", "int": "int32",
            "unsigned int": "uint32", "unsigned": "uint32", "long": "int64",
            "long long": "int64", "long long int": "int64", "unsigned long long": "uint64",
            "unsigned long": "uint64", "size_t": "uint64", "ptrdiff_t": "int64",
            "float": "float32", "double": "float64", "float16": "float16", "__half": "float16",
            "half": "float16", "int64_t": "int64", "int32_t": "int32", "uint32_t": "uint32",
            "uint64_t": "uint64"}


class RaceHazard(RuntimeError):
    """A launch whose arguments overlap so that GPU threads would race (see
    ElementwiseKernel._check_overlaps)."""


class CompileError(RuntimeError):
    """g++ refused a kernel (on a GPU, NVRTC would have refused it too, or the fake lacks a
    CUDA spelling: the message shows the source)."""


def _compile(source: str, kind: str, name: str) -> ctypes.CDLL:
    library = _LIBRARIES.get(source)
    if library is not None:
        return library
    if shutil.which("g++") is None:
        raise CompileError("fake cupy: g++ is needed to build the kernels for the host")
    if not _FOLDER:
        _FOLDER.append(Path(tempfile.mkdtemp(prefix="fake_cupy_")))
    digest = hashlib.sha1(source.encode()).hexdigest()[:16]
    cpp, so = _FOLDER[0] / f"{name}_{digest}.cpp", _FOLDER[0] / f"{name}_{digest}.so"
    cpp.write_text(source)
    result = subprocess.run(["g++", "-O1", "-shared", "-fPIC", "-ffp-contract=off", "-w",
                             "-o", str(so), str(cpp)], check=False, capture_output=True, text=True,
                            timeout=300)
    if result.returncode:
        numbered = "\n".join(f"{k + 1:4d} {line}" for k, line in enumerate(source.splitlines()))
        raise CompileError(f"fake cupy: g++ cannot build {kind} {name!r}:\n"
                           f"{result.stderr[-3000:]}\n{numbered[-6000:]}")
    COMPILES.append((kind, name))
    library = _LIBRARIES[source] = ctypes.CDLL(str(so))
    return library


def _pointer(array: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(array.__array_interface__["data"][0])


def _device_array(value, what: str):
    if isinstance(value, StrictArray):
        return value.a
    if isinstance(value, np.ndarray):
        raise TypeError(f"Unsupported type {type(value)} ({what}: a host NumPy array; CuPy "
                        "takes device arrays only)")
    return None


def _is_scalar(value) -> bool:
    return isinstance(value, (bool, int, float, np.generic))


# ---- ElementwiseKernel ----------------------------------------------------------------------

class _Param:
    def __init__(self, text: str, is_const: bool):
        tokens = text.split()
        if len(tokens) < 2:
            raise SyntaxError(f"Syntax error: {text}")  # CuPy raises a bare Exception
        t, self.name = tokens[-2:]
        self.raw, self.is_const = False, is_const
        for word in tokens[:-2]:
            if word == "raw":
                self.raw = True
            elif word == "_non_const":
                self.is_const = False
            else:
                raise SyntaxError(f'Unknown keyword "{word}"')
        if len(t) == 1:
            self.dtype, self.ctype = None, t
        else:
            dtype = np.dtype(t)
            if dtype.name != t:  # released CuPy (v9..v13): "float", "double" are refused
                raise ValueError(f"Wrong type {t}")
            self.dtype, self.ctype = dtype, _TYPES[dtype.name][0]


def _params(text: str, is_const: bool) -> list[_Param]:
    return [_Param(p, is_const) for p in text.strip().split(",")] if text.strip() else []


class ElementwiseKernel:
    """CuPy's ElementwiseKernel, run as a host loop (see the module's docstring)."""

    def __init__(self, in_params, out_params, operation, name="kernel", reduce_dims=True,
                 preamble="", no_return=False, return_tuple=False, **kwargs):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f'Invalid kernel name: "{name}"')
        self.in_params = _params(in_params, True)
        self.out_params = _params(out_params, False)
        self.nin, self.nout = len(self.in_params), len(self.out_params)
        self.nargs = self.nin + self.nout
        if "i" in [p.name for p in self.in_params + self.out_params]:
            raise ValueError("Can not use 'i' as a parameter name")
        self.operation, self.name, self.preamble = operation, name, preamble
        self.no_return, self.return_tuple = no_return, return_tuple
        self.options = kwargs.get("options", ())
        self.launches = 0
        MADE.append(name)

    def _types(self, args):
        """CuPy's _decide_params_type_core: outputs bind placeholders first, exact dtypes."""
        bound: dict[str, np.dtype] = {}
        outs = args[self.nin:]
        for p, a in zip(self.out_params, outs):
            if not isinstance(a, StrictArray):
                raise TypeError("Output arguments must be cupy.ndarray")
            if p.dtype is not None:
                if a.dtype != p.dtype:
                    raise TypeError(f"Type is mismatched. {p.name} {a.dtype} {p.dtype}")
            elif p.ctype in bound:
                if bound[p.ctype] != a.dtype:
                    raise TypeError(f"Type is mismatched. {p.name} {a.dtype} "
                                    f"{bound[p.ctype]} {p.ctype}")
            else:
                bound[p.ctype] = np.dtype(a.dtype)
        for p, a in zip(self.in_params, args[:self.nin]):
            if not isinstance(a, StrictArray):
                continue
            if p.dtype is not None:
                if a.dtype != p.dtype:
                    raise TypeError(f"Type is mismatched. {p.name} {a.dtype} {p.dtype}")
            elif p.ctype in bound:
                if bound[p.ctype] != a.dtype:
                    raise TypeError(f"Type is mismatched. {p.name} {a.dtype} "
                                    f"{bound[p.ctype]} {p.ctype}")
            else:
                bound[p.ctype] = np.dtype(a.dtype)

        def dtype_of(p):
            if p.dtype is not None:
                return p.dtype
            if p.ctype not in bound:
                raise TypeError(f"{self.name}: the type {p.ctype} of {p.name} is bound by no "
                                "array argument")
            return bound[p.ctype]
        return ([dtype_of(p) for p in self.in_params], [dtype_of(p) for p in self.out_params],
                bound)

    def __call__(self, *args, size=None, **kwargs):
        kwargs.pop("stream", None)
        kwargs.pop("block_size", None)
        if kwargs:
            raise TypeError(f"Wrong arguments {kwargs}")
        if len(args) not in (self.nin, self.nargs):
            raise TypeError(f"Wrong number of arguments for {self.name!r}. It must be either "
                            f"{self.nin} or {self.nargs} (with outputs), but given {len(args)}.")
        params = self.in_params + self.out_params
        for k, a in enumerate(args):
            if _device_array(a, f"argument {k} of {self.name}") is None and not _is_scalar(a):
                raise TypeError(f"Unsupported type {type(a)}")
        nonraw = [a for a, p in zip(args, params) if not p.raw and isinstance(a, StrictArray)]
        if size is not None and nonraw:
            raise ValueError("Specified 'size' can be used only if all of the ndarray are "
                             "'raw'.")
        if size is None and not nonraw:
            raise ValueError("Loop size is undecided.")
        shape = tuple(np.broadcast_shapes(*[a.shape for a in nonraw])) if nonraw else ()
        in_types, out_types, bound = self._types(args)
        if size is not None:
            shape = (int(size),)
        outs = list(args[self.nin:])
        if not outs:
            for p in self.out_params:
                if p.raw and size is None:
                    raise ValueError("Output array size is Undecided")
            outs = [FAKE.empty(shape, dtype=t) for t in out_types]
        else:
            for p, a in zip(self.out_params, outs):
                if not p.raw and tuple(a.shape) != shape:
                    raise ValueError("Out shape is mismatched")
            self._check_overlaps(args[:self.nin], outs, shape)
        if self.no_return:
            ret = None
        elif not self.return_tuple and self.nout == 1:
            ret = outs[0]
        else:
            ret = tuple(outs)
        n = int(np.prod(shape, dtype=np.int64))
        if n == 0:
            return ret
        function = self._function(args[:self.nin], outs, in_types, out_types, bound)

        def launch(*raw):
            """The kernel on the host arrays (a replay of a captured graph calls it again)."""
            call, write_back, keep = [ctypes.c_longlong(n)], [], []
            for p, host, t in zip(params, raw, in_types + out_types):
                if isinstance(host, np.ndarray):
                    if not p.is_const and host.flags.c_contiguous and \
                            (p.raw or tuple(host.shape) == shape):
                        buffer = host  # written in place
                    else:
                        buffer = np.ascontiguousarray(
                            host if p.raw else np.broadcast_to(host, shape))
                        if not p.is_const:
                            buffer = buffer.copy()
                            write_back.append((host, buffer))
                    keep.append(buffer)
                    call.append(_pointer(buffer))
                    if p.raw:
                        call.append(ctypes.c_longlong(buffer.size))
                else:
                    value = np.asarray(host).astype(t)[()]
                    if t == np.float16:
                        call.append(ctypes.c_uint16(int(np.float16(value).view(np.uint16))))
                    else:
                        call.append(_TYPES[np.dtype(t).name][1](value.item()))
            function(*call)
            for host, buffer in write_back:
                host[...] = buffer.reshape(host.shape)
            LAUNCHES[self.name] = LAUNCHES.get(self.name, 0) + 1

        FAKE._launch(self.name, launch, list(args[:self.nin]) + list(outs))
        self.launches += 1
        return ret

    def _check_overlaps(self, ins, outs, shape):
        """CuPy launches one thread per element and copies nothing: an input that shares
        memory with an output is safe only as the very same elements (each thread reads its
        element, then writes it). Any other overlap is a race on a GPU, which the host loop
        would hide, so it is refused here."""
        def same_elements(a, o):
            return (a.__array_interface__["data"][0] == o.__array_interface__["data"][0]
                    and a.strides == o.strides and tuple(a.shape) == tuple(o.shape) == shape)

        for m, (p, o) in enumerate(zip(self.out_params, outs)):
            for k, (q, a) in enumerate(zip(self.in_params, ins)):
                if isinstance(a, StrictArray) and np.may_share_memory(a.a, o.a) and \
                        (q.raw or p.raw or not same_elements(a.a, o.a)):
                    raise RaceHazard(f"{self.name}: input {q.name} (argument {k}) overlaps "
                                     f"output {p.name} at other elements: threads race on a GPU")
            for n, o2 in enumerate(outs[:m]):
                if np.may_share_memory(o.a, o2.a):
                    raise RaceHazard(f"{self.name}: outputs {n} and {m} overlap")

    def _function(self, ins, outs, in_types, out_types, bound):
        params, decls, loads = [], [], []
        for p, a, t in zip(self.in_params + self.out_params, list(ins) + list(outs),
                           in_types + out_types):
            ctype = _TYPES[np.dtype(t).name][0]
            const = "const " if p.is_const else ""
            if isinstance(a, StrictArray):
                if p.raw:
                    params.append(f"{const}{ctype}* _p_{p.name}, long long _n_{p.name}")
                    decls.append(f"const nnctl_raw<{const}{ctype}> {p.name} = "
                                 f"{{_p_{p.name}, _n_{p.name}}};")
                else:
                    params.append(f"{const}{ctype}* _raw_{p.name}")
                    loads.append(f"{const}{p.ctype if p.dtype is None else ctype} &{p.name} = "
                                 f"_raw_{p.name}[i];")
            else:
                params.append(f"{const}{ctype} {p.name}")
        typedefs = "".join(f"typedef {_TYPES[t.name][0]} {c};\n" for c, t in sorted(bound.items()))
        source = (f"{HOST_PRELUDE}\n{typedefs}\n{self.preamble}\n"
                  f'extern "C" void {self.name}(long long _n, {", ".join(params)}) {{\n'
                  "  const nnctl_indexer _ind = {_n};\n  " + "\n  ".join(decls) + "\n"
                  "  for (long long i = 0; i < _n; i++) {\n    " + "\n    ".join(loads) +
                  f"\n    {self.operation};\n  }}\n}}\n")
        function = getattr(_compile(source, "ElementwiseKernel", self.name), self.name)
        function.restype = None
        return function


# ---- RawModule ------------------------------------------------------------------------------

_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', re.DOTALL)


def _parse_param(text: str):
    """(dtype name, is_pointer) of one kernel parameter."""
    words = text.replace("*", " * ").replace("__restrict__", " ").split()
    pointer = "*" in words
    const = "const" in words[:words.index("*")] if pointer else True
    words = [w for w in words if w not in ("*", "const", "volatile")][:-1]  # drop the name
    return _C_NAMES.get(" ".join(words)), pointer, " ".join(words), const


class _RawFunction:
    def __init__(self, library, name, params, log):
        self.name, self.params, self.log = name, params, log
        self.function = getattr(library, f"nnctl_fake_launch_{name}")
        self.function.restype = None

    def __call__(self, grid, block, args, shared_mem=0, stream=None):
        grid = tuple(grid) if isinstance(grid, (tuple, list)) else (grid,)
        block = tuple(block) if isinstance(block, (tuple, list)) else (block,)
        grid, block = (grid + (1, 1))[:3], (block + (1, 1))[:3]
        args = tuple(args)
        if len(args) != len(self.params):
            raise TypeError(f"fake cupy: {self.name} takes {len(self.params)} arguments, "
                            f"launched with {len(args)}")
        arrays = [(k, a.a, self.params[k][3]) for k, a in enumerate(args)
                  if isinstance(a, StrictArray)]
        for j, (k, a, const) in enumerate(arrays):
            for k2, a2, const2 in arrays[:j]:
                if not (const and const2) and np.may_share_memory(a, a2):
                    raise RaceHazard(f"{self.name}: arguments {k2} and {k} overlap and one is "
                                     "written: threads race on a GPU")
        values = []  # per argument: None for an array, else the scalar as its ctypes value
        for k, (a, (dtype, pointer, spelled, _)) in enumerate(zip(args, self.params)):
            host = _device_array(a, f"argument {k} of {self.name}")
            if host is not None:
                if not pointer:
                    raise TypeError(f"fake cupy: {self.name} argument {k} is an array for the "
                                    f"scalar parameter {spelled}")
                if dtype is not None and np.dtype(dtype) != host.dtype:
                    raise TypeError(f"fake cupy: {self.name} argument {k}: a {host.dtype} array "
                                    f"for a {spelled}* (a GPU reads it as {spelled})")
                values.append(None)
                continue
            if isinstance(a, bool):
                a = np.bool_(a)
            elif isinstance(a, int):
                a = np.int64(a)  # CuPy passes a Python int as a 64-bit integer
            elif isinstance(a, float):
                a = np.float64(a)
            if not isinstance(a, np.generic):
                raise TypeError(f"Unsupported type {type(a)}")
            if pointer or dtype is None or np.dtype(dtype) != a.dtype:
                raise TypeError(f"fake cupy: {self.name} argument {k} is a {a.dtype} scalar for "
                                f"the parameter {spelled}{'*' if pointer else ''}")
            values.append(_TYPES[a.dtype.name][1](a.item()))
        dims = [ctypes.c_uint(int(v)) for v in grid + block]

        def launch(*raw):
            call = list(dims)
            for host, value in zip(raw, values):
                call.append(_pointer(host) if value is None else value)
            self.function(*call)
            LAUNCHES[self.name] = LAUNCHES.get(self.name, 0) + 1

        self.log.append((self.name, grid, block))
        FAKE._launch(self.name, launch, [a if v is None else None for a, v in zip(args, values)])


class RawModule:
    """CuPy's RawModule on the host: the CUDA source compiled by g++ with grid launchers."""

    def __init__(self, code=None, path=None, options=(), backend="nvrtc", translate_cucomplex=False,
                 enable_cooperative_groups=False, name_expressions=None, jitify=False):
        if code is None:
            code = Path(path).read_text()
        self.code = code
        self.kernels = {name: [_parse_param(p) for p in params.split(",") if p.strip()]
                        for name, params in _KERNEL.findall(code)}
        launchers = []
        for name, params in _KERNEL.findall(code):
            plist = [p.strip() for p in params.split(",") if p.strip()]
            names = [re.split(r"[\s*]+", p)[-1] for p in plist]
            launchers.append(
                f'extern "C" void nnctl_fake_launch_{name}(unsigned nnctl_gx, unsigned nnctl_gy, '
                'unsigned nnctl_gz, unsigned nnctl_bx, unsigned nnctl_by, unsigned nnctl_bz'
                f'{"".join(", " + p for p in plist)}) {{\n'
                "  gridDim = {nnctl_gx, nnctl_gy, nnctl_gz};\n"
                "  blockDim = {nnctl_bx, nnctl_by, nnctl_bz};\n"
                "  for (unsigned nnctl_z = 0; nnctl_z < nnctl_gz; nnctl_z++)\n"
                "  for (unsigned nnctl_y = 0; nnctl_y < nnctl_gy; nnctl_y++)\n"
                "  for (unsigned nnctl_x = 0; nnctl_x < nnctl_gx; nnctl_x++) {\n"
                "    blockIdx = {nnctl_x, nnctl_y, nnctl_z};\n"
                "    for (unsigned nnctl_tz = 0; nnctl_tz < nnctl_bz; nnctl_tz++)\n"
                "    for (unsigned nnctl_ty = 0; nnctl_ty < nnctl_by; nnctl_ty++)\n"
                "    for (unsigned nnctl_tx = 0; nnctl_tx < nnctl_bx; nnctl_tx++) {\n"
                "      threadIdx = {nnctl_tx, nnctl_ty, nnctl_tz};\n"
                f"      {name}({', '.join(names)});\n    }}\n  }}\n}}\n")
        self.source = HOST_PRELUDE + "\n" + code + "\n" + "\n".join(launchers)
        self.library = None
        self.log: list = []

    def get_function(self, name):
        if name not in self.kernels:
            raise RuntimeError(f"fake cupy: no extern \"C\" __global__ function {name!r}")
        if self.library is None:
            self.library = _compile(self.source, "RawModule", name)
        MADE.append(name)
        return _RawFunction(self.library, name, self.kernels[name], self.log)


# ---- the module -----------------------------------------------------------------------------

class _Stream:
    def synchronize(self) -> None:
        pass

    ptr = 0


class _Device:
    def __init__(self, index: int = 0):
        self.id = index

    def synchronize(self) -> None:
        pass

    def use(self) -> None:
        pass


def _cuda_namespace():
    stream = _Stream()
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0)
    return types.SimpleNamespace(
        runtime=runtime, Stream=types.SimpleNamespace(null=stream), Device=_Device,
        get_current_stream=lambda: stream)


class _CupyNames:
    """What `cupy` has beside NumPy's names (mixed into the array module classes below)."""

    ElementwiseKernel = ElementwiseKernel
    RawModule = RawModule
    ndarray = StrictArray

    def asarray(self, a, dtype=None, order=None):
        if isinstance(a, StrictArray):
            return a if dtype is None or a.dtype == np.dtype(dtype) else a.astype(dtype)
        self._host_to_device("asarray() of host data")
        return self._array_class(np.array(a, dtype=dtype, order="C", copy=True))

    def array(self, a, dtype=None, copy=True, order="K", ndmin=0):
        if isinstance(a, StrictArray):
            return a.astype(a.dtype if dtype is None else dtype, order=order, copy=True)
        self._host_to_device("array() of host data")
        return self._array_class(np.array(a, dtype=dtype, copy=True, order=order, ndmin=ndmin))

    def asnumpy(self, a, stream=None, order="C", out=None):
        host = a.get() if isinstance(a, StrictArray) else np.asarray(a)
        if out is not None:
            out[...] = host
            return out
        return host

    def take(self, a, indices, axis=None, out=None):
        """CuPy's take converts host indices (cupy._core._routines_indexing); it wraps an
        index out of range (CuPy's only mode)."""
        if not isinstance(indices, StrictArray):
            indices = self.asarray(indices)
        return self._numpy_call("take", np.take, (a, indices),
                                {"axis": axis, "out": out, "mode": "wrap"})

    def get_array_module(self, *args):
        return self if any(isinstance(a, StrictArray) for a in args) else np

    def _host_to_device(self, what: str) -> None:
        pass


class FakeCupy(_CupyNames, _StrictModule):
    """`cupy` for nnctl: the strict array module named "cupy", with CuPy's kernels; no
    stream capture (train.cuda_graphs falls back to eager steps)."""

    _array_class = StrictArray

    def __init__(self):
        _StrictModule.__init__(self, np, "cupy")
        self.cuda = _cuda_namespace()

    @staticmethod
    def _launch(label, launch, args) -> None:
        launch(*[a.a if isinstance(a, StrictArray) else a for a in args])

    @staticmethod
    def _numpy_call(label, fn, args, kwargs):
        from nnctl.backend import strict
        return strict._wrap(fn(*strict._unwrap(args), **strict._unwrap(kwargs)))


class CapturingFakeCupy(_CupyNames, _RecordingModule):
    """`cupy` on nnctl's recording backend (nnctl/backend/recording.py): CuPy's stream
    capture as CUDA does it. During `Stream.begin_capture()` .. `end_capture()` nothing
    runs: every array-module call and every kernel launch is recorded with its arrays by
    reference and its scalars by value, and a host read or a host->device copy raises
    CaptureError; the graph's `launch()` replays them in order on the same arrays."""

    _array_class = RecordingArray
    ndarray = StrictArray  # RecordingArray is one

    def __init__(self):
        _RecordingModule.__init__(self, np, "cupy")
        self.cuda = _capturing_cuda_namespace()

    @staticmethod
    def _launch(label, launch, args) -> None:
        recording._call(label, launch, tuple(args), {})

    @staticmethod
    def _numpy_call(label, fn, args, kwargs):
        return recording._call(label, fn, args, kwargs)

    def _host_to_device(self, what: str) -> None:
        if recording._active is not None:
            recording._refuse(what, "a host->device transfer, which CuPy refuses while a "
                                    "stream captures")

    def asnumpy(self, a, stream=None, order="C", out=None):
        recording._host_read("asnumpy()")
        return _CupyNames.asnumpy(self, a, stream, order, out)


class _FakeGraph:
    def __init__(self, graph):
        self.graph = graph

    def launch(self, stream=None) -> None:
        self.graph.launch()


class _CapturingStream:
    """cupy.cuda.Stream with begin_capture/end_capture over the recording backend."""

    def __init__(self, null=False, non_blocking=False, ptds=False):
        self.ptr = 0
        self._capture = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self) -> None:
        recording._host_read("Stream.synchronize()")

    def begin_capture(self, mode=None) -> None:
        if recording._active is not None:
            raise recording.CaptureError("a capture is in progress already")
        self._capture = recording._active = recording._Capture()

    def end_capture(self):
        capture, self._capture = self._capture, None
        recording._active = None
        capture.end()
        return _FakeGraph(recording.RecordedGraph(capture, None))

    def is_capturing(self) -> bool:
        return self._capture is not None


class _MemoryPool:
    def malloc(self, size):
        raise NotImplementedError("fake cupy: arrays are NumPy's; nothing is allocated here")


class _UsingAllocator:
    def __init__(self, allocator=None):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _capturing_cuda_namespace():
    null = _CapturingStream(null=True)
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0)
    stream = type("Stream", (_CapturingStream,), {"null": null})
    return types.SimpleNamespace(
        runtime=runtime, Stream=stream, Device=_Device, MemoryPool=_MemoryPool,
        using_allocator=_UsingAllocator, get_current_stream=lambda: null)


FAKE = None


def wrap(value):
    """strict._wrap with CuPy's rule for scalars: where NumPy gives a scalar (a reduction,
    a ufunc of 0-d arrays, an element read), CuPy gives a 0-d device array."""
    if isinstance(value, np.ndarray):
        return StrictArray(value)
    if isinstance(value, np.generic):
        return StrictArray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(wrap(v) for v in value)
    if isinstance(value, list):
        return [wrap(v) for v in value]
    return value


class HostArray(TypeError):
    """A host NumPy array given to a device operation (CuPy: 'Unsupported type
    <class 'numpy.ndarray'>'; it never copies host data to the device implicitly)."""


def unwrap(value):
    """strict._unwrap with CuPy's refusal of host arrays: a NumPy array (not 0-d) among the
    arguments of a ufunc, an array-module function or an array method raises HostArray, as
    CuPy's ufuncs and routines raise TypeError (cupy/cupy#594)."""
    if isinstance(value, StrictArray):
        return value.a
    if isinstance(value, np.ndarray) and value.ndim:
        raise HostArray(f"Unsupported type {type(value)}: a host array of shape {value.shape} "
                        "given to a device operation (CuPy copies host data only through "
                        "asarray/array)")
    if isinstance(value, (list, tuple)):
        return type(value)(unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    return value


def _lenient(key):
    if isinstance(key, StrictArray):
        return key.a
    if isinstance(key, tuple):
        return tuple(_lenient(k) for k in key)
    return key  # CuPy takes host index arrays (it converts them)


def _setitem(self, key, value):
    """CuPy's __setitem__: a device array or a scalar; a host array only as `a[:] = host`
    (cupy/cupy#2079), anything else is 'non-scalar numpy.ndarray cannot be used for fill'."""
    if isinstance(value, np.ndarray) and value.ndim and not (
            isinstance(key, slice) and key == slice(None)):
        raise HostArray("non-scalar numpy.ndarray cannot be used for fill (CuPy takes a host "
                        "array only as a[:] = host)")
    self.a[_lenient(key)] = value.a if isinstance(value, StrictArray) else value


def install(monkeypatch, capture: bool = False) -> FakeCupy:
    """A fresh fake installed as `cupy` for one test: sys.modules["cupy"], and the strict
    arrays made to keep CuPy's rules where they are laxer (undone after the test): results
    are 0-d device arrays where NumPy gives scalars, and host arrays are refused by ufuncs,
    routines and methods (index arrays excepted) and taken by __setitem__ only as a[:] = host."""
    import sys

    from nnctl.backend import strict
    fake = module(capture)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    if capture:  # the recording backend's own rules (0-d results; host data refused in a
        # capture) stand
        return fake
    monkeypatch.setattr(strict, "_wrap", wrap)
    monkeypatch.setattr(strict, "_unwrap", unwrap)
    monkeypatch.setattr(StrictArray, "__getitem__", lambda self, key: wrap(self.a[_lenient(key)]))
    monkeypatch.setattr(StrictArray, "__setitem__", _setitem)
    return fake


def module(capture: bool = False) -> FakeCupy:
    """A fresh stand-in `cupy` module (kernels compiled before are reused from the cache);
    `capture`: the one with CUDA-graph capture (CapturingFakeCupy)."""
    global FAKE
    FAKE = CapturingFakeCupy() if capture else FakeCupy()
    return FAKE
