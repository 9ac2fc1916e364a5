"""`train.mixed_precision: float16` through the trainer (docs/mixed_precision.md): float16
compute from float32 master weights with a dynamic loss scale, on the host path (the CPU
reads every step) and on the device path (the strict backend stands in for CuPy), with the
scale carried through a checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnctl.backend import get_backend
from nnctl.backend.strict import StrictBackend
from nnctl.config import load_config
from nnctl.train import checkpoint as ckpt
from nnctl.train.trainer import Trainer

MLP = Path(__file__).resolve().parents[2] / "configs" / "digits_mlp.yaml"


def _config(*overrides):
    return load_config(MLP, ["train.mixed_precision=float16", *overrides])


@pytest.fixture(scope="module")
def runs():
    out = {}
    for name, backend, extra in (("float32", get_backend("cpu"), ["train.mixed_precision=null"]),
                                 ("cpu", get_backend("cpu"), []),
                                 ("strict", StrictBackend(), [])):
        trainer = Trainer(_config("train.epochs=3", *extra), backend, out=None)
        out[name] = (trainer, trainer.fit())
    return out


def test_mixed_training_reaches_the_float32_accuracy(runs):
    (_, f32), (cpu, mixed) = runs["float32"], runs["cpu"]
    assert abs(mixed["test_accuracy"] - f32["test_accuracy"]) <= 0.005
    assert mixed["test_accuracy"] > 0.9
    # the weights stay float32 masters, and the plan computed in float16 somewhere
    assert all(str(p.dtype) == "float32" for p in cpu.params)
    plan = cpu.train_plan()
    assert any(n.aval.dtype == "float16" for n in plan.graph.nodes)


def test_an_overflow_is_skipped_and_counted_alike_on_both_paths(runs):
    """The host path reads each step; the device path finds the overflow at its read,
    counts it, and runs the steps after it again (they were no-ops)."""
    (cpu, on_cpu), (strict, on_strict) = runs["cpu"], runs["strict"]
    # 2^16 overflows the float16 backward pass at first: skipped, the scale halved
    assert on_cpu["skipped_batches"] >= 1
    assert on_cpu["global_step"] + on_cpu["skipped_batches"] == 120
    for key in ("skipped_batches", "global_step"):
        assert on_strict[key] == on_cpu[key], key
    assert strict.scaler.state_dict() == cpu.scaler.state_dict()
    assert cpu.scaler.state_dict()["scale"] < 2.0 ** 16
    assert strict.optimizer.steps == cpu.optimizer.steps == on_cpu["global_step"]
    # the device path reruns the steps after an overflow: the same weights, bit for bit
    for name, value in cpu.weights().items():
        assert np.array_equal(value, strict.weights()[name]), name
    assert on_strict["test_accuracy"] == on_cpu["test_accuracy"]


def test_the_loss_scale_is_checkpointed_and_a_resume_continues_exactly(tmp_path):
    straight = Trainer(_config("train.epochs=2"), get_backend("cpu"), out=None)
    straight.fit()
    Trainer(_config("train.epochs=1"), get_backend("cpu"), out=tmp_path).fit()
    (run,) = list(tmp_path.iterdir())
    _, meta = ckpt.load_checkpoint(run / "checkpoint.npz")
    assert set(meta["loss_scale"]) == {"scale", "good_steps"}
    resumed = Trainer(_config("train.epochs=2"), get_backend("cpu"), out=None, resume=run)
    resumed.fit()
    assert resumed.scaler.state_dict() == straight.scaler.state_dict()
    for name, value in straight.weights().items():
        assert np.array_equal(value, resumed.weights()[name]), name
