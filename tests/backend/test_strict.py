"""The strict backend (nnctl/backend/strict.py): CuPy's rule on the CPU, no implicit device to
NumPy conversion. Every op of the table, forward and forward_into, on every sample, runs on
it and gives NumPy's bits; so does a compiled training step of shipped models; and a planted
NumPy-only call is caught."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnctl.backend.strict import ImplicitTransfer, StrictArray, StrictBackend
from nnctl.gradcheck import sample_inputs
from nnctl.ops.registry import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
BACKEND = StrictBackend()
XP = BACKEND.xp
CASES = [pytest.param(name, k, id=f"{name}-{k}")
         for name, op in REGISTRY.items() for k, _ in enumerate(op.samples())]


def _device(a):
    return BACKEND.asarray(a) if isinstance(a, np.ndarray) else a


def test_implicit_conversion_raises_and_explicit_copies_work():
    a = BACKEND.asarray(np.arange(6.0).reshape(2, 3))
    with pytest.raises(ImplicitTransfer, match="CuPy refuses it"):
        np.asarray(a)
    assert isinstance(np.exp(a), StrictArray)  # NumPy's functions dispatch, as on CuPy
    assert isinstance(a.sum(axis=0), StrictArray) and isinstance(a[0] + 1, StrictArray)
    assert float(a.sum()) == 15.0 and BACKEND.to_host(a).tolist() == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize("name,k", CASES)
def test_every_op_runs_on_the_strict_backend_with_numpys_bits(name, k):
    op = REGISTRY[name]
    sample = list(op.samples())[k]
    arrays = sample_inputs(sample, np.random.default_rng(100 + k))
    want = np.asarray(op.forward(np, *arrays, **sample.attrs))
    got = op.forward(XP, *[_device(a) for a in arrays], **sample.attrs)
    got = BACKEND.to_host(got) if isinstance(got, StrictArray) else np.asarray(got)
    assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True)
    from nnctl.ops.registry import Aval
    avals = [Aval(tuple(np.shape(a)), str(np.asarray(a).dtype)) for a in arrays]
    work = tuple(XP.empty(w.shape, dtype=w.dtype) for w in op.workspace(*avals, **sample.attrs))
    out = XP.empty(want.shape, dtype=want.dtype)
    written = op.forward_into(XP, out, *[_device(a) for a in arrays], **sample.attrs,
                              **({"work": work} if work else {}))
    np.testing.assert_allclose(BACKEND.to_host(written), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["digits_cnn.yaml", "chars_lstm.yaml", "digits_residual.yaml",
                                  "chunks_crf.yaml"])
def test_a_training_step_runs_on_the_strict_backend_with_numpys_results(name):
    from nnctl.backend import get_backend
    from nnctl.config import load_config
    from nnctl.train.trainer import Trainer
    results = []
    for backend in (get_backend("cpu"), BACKEND):
        trainer = Trainer(load_config(ROOT / "configs" / name), backend, out=None)
        idx = np.arange(8)
        data, steps = trainer.batch_feeds("train", idx)
        plan = trainer.train_plan(steps)
        outs = plan.run([*data, *trainer.params, *trainer.states])
        results.append([backend.to_host(o).copy() for o in outs])
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)


def test_a_numpy_only_call_in_an_op_is_caught(monkeypatch):
    op = REGISTRY["exp"]
    monkeypatch.setattr(type(op), "forward", lambda self, xp, x: np.asarray(x) * 0 + 1)
    with pytest.raises(ImplicitTransfer):
        op.forward(XP, BACKEND.asarray(np.ones(3)))


def test_a_whole_run_on_the_strict_backend_equals_numpys():
    """Training, evaluation and the test metrics: no host conversion hides in the trainer."""
    from nnctl.backend import get_backend
    from nnctl.config import load_config
    from nnctl.train.trainer import Trainer
    config = load_config(ROOT / "configs" / "digits_mlp.yaml", ["train.epochs=1"])
    summaries = [Trainer(config, backend, out=None).fit()
                 for backend in (get_backend("cpu"), BACKEND)]
    keys = [k for k in summaries[0] if k.startswith("test_")]
    assert keys and all(summaries[1][k] == pytest.approx(summaries[0][k], rel=1e-6)
                        for k in keys)
