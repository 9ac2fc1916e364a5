"""Adam against Kingma & Ba (2015), Algorithm 1, written out by hand:
    g <- g + wd p;  m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
    m_hat = m / (1 - b1^t);  v_hat = v / (1 - b2^t);  p <- p - lr m_hat / (sqrt(v_hat) + eps)."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.optim import Adam

P0 = np.array([[1.0, -2.0, 0.0], [0.5, 3.0, -0.1]])
GRADS = [np.array([[0.1, -0.2, 0.0], [0.3, 0.4, -1.0]]),
         np.array([[-0.5, 0.0, 0.2], [0.2, 0.1, 0.0]]),
         np.array([[0.05, 0.6, -0.3], [-0.3, -0.2, 2.0]])]


def _by_hand(p, grads, lr, b1, b2, eps, wd):
    p = p.copy()
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    history = []
    for t, g in enumerate(grads, start=1):
        g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        history.append(p.copy())
    return history


@pytest.mark.parametrize("lr,b1,b2,eps,wd", [
    (1e-3, 0.9, 0.999, 1e-8, 0.0),
    (0.1, 0.8, 0.99, 1e-3, 0.0),   # a large eps makes the eps scaling visible
    (0.05, 0.9, 0.999, 1e-8, 0.1),
    (0.01, 0.5, 0.9, 0.1, 0.01)])
def test_three_steps_match_the_paper(lr, b1, b2, eps, wd):
    p = P0.copy()
    opt = Adam(np, lr, b1, b2, eps, wd)
    want = _by_hand(P0, GRADS, lr, b1, b2, eps, wd)
    for t in range(3):
        opt.step([p], [GRADS[t]])
        np.testing.assert_allclose(p, want[t], rtol=1e-12, atol=1e-15)


def test_first_step_moves_each_coordinate_by_about_lr():
    # bias correction: at t = 1, m_hat = g and v_hat = g^2, so the step is lr * sign(g)
    p = np.array([0.0, 0.0, 0.0])
    Adam(np, lr=0.01).step([p], [np.array([1e-3, -5.0, 200.0])])
    np.testing.assert_allclose(p, [-0.01, 0.01, -0.01], rtol=1e-4)


def test_zero_gradient_does_not_move_and_state_is_per_parameter():
    a, b = np.array([1.0, 2.0]), np.array([3.0])
    opt = Adam(np, lr=0.1)
    opt.step([a, b], [np.zeros(2), np.array([1.0])])
    np.testing.assert_array_equal(a, [1.0, 2.0])
    np.testing.assert_allclose(b, [2.9], rtol=1e-6)
    assert set(opt.m) == {0, 1} and opt.steps == 1


def test_never_writes_gradients():
    p = P0.copy()
    g = np.broadcast_to(np.array([0.1, 0.2, 0.3]), (2, 3))
    opt = Adam(np, 0.1, weight_decay=0.01)
    for _ in range(3):
        opt.step([p], [g])
    np.testing.assert_array_equal(g[0], [0.1, 0.2, 0.3])


def test_converges_on_a_quadratic():
    a = np.array([1.0, 10.0, 0.1])
    c = np.array([3.0, -1.0, 2.0])
    p = np.zeros(3)
    opt = Adam(np, lr=0.05)
    for _ in range(2000):
        opt.step([p], [a * (p - c)])
    np.testing.assert_allclose(p, c, atol=1e-3)


def test_float32_parameters_stay_float32():
    p = np.ones(3, dtype=np.float32)
    Adam(np, 0.1).step([p], [np.full(3, 0.5, dtype=np.float32)])
    assert p.dtype == np.float32
    np.testing.assert_allclose(p, 0.9, rtol=1e-6)
