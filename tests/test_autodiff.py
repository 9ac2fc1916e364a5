"""Reverse-mode autodiff: nnctl.autodiff.grad and Tensor.backward (RELIABILITY A3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.errors import NnctlError
from nnctl.graph.tensor import Tensor, input_placeholder


def _lecture():
    x1, x2 = Tensor(2.0), Tensor(3.0)
    return x1, x2, x1 * x2 + x1.sin()


def test_lecture_example_value_and_first_derivatives():
    x1, x2, y = _lecture()
    assert y.item() == pytest.approx(6 + math.sin(2), abs=1e-15)
    d1, d2 = grad(y, [x1, x2])
    assert d1.item() == pytest.approx(3 + math.cos(2), abs=1e-15)
    assert d2.item() == pytest.approx(2.0, abs=1e-15)


def test_lecture_example_second_derivatives_via_grad_of_grad():
    x1, x2, y = _lecture()
    d1, d2 = grad(y, [x1, x2])
    d11, d12 = grad(d1, [x1, x2])
    assert d11.item() == pytest.approx(-math.sin(2), abs=1e-15)
    assert d12.item() == pytest.approx(1.0, abs=1e-15)  # d/dx2 (x2 + cos x1)
    (d22,) = grad(d2, [x2])
    assert d22.item() == 0.0


def test_lecture_example_via_backward_and_dot_grad():
    x1 = Tensor(2.0, requires_grad=True)
    x2 = Tensor(3.0, requires_grad=True)
    c = Tensor(5.0)  # no requires_grad: no .grad stored
    y = x1 * x2 + x1.sin() + c
    y.backward()
    assert x1.grad == pytest.approx(3 + math.cos(2), abs=1e-15)
    assert x2.grad == pytest.approx(2.0, abs=1e-15)
    assert c.grad is None


def test_backward_of_a_non_scalar_needs_its_gradient():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = x * x
    with pytest.raises(NnctlError, match="not a scalar"):
        y.backward()
    y.backward(np.array([1.0, 0.0, -1.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 0.0, -6.0])


def test_x_times_x_sums_both_paths():
    x = Tensor(np.array([-1.5, 0.0, 2.0]))
    (g,) = grad((x * x).sum(), [x])
    np.testing.assert_array_equal(g.numpy(), [-3.0, 0.0, 4.0])
    # the same tensor on three paths
    (g3,) = grad((x * x * x + x).sum(), [x])
    np.testing.assert_allclose(g3.numpy(), 3 * np.array([-1.5, 0.0, 2.0]) ** 2 + 1)


def test_unused_wrt_gets_zeros_of_its_shape():
    x, unused = Tensor(np.ones(3)), Tensor(np.ones((2, 4)))
    gx, gu = grad((x * 2.0).sum(), [x, unused])
    np.testing.assert_array_equal(gx.numpy(), [2.0, 2.0, 2.0])
    assert gu.shape == (2, 4)
    np.testing.assert_array_equal(gu.numpy(), np.zeros((2, 4)))


def test_a_path_through_a_piecewise_constant_op_gives_zeros():
    x = Tensor(np.array([-1.0, 2.0]))
    (g,) = grad((x.sign() * 3.0 + x.step()).sum(), [x])
    np.testing.assert_array_equal(g.numpy(), [0.0, 0.0])


def test_non_scalar_output_needs_grad_outputs():
    x = Tensor(np.ones(3))
    with pytest.raises(NnctlError, match=r"output of shape \[3\] is not a scalar"):
        grad(x.sin(), [x])


def test_grad_outputs_gives_the_vjp_of_the_explicit_jacobian():
    rng = np.random.default_rng(0)
    xv, w, v = rng.normal(size=(1, 3)), rng.normal(size=(3, 2)), rng.normal(size=(1, 2))
    x = Tensor(xv)
    y = (x @ Tensor(w)).sin()  # y_j = sin(sum_i x_i w_ij)
    jacobian = np.cos(xv @ w)[0][None, :] * w  # J[i, j] = dy_j / dx_i
    (g,) = grad([y], [x], [v])
    np.testing.assert_allclose(g.numpy(), (jacobian @ v[0])[None, :], rtol=1e-12)
    (g_t,) = grad([y], [x], [Tensor(v)])  # a Tensor seed works the same
    np.testing.assert_allclose(g_t.numpy(), g.numpy(), rtol=0)


def test_grad_outputs_are_checked():
    x = Tensor(np.ones(3))
    with pytest.raises(NnctlError,
                       match=r"grad_output of shape \[2\] does not match output of shape \[3\]"):
        grad([x.sin()], [x], [np.ones(2)])
    with pytest.raises(NnctlError, match="got 2 grad_outputs for 1 outputs"):
        grad([x.sin()], [x], [np.ones(3), np.ones(3)])
    labels = Tensor(np.array([1, 2]))
    with pytest.raises(NnctlError, match="not a float tensor"):
        grad(labels, [x])


def test_several_outputs_are_summed():
    x = Tensor(np.array([0.3, 0.7]))
    (g,) = grad([x.sin().sum(), (x * x).sum()], [x])
    np.testing.assert_allclose(g.numpy(), np.cos([0.3, 0.7]) + 2 * np.array([0.3, 0.7]))


@pytest.mark.parametrize("xv", [0.0, 0.4, -2.5])
def test_third_and_fourth_derivative_of_sin(xv):
    x = Tensor(xv)
    d1 = grad(x.sin(), x)[0]
    d2 = grad(d1, x)[0]
    d3 = grad(d2, x)[0]
    d4 = grad(d3, x)[0]
    assert d1.item() == pytest.approx(math.cos(xv), abs=1e-15)
    assert d2.item() == pytest.approx(-math.sin(xv), abs=1e-15)
    assert d3.item() == pytest.approx(-math.cos(xv), abs=1e-15)
    assert d4.item() == pytest.approx(math.sin(xv), abs=1e-15)


def test_diamond_graph():
    xv = np.array([0.2, -1.3, 2.0])
    x = Tensor(xv)
    h = x * x                       # shared intermediate, read by both branches
    y = (h.sin() + h.cos()).sum()   # the branches meet again here
    (g,) = grad(y, [x])
    np.testing.assert_allclose(g.numpy(), (np.cos(xv**2) - np.sin(xv**2)) * 2 * xv, rtol=1e-12)
    (gh,) = grad(y, [h])  # gradient with respect to an intermediate
    np.testing.assert_allclose(gh.numpy(), np.cos(xv**2) - np.sin(xv**2), rtol=1e-12)
    a, b = x.sin(), x.exp()
    (g2,) = grad((a * b).sum(), [x])
    np.testing.assert_allclose(g2.numpy(), np.exp(xv) * (np.cos(xv) + np.sin(xv)), rtol=1e-12)


def test_symbolic_gradients_are_graph_nodes_without_values():
    x = input_placeholder("x", (3,), "float64")
    (g,) = grad((x * x).sum(), [x])
    assert g.value is None and g.shape == (3,)
    # the two paths of x * x are summed; each term was emitted under the scope "grad(mul)"
    assert g.op == "add"
    assert [i.scope for i in g.node.inputs] == ["grad(mul)", "grad(mul)"]


def test_deep_chain_gradient():
    x = Tensor(0.5)
    y = x
    for _ in range(3000):
        y = y * 1.0001
    (g,) = grad(y, [x])
    assert g.item() == pytest.approx(1.0001**3000, rel=1e-12)


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_float32_gradient_of_a_reduction_is_float32(reduce):
    # regression: the Python-float seed went through numpy reshape -> float64 values
    x = Tensor(np.arange(3, dtype=np.float32))
    (g,) = grad(getattr(x, reduce)(), [x])
    assert g.dtype == "float32"
    assert np.asarray(g.value).dtype == np.float32


def test_float32_zeros_for_an_unused_wrt_are_float32():
    x, u = Tensor(np.ones(3, dtype=np.float32)), Tensor(np.ones(2, dtype=np.float32))
    _, gu = grad((x * x).sum(), [x, u])
    assert np.asarray(gu.value).dtype == np.float32


def test_float32_gradient_of_a_fused_loss_is_float32():
    x = Tensor(np.ones((2, 3), dtype=np.float32))
    (g,) = grad(x.cross_entropy(Tensor(np.array([0, 2]))), [x])
    assert g.dtype == "float32" and np.asarray(g.value).dtype == np.float32


# ---- a vjp that breaks its contract (issue 8, point 13) ------------------------------------------

def _planted(name: str, vjp):
    """A unary op `name` whose vjp is `vjp(g, x)`; the caller unregisters it."""
    from nnctl.ops.elementwise import Unary
    from nnctl.ops.registry import Sample, register

    class Planted(Unary):
        def forward(self, xp, x):
            return x * 2.0

        def vjp(self, g, out, x):
            return vjp(g, x)

        def samples(self):
            yield Sample(shapes=((3,),))

    Planted.name = name
    register(Planted)


@pytest.mark.parametrize("returned", [lambda g, x: (g, g), lambda g, x: ()],
                         ids=["two-for-one", "none-for-one"])
def test_a_vjp_returning_the_wrong_number_of_gradients_is_refused(returned):
    from nnctl.ops.registry import unregister
    _planted("planted_count", returned)
    try:
        x = Tensor(np.ones(3))
        with pytest.raises(NnctlError, match=r"vjp of planted_count returned \d gradients "
                                             r"for 1 inputs"):
            grad(x.apply("planted_count").sum(), [x])
    finally:
        unregister("planted_count")


def test_a_vjp_returning_a_gradient_of_the_wrong_shape_is_refused():
    from nnctl.ops.registry import unregister
    _planted("planted_shape", lambda g, x: (g.sum(),))
    try:
        x = Tensor(np.ones(3))
        with pytest.raises(NnctlError, match=r"vjp of planted_shape gave a gradient of shape "
                                             r"\[\] for an input of shape \[3\]"):
            grad(x.apply("planted_shape").sum(), [x])
    finally:
        unregister("planted_shape")


def test_a_right_planted_vjp_passes_the_same_checks():
    """The harness itself: the same planted op with a correct vjp gives 2 g."""
    from nnctl.ops.registry import unregister
    _planted("planted_right", lambda g, x: (g * 2.0,))
    try:
        x = Tensor(np.ones(3))
        (g,) = grad(x.apply("planted_right").sum(), [x])
        np.testing.assert_array_equal(g.numpy(), [2.0, 2.0, 2.0])
    finally:
        unregister("planted_right")
