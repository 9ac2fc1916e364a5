"""Property: the compiled plan (every pass, elementwise fusion on) computes what the
uncompiled graph computes, outputs and gradients, on random op DAGs (float64).

A DAG draws from the registry's elementwise ops plus a keepdims sum, matmul, a reshape round
trip and broadcast_to, on small shapes with broadcasting. Ops with a restricted domain get a
safe argument (log and sqrt read x*x + 0.5, exp reads 2 tanh(x), div divides by b*b + 0.5).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nnctl import jit
from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.compile.fusion import FUSED, fuse_elementwise, fused_kernel
from nnctl.compile.passes import PASSES, run_passes
from nnctl.graph.ir import Graph
from nnctl.graph.tensor import input_placeholder
from nnctl.ops.registry import ELEMENTWISE, REGISTRY

ALL_PASSES = PASSES if fuse_elementwise in PASSES else tuple(PASSES) + (fuse_elementwise,)


def _unary(name):
    def f(x, r):
        if name in ("log", "sqrt"):
            return (x * x + 0.5).apply(name)
        if name == "exp":
            return (x.tanh() * 2.0).exp()
        if name == "pow":
            return (x.tanh() * x.tanh() + 0.5) ** (2, 3, 0.5, -1.5, 1)[r % 5]
        if name == "clip":
            return x.clip(*((-0.5, 1.0), (0.25, None), (None, 0.0))[r % 3])
        if name == "leaky_relu":
            return x.leaky_relu((0.01, 0.2)[r % 2])
        if name == "elu":
            return x.elu((1.0, 0.5)[r % 2])
        return x.apply(name)
    return f


def _binary(name):
    def f(a, b, r):
        if name == "div":
            return a / (b * b + 0.5)
        if name == "equal":
            return a.equal(a.relu())  # [a >= 0], the same on both sides of the comparison
        if name == "where":
            return b.where(a.step(), a * 0.5)
        if r % 4 == 0:
            return a.apply(name, 1.5)  # a Python-number operand: a literal in the program
        return a.apply(name, b)
    return f


UNARY = {n: _unary(n) for n, op in REGISTRY.items()
         if op.kind == ELEMENTWISE and op.arity == 1}
BINARY = {n: _binary(n) for n, op in REGISTRY.items()
          if op.kind == ELEMENTWISE and op.arity in (2, 3)}
OTHER = ("sum", "matmul", "reshape", "broadcast")


@st.composite
def dags(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    inputs = []
    for _ in range(draw(st.integers(1, 3))):
        keep = draw(st.integers(0, ndim))  # trailing dims kept; each full or 1
        inputs.append(tuple(d if draw(st.booleans()) else 1 for d in shape[ndim - keep:]))
    names = sorted(UNARY) + sorted(BINARY) + list(OTHER)
    steps = draw(st.lists(st.tuples(st.sampled_from(names), st.integers(0, 99),
                                    st.integers(0, 99), st.integers(0, 99)),
                          min_size=2, max_size=9))
    outputs = draw(st.integers(1, 2))
    return shape, inputs, steps, outputs, draw(st.integers(0, 2**31 - 1))


def build(shape, input_shapes, steps, n_outputs):
    """The DAG as Tensors: (outputs, placeholders fed)."""
    feeds = [input_placeholder(f"x{i}", s, "float64") for i, s in enumerate(input_shapes)]
    pool = list(feeds)
    for name, i, j, r in steps:
        a, b = pool[i % len(pool)], pool[-1 - j % len(pool)]
        if name in UNARY:
            y = UNARY[name](a, r)
        elif name in BINARY:
            y = BINARY[name](a, b, r)
        elif name == "sum":
            y = a.sum(axis=r % a.ndim, keepdims=True) if a.ndim else a * b
        elif name == "matmul":
            if a.ndim < 2:
                continue
            w = input_placeholder(f"w{len(feeds)}", (a.shape[-1], a.shape[-1]), "float64")
            feeds.append(w)
            y = a @ w
        elif name == "reshape":
            y = a.reshape(-1).reshape(*a.shape) if a.ndim else a.reshape(1).reshape()
        else:
            y = a.broadcast_to(shape) + b
        pool.append(y)
    outputs = [pool[-1]] + pool[len(feeds):-1][-(n_outputs - 1):] if n_outputs > 1 else [pool[-1]]
    return outputs, feeds


def _run_fused(graph: Graph, feed_nodes, arrays) -> list:
    values = dict(zip(feed_nodes, arrays))
    for node in graph.nodes:
        if node in values:
            continue
        ins = [values[i] for i in node.inputs]
        if node.op == "constant":
            values[node] = np.asarray(node.value, dtype=node.aval.dtype)
        elif node.op == FUSED:
            values[node] = fused_kernel(node, np)(None, *ins)
        else:
            values[node] = REGISTRY[node.op].forward(np, *ins, **node.attrs)
    return [values[o] for o in graph.outputs]


def compiled(outputs, feeds, arrays) -> list:
    """The plan with every pass; until the plan runs fused nodes itself, the passes' graph
    evaluated node by node with fused_kernel."""
    backend = get_backend("cpu")
    try:
        plan = compile_graph(outputs, feeds, backend, passes=ALL_PASSES)
    except KeyError as err:
        if FUSED not in str(err):
            raise
        graph, _ = run_passes(Graph([t.node for t in outputs]), ALL_PASSES)
        return _run_fused(graph, [t.node for t in feeds], arrays)
    return plan(arrays)


def check(case):
    shape, input_shapes, steps, n_outputs, seed = case
    outputs, feeds = build(shape, input_shapes, steps, n_outputs)
    rng = np.random.default_rng(seed)
    seeds = [input_placeholder(f"g{k}", o.shape, "float64") for k, o in enumerate(outputs)]
    grads = grad(outputs, feeds, grad_outputs=seeds)
    everything, fed = outputs + list(grads), feeds + seeds
    arrays = [rng.uniform(-2, 2, t.shape) for t in fed]
    expected = compile_graph(everything, fed, get_backend("cpu"), passes=())(arrays)
    assume(all(np.all(np.isfinite(v)) and np.all(np.abs(v) < 1e6) for v in expected))
    got = compiled(everything, fed, arrays)
    for k, (g, e) in enumerate(zip(got, expected)):
        what = "output" if k < len(outputs) else f"gradient of {fed[k - len(outputs)].node.name}"
        assert np.shape(g) == np.shape(e), what
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-9, err_msg=what)


@pytest.fixture
def numpy_path():
    jit.set_enabled(False)
    yield
    jit.set_enabled(None)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.filter_too_much])
@given(case=dags())
def test_compiled_plan_matches_the_graph_numpy_kernels(case):
    jit.set_enabled(False)
    try:
        check(case)
    finally:
        jit.set_enabled(None)


@pytest.mark.skipif(not jit.available(), reason="numba is not installed")
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(case=dags())
def test_compiled_plan_matches_the_graph_numba_kernels(case):
    # NOTE: each new program is a numba compile (~0.3 s); derandomized, so that the on-disk
    # cache serves the same programs on the next run
    check(case)


def test_the_dags_do_fuse():
    x = input_placeholder("x", (3, 4), "float64")
    b = input_placeholder("b", (4,), "float64")
    outputs = [(x * b).sigmoid() + 1.0]
    graph, stats = run_passes(Graph([t.node for t in outputs]), ALL_PASSES)
    assert [n.op for n in graph.nodes if not n.is_leaf] == [FUSED]
    check(((3, 4), [(3, 4), (4,)], [("mul", 0, 0, 1), ("sigmoid", 2, 0, 0)], 1, 5))
