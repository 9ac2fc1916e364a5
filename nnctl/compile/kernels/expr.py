"""The neutral expression language of fused elementwise kernels, and the fused Program.

Each elementwise op lowers itself to one scalar expression over argument names
(`Op.scalar("a", "b") -> "(a + b)"`). The language is a small subset of Python's expression
syntax, so it is parsed with `ast` and checked against the tables below:

    numbers           0.5, 2.0, -1.5 (a literal takes the kernel's float dtype)
    names             x0, x1, ... (the program's inputs), t0, t1, ... (earlier statements)
    a + b, a - b, a * b, a / b, -a
    a > b, a >= b, a < b, a <= b, a == b, a != b   (only as the condition of where)
    f(args) for f in FUNCTIONS

Nothing here is tied to a target: `flatten` turns a Program into three-address instructions
(`Instr(dest, fn, args)`, fn from FUNCTIONS, BINARY or COMPARE), and each code generator maps
those names to its own (numba_cpu: math.exp, a conditional expression for where; numpy_eval:
the ufuncs with out=; a CUDA generator would map them to CUDA C the same way).
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

FUNCTIONS = {  # name -> (arity, meaning); the semantics are NumPy's, NaN included
    "exp": (1, "e^a"),
    "expm1": (1, "e^a - 1, accurate near 0"),
    "log": (1, "natural log (a <= 0 gives -inf or nan)"),
    "log1p": (1, "log(1 + a), accurate near 0"),
    "sqrt": (1, "square root (nan below 0)"),
    "abs": (1, "|a|"),
    "sign": (1, "-1, 0 or 1 (nan stays nan)"),
    "sin": (1, "sine"),
    "cos": (1, "cosine"),
    "tanh": (1, "hyperbolic tangent"),
    "pow": (2, "a^b"),
    "maximum": (2, "the larger; nan if either is nan"),
    "minimum": (2, "the smaller; nan if either is nan"),
    "where": (3, "b if a (a comparison, or nonzero) else c"),
}
BINARY = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div"}
COMPARE = {ast.Gt: "gt", ast.GtE: "ge", ast.Lt: "lt", ast.LtE: "le", ast.Eq: "eq",
           ast.NotEq: "ne"}
ARITY = {**{name: arity for name, (arity, _) in FUNCTIONS.items()},
         **{name: 2 for name in BINARY.values()}, **{name: 2 for name in COMPARE.values()},
         "neg": 1, "copy": 1}


class ExprError(ValueError):
    """An expression outside the language (a bug in an op's lowering)."""


def lit(value) -> str:
    """A number as a literal of the language (exact: repr of a float round-trips)."""
    value = float(value)
    if not math.isfinite(value):
        raise ExprError(f"{value} has no literal; pass it as an input")
    return repr(value)


def parse(text: str):
    """`text` as a tree of tuples: ("num", float) | ("var", name) | ("neg", a) |
    (fn, a, b, ...) for fn in BINARY, COMPARE or FUNCTIONS. Raises ExprError."""
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as err:
        raise ExprError(f"cannot parse {text!r}: {err.msg}") from None
    return _convert(tree, text, condition=False)


def _convert(node, text: str, condition: bool):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        return ("num", float(node.value))
    if isinstance(node, ast.Name):
        return ("var", node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _convert(node.operand, text, False)
        return ("num", -inner[1]) if inner[0] == "num" else ("neg", inner)
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        return (BINARY[type(node.op)], _convert(node.left, text, False),
                _convert(node.right, text, False))
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in COMPARE:
        if not condition:
            raise ExprError(f"{text!r}: a comparison may only be the condition of where")
        return (COMPARE[type(node.ops[0])], _convert(node.left, text, False),
                _convert(node.comparators[0], text, False))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        name = node.func.id
        if name not in FUNCTIONS:
            raise ExprError(f"{text!r}: unknown function {name!r}; the language has "
                            + ", ".join(sorted(FUNCTIONS)))
        if len(node.args) != FUNCTIONS[name][0]:
            raise ExprError(f"{text!r}: {name} takes {FUNCTIONS[name][0]} arguments")
        return (name,) + tuple(_convert(a, text, name == "where" and i == 0)
                               for i, a in enumerate(node.args))
    raise ExprError(f"{text!r}: {ast.unparse(node)!r} is not in the expression language")


def variables(tree) -> set[str]:
    """The names a parsed expression reads."""
    if tree[0] == "var":
        return {tree[1]}
    if tree[0] == "num":
        return set()
    return set().union(*(variables(a) for a in tree[1:]))


@dataclass(frozen=True)
class Program:
    """A fused elementwise computation: one output from n inputs, element by element.

    `body` holds statements (name, expression) in order, names t0, t1, ...; an expression reads
    the inputs x0 .. x{n-1}, earlier statements and literals. `result` names the output.
    `input_masks[k][d]` says whether input k varies along output dim d (False: it is
    broadcast there, missing or of size 1); `input_dtypes` and the output `dtype` are NumPy
    dtype names. Only ranks, dtypes and broadcast masks are static: the sizes come from the
    arrays at run time. Frozen and made of tuples: hashable, a node attribute.
    """

    input_dtypes: tuple[str, ...]
    input_masks: tuple[tuple[bool, ...], ...]
    body: tuple[tuple[str, str], ...]
    result: str
    dtype: str
    ndim: int
    ops: tuple[str, ...] = ()  # the fused ops' names, for display

    def __post_init__(self):
        if len(self.input_dtypes) != len(self.input_masks):
            raise ExprError("one mask per input")
        if any(len(m) != self.ndim for m in self.input_masks):
            raise ExprError(f"every input mask needs {self.ndim} entries")
        known = {f"x{k}" for k in range(len(self.input_dtypes))}
        for name, text in self.body:
            unknown = variables(parse(text)) - known
            if unknown:
                raise ExprError(f"{name} = {text}: reads {sorted(unknown)} before they exist")
            known.add(name)
        if self.result not in known:
            raise ExprError(f"the result {self.result!r} is not computed")

    @property
    def n_inputs(self) -> int:
        return len(self.input_dtypes)

    def groups(self) -> tuple[tuple[int, ...], ...]:
        """The output dims as loop groups: dims where no input varies (size 1) are dropped,
        and adjacent dims where every input varies alike are merged into one loop."""
        groups: list[list[int]] = []
        previous = None
        for d in range(self.ndim):
            column = tuple(m[d] for m in self.input_masks)
            if not any(column):
                continue  # no input varies here: the output dim is 1
            if groups and column == previous and groups[-1][-1] == d - 1:
                groups[-1].append(d)
            else:
                groups.append([d])
            previous = column
        return tuple(tuple(g) for g in groups)

    def __str__(self) -> str:
        lines = [f"{name} = {text}" for name, text in self.body]
        return "; ".join(lines) + f" -> {self.result}"


@dataclass(frozen=True)
class Instr:
    """One three-address instruction: dest = fn(*args); an arg is a name or a float literal."""
    dest: str
    fn: str
    args: tuple


def flatten(program: Program) -> list[Instr]:
    """The program as three-address instructions, temporaries named v0, v1, ...; the last
    instruction writes the program's result (fn "copy" when the result is a bare name)."""
    out: list[Instr] = []
    rename: dict[str, object] = {}
    counter = [0]

    def emit(tree):
        if tree[0] == "num":
            return tree[1]
        if tree[0] == "var":
            return rename.get(tree[1], tree[1])
        args = tuple(emit(a) for a in tree[1:])
        dest = f"v{counter[0]}"
        counter[0] += 1
        out.append(Instr(dest, tree[0], args))
        return dest

    for name, text in program.body:
        rename[name] = emit(parse(text))
    final = rename.get(program.result, program.result)
    if not out or out[-1].dest != final or any(
            final in i.args for i in out):  # the result must be written last, once
        out.append(Instr(f"v{counter[0]}", "copy", (final,)))
    return out
