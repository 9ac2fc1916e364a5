"""The fused, numerically stable ops (RELIABILITY A13): softmax, log_softmax, cross_entropy, mse."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.errors import ShapeError
from nnctl.graph.tensor import Tensor


def _ce(logits, labels, dtype="float64"):
    x = Tensor(np.asarray(logits, dtype=dtype))
    loss = x.cross_entropy(Tensor(np.asarray(labels, dtype=np.int64)))
    (g,) = grad(loss, [x])
    return loss, g.numpy()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cross_entropy_confident_correct_is_exactly_zero(dtype):
    loss, g = _ce([[1000.0, 0.0, -1000.0]], [0], dtype)
    assert loss.dtype == dtype and np.asarray(loss.value).dtype == np.dtype(dtype)
    assert loss.item() == 0.0
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(g, [[0.0, 0.0, 0.0]])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cross_entropy_confident_wrong_is_the_logit_gap(dtype):
    loss, g = _ce([[1000.0, 0.0, -1000.0]], [1], dtype)
    assert loss.item() == 1000.0
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, [[1.0, -1.0, 0.0]], atol=1e-12)


@pytest.mark.parametrize("c", [-1e4, 0.0, 1e4])
@pytest.mark.parametrize("k", [2, 3, 10])
def test_cross_entropy_equal_logits_is_log_k(c, k):
    loss, g = _ce([[c] * k, [c] * k], [0, k - 1])
    assert loss.item() == pytest.approx(math.log(k), rel=1e-12)
    # d/dx = (1/k - onehot) / N
    expected = np.full((2, k), 1.0 / k)
    expected[0, 0] -= 1.0
    expected[1, k - 1] -= 1.0
    np.testing.assert_allclose(g, expected / 2, atol=1e-12)


def test_cross_entropy_matches_a_reference_on_moderate_logits():
    rng = np.random.default_rng(0)
    logits = rng.uniform(-5, 5, (6, 4))
    labels = rng.integers(0, 4, 6)
    loss, g = _ce(logits, labels)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert loss.item() == pytest.approx(-np.mean(np.log(p[np.arange(6), labels])), rel=1e-12)
    onehot = np.eye(4)[labels]
    np.testing.assert_allclose(g, (p - onehot) / 6, atol=1e-12)


def test_cross_entropy_float32_agrees_with_float64_within_1e_6():
    rng = np.random.default_rng(1)
    logits = rng.uniform(-5, 5, (8, 10))
    labels = rng.integers(0, 10, 8)
    l64, g64 = _ce(logits, labels, "float64")
    l32, g32 = _ce(logits.astype(np.float32), labels, "float32")
    assert g32.dtype == np.float32
    assert abs(l32.item() - l64.item()) < 1e-6
    np.testing.assert_allclose(g32, g64, atol=1e-6)


def test_cross_entropy_rejects_bad_labels():
    logits = Tensor(np.zeros((4, 3)))
    with pytest.raises(ShapeError, match="integer class labels"):
        logits.cross_entropy(Tensor(np.zeros(4)))
    with pytest.raises(ShapeError,
                       match=r"labels \[5\] do not match logits \[4, 3\]; expected \[4\]"):
        logits.cross_entropy(Tensor(np.zeros(5, dtype=np.int64)))
    with pytest.raises(ShapeError, match=r"\[batch, \.\.\., classes\]"):
        Tensor(np.zeros(3)).cross_entropy(Tensor(np.zeros(3, dtype=np.int64)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_of_huge_logits_is_finite_and_sums_to_one(dtype):
    x = Tensor(np.array([[1e4, -1e4, 0.0], [1000.0, 1000.0, 1000.0], [-1e4, -1e4, -1e4]],
                        dtype=dtype))
    y = x.softmax().numpy()
    assert y.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(y, [[1, 0, 0], [1 / 3] * 3, [1 / 3] * 3], rtol=1e-6)


def test_softmax_along_a_middle_axis():
    x = np.random.default_rng(2).normal(size=(2, 3, 4))
    y = Tensor(x).softmax(axis=1).numpy()
    np.testing.assert_allclose(y.sum(axis=1), np.ones((2, 4)), rtol=1e-12)
    np.testing.assert_allclose(y, np.exp(x) / np.exp(x).sum(1, keepdims=True), rtol=1e-12)


def test_log_softmax_is_stable_for_huge_logits():
    x = Tensor(np.array([[1000.0, 0.0, -1000.0]]))
    y = x.log_softmax()
    np.testing.assert_array_equal(y.numpy(), [[0.0, -1000.0, -2000.0]])
    # a naive log(softmax) gives -inf here; the fused op's gradient is finite too
    (g,) = grad(y.sum(), [x])
    assert np.all(np.isfinite(g.numpy()))
    np.testing.assert_allclose(g.numpy(), [[1.0 - 3.0, 1.0, 1.0]], atol=1e-12)


def test_log_softmax_equals_log_of_softmax_on_moderate_logits():
    x = np.random.default_rng(3).uniform(-3, 3, (4, 5))
    np.testing.assert_allclose(Tensor(x).log_softmax().numpy(),
                               np.log(Tensor(x).softmax().numpy()), atol=1e-12)


def test_log_softmax_of_equal_rows_is_minus_log_k():
    for c in (-1e4, 0.0, 1e4):
        y = Tensor(np.full((2, 7), c)).log_softmax().numpy()
        np.testing.assert_allclose(y, -math.log(7), rtol=1e-12)


def test_mse_value_and_gradients():
    p = Tensor(np.array([[1.0, 2.0], [3.0, 4.0]]))
    t = Tensor(np.array([[0.0, 2.0], [5.0, 4.0]]))
    loss = p.mse(t)
    assert loss.shape == ()
    assert loss.item() == pytest.approx((1 + 0 + 4 + 0) / 4, abs=0)
    gp, gt = grad(loss, [p, t])
    np.testing.assert_allclose(gp.numpy(), [[0.5, 0.0], [-1.0, 0.0]])
    np.testing.assert_allclose(gt.numpy(), [[-0.5, 0.0], [1.0, 0.0]])


def test_mse_float32_agrees_with_float64():
    rng = np.random.default_rng(4)
    p, t = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    l64 = Tensor(p).mse(Tensor(t)).item()
    l32 = Tensor(p.astype(np.float32)).mse(Tensor(t.astype(np.float32)))
    assert np.asarray(l32.value).dtype == np.float32
    assert abs(l32.item() - l64) < 1e-6


def test_mse_refuses_mismatched_shapes():
    with pytest.raises(ShapeError, match=r"prediction \[4, 3\] and target \[4, 1\] differ"):
        Tensor(np.zeros((4, 3))).mse(Tensor(np.zeros((4, 1))))


def test_one_hot_values_and_dtype():
    y = Tensor(np.array([2, 0, 1], dtype=np.int64)).one_hot(3, "float64")
    assert y.dtype == "float64"
    np.testing.assert_array_equal(y.numpy(), [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    with pytest.raises(ShapeError, match="integer labels"):
        Tensor(np.zeros(3)).one_hot(3)


def test_cross_entropy_gradient_agrees_with_its_forward_for_any_accepted_label():
    from nnctl.errors import NnctlError
    xv = np.array([[1.0, 2.0, 3.0]])
    x = Tensor(xv)
    try:
        loss = x.cross_entropy(Tensor(np.array([-1])))
    except NnctlError:
        return  # refusing the label is a fine answer too
    (g,) = grad(loss, [x])
    eps = 1e-6
    numeric = np.zeros(3)
    for k in range(3):
        up, down = xv.copy(), xv.copy()
        up[0, k] += eps
        down[0, k] -= eps
        numeric[k] = (Tensor(up).cross_entropy(Tensor(np.array([-1]))).item()
                      - Tensor(down).cross_entropy(Tensor(np.array([-1]))).item()) / (2 * eps)
    np.testing.assert_allclose(g.numpy()[0], numeric, atol=1e-6)


@pytest.mark.parametrize("labels", [[0, 3, 1, 2, 3], [0, -1, 4, 2, 3]], ids=["in", "out"])
def test_sub_one_hot_in_place_path_equals_forward(labels):
    """The allocation-free path (a one-hot mask in its workspace, for large batches) and the
    indexing path give the same result, labels outside [0, classes) included."""
    from nnctl.ops.registry import REGISTRY
    op = REGISTRY["sub_one_hot"]
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    y = np.array(labels)
    expected = x - np.array([np.eye(4)[k] if 0 <= k < 4 else np.zeros(4) for k in y],
                            dtype=np.float32)
    work = [np.empty(a.shape, a.dtype) for a in op.workspace(x, y)]
    out = np.full_like(x, np.nan)
    np.testing.assert_array_equal(op.forward_into(np, out, x, y, work=work), expected)
    np.testing.assert_array_equal(op.forward(np, x, y), expected)
