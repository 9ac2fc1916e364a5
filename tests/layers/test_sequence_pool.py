"""sequence_pool: masked mean, max and last over time.

The acceptance test: a padded batch (lengths 2, 5, 7 padded to 8, junk in the padding) gives
the same outputs and input gradients at real steps as each sequence pooled alone without
padding (float64, rtol 1e-12), and exactly 0 gradient at padded steps. Values against NumPy.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.graph.tensor import Tensor
from nnctl.layers import build_model
from nnctl.layers.sequence_pool import SequencePool

LENGTHS, PADDED, FEATURES = (2, 5, 7), 8, 4
MODES = ("mean", "max", "last")


def mask_of(lengths, steps, dtype=np.float64):
    return (np.arange(steps)[None, :] < np.array(lengths)[:, None]).astype(dtype)


def padded_batch(seed=0):
    """x [3, 8, 4] with large positive junk at padded steps (it would win an unmasked max and
    move an unmasked mean), its mask, and a loss seed [3, 4]."""
    rng = np.random.default_rng(seed)
    xv, mv = rng.normal(size=(len(LENGTHS), PADDED, FEATURES)), mask_of(LENGTHS, PADDED)
    xv[mv == 0] = 100 + rng.random(size=(int((mv == 0).sum()), FEATURES))
    return xv, mv, rng.normal(size=(len(LENGTHS), FEATURES))


def reference(mode, x):
    """One unpadded sequence [time, features] pooled in NumPy."""
    return {"mean": x.mean(0), "max": x.max(0), "last": x[-1]}[mode]


@pytest.mark.parametrize("mode", MODES)
def test_padded_batch_equals_sequences_one_at_a_time(mode):
    xv, mv, sv = padded_batch()
    pool = SequencePool("pool", mode)
    x = Tensor(xv)
    y = pool(x, False, mask=Tensor(mv))
    (dx,) = grad((y * Tensor(sv)).sum(), [x])
    y, dx = y.numpy(), dx.numpy()
    for i, n in enumerate(LENGTHS):
        xi = Tensor(xv[i:i + 1, :n])
        yi = pool(xi, False)  # no mask
        (dxi,) = grad((yi * Tensor(sv[i:i + 1])).sum(), [xi])
        np.testing.assert_allclose(y[i], yi.numpy()[0], rtol=1e-12, atol=0)
        np.testing.assert_allclose(y[i], reference(mode, xv[i, :n]), rtol=1e-12, atol=0)
        np.testing.assert_allclose(dx[i, :n], dxi.numpy()[0], rtol=1e-12, atol=0)
        assert np.all(dx[i, n:] == 0.0), "padded steps must get no gradient"
        assert np.abs(dx[i, :n]).max() > 0.01


def test_the_gradients_by_hand():
    """mean: s / length at each real step; max: s at the argmax only; last: s at the last
    real step only."""
    xv, mv, sv = padded_batch(1)
    for mode in MODES:
        x = Tensor(xv)
        (dx,) = grad((SequencePool("p", mode)(x, False, mask=Tensor(mv)) * Tensor(sv)).sum(),
                     [x])
        expected = np.zeros_like(xv)
        for i, n in enumerate(LENGTHS):
            if mode == "mean":
                expected[i, :n] = sv[i] / n
            elif mode == "max":
                top = xv[i, :n].argmax(0)
                expected[i, top, np.arange(FEATURES)] = sv[i]
            else:
                expected[i, n - 1] = sv[i]
        np.testing.assert_allclose(dx.numpy(), expected, rtol=1e-15, atol=0, err_msg=mode)


def test_max_over_negative_values_ignores_zeros_and_junk_in_padding():
    xv = -np.arange(1.0, 7.0).reshape(1, 3, 2) - 5  # every real value < -5
    xv = np.concatenate([xv, np.zeros((1, 2, 2))], axis=1)  # padding of 0 would win a max
    y = SequencePool("p", "max")(Tensor(xv), False, mask=Tensor(mask_of((3,), 5)))
    np.testing.assert_array_equal(y.numpy(), [[-6.0, -7.0]])


@pytest.mark.parametrize("mode", MODES)
def test_without_a_mask_plain_pooling(mode):
    xv = np.random.default_rng(2).normal(size=(2, 5, 3))
    y = SequencePool("p", mode)(Tensor(xv), False)
    expected = {"mean": xv.mean(1), "max": xv.max(1), "last": xv[:, -1]}[mode]
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-15)


@pytest.mark.parametrize("mode", MODES)
def test_float32_stays_float32(mode):
    xv, mv, _ = padded_batch()
    y = SequencePool("p", mode)(Tensor(xv.astype(np.float32)), False,
                                mask=Tensor(mv.astype(np.float32)))
    assert y.dtype == "float32"
    expected = np.stack([reference(mode, xv[i, :n]) for i, n in enumerate(LENGTHS)])
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-6, atol=1e-6)  # float32 rounding


def test_a_sequence_with_no_real_step_gives_zeros_not_nans():
    xv = np.ones((2, 3, 2))
    mv = mask_of((0, 3), 3)
    for mode in ("mean", "last"):
        y = SequencePool("p", mode)(Tensor(xv), False, mask=Tensor(mv)).numpy()
        np.testing.assert_array_equal(y, [[0.0, 0.0], [1.0, 1.0]])


def test_needs_a_sequence():
    from nnctl.errors import ShapeError
    with pytest.raises(ShapeError, match=r"\[batch, time, features\]"):
        SequencePool("p", "mean")(Tensor(np.ones((2, 3))), False)


TEXT_CLASSIFIER = """
layers:
  - embedding: {vocab: 7, dim: 3}
  - gru: {units: 4, return_sequences: true}
  - sequence_pool: {mode: max}
  - dense: {units: 2}
"""


def test_in_a_model_the_pool_reads_the_mask_and_drops_it(model_spec):
    errors = []
    model = build_model(model_spec(TEXT_CLASSIFIER, errors), np.random.default_rng(0))
    assert errors == []
    ids = np.array([[4, 5, 0, 0], [4, 5, 6, 3]])
    mask = Tensor(mask_of((2, 4), 4, np.float32))
    trace = {}
    model(Tensor(ids), False, {"input": mask}, trace)
    assert model.output_mask is None and trace["sequence_pool_2"].shape == (2, 4)
    pool = model.layer_named("sequence_pool_2")
    assert pool.mode == "max" and pool.takes_mask


def test_the_config_refuses_an_unknown_mode(model_spec):
    errors = []
    model_spec("layers:\n  - sequence_pool: {mode: median}\n", errors)
    assert len(errors) == 1 and "mode" in errors[0] and "median" in errors[0]
