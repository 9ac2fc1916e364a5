"""The image ops beyond the op table: hand-computed cases, output shapes, groups, error
messages, the plan path, and (when PyTorch is installed) forward and gradients against
torch.nn.functional in float64."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.errors import ShapeError
from nnctl.graph.tensor import Tensor, apply, input_placeholder, parameter


def _conv(x, w, **attrs):
    return apply("conv2d", Tensor(np.asarray(x, dtype=np.float64)),
                 Tensor(np.asarray(w, dtype=np.float64)), **attrs)


def _grads(op, arrays, v, **attrs):
    """(output, gradients of <op(*arrays), v> with respect to every array) in eager mode."""
    ts = [Tensor(a) for a in arrays]
    out = apply(op, *ts, **attrs)
    return out.numpy(), [g.numpy() for g in grad([out], ts, [Tensor(v)])]


# ---- small cases by hand ---------------------------------------------------------------------

def test_a_conv_by_hand():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])  # y[p, q] = x[p, q] - x[p+1, q+1]
    np.testing.assert_array_equal(_conv(x, w).numpy(), np.full((1, 1, 3, 3), -5.0))
    padded = _conv(x, w, padding=(1, 1)).numpy()[0, 0]
    assert padded.shape == (5, 5)
    assert padded[0, 0] == -0.0 - 0.0 and padded[0, 1] == -1.0  # zeros - x[0, 0], - x[0, 1]
    assert padded[4, 4] == 15.0 and padded[1, 1] == -5.0
    strided = _conv(x, w, stride=(2, 2)).numpy()[0, 0]
    np.testing.assert_array_equal(strided, np.full((2, 2), -5.0))
    dilated = _conv(x, w, dilation=(2, 2)).numpy()[0, 0]  # x[p, q] - x[p+2, q+2]
    np.testing.assert_array_equal(dilated, np.full((2, 2), -10.0))


def test_a_sum_kernel_counts_the_window_and_its_gradients_count_the_uses():
    x = np.ones((1, 1, 3, 3))
    w = np.ones((1, 1, 3, 3))
    y, (dx, dw) = _grads("conv2d", [x, w], np.ones((1, 1, 3, 3)), padding=(1, 1))
    np.testing.assert_array_equal(y[0, 0], [[4, 6, 4], [6, 9, 6], [4, 6, 4]])
    # x[r, c] feeds as many outputs as the window at (r, c) holds elements of x, and so
    # w[i, j] sees as many elements of x as there are in-bounds offsets (i - 1, j - 1)
    np.testing.assert_array_equal(dx[0, 0], [[4, 6, 4], [6, 9, 6], [4, 6, 4]])
    np.testing.assert_array_equal(dw[0, 0], [[4, 6, 4], [6, 9, 6], [4, 6, 4]])


@pytest.mark.parametrize("x,w,attrs,expected", [
    ((2, 3, 28, 28), (8, 3, 3, 3), {}, (2, 8, 26, 26)),
    ((2, 3, 28, 28), (8, 3, 3, 3), {"padding": (1, 1)}, (2, 8, 28, 28)),
    ((2, 3, 28, 28), (8, 3, 3, 3), {"stride": (2, 2), "padding": (1, 1)}, (2, 8, 14, 14)),
    ((2, 3, 28, 28), (8, 3, 3, 3), {"dilation": (2, 2)}, (2, 8, 24, 24)),
    ((1, 4, 7, 10), (6, 2, 3, 5), {"stride": (2, 3), "padding": (1, 2), "groups": 2},
     (1, 6, 4, 4)),
    ((1, 4, 9, 9), (4, 1, 3, 3), {"dilation": (3, 1), "groups": 4}, (1, 4, 3, 7)),
    ((1, 2, 5, 5), (3, 2, 1, 1), {"stride": 2}, (1, 3, 3, 3)),  # an int is both directions
])
def test_output_shapes(x, w, attrs, expected):
    out = apply("conv2d", input_placeholder("x", x, "float32"),
                parameter("w", w, "float32"), **attrs)
    assert out.shape == expected and out.dtype == "float32"
    assert _conv(np.zeros(x), np.zeros(w), **attrs).numpy().shape == expected


def test_depthwise_is_one_single_channel_conv_per_channel():
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(2, 3, 6, 6)), rng.normal(size=(3, 1, 3, 3))
    y = _conv(x, w, groups=3, padding=(1, 1), stride=(2, 2)).numpy()
    for c in range(3):
        one = _conv(x[:, c:c + 1], w[c:c + 1], padding=(1, 1), stride=(2, 2)).numpy()
        np.testing.assert_allclose(y[:, c:c + 1], one, rtol=1e-13, atol=1e-13)


def test_groups_are_independent_convs_side_by_side():
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(2, 4, 5, 5)), rng.normal(size=(6, 2, 3, 3))
    y = _conv(x, w, groups=2).numpy()
    np.testing.assert_allclose(y[:, :3], _conv(x[:, :2], w[:3]).numpy(), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(y[:, 3:], _conv(x[:, 2:], w[3:]).numpy(), rtol=1e-13, atol=1e-13)


def test_max_pool_ties_route_the_gradient_to_the_first_maximum():
    x = np.array([[[[1.0, 3.0, 3.0, 0.0],
                    [3.0, 2.0, 1.0, 3.0],
                    [5.0, 5.0, 0.0, 0.0],
                    [5.0, 5.0, 0.0, 0.0]]]])
    y, (dx,) = _grads("max_pool2d", [x], np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), kernel=(2, 2))
    np.testing.assert_array_equal(y[0, 0], [[3.0, 3.0], [5.0, 0.0]])
    np.testing.assert_array_equal(dx[0, 0], [[0, 1, 2, 0],
                                             [0, 0, 0, 0],
                                             [3, 0, 4, 0],
                                             [0, 0, 0, 0]])


def test_overlapping_max_windows_add_their_gradients():
    x = np.array([[[[0.0, 9.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]])
    _, (dx,) = _grads("max_pool2d", [x], np.ones((1, 1, 2, 2)), kernel=(2, 2), stride=(1, 1))
    assert dx[0, 0, 0, 1] == 2.0 and dx.sum() == 4.0  # two windows hold the 9


def test_avg_pool_counts_the_padding_like_pytorch():
    y, (dx,) = _grads("avg_pool2d", [np.ones((1, 1, 3, 3))], np.ones((1, 1, 2, 2)),
                      kernel=(3, 3), stride=(2, 2), padding=(1, 1))
    np.testing.assert_allclose(y[0, 0], np.full((2, 2), 4 / 9))
    np.testing.assert_allclose(dx[0, 0], np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 9)


# ---- errors name the shapes ------------------------------------------------------------------

@pytest.mark.parametrize("x,w,attrs,message", [
    ((2, 3, 8, 8), (4, 2, 3, 3), {},
     r"op conv2d: w \[4, 2, 3, 3\] takes 2 input channels per group, but x \[2, 3, 8, 8\] has 3"),
    ((2, 4, 8, 8), (3, 2, 3, 3), {"groups": 2}, r"groups=2 must divide .* \(3\)"),
    ((2, 3, 4, 4), (4, 3, 3, 3), {"dilation": (2, 2)},
     r"spans 5x5, larger than x \[2, 3, 4, 4\] padded by \(0, 0\) \(4x4\)"),
    ((2, 3, 8), (4, 3, 3, 3), {}, r"conv2d needs x as \[N, C, H, W\], got \[2, 3, 8\]"),
    ((2, 3, 8, 8), (4, 3, 3, 3), {"stride": (0, 1)}, r"stride must be .* >= 1, got \(0, 1\)"),
])
def test_conv_shape_errors_name_the_shapes(x, w, attrs, message):
    with pytest.raises(ShapeError, match=message):
        apply("conv2d", input_placeholder("x", x, "float32"), parameter("w", w, "float32"),
              **attrs)


def test_pool_shape_errors():
    x = input_placeholder("x", (1, 2, 4, 4), "float32")
    with pytest.raises(ShapeError, match=r"op max_pool2d: padding \(2, 2\) must be at most half"):
        apply("max_pool2d", x, kernel=(3, 3), padding=(2, 2))
    with pytest.raises(ShapeError, match=r"kernel \(5, 5\) is larger than x \[1, 2, 4, 4\]"):
        apply("avg_pool2d", x, kernel=(5, 5))


# ---- the compiled path -----------------------------------------------------------------------

def test_a_compiled_conv_pool_step_matches_eager_in_float32():
    rng = np.random.default_rng(2)
    xv = rng.normal(size=(2, 3, 8, 8)).astype(np.float32)
    wv = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    cv = rng.normal(size=(2, 4, 4, 4)).astype(np.float32)

    def loss_of(x, w):
        y = apply("conv2d", x, w, padding=(1, 1)).relu()
        return (apply("max_pool2d", y, kernel=(2, 2)) * Tensor(cv)).sum()

    x, w = input_placeholder("x", xv.shape, "float32"), parameter("w", wv.shape, "float32")
    loss = loss_of(x, w)
    plan = compile_graph([loss, *grad(loss, [x, w])], [x, w], get_backend("cpu"))
    got = plan([xv, wv])
    xe, we = Tensor(xv), Tensor(wv)
    eager = loss_of(xe, we)
    want = [eager, *grad(eager, [xe, we])]
    for a, b in zip(got, want):
        assert str(np.asarray(a).dtype) == "float32"
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-5)


# ---- against PyTorch -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch():
    try:
        import torch
    except Exception:  # not installed, or a broken install
        pytest.skip("PyTorch is not installed")
    return torch


def _torch_grads(torch, fn, arrays, v):
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out = fn(*ts)
    out.backward(torch.tensor(v))
    return out.detach().numpy(), [t.grad.numpy() for t in ts]


@pytest.mark.parametrize("stride", [1, 2])  # 1 takes the backward ops' flat path
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("groups", [1, 2])
def test_conv2d_matches_torch(torch, stride, dilation, groups):
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(3, 4, 9, 9)), rng.normal(size=(6, 4 // groups, 3, 3))
    attrs = {"stride": (stride, stride), "padding": (1, 1), "dilation": (dilation, dilation),
             "groups": groups}
    out_hw = (9 + 2 - dilation * 2 - 1) // stride + 1
    v = rng.normal(size=(3, 6, out_hw, out_hw))
    y, (dx, dw) = _grads("conv2d", [x, w], v, **attrs)
    ty, (tdx, tdw) = _torch_grads(torch, lambda a, b: torch.nn.functional.conv2d(
        a, b, stride=stride, padding=1, dilation=dilation, groups=groups), [x, w], v)
    for ours, theirs in ((y, ty), (dx, tdx), (dw, tdw)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_conv2d_second_derivative_matches_torch(torch):
    rng = np.random.default_rng(4)
    x, w = rng.normal(size=(3, 4, 9, 9)), rng.normal(size=(6, 2, 3, 3))
    v, a = rng.normal(size=(3, 6, 4, 4)), rng.normal(size=(3, 4, 9, 9))
    attrs = {"stride": (2, 2), "padding": (1, 1), "dilation": (2, 2), "groups": 2}
    xt, wt = Tensor(x), Tensor(w)
    (dx,) = grad([apply("conv2d", xt, wt, **attrs)], [xt], [Tensor(v)])
    (ddw,) = grad([(dx * Tensor(a)).sum()], [wt])  # d/dw <d<y, v>/dx, a>
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, stride=2, padding=1, dilation=2, groups=2)
    (tdx,) = torch.autograd.grad(ty, tx, torch.tensor(v), create_graph=True)
    (tddw,) = torch.autograd.grad((tdx * torch.tensor(a)).sum(), tw)
    np.testing.assert_allclose(ddw.numpy(), tddw.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 1), (2, 2, 0), (3, 1, 1)])
def test_pooling_matches_torch(torch, op, kernel, stride, padding):
    rng = np.random.default_rng(5)
    x = rng.permutation(3 * 4 * 9 * 9).reshape(3, 4, 9, 9) / 10.0  # distinct: no ties
    out_hw = (9 + 2 * padding - kernel) // stride + 1
    v = rng.normal(size=(3, 4, out_hw, out_hw))
    y, (dx,) = _grads(op, [x], v, kernel=(kernel, kernel), stride=(stride, stride),
                      padding=(padding, padding))
    fn = getattr(torch.nn.functional, op)
    ty, (tdx,) = _torch_grads(torch, lambda a: fn(a, kernel, stride, padding), [x], v)
    np.testing.assert_allclose(y, ty, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, tdx, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kernel, stride, padding", [((2, 2), None, (0, 0)),
                                                     ((3, 3), (2, 2), (1, 1)),
                                                     ((2, 3), (1, 2), (1, 1))])
def test_max_pool_loops_of_the_jit_equal_the_numpy_path(kernel, stride, padding, dtype,
                                                        monkeypatch):
    """The numba loops (pool_kernels.py) against the NumPy strided-view path, on ties (a
    rounded input), a NaN and an infinity: the same values, the same routing of gradients."""
    from nnctl import jit
    from nnctl.ops import REGISTRY
    from nnctl.ops.registry import Aval

    if not jit.enabled():
        pytest.skip("the JIT is off (numba not installed, or NNCTL_JIT=0)")
    monkeypatch.setattr(jit, "MIN_SIZE", 0)  # these small arrays too
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=(2, 3, 7, 6)), 1)
    x[0, 1, 2, 3], x[1, 2, 0, 0] = np.nan, np.inf
    x = x.astype(dtype)
    attrs = {"kernel": kernel, "stride": stride, "padding": padding}
    pooled = REGISTRY["max_pool2d"].infer(Aval(x.shape, dtype), **attrs).shape
    g, v = rng.normal(size=pooled).astype(dtype), rng.normal(size=x.shape).astype(dtype)
    for name, args in (("max_pool2d", (x,)), ("max_pool2d_grad", (g, x)),
                       ("max_pool2d_gather", (v, x))):
        op = REGISTRY[name]
        expected = op.forward(np, *args, **attrs)
        out = np.full(expected.shape, 7.0, dtype=dtype)
        op.forward_into(np, out, *args, **attrs)
        # overlapping windows add their gradients in another order: round-off only
        tol = 1e-15 if dtype == "float64" else 1e-6
        np.testing.assert_allclose(out, expected, rtol=tol, atol=tol, err_msg=name)
        assert np.array_equal(np.isnan(out), np.isnan(expected))
