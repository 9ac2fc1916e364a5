"""Fused-kernel code generation (nnctl/compile/kernels): the expression language, the NumPy
evaluator and the numba CPU kernels, each against the ops' own forward."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nnctl import jit
from nnctl.compile.fusion import program_of
from nnctl.compile.kernels import make_kernel
from nnctl.compile.kernels.expr import FUNCTIONS, ExprError, Program, flatten, parse
from nnctl.compile.kernels.numpy_eval import numpy_kernel
from nnctl.gradcheck import sample_inputs
from nnctl.graph.tensor import apply, input_placeholder
from nnctl.ops.registry import ELEMENTWISE, REGISTRY

needs_numba = pytest.mark.skipif(not jit.available(), reason="numba is not installed")

ELEMENTWISE_OPS = sorted(name for name, op in REGISTRY.items() if op.kind == ELEMENTWISE)
CASES = [pytest.param(name, k, id=f"{name}-{k}")
         for name in ELEMENTWISE_OPS for k, _ in enumerate(REGISTRY[name].samples())]


def test_every_elementwise_op_has_a_scalar_lowering_in_the_language():
    for name in ELEMENTWISE_OPS:
        op = REGISTRY[name]
        assert callable(getattr(op, "scalar", None)), name
        for sample in op.samples():
            args = [f"x{k}" for k in range(len(sample.shapes))]
            parse(op.scalar(*args, **sample.attrs))  # raises ExprError outside the language


def test_the_language_refuses_what_it_does_not_have():
    with pytest.raises(ExprError, match="unknown function 'erf'"):
        parse("erf(a)")
    with pytest.raises(ExprError, match="comparison may only be the condition"):
        parse("(a > b) * 2.0")
    with pytest.raises(ExprError, match="takes 3 arguments"):
        parse("where(a, b)")
    with pytest.raises(ExprError, match="not in the expression language"):
        parse("a ** 2")
    assert parse("where(a > 0.0, -1.5, b)") == ("where", ("gt", ("var", "a"), ("num", 0.0)),
                                                ("num", -1.5), ("var", "b"))
    assert set(FUNCTIONS) >= {"exp", "log", "tanh", "maximum", "where", "pow", "log1p", "expm1"}


def test_a_program_checks_its_names_and_masks():
    with pytest.raises(ExprError, match="reads"):
        Program(("float64",), ((True,),), (("t0", "exp(x1)"),), "t0", "float64", 1)
    with pytest.raises(ExprError, match="mask"):
        Program(("float64",), ((True,),), (("t0", "exp(x0)"),), "t0", "float64", 2)
    p = Program(("float64",), ((True,),), (("t0", "exp(x0)"),), "t0", "float64", 1)
    assert hash(p) == hash(Program(("float64",), ((True,),), (("t0", "exp(x0)"),), "t0",
                                   "float64", 1))
    assert [i.fn for i in flatten(p)] == ["exp"]


def test_loop_groups_merge_dims_that_broadcast_alike():
    # x0 [B, T, H], x1 [H] (a bias), x2 [B, T, 1] (a per-row scalar), x3 [] -> [B, T, H]
    masks = ((True, True, True), (False, False, True), (True, True, False), (False,) * 3)
    p = Program(("float32",) * 4, masks, (("t0", "((x0 + x1) * x2 + x3)"),), "t0", "float32", 3)
    assert p.groups() == ((0, 1), (2,))
    # a per-channel [1, C, 1, 1] against [N, C, H, W]: the H, W dims merge
    p = Program(("float32",) * 2, ((True,) * 4, (False, True, False, False)),
                (("t0", "(x0 * x1)"),), "t0", "float32", 4)
    assert p.groups() == ((0,), (1,), (2, 3))


def _case(name: str, k: int, dtype, flat: bool = False):
    """The program of op `name` alone on its sample k, its input arrays, and forward's result.
    `flat`: inputs broadcast and raveled first, so that all samples of an op with the same
    attrs share one program (one numba compile)."""
    op = REGISTRY[name]
    sample = list(op.samples())[k]
    arrays = sample_inputs(sample, np.random.default_rng(7 + k))
    if name == "equal":
        arrays = [np.round(a) for a in arrays]
    arrays = [a if i in sample.int_inputs else a.astype(dtype) for i, a in enumerate(arrays)]
    if flat:
        arrays = [np.ascontiguousarray(a).ravel() for a in np.broadcast_arrays(*arrays)]
    nodes = [input_placeholder(f"x{i}", a.shape, str(a.dtype)) for i, a in enumerate(arrays)]
    node = apply(name, *nodes, **sample.attrs).node
    program, inputs = program_of([node])
    by_node = {n.node: a for n, a in zip(nodes, arrays)}
    expected = np.asarray(op.forward(np, *arrays, **sample.attrs))
    return program, [by_node[i] for i in inputs], expected


TOL = {np.float64: dict(rtol=1e-13, atol=1e-15), np.float32: dict(rtol=2e-6, atol=1e-6)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name,k", CASES)
def test_scalar_lowering_by_the_numpy_evaluator_equals_forward(name, k, dtype):
    program, arrays, expected = _case(name, k, dtype)
    kernel = numpy_kernel(program, np)
    out = np.full(expected.shape, np.nan, dtype=expected.dtype)
    assert kernel(out, *arrays) is out
    np.testing.assert_allclose(out, expected, **TOL[dtype])
    assert kernel(None, *arrays).dtype == expected.dtype


@needs_numba
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name,k", CASES)
def test_scalar_lowering_by_numba_equals_forward(name, k, dtype):
    from nnctl.compile.kernels.numba_cpu import numba_kernel
    program, arrays, expected = _case(name, k, dtype, flat=True)
    kernel = numba_kernel(program)
    out = np.full(expected.shape, np.nan, dtype=expected.dtype)
    assert kernel(out, *arrays) is out
    np.testing.assert_allclose(out, expected, **TOL[dtype])


# ---- one program, many layouts ----------------------------------------------------------------

def _lstm_cell(shape, bias_shape, dtype):
    a, b, c = (input_placeholder(n, shape, dtype) for n in "abc")
    d = input_placeholder("d", bias_shape, dtype)
    y = a.sigmoid() * c + b.sigmoid() * (d * 2.0).tanh() - 0.25
    return y, [a, b, c, d]


def _run_group(y, leaves, arrays, xp_kernel):
    from nnctl.compile.fusion import fuse_elementwise
    from nnctl.graph.ir import Graph
    fused = fuse_elementwise(Graph([y.node])).outputs[0]
    assert fused.op == "fused"
    by_node = {t.node: a for t, a in zip(leaves, arrays)}
    return fused, xp_kernel(fused.attrs["program"]), [by_node[i] for i in fused.inputs]


KERNELS = [pytest.param(lambda p: numpy_kernel(p, np), id="numpy"),
           pytest.param(lambda p: __import__("nnctl.compile.kernels.numba_cpu", fromlist=["x"])
                        .numba_kernel(p), id="numba", marks=needs_numba)]


@pytest.mark.parametrize("make", KERNELS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape,bias", [((5, 7), (7,)), ((3, 4, 6), (4, 1)), ((6,), ()),
                                        ((2, 3, 4, 5), (1, 3, 1, 1)), ((5, 7), (5, 1))])
def test_fused_kernel_broadcasts_like_numpy(make, dtype, shape, bias):
    y, leaves = _lstm_cell(shape, bias, dtype)
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(t.shape).astype(dtype) for t in leaves]
    sig = lambda x: 0.5 * np.tanh(0.5 * x) + 0.5  # noqa: E731
    a, b, c, d = arrays
    expected = sig(a) * c + sig(b) * np.tanh(d * 2.0) - 0.25
    node, kernel, ins = _run_group(y, leaves, arrays, make)
    out = np.empty(expected.shape, dtype)
    assert kernel(out, *ins) is out
    tol = TOL[np.float64 if dtype == "float64" else np.float32]
    np.testing.assert_allclose(out, expected, **tol)
    np.testing.assert_allclose(kernel(None, *ins), expected, **tol)
    # a strided input (a transposed view) gives the same values
    strided = [np.ascontiguousarray(x.T).T if x.ndim > 1 else x for x in ins]
    assert len(shape) == 1 or any(not x.flags.c_contiguous for x in strided)
    np.testing.assert_allclose(kernel(None, *strided), expected, **tol)
    # the same kernel serves another batch size (sizes come from the arrays)
    if len(shape) > 1:
        more = [np.concatenate([x, x]) if x.shape[:1] == shape[:1] and x.ndim == len(shape)
                else x for x in ins]
        expected2 = np.concatenate([expected, expected])
        np.testing.assert_allclose(kernel(None, *more), expected2, **tol)


@pytest.mark.parametrize("make", KERNELS)
def test_where_with_an_integer_condition_and_a_result_aliasing_an_input(make):
    cond = input_placeholder("c", (4, 3), "int64")
    a = input_placeholder("a", (4, 3), "float64")
    b = input_placeholder("b", (3,), "float64")
    y = (a.exp() - 1.0).where(cond, b * 0.5)
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 2, (4, 3)), rng.standard_normal((4, 3)), rng.standard_normal(3)]
    expected = np.where(arrays[0], np.exp(arrays[1]) - 1.0, arrays[2] * 0.5)
    node, kernel, ins = _run_group(y, [cond, a, b], arrays, make)
    np.testing.assert_allclose(kernel(None, *ins), expected, rtol=1e-14)
    buf = arrays[1].copy()  # out is the buffer of `a`: written in place
    ins = [buf if x is arrays[1] else x for x in ins]
    assert kernel(buf, *ins) is buf
    np.testing.assert_allclose(buf, expected, rtol=1e-14)


def test_numpy_evaluator_allocates_nothing_in_steady_state():
    import tracemalloc
    y, leaves = _lstm_cell((512, 256), (256,), "float64")
    arrays = [np.ones(t.shape) for t in leaves]
    node, kernel, ins = _run_group(y, leaves, arrays, lambda p: numpy_kernel(p, np))
    out = np.empty((512, 256))
    kernel(out, *ins)
    tracemalloc.start()
    for _ in range(3):
        kernel(out, *ins)
    size, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # NOTE: a broadcasting ufunc may use its iteration buffer (np.getbufsize() elements)
    assert peak < out.nbytes / 4


def test_make_kernel_follows_the_jit_switch():
    p = Program(("float64",), ((True,),), (("t0", "exp(x0)"), ("t1", "(t0 + 1.0)")), "t1",
                "float64", 1)
    try:
        jit.set_enabled(False)
        assert make_kernel(p, np).__module__ == "nnctl.compile.kernels.numpy_eval"
    finally:
        jit.set_enabled(None)


# ---- the on-disk cache: a second process pays no compile -------------------------------------

_CHILD = textwrap.dedent("""
    import time, numpy as np
    from nnctl.compile.kernels.expr import Program
    from nnctl.compile.kernels.numba_cpu import numba_kernel
    p = Program(("float64", "float64"), ((True, True), (False, True)),
                (("t0", "((0.5 * tanh((0.5 * x0))) + 0.5)"), ("t1", "(t0 * x1)"),
                 ("t2", "maximum(t1, 0.125)")), "t2", "float64", 2)
    k = numba_kernel(p)
    x, b = np.linspace(-3, 3, 12).reshape(3, 4), np.arange(4.0)
    t = time.perf_counter()
    out = k(None, x, b)
    elapsed = time.perf_counter() - t
    assert np.allclose(out, np.maximum((0.5 * np.tanh(0.5 * x) + 0.5) * b, 0.125))
    print(sum(k.serial.stats.cache_hits.values()), sum(k.serial.stats.cache_misses.values()),
          elapsed)
""")


@needs_numba
def test_a_second_process_loads_the_compiled_kernel_from_the_cache(tmp_path):
    env = dict(os.environ, NNCTL_CACHE_DIR=str(tmp_path), NNCTL_JIT="1")

    def child():
        done = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        hits, misses, elapsed = done.stdout.split()
        return int(hits), int(misses), float(elapsed)

    first = child()
    assert first[:2] == (0, 1)  # compiled
    sources = list(tmp_path.glob("nnctl_fused_*.py"))
    assert len(sources) == 1
    assert list((tmp_path / "__pycache__").glob("*.nbi"))  # numba's cache index
    second = child()
    assert second[:2] == (1, 0)  # loaded, not compiled
    assert second[2] < first[2]
