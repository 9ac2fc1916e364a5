"""Gradient clipping: global norm (as torch.nn.utils.clip_grad_norm_) and value."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnctl.optim import clip_grad_norm, clip_grad_value


def _global_norm(grads):
    return math.sqrt(sum(float(np.sum(np.asarray(g, dtype=np.float64) ** 2)) for g in grads))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_400_ones_clip_to_norm_one_in_the_same_direction(dtype):
    # 400 parameters of ones, split over three arrays: global norm sqrt(400) = 20
    grads = [np.ones((10, 20), dtype), np.ones(150, dtype), np.ones((5, 10), dtype)]
    clipped, norm = clip_grad_norm(np, grads, 1.0)
    assert isinstance(norm, float) and norm == 20.0
    assert abs(_global_norm(clipped) - 1.0) <= 1e-6
    for g, c in zip(grads, clipped):
        assert c.dtype == dtype and c.shape == g.shape and c is not g
        np.testing.assert_allclose(c, 0.05, rtol=1e-6)  # every coordinate scaled alike
        np.testing.assert_array_equal(g, 1.0)  # the inputs are untouched


def test_direction_is_kept_for_mixed_gradients():
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(7, 3)) * 10, rng.normal(size=4) * 10]
    clipped, norm = clip_grad_norm(np, grads, 2.5)
    assert norm == pytest.approx(_global_norm(grads), rel=1e-14)
    scale = 2.5 / (norm + 1e-6)
    for g, c in zip(grads, clipped):
        np.testing.assert_allclose(c, g * scale, rtol=1e-15)
    assert _global_norm(clipped) == pytest.approx(2.5, abs=1e-6)


def test_below_the_limit_returns_the_very_same_arrays():
    grads = [np.full(3, 0.1), np.broadcast_to(np.array([0.2]), (4,))]  # one read-only view
    out, norm = clip_grad_norm(np, grads, 1.0)
    assert out is grads and all(a is b for a, b in zip(out, grads))
    assert norm == pytest.approx(math.sqrt(3 * 0.01 + 4 * 0.04), rel=1e-15)
    exactly, _ = clip_grad_norm(np, [np.array([3.0, 4.0])], 5.0)  # norm == max_norm: no scaling
    np.testing.assert_array_equal(exactly[0], [3.0, 4.0])


def test_read_only_views_are_clipped_into_new_arrays():
    g = np.broadcast_to(np.array([3.0, 4.0]), (2, 2))
    assert not g.flags.writeable
    (c,), norm = clip_grad_norm(np, [g], 1.0)
    assert norm == pytest.approx(math.sqrt(50))
    assert c.flags.writeable
    np.testing.assert_array_equal(g, [[3.0, 4.0], [3.0, 4.0]])


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_norm_returns_the_gradients_as_they_are(bad):
    grads = [np.array([1.0, bad]), np.ones(2)]
    with np.errstate(all="ignore"):
        out, norm = clip_grad_norm(np, grads, 1.0)
    assert out is grads and not math.isfinite(norm)


def test_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    grads = [rng.normal(size=(6, 5)), rng.normal(size=9)]
    clipped, norm = clip_grad_norm(np, grads, 0.7)
    tensors = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for t, g in zip(tensors, grads):
        t.grad = torch.tensor(g)
    torch_norm = torch.nn.utils.clip_grad_norm_(tensors, 0.7)
    assert norm == pytest.approx(float(torch_norm), rel=1e-14)
    for c, t in zip(clipped, tensors):
        np.testing.assert_allclose(c, t.grad.numpy(), rtol=1e-14)


def test_empty_list_has_norm_zero():
    assert clip_grad_norm(np, [], 1.0) == ([], 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_value_clipping_bounds_each_coordinate(dtype):
    g = np.broadcast_to(np.array([-3.0, -0.5, 0.0, 0.25, 2.0], dtype), (2, 5))
    (c,) = clip_grad_value(np, [g], 0.5)
    assert c.dtype == dtype and c is not g and c.flags.writeable
    np.testing.assert_array_equal(c, [[-0.5, -0.5, 0.0, 0.25, 0.5]] * 2)
    np.testing.assert_array_equal(g[0], [-3.0, -0.5, 0.0, 0.25, 2.0])
    assert np.abs(c).max() <= 0.5
