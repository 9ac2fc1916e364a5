"""AdamW, RMSprop and Adagrad against their published formulas, written out by hand:

AdamW (Loshchilov and Hutter, 2019, as torch.optim.AdamW):
    p <- p - lr wd p;  m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
    p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
RMSprop (torch.optim.RMSprop, not centered):
    g <- g + wd p;  s <- alpha s + (1-alpha) g^2;  d = g / (sqrt(s) + eps);
    b <- mu b + d, p <- p - lr b  (mu = 0: p <- p - lr d)
Adagrad (Duchi et al., 2011, as torch.optim.Adagrad):
    g <- g + wd p;  s <- s + g^2 (s_0 = initial_accumulator_value);  p <- p - lr g / (sqrt(s) + eps)
"""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.optim import Adagrad, Adam, AdamW, RMSprop, make_schedule

P0 = np.array([[1.0, -2.0, 0.0], [0.5, 3.0, -0.1]])
GRADS = [np.array([[0.1, -0.2, 0.0], [0.3, 0.4, -1.0]]),
         np.array([[-0.5, 0.0, 0.2], [0.2, 0.1, 0.0]]),
         np.array([[0.05, 0.6, -0.3], [-0.3, -0.2, 2.0]])]


def adamw_by_hand(p, grads, lr, b1, b2, eps, wd):
    p, m, v, out = p.copy(), np.zeros_like(p), np.zeros_like(p), []
    for t, g in enumerate(grads, start=1):
        p = p - lr * wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        out.append(p.copy())
    return out


def rmsprop_by_hand(p, grads, lr, alpha, eps, mu, wd):
    p, s, b, out = p.copy(), np.zeros_like(p), np.zeros_like(p), []
    for g in grads:
        g = g + wd * p
        s = alpha * s + (1 - alpha) * g * g
        d = g / (np.sqrt(s) + eps)
        b = mu * b + d
        p = p - lr * (b if mu else d)
        out.append(p.copy())
    return out


def adagrad_by_hand(p, grads, lr, eps, wd, init):
    p, s, out = p.copy(), np.full_like(p, init), []
    for g in grads:
        g = g + wd * p
        s = s + g * g
        p = p - lr * g / (np.sqrt(s) + eps)
        out.append(p.copy())
    return out


def _run(opt, want):
    p = P0.copy()
    for t in range(3):
        opt.step([p], [GRADS[t]])
        np.testing.assert_allclose(p, want[t], rtol=1e-13, atol=1e-15)
    assert opt.steps == 3


@pytest.mark.parametrize("lr,b1,b2,eps,wd", [
    (1e-3, 0.9, 0.999, 1e-8, 0.01), (0.1, 0.8, 0.99, 1e-3, 0.0), (0.05, 0.9, 0.999, 1e-8, 0.5)])
def test_adamw_three_steps_match_the_formula(lr, b1, b2, eps, wd):
    _run(AdamW(np, lr, b1, b2, eps, wd), adamw_by_hand(P0, GRADS, lr, b1, b2, eps, wd))


@pytest.mark.parametrize("lr,alpha,eps,mu,wd", [
    (0.01, 0.99, 1e-8, 0.0, 0.0), (0.05, 0.9, 1e-3, 0.9, 0.0), (0.02, 0.8, 1e-8, 0.5, 0.1)])
def test_rmsprop_three_steps_match_the_formula(lr, alpha, eps, mu, wd):
    _run(RMSprop(np, lr, alpha, eps, mu, wd), rmsprop_by_hand(P0, GRADS, lr, alpha, eps, mu, wd))


@pytest.mark.parametrize("lr,eps,wd,init", [
    (0.01, 1e-10, 0.0, 0.0), (0.1, 1e-3, 0.1, 0.0), (0.5, 1e-10, 0.0, 0.1)])
def test_adagrad_three_steps_match_the_formula(lr, eps, wd, init):
    _run(Adagrad(np, lr, eps, wd, init), adagrad_by_hand(P0, GRADS, lr, eps, wd, init))


def test_defaults_are_pytorchs():
    w = AdamW(np)
    assert (w.lr, w.beta1, w.beta2, w.eps, w.weight_decay) == (1e-3, 0.9, 0.999, 1e-8, 0.01)
    r = RMSprop(np)
    assert (r.lr, r.alpha, r.eps, r.momentum, r.weight_decay) == (0.01, 0.99, 1e-8, 0.0, 0.0)
    a = Adagrad(np)
    assert (a.lr, a.eps, a.weight_decay, a.initial_accumulator_value) == (0.01, 1e-10, 0.0, 0.0)


def test_adamw_decay_is_decoupled_from_the_gradient():
    # zero gradient: Adam's L2 term moves p by about lr (first step is lr * sign); AdamW only
    # shrinks p by the factor 1 - lr wd
    p = np.array([2.0, -4.0])
    AdamW(np, lr=0.1, weight_decay=0.5).step([p], [np.zeros(2)])
    np.testing.assert_allclose(p, [2.0 * 0.95, -4.0 * 0.95], rtol=1e-15)
    q = np.array([2.0, -4.0])
    Adam(np, lr=0.1, weight_decay=0.5).step([q], [np.zeros(2)])
    np.testing.assert_allclose(q, [1.9, -3.9], rtol=1e-6)


def test_rmsprop_first_step_exact_numbers():
    # s1 = (1 - 0.75) * 4 = 1; d = 2 / (1 + 0) = 2; p = 1 - 0.1 * 2
    p = np.array([1.0])
    RMSprop(np, lr=0.1, alpha=0.75, eps=0.0).step([p], [np.array([2.0])])
    np.testing.assert_allclose(p, [0.8], rtol=1e-15)


def test_adagrad_first_step_moves_each_coordinate_by_lr():
    p = np.zeros(3)
    Adagrad(np, lr=0.5, eps=0.0).step([p], [np.array([1e-3, -5.0, 200.0])])
    np.testing.assert_allclose(p, [-0.5, 0.5, -0.5], rtol=1e-15)


OPTIMIZERS = [
    lambda: AdamW(np, 0.1, weight_decay=0.1),
    lambda: RMSprop(np, 0.01, momentum=0.9, weight_decay=0.01),
    lambda: RMSprop(np, 0.01),
    lambda: Adagrad(np, 0.1, weight_decay=0.01, initial_accumulator_value=0.1),
]


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_updates_in_place_and_never_writes_gradients(make):
    p = P0.copy()
    before = id(p)
    g = np.broadcast_to(np.array([0.1, 0.2, 0.3]), (2, 3))  # read-only view, as a plan may return
    assert not g.flags.writeable
    opt = make()
    for _ in range(3):
        opt.step([p], [g])
    assert id(p) == before
    np.testing.assert_array_equal(g, [[0.1, 0.2, 0.3]] * 2)
    assert not np.array_equal(p, P0)


@pytest.mark.parametrize("make", OPTIMIZERS)
def test_float32_parameters_and_state_stay_float32(make):
    p = np.ones(3, dtype=np.float32)
    opt = make()
    for _ in range(2):
        opt.step([p], [np.full(3, 0.5, dtype=np.float32)])
    assert p.dtype == np.float32
    assert all(a.dtype == np.float32 for k, a in opt.state_dict(np.asarray).items() if k != "step")
    want = np.ones(3)
    ref = make()
    for _ in range(2):
        ref.step([want], [np.full(3, 0.5)])
    np.testing.assert_allclose(p, want, rtol=1e-6)


@pytest.mark.parametrize("make,base_lr", list(zip(OPTIMIZERS, [0.05, 0.01, 0.05, 1.0])))
def test_converges_on_a_quadratic_with_a_cosine_schedule(make, base_lr):
    # f(p) = 1/2 sum a (p - c)^2; RMSprop and AdamW hover about lr around the minimum at a
    # constant lr, so the lr anneals to zero, as a trainer with a schedule would set it
    a = np.array([1.0, 4.0, 0.5])
    c = np.array([3.0, -1.0, 2.0])
    opt = make()
    opt.weight_decay = 0.0
    lr = make_schedule("cosine", base_lr, steps_per_epoch=1, total_steps=3000)
    p = np.zeros(3)
    for t in range(3000):
        opt.lr = lr(t)
        opt.step([p], [a * (p - c)])
    np.testing.assert_allclose(p, c, atol=1e-3)


def test_lr_is_read_on_every_step():
    # a schedule sets opt.lr before each step; lr = 0 must freeze every optimizer, decay included
    for make in OPTIMIZERS:
        opt = make()
        p = P0.copy()
        opt.step([p], [GRADS[0]])
        frozen = p.copy()
        opt.lr = 0.0
        opt.step([p], [GRADS[1]])
        np.testing.assert_array_equal(p, frozen)
