#!/usr/bin/env python3
"""Mutation testing: does a test fail when the code is wrong?

Applies one small edit at a time to the given source files, runs the given tests on each
mutant, and reports the mutants no test notices ("survivors"). Each mutant runs in a private
copy of the repository's `nnctl/` and `tests/` (under a temporary directory, put first on
PYTHONPATH), so the working tree is never edited: other people's test runs, an interrupted
run and the editable install all keep seeing the real code.

Edits (one per mutant):
    operators     + <-> -,  * <-> /,  // -> /,  % -> *  (and their augmented +=, ...)
    comparisons   < <-> <=,  > <-> >=,  == <-> !=,  is <-> is not,  in <-> not in
    booleans      and <-> or,  not x -> x,  True <-> False
    constants     an int or float n -> n + 1 (0 -> 1, 1 -> 2, 0.5 -> 1.5)
    raise         a `raise` statement -> pass

Usage (from the repository root):
    python .ci/mutation.py nnctl/ops/reduce.py --tests tests/ops/test_reduce.py
    python .ci/mutation.py nnctl/autodiff.py --only grad --tests tests/test_autodiff.py
    python .ci/mutation.py nnctl/ops/elementwise.py --only Sigmoid Pow \\
        --tests tests/ops/test_extreme_accuracy.py tests/ops/test_elementwise.py --list

A signature's default values are not mutated. `--only` keeps the mutants inside functions or classes whose name matches one of the given
regular expressions (on the dotted name, e.g. `Sigmoid.forward`); `--lines 10-40` a line
range. `--list` prints the mutants without running anything. Exit status: 0 when every
mutant is killed, 1 when some survive. A mutant whose tests time out counts as killed.
"""

from __future__ import annotations

import argparse
import ast
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tokenize
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("nnctl", "tests", "pyproject.toml")

BINOP_SWAPS = {"+": "-", "-": "+", "*": "/", "/": "*", "//": "/", "%": "*"}
COMPARE_SWAPS = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "=="}
BOOL_SWAPS = {"and": "or", "or": "and"}


@dataclass(frozen=True)
class Mutant:
    path: str      # relative to the repository root
    line: int      # 1-based
    start: int     # character offsets into the file's text
    end: int
    new: str
    scope: str     # dotted name of the enclosing function/class, "" at module level

    def describe(self, text: str) -> str:
        old = text[self.start:self.end]
        old = old if "\n" not in old else old.splitlines()[0] + " ..."
        where = f"{self.path}:{self.line}" + (f" ({self.scope})" if self.scope else "")
        return f"{where}: {old.strip()!r} -> {self.new.strip()!r}"

    def apply(self, text: str) -> str:
        return text[:self.start] + self.new + text[self.end:]


# ---- finding the mutation points ----------------------------------------------------------------

def _offsets(text: str) -> list[int]:
    """Character offset of the start of each line (1-based line -> offsets[line - 1])."""
    out, total = [], 0
    for line in text.splitlines(keepends=True):
        out.append(total)
        total += len(line)
    out.append(total)
    return out


def _operator_tokens(text: str, offsets: list[int]):
    """(string, start offset, end offset) of every OP and NAME token."""
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in (tokenize.OP, tokenize.NAME):
            (l0, c0), (l1, c1) = tok.start, tok.end
            yield tok.string, offsets[l0 - 1] + c0, offsets[l1 - 1] + c1


def _span(node: ast.AST, offsets: list[int]) -> tuple[int, int]:
    return (offsets[node.lineno - 1] + node.col_offset,
            offsets[node.end_lineno - 1] + node.end_col_offset)


class _Finder(ast.NodeVisitor):
    def __init__(self, path: str, text: str):
        self.path, self.text = path, text
        self.offsets = _offsets(text)
        self.tokens = list(_operator_tokens(text, self.offsets))
        self.scope: list[str] = []
        self.mutants: list[Mutant] = []

    def _add(self, line: int, start: int, end: int, new: str) -> None:
        self.mutants.append(Mutant(self.path, line, start, end, new, ".".join(self.scope)))

    def _token_between(self, lo: int, hi: int, strings) -> tuple[str, int, int] | None:
        for s, a, b in self.tokens:
            if lo <= a and b <= hi and s in strings:
                return s, a, b
        return None

    def _scoped(self, node):
        self.scope.append(node.name)
        # NOTE: not a signature's defaults: the callers here pass every attribute, so a
        # changed default is an equivalent mutant more often than a gap
        for child in getattr(node, "body", []) + getattr(node, "bases", []):
            self.visit(child)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def visit_Expr(self, node):
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return  # a docstring
        self.generic_visit(node)

    def visit_BinOp(self, node):
        lo, hi = _span(node.left, self.offsets)[1], _span(node.right, self.offsets)[0]
        found = self._token_between(lo, hi, BINOP_SWAPS)
        if found:
            s, a, b = found
            self._add(node.lineno, a, b, BINOP_SWAPS[s])
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        lo, hi = _span(node.target, self.offsets)[1], _span(node.value, self.offsets)[0]
        found = self._token_between(lo, hi, {f"{k}=" for k in BINOP_SWAPS})
        if found:
            s, a, b = found
            self._add(node.lineno, a, b, BINOP_SWAPS[s[:-1]] + "=")
        self.generic_visit(node)

    def visit_Compare(self, node):
        lo = _span(node.left, self.offsets)[1]
        for comparator in node.comparators:
            hi = _span(comparator, self.offsets)[0]
            found = self._token_between(lo, hi, COMPARE_SWAPS)
            if found:
                s, a, b = found
                self._add(node.lineno, a, b, COMPARE_SWAPS[s])
            else:  # is / is not / in / not in: the text between the operands
                between = self.text[lo:hi]
                for old, new in (("is not", "is"), ("not in", "in"), ("is", "is not"),
                                 ("in", "not in")):
                    match = re.search(rf"\b{old}\b", between)
                    if match:
                        self._add(node.lineno, lo + match.start(), lo + match.end(), new)
                        break
            lo = _span(comparator, self.offsets)[1]
        self.generic_visit(node)

    def visit_BoolOp(self, node):
        lo = _span(node.values[0], self.offsets)[1]
        hi = _span(node.values[1], self.offsets)[0]
        found = self._token_between(lo, hi, BOOL_SWAPS)
        if found:
            s, a, b = found
            self._add(node.lineno, a, b, BOOL_SWAPS[s])
        self.generic_visit(node)

    def visit_UnaryOp(self, node):
        if isinstance(node.op, ast.Not):
            start = _span(node, self.offsets)[0]
            operand = _span(node.operand, self.offsets)[0]
            self._add(node.lineno, start, operand, "")
        self.generic_visit(node)

    def visit_Constant(self, node):
        value = node.value
        start, end = _span(node, self.offsets)
        if isinstance(value, bool):
            self._add(node.lineno, start, end, str(not value))
        elif isinstance(value, (int, float)):
            self._add(node.lineno, start, end, repr(value + 1))

    def visit_Raise(self, node):
        start, end = _span(node, self.offsets)
        self._add(node.lineno, start, end, "pass")
        # the exception's own expression is not mutated: the raise is the point


def find_mutants(path: str, text: str, only: list[str], lines: tuple[int, int] | None):
    finder = _Finder(path, text)
    finder.visit(ast.parse(text))
    out = []
    for m in finder.mutants:
        if lines and not lines[0] <= m.line <= lines[1]:
            continue
        if only and not any(re.search(p, m.scope) for p in only):
            continue
        try:
            ast.parse(m.apply(text))
        except SyntaxError:
            continue  # e.g. a constant inside an f-string's format spec
        out.append(m)
    return out


# ---- running them ------------------------------------------------------------------------------

def _copy_tree(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, target / name, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, target / name)


def _run_tests(workdir: Path, tests: list[str], timeout: float) -> tuple[bool, float]:
    """(passed, seconds) of the test selection in `workdir`."""
    env = dict(os.environ, PYTHONPATH=str(workdir), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "--no-header", *tests]
    started = time.perf_counter()
    try:
        result = subprocess.run(cmd, cwd=workdir, env=env, timeout=timeout, check=False,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, time.perf_counter() - started
    return result.returncode == 0, time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="source files to mutate")
    parser.add_argument("--tests", nargs="+", required=True, help="pytest arguments")
    parser.add_argument("--only", nargs="*", default=[],
                        help="regexes on the enclosing function/class name")
    parser.add_argument("--lines", help="a line range A-B (one file)")
    parser.add_argument("--timeout", type=float, default=0.0,
                        help="seconds per mutant (default: 5x the unmutated run + 10)")
    parser.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    args = parser.parse_args(argv)
    lines = tuple(int(v) for v in args.lines.split("-")) if args.lines else None

    mutants = []
    texts = {}
    for path in args.files:
        rel = str(Path(path).resolve().relative_to(ROOT))
        texts[rel] = (ROOT / rel).read_text()
        mutants += find_mutants(rel, texts[rel], args.only, lines)
    if args.list:
        for m in mutants:
            print(m.describe(texts[m.path]))
        print(f"{len(mutants)} mutants")
        return 0

    with tempfile.TemporaryDirectory(prefix="nnctl-mutation-") as tmp:
        work = Path(tmp)
        _copy_tree(work)
        passed, seconds = _run_tests(work, args.tests, timeout=3600)
        if not passed:
            print("the tests fail on the unmutated code: fix them first", file=sys.stderr)
            return 2
        timeout = args.timeout or 5 * seconds + 10
        print(f"{len(mutants)} mutants; the tests take {seconds:.1f} s unmutated", flush=True)
        survivors = []
        for i, m in enumerate(mutants, 1):
            target = work / m.path
            target.write_text(m.apply(texts[m.path]))
            try:
                survived, _ = _run_tests(work, args.tests, timeout)
            finally:
                target.write_text(texts[m.path])
            status = "SURVIVED" if survived else "killed"
            print(f"[{i}/{len(mutants)}] {status:8} {m.describe(texts[m.path])}", flush=True)
            if survived:
                survivors.append(m)
    killed = len(mutants) - len(survivors)
    print(f"\n{killed} of {len(mutants)} mutants killed, {len(survivors)} survived")
    for m in survivors:
        print("  survived:", m.describe(texts[m.path]))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
