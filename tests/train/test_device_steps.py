"""Steps decided on the device (nnctl/train/device_steps.py): on a backend whose reads wait
for the device, the trainer reads once per interval, and still ends where the CPU trainer
ends: the same weights, the same error at the same step, the same checkpoint.

The strict backend (nnctl/backend/strict.py) stands in for CuPy: it defers reads, refuses
implicit conversions and counts explicit ones. The CPU backend checks every step on the
host, so each test compares the two."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnctl.backend import get_backend
from nnctl.backend.philox import PhiloxGenerator
from nnctl.backend.strict import StrictArray, StrictBackend
from nnctl.config import load_config
from nnctl.errors import TrainingError
from nnctl.train import checkpoint as ckpt
from nnctl.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
MLP = ROOT / "configs" / "digits_mlp.yaml"  # dropout and Adam; 40 steps an epoch


def _config(*overrides):
    return load_config(MLP, ["train.epochs=1", *overrides])


def _weights(trainer) -> dict:
    return {k: np.asarray(v) for k, v in trainer.weights().items()}


def test_an_epoch_reads_the_device_once_per_interval():
    trainer = Trainer(_config("train.log_every=7"), StrictBackend(), out=None)
    trainer.evaluate = lambda split, **kw: {}  # only the training steps' reads are counted
    settles = []
    original = trainer._settle
    trainer._settle = lambda *a: (settles.append(trainer.step_in_epoch), original(*a))[1]
    uploads = []
    upload = trainer.backend.asarray
    trainer.backend.asarray = lambda a, dtype=None: (uploads.append(np.shape(a)),
                                                     upload(a, dtype))[1]
    before = StrictArray.host_reads
    record, _ = trainer.train_epoch()
    assert settles == [7, 14, 21, 28, 35, 40]
    assert StrictArray.host_reads - before == len(settles)  # one read each, none per step
    # the epoch's batch order goes to the device once: no upload per step
    assert uploads.count((len(trainer.splits.train),)) == 1 and len(uploads) <= 7
    assert record["train_loss"] > 0 and 0 <= record["train_accuracy"] <= 1


def test_deferred_steps_train_exactly_as_steps_read_each_time():
    config = _config("train.epochs=2", "train.log_every=9")
    cpu, strict = (Trainer(config, backend, out=None) for backend in
                   (get_backend("cpu"), StrictBackend()))
    summaries = [cpu.fit(), strict.fit()]
    assert strict._device_steps is not None and cpu._device_steps is None
    for name, value in _weights(cpu).items():
        assert np.array_equal(value, _weights(strict)[name]), name
    for key in ("test_loss", "test_accuracy", "global_step"):
        assert summaries[1][key] == pytest.approx(summaries[0][key], rel=1e-12), key
    assert strict.optimizer.steps == cpu.optimizer.steps == 80


def _poison(monkeypatch, at_global_step: int):
    """Make one step's batch hold a NaN, however the step is run or replayed."""
    original = Trainer.train_plan

    class Poisoned:
        def __init__(self, trainer, plan):
            self.trainer, self.plan = trainer, plan

        def _feeds(self, feeds):
            if self.trainer.global_step == at_global_step:
                feeds = [feeds[0] * float("nan"), *feeds[1:]]
            return feeds

        def run(self, feeds):
            return self.plan.run(self._feeds(feeds))

        def first_nonfinite(self, feeds):
            return self.plan.first_nonfinite(self._feeds(feeds))

        def __getattr__(self, name):
            return getattr(self.plan, name)

        def __len__(self):
            return len(self.plan)

    monkeypatch.setattr(Trainer, "train_plan",
                        lambda self, *a: Poisoned(self, original(self, *a)))


def _without_run_folder(message: str, root: Path) -> str:
    """The message with its run folder's path (named by the second it started) taken out."""
    (run,) = list(root.iterdir())
    return message.replace(str(run), "RUN")


def _checkpoint(run_root: Path):
    (run,) = list(run_root.iterdir())
    return ckpt.load_checkpoint(run / "checkpoint.npz")


def _same_checkpoint(a, b) -> None:
    arrays_a, meta_a = a
    arrays_b, meta_b = b
    assert sorted(arrays_a) == sorted(arrays_b)
    for key in arrays_a:
        assert np.array_equal(arrays_a[key], arrays_b[key]), key
    for key in ("epoch", "step_in_epoch", "global_step", "skipped", "augment_state",
                "dropout_state", "divergence", "shuffle_state"):
        assert meta_a[key] == meta_b[key], key
    partial_a = {k: v for k, v in meta_a["partial"].items()}
    partial_b = {k: v for k, v in meta_b["partial"].items()}
    assert partial_a.keys() == partial_b.keys()
    for key, value in partial_a.items():
        if isinstance(value, float):  # summed in another order: to round-off
            assert partial_b[key] == pytest.approx(value, rel=1e-12), key
        else:
            assert partial_b[key] == value, key


def test_a_nan_step_is_reported_and_checkpointed_as_the_cpu_does(tmp_path, monkeypatch):
    _poison(monkeypatch, 52)  # epoch 2, step 13: inside the interval 10..18
    errors = {}
    for name, backend in (("cpu", get_backend("cpu")), ("strict", StrictBackend())):
        trainer = Trainer(_config("train.epochs=2", "train.log_every=9"), backend,
                          out=tmp_path / name)
        with pytest.raises(TrainingError) as caught:
            trainer.fit()
        errors[name] = _without_run_folder(str(caught.value), tmp_path / name)
    assert errors["strict"] == errors["cpu"]
    assert "at epoch 2, step 13; the first NaN/Inf came from op" in errors["cpu"]
    _same_checkpoint(_checkpoint(tmp_path / "cpu"), _checkpoint(tmp_path / "strict"))
    arrays, meta = _checkpoint(tmp_path / "strict")
    assert (meta["epoch"], meta["step_in_epoch"], meta["global_step"]) == (2, 12, 52)
    assert int(arrays["optim/step"]) == 52
    assert all(np.isfinite(a).all() for k, a in arrays.items() if k.startswith("param/"))


def test_a_divergence_is_found_at_the_same_step_as_on_the_cpu(tmp_path):
    overrides = ("train.epochs=2", "train.log_every=25", "optimizer.lr=3.0",
                 "train.divergence.factor=1.5", "train.divergence.steps=3")
    errors = {}
    for name, backend in (("cpu", get_backend("cpu")), ("strict", StrictBackend())):
        with pytest.raises(TrainingError) as caught:
            Trainer(_config(*overrides), backend, out=tmp_path / name).fit()
        errors[name] = _without_run_folder(str(caught.value), tmp_path / name)
    assert "the loss diverged" in errors["cpu"]
    assert errors["strict"] == errors["cpu"]
    _same_checkpoint(_checkpoint(tmp_path / "cpu"), _checkpoint(tmp_path / "strict"))


def test_a_stop_request_ends_after_the_same_step_with_the_same_checkpoint(tmp_path,
                                                                          monkeypatch):
    original = Trainer.train_plan

    def stop_at_17(self, *args):
        if self.global_step == 16:  # step 17 of epoch 1 is being prepared
            self._stop_requested = True
        return original(self, *args)

    monkeypatch.setattr(Trainer, "train_plan", stop_at_17)
    for name, backend in (("cpu", get_backend("cpu")), ("strict", StrictBackend())):
        with pytest.raises(Exception, match="interrupted after epoch 1, step 17"):
            Trainer(_config(), backend, out=tmp_path / name).fit()
    _same_checkpoint(_checkpoint(tmp_path / "cpu"), _checkpoint(tmp_path / "strict"))


class PhiloxStrict(StrictBackend):
    """The strict backend with the GPU's generator: what a CUDA run checkpoints."""

    def rng(self, seed):
        return PhiloxGenerator(self.xp, seed)


def test_a_run_on_the_gpus_generator_resumes_exactly(tmp_path):
    straight = Trainer(_config("train.epochs=2"), PhiloxStrict(), out=tmp_path / "a")
    straight.fit()
    first = Trainer(_config("train.epochs=1"), PhiloxStrict(), out=tmp_path / "b")
    first.fit()
    (run,) = list((tmp_path / "b").iterdir())
    _, meta = ckpt.load_checkpoint(run / "checkpoint.npz")
    assert meta["dropout_state"]["bit_generator"] == "Philox4x32-10"
    assert meta["dropout_state"]["counter"] > 0
    resumed = Trainer(_config("train.epochs=2"), PhiloxStrict(), out=None, resume=run)
    resumed.fit()
    for name, value in _weights(straight).items():
        assert np.array_equal(value, _weights(resumed)[name]), name


def test_a_cpu_checkpoint_resumes_on_the_gpus_generator(tmp_path):
    Trainer(_config(), get_backend("cpu"), out=tmp_path).fit()
    (run,) = list(tmp_path.iterdir())
    resumed = Trainer(_config("train.epochs=2"), PhiloxStrict(), out=None, resume=run)
    summary = resumed.fit()  # the dropout stream starts afresh; everything else continues
    assert summary["global_step"] == 80 and summary["status"] == "completed"


class XpAdam:
    """The CUDA kernels' interface (nnctl/optim/cuda_kernels.py) with Adam's statements as
    array calls, reading the scalars from the device array `c` and honouring the guard: what
    the trainer drives on a GPU, runnable on the recording backend. (The kernels' own
    statements are checked against numba in tests/optim/test_cuda_kernels.py.)"""

    def __init__(self, xp):
        self.xp, self.ok = xp, None

    def guard(self, ok):
        self.ok = ok

    def adam(self, p, g, m, v, c, l2):
        xp = self.xp
        pi = p * c[0]
        gi = g + c[1] * pi if l2 else g
        mi = m * c[3] + gi * c[2]
        vi = v * c[5] + gi * gi * c[4]
        new_p = pi - mi / (xp.sqrt(vi) + c[6]) * c[7]
        keep = self.ok == 0 if self.ok is not None else xp.zeros((), dtype=bool)
        for array, new in ((m, mi), (v, vi), (p, new_p)):
            xp.copyto(array, xp.where(keep, array, new))

    adam_parallel = adam


def _device_optimizer(trainer):
    trainer.optimizer.on_gpu = trainer.optimizer.jit = True
    trainer.optimizer._kernels = XpAdam(trainer.backend.xp)
    return trainer


def test_the_captured_step_replays_what_the_eager_step_computes():
    from nnctl.backend.recording import RecordingBackend

    runs = {}
    for graphs in (False, True):
        config = _config("train.epochs=2", "train.log_every=11", f"train.cuda_graphs={graphs}")
        trainer = _device_optimizer(Trainer(config, RecordingBackend(), out=None))
        runs[graphs] = (trainer, trainer.fit())
    (eager, eager_summary), (captured, captured_summary) = runs[False], runs[True]
    # batch sizes 32 and the epoch's last, smaller one: a graph each, warmed up once
    assert captured._graphs.captures == 2 and captured._graphs.launches == 80 - 2
    assert eager._graphs.captures == 0
    for name, value in _weights(eager).items():
        assert np.array_equal(value, _weights(captured)[name]), name
    for key in ("test_loss", "test_accuracy", "global_step"):
        assert captured_summary[key] == eager_summary[key], key
    assert captured.optimizer.steps == 80
