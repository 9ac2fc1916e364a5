"""The mixed-precision training step (StepBuilder.training_step(mixed="float16")): float16
compute from float32 master weights with a fed loss scale, against the float32 step on the
same weights and batch; an overflow is caught and skipped (nnctl/train/loss_scale.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.config import load_config
from nnctl.errors import NnctlError
from nnctl.graph.precision import dtypes_by_op
from nnctl.optim.clip import clip_grad_norm
from nnctl.step import first_batch, prepare, prepare_in
from nnctl.train.loss_scale import LossScaler

BACKEND = get_backend("cpu")
# digits_mlp with tanh (a relu's kink flips sign under float16 rounding for the few
# activations near 0, which says nothing of the step) and without dropout (same masks)
SMOOTH_MLP = ["model.layers.0.dense.activation=tanh", "model.layers.1.dropout=0.0"]


def _steps(config: str, overrides: list, batch: int):
    """(builder, float32 plan, mixed plan, feeds without the loss scale), the plans for the
    symbolic batch size, as the trainer compiles them."""
    splits, builder = prepare(load_config(config, overrides))
    _, data, steps = first_batch(splits, builder, batch, "float32")
    plain = compile_graph(*builder.training_step(steps=steps), BACKEND)
    outputs, feeds = builder.training_step(steps=steps, mixed="float16")
    assert feeds[-1].node.name == "dynamic_loss_scale" and feeds[-1].dtype == "float32"
    mixed = compile_graph(outputs, feeds, BACKEND)
    weights = [builder.model.initial[k] for k in (*builder.params, *builder.states)]
    return builder, plain, mixed, [*data, *weights], outputs


def _relative(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_the_mixed_step_of_an_mlp_equals_the_float32_step_within_float16_tolerances():
    builder, plain, mixed, feeds, outputs = _steps("configs/digits_mlp.yaml", SMOOTH_MLP, 32)
    seen = dtypes_by_op(outputs)
    assert seen["matmul"] == {"float16"} and seen["cross_entropy"] == {"float32"}
    want = plain(feeds)
    got = mixed([*feeds, np.float32(2 ** 16)])
    k = len(builder.params)
    assert all(g.dtype == np.float32 for g in got)  # loss, output, the masters' gradients
    assert got[0] == pytest.approx(want[0], rel=1e-3)
    np.testing.assert_allclose(got[1], want[1], atol=2e-2)
    for name, g, w in zip(builder.params, got[2:2 + k], want[2:2 + k]):
        assert _relative(g, w) < 1e-2, name
    # the scale is undone: another power of two gives the same gradients, but for the
    # values float16 holds as subnormals at the smaller scale (fewer digits)
    other = mixed([*feeds, np.float32(2 ** 4)])
    for g, h in zip(got[2:2 + k], other[2:2 + k]):
        assert _relative(h, g) < 1e-4


def test_batch_norm_states_stay_float32_and_close():
    # digits_cnn: convolutions in float16, batch-norm statistics in float32
    builder, plain, mixed, feeds, outputs = _steps("configs/digits_cnn.yaml",
                                                   ["model.layers.13.dropout=0.0"], 8)
    seen = dtypes_by_op(outputs)
    assert seen["conv2d"] == {"float16"} and seen["mean"] == {"float32"}
    assert seen["numel"] == {"float32"}  # batch norm's n / (n - 1) for the symbolic batch
    want = plain(feeds)
    got = mixed([*feeds, np.float32(2 ** 10)])
    k = len(builder.params)
    assert got[0] == pytest.approx(want[0], rel=1e-3)
    for name, s, w in zip(builder.states, got[2 + k:], want[2 + k:]):
        assert s.dtype == np.float32
        np.testing.assert_allclose(s, w, atol=1e-3, err_msg=name)
    # batch norm's backward cancels (the mean of g and of g x-hat are subtracted), which
    # magnifies float16's rounding of g: a few per cent in the first layers, 1e-3 at the top
    for name, g, w in zip(builder.params, got[2:2 + k], want[2:2 + k]):
        if not name.startswith("conv2d") or not name.endswith("bias"):  # (0 after batch norm)
            assert _relative(g, w) < 0.1, name
    assert _relative(got[2 + k - 1], want[2 + k - 1]) < 1e-2  # the dense layer's bias


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # the overflow itself
def test_an_overflow_is_caught_and_skipped_and_the_scale_halves():
    builder, _, mixed, feeds, _ = _steps("configs/digits_mlp.yaml", SMOOTH_MLP, 32)
    k = len(builder.params)
    params = feeds[2:2 + k]
    before = [p.copy() for p in params]
    scaler = LossScaler(np, init_scale=2.0 ** 40)  # far past float16's 65504
    skipped = 0
    for _ in range(2):
        out = mixed([*feeds, scaler.scale_feed])
        grads, norm = clip_grad_norm(np, out[2:2 + k], math.inf)
        assert math.isfinite(float(out[0])) and not math.isfinite(norm)
        if scaler.update_from_norm(float(out[0]), norm):
            for p, g in zip(params, grads):
                p -= 0.1 * g
        else:
            skipped += 1
    assert scaler.scale == 2.0 ** 38 and skipped == 2
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p, b)  # no update from an overflowing step
    # at a scale float16 holds, the same step goes through with finite gradients
    scaler.load_state_dict({"scale": 2.0 ** 12, "good_steps": 0})
    out = mixed([*feeds, scaler.scale_feed])
    _, norm = clip_grad_norm(np, out[2:2 + k], math.inf)
    assert scaler.update_from_norm(float(out[0]), norm) and math.isfinite(norm)


def test_the_mixed_evaluation_step_gives_the_float32_loss():
    splits, builder = prepare(load_config("configs/digits_mlp.yaml", SMOOTH_MLP))
    n, data, steps = first_batch(splits, builder, 64, "float32")
    weights = [builder.model.initial[k] for k in (*builder.params, *builder.states)]
    want = compile_graph(*builder.evaluation_step(n, steps), BACKEND)([*data, *weights])
    got = compile_graph(*builder.evaluation_step(n, steps, mixed="float16"),
                        BACKEND)([*data, *weights])
    assert got[0].dtype == np.float32 and got[0] == pytest.approx(want[0], rel=1e-3)
    assert (got[1].argmax(-1) == want[1].argmax(-1)).mean() > 0.95


def test_mixed_precision_needs_a_float32_model():
    _, builder = prepare_in(load_config("configs/digits_mlp.yaml"), "float64")
    with pytest.raises(NnctlError, match="float32 master weights"):
        builder.training_step(4, mixed="float16")


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")
def test_the_device_path_skips_an_overflow_through_the_guarded_update():
    # the trainer's sync-free steps: the scaler decides on the device, the optimizer's
    # guarded step leaves weights and moments as they were, nothing is read in between
    from nnctl.optim import Adam
    from nnctl.train.device_steps import clip_on_device
    from nnctl.train.loss_scale import DeviceLossScaler
    builder, _, mixed, feeds, _ = _steps("configs/digits_mlp.yaml", SMOOTH_MLP, 32)
    k = len(builder.params)
    params = feeds[2:2 + k]
    optimizer = Adam(np, lr=1e-3)
    optimizer.prepare(params)
    scaler = DeviceLossScaler(np, init_scale=2.0 ** 40)
    before = [p.copy() for p in params] + [m.copy() for m in optimizer.m.values()]
    for expect_overflow in (True, False):
        if not expect_overflow:
            scaler.load_state_dict({"scale": 2.0 ** 12, "good_steps": 0})
        out = mixed([*feeds, scaler.scale_feed])
        grads, norm = clip_on_device(np, out[2:2 + k], math.inf)
        overflow = scaler.overflow(out[0], ~np.isfinite(norm))
        scaler.update(overflow)
        optimizer.step(params, grads, apply=(~overflow).astype(np.float64))
        assert bool(overflow) == expect_overflow
        if expect_overflow:
            assert scaler.scale == 2.0 ** 39
            after = [p for p in params] + [m for m in optimizer.m.values()]
            for a, b in zip(after, before):
                np.testing.assert_array_equal(a, b)
    assert scaler.state_dict() == {"scale": 2.0 ** 12, "good_steps": 1}
    assert not np.array_equal(params[0], before[0])  # the good step updated
