"""SGD against PyTorch's published formulation, written out by hand:
    g <- g + wd p;  v <- g (first step), v <- mu v + g;  d = g + mu v (Nesterov) else v;
    p <- p - lr d."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.optim import SGD

P0 = np.array([[1.0, -2.0], [0.5, 3.0]])
B0 = np.array([0.25, -0.75])
GRADS = [np.array([[0.1, -0.2], [0.3, 0.4]]),
         np.array([[-0.5, 0.0], [0.2, 0.1]]),
         np.array([[0.05, 0.6], [-0.3, -0.2]])]
BGRADS = [np.array([1.0, -1.0]), np.array([0.5, 0.5]), np.array([-2.0, 0.0])]


def _by_hand(p, grads, lr, momentum, nesterov, wd):
    p = p.copy()
    v = None
    history = []
    for g in grads:
        g = g + wd * p
        if momentum:
            v = g.copy() if v is None else momentum * v + g
            d = g + momentum * v if nesterov else v
        else:
            d = g
        p = p - lr * d
        history.append(p.copy())
    return history


@pytest.mark.parametrize("momentum,nesterov,wd", [
    (0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.0), (0.0, False, 0.1),
    (0.8, True, 0.05), (0.5, False, 0.2)])
def test_three_steps_match_the_formula(momentum, nesterov, wd):
    lr = 0.1
    p, b = P0.copy(), B0.copy()
    opt = SGD(np, lr, momentum, nesterov, wd)
    want_p = _by_hand(P0, GRADS, lr, momentum, nesterov, wd)
    want_b = _by_hand(B0, BGRADS, lr, momentum, nesterov, wd)
    for t in range(3):
        opt.step([p, b], [GRADS[t], BGRADS[t]])
        np.testing.assert_allclose(p, want_p[t], rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(b, want_b[t], rtol=1e-14, atol=1e-15)
    assert opt.steps == 3


def test_plain_sgd_first_step_exact_numbers():
    p = np.array([1.0, 2.0])
    SGD(np, 0.5).step([p], [np.array([0.2, -0.4])])
    np.testing.assert_array_equal(p, [0.9, 2.2])


def test_momentum_second_step_exact_numbers():
    # v1 = g1 = 1; p1 = 1 - 0.1; v2 = 0.9*1 + 1 = 1.9; p2 = 0.9 - 0.19 = 0.71
    p = np.array([1.0])
    opt = SGD(np, 0.1, momentum=0.9)
    opt.step([p], [np.array([1.0])])
    opt.step([p], [np.array([1.0])])
    np.testing.assert_allclose(p, [0.71], rtol=1e-15)
    # Nesterov: d1 = 1 + 0.9*1 = 1.9; p1 = 0.81; v2 = 1.9; d2 = 1 + 0.9*1.9 = 2.71; p2 = 0.539
    q = np.array([1.0])
    nes = SGD(np, 0.1, momentum=0.9, nesterov=True)
    nes.step([q], [np.array([1.0])])
    np.testing.assert_allclose(q, [0.81], rtol=1e-15)
    nes.step([q], [np.array([1.0])])
    np.testing.assert_allclose(q, [0.539], rtol=1e-14)


def test_updates_in_place_and_never_writes_gradients():
    p = P0.copy()
    before = id(p)
    g = np.broadcast_to(np.array([0.1, 0.2]), (2, 2))  # read-only view, as a plan may return
    assert not g.flags.writeable
    opt = SGD(np, 0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(3):
        opt.step([p], [g])
    assert id(p) == before
    np.testing.assert_array_equal(g, [[0.1, 0.2], [0.1, 0.2]])


def test_converges_on_a_quadratic():
    # f(p) = 1/2 sum a (p - c)^2, minimum at c
    a = np.array([1.0, 4.0, 0.5])
    c = np.array([3.0, -1.0, 2.0])
    for opt in (SGD(np, 0.1), SGD(np, 0.05, momentum=0.9), SGD(np, 0.05, 0.9, nesterov=True)):
        p = np.zeros(3)
        for _ in range(300):
            opt.step([p], [a * (p - c)])
        np.testing.assert_allclose(p, c, atol=1e-4)


def test_weight_decay_pulls_the_minimum_toward_zero():
    # gradient a (p - c) + wd p vanishes at p = a c / (a + wd)
    a, c, wd = np.array([1.0, 2.0]), np.array([2.0, -3.0]), 0.5
    p = np.zeros(2)
    opt = SGD(np, 0.2, weight_decay=wd)
    for _ in range(300):
        opt.step([p], [a * (p - c)])
    np.testing.assert_allclose(p, a * c / (a + wd), atol=1e-8)


def test_float32_parameters_stay_float32():
    p = np.ones(3, dtype=np.float32)
    SGD(np, 0.1, momentum=0.9).step([p], [np.full(3, 0.5, dtype=np.float32)])
    assert p.dtype == np.float32
    np.testing.assert_allclose(p, 0.95, rtol=1e-7)
