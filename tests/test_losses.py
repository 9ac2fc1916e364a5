"""The losses of nnctl.losses against PyTorch in float64: the mean loss and its gradient with
respect to the logits (or predictions), rtol 1e-10, from nnctl's reverse-mode AD on one side
and torch.autograd on the other. References: BCEWithLogitsLoss (with pos_weight a number or
one per label), L1Loss, HuberLoss, SmoothL1Loss; the multi-class focal loss written in torch
from Lin et al. 2017; torchvision's sigmoid_focal_loss, copied (torchvision is not installed).
Then the stable forms at extreme logits, where naive formulas give inf or NaN."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.errors import ShapeError
from nnctl.graph.tensor import Tensor
from nnctl.losses import (bce_with_logits, focal, huber, l1, mean_over, sigmoid_focal,
                          smooth_l1)

torch = pytest.importorskip("torch")
F = torch.nn.functional
RTOL = 1e-10


def ours(fn, z, *args, **kw):
    """(mean loss, d loss / d z) from nnctl, float64."""
    zt = Tensor(np.asarray(z, np.float64))
    loss = mean_over(fn(zt, *args, **kw))
    (dz,) = grad(loss, [zt])
    return float(loss.numpy()), dz.numpy()


def theirs(fn, z):
    """(loss, d loss / d z) from torch, float64."""
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    loss = fn(zt)
    loss.backward()
    return float(loss.detach()), zt.grad.numpy()


def check(mine, reference):
    assert mine[0] == pytest.approx(reference[0], rel=RTOL)
    np.testing.assert_allclose(mine[1], reference[1], rtol=RTOL, atol=1e-300)


RNG = np.random.default_rng(11)
LOGITS = RNG.normal(size=(8, 3)) * 3
LABELS = (RNG.random((8, 3)) < 0.4).astype(np.float64)


@pytest.mark.parametrize("pos_weight", [None, 3.0, [0.5, 2.0, 7.0]])
def test_bce_with_logits_multilabel_matches_torch(pos_weight):
    pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float64)
    check(ours(bce_with_logits, LOGITS, Tensor(LABELS), pos_weight),
          theirs(lambda z: F.binary_cross_entropy_with_logits(z, torch.tensor(LABELS),
                                                              pos_weight=pw), LOGITS))


def test_bce_with_logits_binary_and_soft_targets_match_torch():
    z, y = LOGITS[:, :1], np.array([[0.0], [1.0], [0.3], [1.0], [0.0], [0.9], [1], [0]])
    check(ours(bce_with_logits, z, Tensor(y), 2.5),
          theirs(lambda t: F.binary_cross_entropy_with_logits(
              t, torch.tensor(y), pos_weight=torch.tensor(2.5, dtype=torch.float64)), z))


# differences kept away from the kinks at 0 and at +-delta / +-beta, where the derivative
# jumps and either side is right
PRED = np.array([[-3.1, -1.2, -0.7], [-0.2, 0.4, 0.55], [0.9, 1.3, 2.6], [4.0, -5.5, 0.05]])
TARGET = np.zeros_like(PRED) + 0.01


@pytest.mark.parametrize("name, mine, reference", [
    ("l1", lambda z, y: l1(z, y), lambda z, y: F.l1_loss(z, y)),
    ("huber", lambda z, y: huber(z, y), lambda z, y: F.huber_loss(z, y)),
    ("huber 2.5", lambda z, y: huber(z, y, 2.5), lambda z, y: F.huber_loss(z, y, delta=2.5)),
    ("huber 0.3", lambda z, y: huber(z, y, 0.3), lambda z, y: F.huber_loss(z, y, delta=0.3)),
    ("smooth_l1", lambda z, y: smooth_l1(z, y), lambda z, y: F.smooth_l1_loss(z, y)),
    ("smooth_l1 0.5", lambda z, y: smooth_l1(z, y, 0.5),
     lambda z, y: F.smooth_l1_loss(z, y, beta=0.5)),
    ("smooth_l1 3", lambda z, y: smooth_l1(z, y, 3.0),
     lambda z, y: F.smooth_l1_loss(z, y, beta=3.0)),
    ("smooth_l1 0", lambda z, y: smooth_l1(z, y, 0.0),
     lambda z, y: F.smooth_l1_loss(z, y, beta=0.0)),
])
def test_regression_losses_match_torch(name, mine, reference):
    check(ours(mine, PRED, Tensor(TARGET)),
          theirs(lambda z: reference(z, torch.tensor(TARGET)), PRED))


def test_regression_losses_at_the_kinks_give_torchs_subgradients():
    z, y = np.array([[0.0, 1.0, -1.0, 2.0]]), np.zeros((1, 4))
    for mine, reference in [(l1, F.l1_loss), (huber, F.huber_loss),
                            (smooth_l1, F.smooth_l1_loss)]:
        check(ours(mine, z, Tensor(y)), theirs(lambda t: reference(t, torch.tensor(y)), z))
    value, dz = ours(huber, z, Tensor(y))  # by hand: 0, 1/2, 1/2, 3/2 and d or sign(d)
    assert value == pytest.approx((0 + 0.5 + 0.5 + 1.5) / 4, rel=RTOL)
    np.testing.assert_allclose(dz, [[0.0, 0.25, -0.25, 0.25]], rtol=RTOL)


def torch_focal(z, y, gamma, alpha=None):
    """Lin et al. 2017, softmax form, mean over samples."""
    logpt = F.log_softmax(z, -1).gather(-1, y[..., None])[..., 0]
    loss = -((1 - logpt.exp()) ** gamma) * logpt
    if alpha is not None:
        loss = loss * torch.tensor(alpha, dtype=torch.float64)[y]
    return loss.mean()


CLASS_LOGITS = RNG.normal(size=(10, 4)) * 2
CLASS_LABELS = RNG.integers(0, 4, size=10)


@pytest.mark.parametrize("gamma, alpha", [(2.0, None), (0.0, None), (0.5, None), (1.0, None),
                                          (3.0, [0.1, 0.2, 0.3, 0.4])])
def test_focal_matches_the_paper_in_torch(gamma, alpha):
    check(ours(focal, CLASS_LOGITS, Tensor(CLASS_LABELS), gamma, alpha),
          theirs(lambda z: torch_focal(z, torch.tensor(CLASS_LABELS), gamma, alpha),
                 CLASS_LOGITS))


def test_focal_with_gamma_0_is_cross_entropy():
    check(ours(focal, CLASS_LOGITS, Tensor(CLASS_LABELS), 0.0),
          theirs(lambda z: F.cross_entropy(z, torch.tensor(CLASS_LABELS)), CLASS_LOGITS))


def torchvision_sigmoid_focal_loss(inputs, targets, alpha: float = 0.25, gamma: float = 2):
    """torchvision.ops.sigmoid_focal_loss (reduction='mean'), as torchvision writes it."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return loss.mean()


@pytest.mark.parametrize("gamma, alpha", [(2.0, 0.25), (0.0, 0.25), (1.5, 0.8), (2.0, None)])
def test_sigmoid_focal_matches_torchvision(gamma, alpha):
    check(ours(sigmoid_focal, LOGITS, Tensor(LABELS), gamma, alpha),
          theirs(lambda z: torchvision_sigmoid_focal_loss(
              z, torch.tensor(LABELS), -1 if alpha is None else alpha, gamma), LOGITS))


def test_masked_focal_is_the_mean_over_real_steps():
    z, y = CLASS_LOGITS.reshape(2, 5, 4), CLASS_LABELS.reshape(2, 5)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.float64)
    zt = Tensor(z)
    loss = mean_over(focal(zt, Tensor(y)), Tensor(mask))
    real = mask > 0
    reference = theirs(lambda t: torch_focal(t, torch.tensor(y[real]), 2.0), z[real])
    (dz,) = grad(loss, [zt])
    assert float(loss.numpy()) == pytest.approx(reference[0], rel=RTOL)
    np.testing.assert_allclose(dz.numpy()[real], reference[1], rtol=RTOL)
    assert not dz.numpy()[~real].any()  # padding gets exactly zero gradient


def test_extreme_logits_stay_finite_and_exact():
    z = np.array([[1000.0, -1000.0, 1000.0, -1000.0, 0.0]])
    y = np.array([[1.0, 0.0, 0.0, 1.0, 1.0]])
    for fn in (bce_with_logits, sigmoid_focal):
        terms = fn(Tensor(z), Tensor(y)).numpy()
        assert np.isfinite(terms).all()
    terms = bce_with_logits(Tensor(z), Tensor(y)).numpy()
    np.testing.assert_array_equal(terms[0, :4], [0.0, 0.0, 1000.0, 1000.0])
    assert terms[0, 4] == pytest.approx(np.log(2.0), rel=1e-15)
    value, dz = ours(bce_with_logits, z, Tensor(y))
    np.testing.assert_allclose(dz, [[0.0, 0.0, 0.2, -0.2, -0.1]], rtol=1e-15, atol=0)
    # a saturated softmax: p_t = 1 exactly, even with gamma < 1 (whose derivative at 0 is inf)
    for gamma in (0.5, 2.0):
        value, dz = ours(focal, np.array([[1000.0, 0.0, -1000.0]]), Tensor(np.array([0])), gamma)
        assert value == 0.0 and np.isfinite(dz).all() and not dz.any()
        value, dz = ours(focal, np.array([[1000.0, 0.0, -1000.0]]), Tensor(np.array([1])), gamma)
        assert value == pytest.approx(1000.0, rel=1e-12) and np.isfinite(dz).all()


def test_mismatched_shapes_and_label_weights_are_shape_errors():
    with pytest.raises(ShapeError, match=r"prediction \[8, 3\] and target \[8, 1\]"):
        bce_with_logits(Tensor(LOGITS), Tensor(LABELS[:, :1]))
    with pytest.raises(ShapeError, match="pos_weight has 2 values but the output has 3"):
        bce_with_logits(Tensor(LOGITS), Tensor(LABELS), [1.0, 2.0])
    with pytest.raises(ShapeError, match="alpha has 3 values but the output has 4"):
        focal(Tensor(CLASS_LOGITS), Tensor(CLASS_LABELS), 2.0, [1.0, 2.0, 3.0])
