"""CPU code generation for fused Programs: Python source compiled by numba, cached on disk.

`source(program)` writes one module with two loop nests over the collapsed output dims (see
`Program.groups`): `serial`, and `parallel` with `prange` over the outer loop. Each input is
reshaped, at call time, to the groups it varies over and indexed by those loop counters, so a
bias row, a per-row scalar or a 0-d scalar is read where it changes, not broadcast first;
loads and the instructions that depend only on outer counters are hoisted out of the inner
loops. Literals are module constants of the output dtype, so float32 stays float32 math.
fastmath stays off and `error_model="numpy"` (x / 0 is inf, not an exception): results match
NumPy's to float round-off.

The source goes to `nnctl.jit.cache_dir()` under a hash of its text and is imported from
there; numba's `cache=True` keeps the machine code beside it, so a second process pays no
compile. numba is imported only here, and this module only when a plan builds a kernel.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys

import numpy as np

from nnctl import jit
from nnctl.compile.kernels.expr import Program, flatten
from nnctl.compile.kernels.numba_math import MATH_VERSION

GENERATOR_VERSION = 2  # part of the source, so a change here makes new files

_RENDER = {
    "add": "{0} + {1}", "sub": "{0} - {1}", "mul": "{0} * {1}", "div": "{0} / {1}",
    "neg": "-{0}", "copy": "{0}",
    "gt": "{0} > {1}", "ge": "{0} >= {1}", "lt": "{0} < {1}", "le": "{0} <= {1}",
    "eq": "{0} == {1}", "ne": "{0} != {1}",
    "exp": "math.exp({0})", "expm1": "math.expm1({0})", "log": "math.log({0})",
    "log1p": "math.log1p({0})", "sqrt": "math.sqrt({0})", "sin": "math.sin({0})",
    "cos": "math.cos({0})", "tanh": "math.tanh({0})", "abs": "abs({0})", "pow": "{0} ** {1}",
    # NumPy's semantics: nan wins in maximum/minimum, sign(nan) is nan
    "maximum": "{0} if {0} >= {1} or {0} != {0} else {1}",
    "minimum": "{0} if {0} <= {1} or {0} != {0} else {1}",
    "sign": "ONE if {0} > ZERO else (-ONE if {0} < ZERO else {0})",
    "where": "{1} if {0} else {2}",
}

# float32 functions numba would call libm for one element at a time: our own, vectorisable
_RENDER_F32 = {"tanh": "tanh32({0})", "exp": "exp32({0})"}

_modules: dict[str, object] = {}


def source(program: Program) -> str:
    """The kernel module's Python source for `program`."""
    instrs = flatten(program)
    render = {**_RENDER, **_RENDER_F32} if program.dtype == "float32" else _RENDER
    groups = program.groups()
    depth_of = len(groups) or 1  # a program with no varying dim still loops once
    consts: dict[float, str] = {}

    def arg(a) -> str:
        if isinstance(a, str):
            return a
        if a not in consts:
            consts[a] = f"C{len(consts)}"
        return consts[a]

    def index(dims: tuple[int, ...]) -> str:
        return ", ".join(f"i{g}" for g in dims) if dims else "0"

    # where each value is first available: the loop depth of its innermost counter
    level: dict[str, int] = {}
    by_level: list[list[str]] = [[] for _ in range(depth_of + 1)]
    for k, mask in enumerate(program.input_masks):
        dims = tuple(g for g, members in enumerate(groups) if mask[members[0]])
        level[f"x{k}"] = max(dims) + 1 if dims else 0
        by_level[level[f"x{k}"]].append(f"x{k} = in{k}[{index(dims)}]")
    for ins in instrs[:-1]:
        level[ins.dest] = max([level[a] for a in ins.args if isinstance(a, str)], default=0)
        by_level[level[ins.dest]].append(
            f"{ins.dest} = " + render[ins.fn].format(*[arg(a) for a in ins.args]))
    last = instrs[-1]
    by_level[depth_of].append(f"out[{index(tuple(range(depth_of)))}] = "
                              + render[last.fn].format(*[arg(a) for a in last.args]))

    dtype = program.dtype
    params = ", ".join(["out"] + [f"in{k}" for k in range(program.n_inputs)])
    counters = ", ".join(f"n{g}" for g in range(depth_of))
    lines = [f"# nnctl fused kernel (generator {GENERATOR_VERSION}, math {MATH_VERSION}), {dtype}",
             f"# {program}", "import math", "", "import numba as nb", "import numpy as np", "",
             "from nnctl.compile.kernels.numba_math import exp32, tanh32  # noqa: F401", "",
             f"ONE = np.{dtype}(1.0)", f"ZERO = np.{dtype}(0.0)"]
    lines += [f"{name} = np.{dtype}({value!r})" for value, name in consts.items()]
    for variant, loop in (("serial", "range"), ("parallel", "nb.prange")):
        lines += ["", "", f"def {variant}({params}):", f"    {counters}, = out.shape"]
        for depth in range(depth_of + 1):
            pad = "    " * (depth + 1)
            lines += [pad + line for line in by_level[depth]]
            if depth < depth_of:
                rng = loop if depth == 0 else "range"
                lines.append(f"{pad}for i{depth} in {rng}(n{depth}):")
    lines += ["", "",
              'serial = nb.njit(cache=True, fastmath=False, error_model="numpy")(serial)',
              'parallel = nb.njit(cache=True, fastmath=False, error_model="numpy",'
              ' parallel=True)(parallel)', ""]
    return "\n".join(lines)


def load(text: str):
    """Import the kernel module with this source from the cache dir (writing it first if
    needed); the same module object for the same text within a process."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:24]
    module = _modules.get(digest)
    if module is not None:
        return module
    name = f"nnctl_fused_{digest}"
    path = jit.cache_dir() / f"{name}.py"
    # NOTE: never rewrite an existing file: numba keys its cache on the file's mtime
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _modules[digest] = module
    return module


_kernels: dict = {}


def numba_kernel(program: Program):
    """`kernel(out, *arrays) -> out` running `program`'s generated loops; `out` may be None,
    else it must be C-contiguous of the output's shape. The parallel variant runs when the
    output is large enough (`nnctl.jit.parallel_pays`). One kernel per distinct program (a
    plan's 95 lone sigmoids share one). `kernel.bind(out, *arrays)` gives a launcher for
    arrays that never change (see below)."""
    kernel = _kernels.get(program)
    if kernel is None:
        kernel = _kernels[program] = _make_kernel(program)
    return kernel


def _make_kernel(program: Program):
    module = load(source(program))
    serial, parallel = module.serial, module.parallel
    groups = program.groups()
    input_groups = [tuple(g for g, members in enumerate(groups) if mask[members[0]])
                    for mask in program.input_masks]
    ones, dtype = (1,) * program.ndim, program.dtype
    shapes: dict[tuple, tuple] = {}

    def collapsed(out_shape: tuple) -> tuple:
        """(the output's loop shape, each input's) for an output of this shape."""
        entry = shapes.get(out_shape)
        if entry is None:
            sizes = [int(np.prod([out_shape[d] for d in members])) for members in groups]
            entry = shapes[out_shape] = (
                tuple(sizes) or (1,),
                tuple(tuple(sizes[g] for g in gs) or (1,) for gs in input_groups))
        return entry

    def launch_args(out, arrays, out_shape, in_shapes) -> tuple:
        # NOTE: an array with as many dims as its loop groups already has the collapsed shape
        # (strided or not: numba indexes any layout); the others are reshaped, a view when
        # contiguous, a copy for a strided input whose dims must merge (one cheap pass: a
        # loop over a strided row is not vectorised, measured 2x slower than copy + kernel)
        run = parallel if jit.parallel_pays(out.size) else serial
        return run, (out if out.ndim == len(out_shape) else out.reshape(out_shape),
                     *[a if a.ndim == len(s) else a.reshape(s)
                       for a, s in zip(arrays, in_shapes)])

    def kernel(out, *arrays):
        if out is None:
            out = np.empty(np.broadcast_shapes(ones, *[np.shape(a) for a in arrays]), dtype)
        elif not out.flags.c_contiguous:
            out[...] = kernel(None, *arrays)
            return out
        run, args = launch_args(out, arrays, *collapsed(out.shape))
        run(*args)
        return out

    def bind(out, *arrays):
        """A launcher for these very arrays, their reshapes and the variant decided once:
        `launch(out, *arrays)` ignores its arguments and runs on the bound ones. For a plan
        whose buffers are the same arrays at every run (~3 us less per call). None where an
        input is a strided array that would have to be copied at each call."""
        if not out.flags.c_contiguous:
            return None
        out_shape, in_shapes = collapsed(out.shape)
        if any(a.ndim != len(s) and not a.flags.c_contiguous
               for a, s in zip(arrays, in_shapes)):
            return None
        run, bound = launch_args(out, arrays, out_shape, in_shapes)

        def launch(_out, *_arrays):
            run(*bound)
            return out
        return launch

    kernel.program = program
    kernel.serial, kernel.parallel = serial, parallel
    kernel.bind = bind
    return kernel
