"""A fused Program run as array calls: one ufunc per instruction, each writing with `out=`.

The pure-NumPy path (the JIT off or not installed) and the CuPy path until a CUDA generator
exists: `xp` is the backend's array module. The temporaries are allocated on the first call
for a set of input shapes and kept, so a steady-state call allocates nothing (a call with
`out=None` allocates its result). The instructions are the ones the op's own forward runs,
in the same order, so results equal the unfused ops' to the bit on NumPy.
"""

from __future__ import annotations

import numpy as np

from nnctl.compile.kernels.expr import COMPARE, Program, flatten
from nnctl.ops.blocks import constant_block

_UFUNCS = {  # instruction -> name of the xp ufunc
    "add": "add", "sub": "subtract", "mul": "multiply", "div": "divide", "neg": "negative",
    "gt": "greater", "ge": "greater_equal", "lt": "less", "le": "less_equal", "eq": "equal",
    "ne": "not_equal", "exp": "exp", "expm1": "expm1", "log": "log", "log1p": "log1p",
    "sqrt": "sqrt", "abs": "absolute", "sign": "sign", "sin": "sin", "cos": "cos",
    "tanh": "tanh", "pow": "power", "maximum": "maximum", "minimum": "minimum",
}
_BOOL = set(COMPARE.values())


def numpy_kernel(program: Program, xp):
    """`kernel(out, *arrays) -> out` evaluating `program` with xp's ufuncs; `out` may be None."""
    instrs = flatten(program)
    n_in = program.n_inputs
    names = {f"x{k}": k for k in range(n_in)}
    last_use: dict[str, int] = {}
    for i, ins in enumerate(instrs):
        for a in ins.args:
            if isinstance(a, str):
                last_use[a] = i
    ones = (1,) * program.ndim
    layouts: dict[tuple, list] = {}

    def layout(shapes: tuple, dtypes: tuple, out_shape: tuple) -> list:
        """The steps for these input shapes: (function, env indices or literals, dest index,
        kind), env = [*inputs, out, *temporaries]."""
        env_shape = {f"x{k}": s for k, s in enumerate(shapes)}
        env_dtype = {f"x{k}": d for k, d in enumerate(dtypes)}
        where = {f"x{k}": k for k in range(n_in)}
        temps: list = []
        free: dict[tuple, list[int]] = {}

        def alloc(shape, dtype) -> int:
            stack = free.get((shape, dtype))
            if stack:
                return stack.pop()
            temps.append(xp.empty(shape, dtype=dtype))
            return n_in + 1 + len(temps) - 1

        def ref(a):
            return where[a] if isinstance(a, str) else float(a)

        def shape_of(a):
            return env_shape[a] if isinstance(a, str) else ()

        steps = []
        for i, ins in enumerate(instrs):
            final = i == len(instrs) - 1
            shape = _broadcast(*[shape_of(a) for a in ins.args])
            dtype = "bool" if ins.fn in _BOOL else program.dtype
            args = [ref(a) for a in ins.args]  # env indices (int) and literals (float)
            if ins.fn == "where" and (not isinstance(ins.args[0], str)
                                      or env_dtype[ins.args[0]] != "bool"):
                cond = alloc(shape_of(ins.args[0]), "bool")  # nonzero, as np.where reads it
                steps.append((xp.not_equal, (args[0], 0.0), cond, "ufunc"))
                args[0] = cond
            # the last instruction writes the output; where writes before it reads its
            # branches, so it goes through a temporary when it reads an input (`out` may
            # alias an input)
            direct = final and shape == tuple(out_shape) and not (
                ins.fn == "where" and any(a in names for a in ins.args[:2]
                                          if isinstance(a, str)))
            dest = n_in if direct else alloc(shape, dtype)
            fn = getattr(xp, _UFUNCS[ins.fn]) if ins.fn in _UFUNCS else None
            if ins.fn in ("maximum", "minimum"):
                # a literal as a block of the constant: NumPy's fast loop needs two arrays
                args = [constant_block(xp, a, shape, program.dtype) if type(a) is float else a
                        for a in args]
            if ins.fn == "where" and ins.args[1:] == (1.0, 0.0) and \
                    shape_of(ins.args[0]) == shape:
                # where(c, 1, 0) of a bool c is c as a number (step's lowering): one casting
                # copy instead of a fill and a masked copy
                steps.append((None, (args[0],), dest, "copy"))
            else:
                steps.append((fn, tuple(args), dest, "ufunc" if fn else ins.fn))
            for a in {a for a in ins.args if isinstance(a, str)}:
                if last_use.get(a) == i and a not in names:
                    free.setdefault((env_shape[a], env_dtype[a]), []).append(where[a])
            env_shape[ins.dest], env_dtype[ins.dest], where[ins.dest] = shape, dtype, dest
            if final and not direct:
                steps.append((None, (dest,), n_in, "copy"))
        return [steps, temps]

    def runner(out, arrays):
        """The straight-line function for these shapes (built at their first call)."""
        key = (out.shape,) + tuple(getattr(a, "shape", ()) for a in arrays)
        run = layouts.get(key)
        if run is None:
            steps, temps = layout(key[1:], program.input_dtypes, out.shape)
            run = layouts[key] = _straight_line(steps, temps, n_in, xp)
        return run

    def kernel(out, *arrays):
        if out is None:
            shape = _broadcast(ones, *[getattr(a, "shape", ()) for a in arrays])
            out = xp.empty(shape, dtype=program.dtype)
        runner(out, arrays)(*arrays, out)
        return out

    def bind(out, *arrays):
        """A launcher for these very arrays (a plan's buffers, the same at every run): the
        straight-line function looked up once, `launch(out, *arrays)` ignores its args."""
        run, bound = runner(out, arrays), (*arrays, out)

        def launch(_out, *_arrays):
            run(*bound)
            return out
        return launch

    kernel.program = program
    kernel.bind = bind
    return kernel


def _straight_line(steps: list, temps: list, n_in: int, xp):
    """The steps as one generated Python function `run(x0, x1, ..., out)`: each array call a
    line of its own, the ufuncs and temporaries bound as globals, the literals inlined. A
    loop over the step list cost ~2-3 us per instruction in Python (its own bookkeeping);
    a small fused group on the NumPy path now costs its ufunc calls and one call more."""
    names = [f"x{k}" for k in range(n_in)] + ["out"] + [f"T{k}" for k in range(len(temps))]
    scope: dict = {"copyto": xp.copyto, **{f"T{k}": t for k, t in enumerate(temps)}}

    def arg(a) -> str:
        if type(a) is int:
            return names[a]
        if isinstance(a, float):
            return repr(a)
        scope[f"C{id(a)}"] = a  # an array constant (ops/blocks.py)
        return f"C{id(a)}"

    lines = [f"def run({', '.join(names[:n_in + 1])}):"]
    for i, (fn, args, dest, kind) in enumerate(steps):
        values = [arg(a) for a in args]
        if kind == "ufunc":
            scope[f"F{i}"] = fn
            lines.append(f"    F{i}({', '.join(values)}, out={names[dest]})")
        elif kind == "where":
            lines.append(f"    copyto({names[dest]}, {values[2]})")
            lines.append(f"    copyto({names[dest]}, {values[1]}, where={values[0]})")
        else:
            lines.append(f"    copyto({names[dest]}, {values[0]})")
    exec(compile("\n".join(lines) + "\n", "<nnctl fused numpy kernel>", "exec"), scope)
    return scope["run"]


def _broadcast(*shapes) -> tuple:
    return tuple(int(d) for d in np.broadcast_shapes(*shapes))  # host tuples, whatever xp is
