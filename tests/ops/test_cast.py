"""The cast op (nnctl/ops/cast.py): rounding forward, the cast back as its vjp, gradcheck with
steps and tolerances that fit each target dtype, and how a compiled plan runs it.

The op table (test_op_table.py, refs_cast.py) checks its float32 samples like every op's."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.errors import ShapeError
from nnctl.gradcheck import compare, numeric_gradient
from nnctl.graph.tensor import Tensor, input_placeholder
from nnctl.ops.registry import OPAQUE, REGISTRY


def test_forward_rounds_to_nearest_in_the_target_dtype():
    x = np.array([1.0 + 2.0 ** -12, 1.0 + 3 * 2.0 ** -12, 70000.0, 1e-9, -0.1], np.float32)
    y = Tensor(x).apply("cast", dtype="float16")
    assert y.dtype == "float16" and y.value.dtype == np.float16
    # ties to even at 1 + 2^-12 and 1 + 3 * 2^-12 (float16 spacing 2^-10 at 1); past 65504
    # is inf; 1e-9 is below the smallest subnormal (6e-8)
    np.testing.assert_array_equal(y.numpy(), np.array(
        [1.0, 1.0 + 2.0 ** -10, np.inf, 0.0, np.float16(-0.1)], np.float16))
    back = y.apply("cast", dtype="float32")
    assert back.dtype == "float32"
    np.testing.assert_array_equal(back.numpy(), y.numpy().astype(np.float32))  # widening: exact


def test_forward_into_writes_the_rounded_values():
    x = np.linspace(-3, 3, 12).reshape(3, 4)
    out = np.full((3, 4), np.nan, np.float16)
    assert REGISTRY["cast"].forward_into(np, out, x, dtype="float16") is out
    np.testing.assert_array_equal(out, x.astype(np.float16))


def test_infer_refuses_a_non_float_input_or_target():
    with pytest.raises(ShapeError, match="float"):
        Tensor(np.arange(3)).apply("cast", dtype="float32")
    with pytest.raises(ShapeError, match="cast to 'int32'"):
        Tensor(np.ones(3)).apply("cast", dtype="int32")


def test_the_vjp_is_the_gradient_cast_back_to_the_input_dtype():
    x = Tensor(np.array([0.5, -2.0, 3.0], np.float32), requires_grad=True)
    y = x.apply("cast", dtype="float16")
    (gx,) = grad([y], [x], [Tensor(np.array([1.0, 2.0 ** -20, np.inf], np.float16))])
    assert gx.dtype == "float32"
    # the float16 gradient's values, widened: inf stays inf (an overflow must show)
    np.testing.assert_array_equal(gx.numpy(), [1.0, 2.0 ** -20, np.inf])
    # a float32 master weight read as float16 by a product gets a float32 gradient
    w = Tensor(np.array([[1.5], [-0.25]], np.float32), requires_grad=True)
    h = Tensor(np.array([[2.0, 4.0]], np.float16))
    (gw,) = grad([(h @ w.apply("cast", dtype="float16")).sum()], [w])
    assert gw.dtype == "float32"
    np.testing.assert_array_equal(gw.numpy(), [[2.0], [4.0]])


@pytest.mark.parametrize("dtype,eps,rtol", [
    # the step must be far larger than the target's spacing near |x| <= 2 (float16: 2^-9,
    # float32: 2^-22); the error is at most spacing / (2 eps)
    ("float16", 0.1, 1e-2),
    ("float32", 1e-3, 1e-3),
    ("float64", 1e-6, 1e-6),
])
def test_gradcheck_of_casts_from_float64(dtype, eps, rtol):
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (3, 4))
    v = rng.standard_normal((3, 4))

    def f(xs):
        return float(np.sum(REGISTRY["cast"].forward(np, xs[0], dtype=dtype) * v))

    t = Tensor(x)
    (analytic,) = grad([t.apply("cast", dtype=dtype)], [t], [Tensor(v.astype(dtype))])
    assert analytic.dtype == "float64"
    numeric = numeric_gradient(f, [x], 0, eps)
    row = compare("cast", dtype, 1, analytic.numpy(), numeric, atol=1e-3 * rtol, rtol=rtol)
    assert row.passed, row.detail
    # and against the exact derivative: the identity, the seed cast back (rounded once)
    np.testing.assert_array_equal(analytic.numpy(), v.astype(dtype).astype(np.float64))


def test_second_order_a_cast_is_linear():
    x = Tensor(np.array([0.3, -1.2]), requires_grad=True)
    (g,) = grad([(x.apply("cast", dtype="float32") ** 2).sum()], [x])  # 2 x, rounded
    (gg,) = grad([g.sum()], [x])
    np.testing.assert_allclose(gg.numpy(), [2.0, 2.0], rtol=1e-6)


def test_a_compiled_plan_runs_the_cast_unfused_and_its_gradient():
    # on the CPU float16 elementwise chains are not fused (numba has no half type): the
    # plan runs relu and mul as their own ufuncs and gives NumPy's float16 results
    x = input_placeholder("x", (4, 3), "float32")
    h = x.apply("cast", dtype="float16")
    y = ((h * 2.0).relu() * h).apply("cast", dtype="float32")
    loss = y.sum()
    (gx,) = grad([loss], [x])
    plan = compile_graph([y, gx], [x], get_backend("cpu"))
    assert REGISTRY["cast"].kind == OPAQUE
    assert all(n.aval.dtype != "float16" for n in plan.graph.nodes if n.op == "fused")
    xs = np.linspace(-2, 2, 12, dtype=np.float32).reshape(4, 3)
    got_y, got_g = plan([xs])
    h16 = xs.astype(np.float16)
    np.testing.assert_array_equal(got_y, (np.maximum(h16 * np.float16(2), 0) * h16)
                                  .astype(np.float32))
    assert got_g.dtype == np.float32
    np.testing.assert_allclose(got_g, np.where(xs > 0, 4 * xs, 0), rtol=2e-3)


def test_inside_half_fusion_a_float16_chain_becomes_one_float16_program():
    """What compile_graph does for CUDA: the float16 chain fuses into one program of dtype
    float16, which the CUDA generator computes in float and rounds once."""
    from nnctl.compile.fusion import half_fusion
    from nnctl.compile.kernels.cuda import cuda_source
    from nnctl.compile.passes import run_passes
    from nnctl.graph.ir import Graph
    x = input_placeholder("x", (4, 3), "float32")
    h = x.apply("cast", dtype="float16")
    y = ((h * 2.0).relu() * h).apply("cast", dtype="float32")
    with half_fusion():
        graph, _ = run_passes(Graph([y.node]))
    (fused,) = [n for n in graph.nodes if n.op == "fused"]
    program = fused.attrs["program"]
    assert program.dtype == "float16" and program.input_dtypes == ("float16",)
    source = cuda_source(program)
    assert source.in_params == "float16 x0" and source.out_params == "float16 y"
    lines = source.operation.splitlines()
    assert all(line.startswith(("float ", "bool ")) for line in lines[:-1])
    assert "((float)(x0))" in source.operation and lines[-1].startswith("y = (float16)(")
    graph, _ = run_passes(Graph([y.node]))  # outside it (the CPU): not fused
    assert not any(n.op == "fused" and n.aval.dtype == "float16" for n in graph.nodes)
