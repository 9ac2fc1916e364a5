"""StepGraphs (nnctl/train/capture.py): a training step run eagerly, then captured once per
plan key and replayed, on the recording backend (CUDA's capture semantics on the CPU,
nnctl/backend/recording.py).

- The fallback rules: off by the switch, a backend without graphs, a plan with an op that
  cannot be captured, a capture that fails; each reason said once, the step still run.
- Capture once per key, after the warm-up; `clear` captures again.
- A real compiled training step (nnctl's spirals MLP with batch norm and dropout, trained by
  momentum SGD whose learning rate changes every step and is written into a device buffer
  before each launch, with the gradient clipped on the device): its replays give the eager
  step's losses, norms, weights and layer states, bit for bit, over two epochs and two
  batch sizes.
- Steps written wrongly are caught by that comparison: one that hands the plan the batch
  as a fresh array (instead of copying into the static buffer), one that passes the
  learning rate as a Python float.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnctl.backend.recording import RecordingBackend
from nnctl.backend.strict import StrictBackend
from nnctl.config import load_config
from nnctl.train.capture import StepGraphs
from nnctl.train.trainer import Trainer

CONFIG = """\
seed: 0
data:
  dataset: spirals
  samples: 200
  split: {val: 0.2, test: 0.2}
  normalize: standard
model:
  layers:
    - dense: {units: 16, activation: tanh}
    - batch_norm: {}
    - dropout: 0.2
    - dense: {units: 2}
loss: cross_entropy
optimizer: {name: sgd, lr: 0.1}
train:
  epochs: 2
  batch_size: 32
metrics: [accuracy]
"""
MOMENTUM, CLIP = 0.9, 1.0


@pytest.fixture
def capturable_ops():
    """The classifier's ops as shipped: numel fills its count on the device and one_hot_into
    compares on the device, so its step can be captured (once they read the host: see
    test_a_plan_with_an_op_that_cannot_be_captured_runs_eagerly)."""
    from nnctl.ops import nn, shape
    assert all(op.capturable for op in (shape.Numel, nn.OneHot, nn.SubOneHot,
                                        nn.SoftmaxXentGrad, nn.CrossEntropy))


def _trainer(tmp_path, backend):
    path = tmp_path / "tiny.yaml"
    path.write_text(CONFIG)
    return Trainer(load_config(path), backend, out=None)


class Run:
    """One training run by hand: the trainer's data, plans and weights, static feed buffers
    per batch size, the learning rate in a device buffer, and a step function per plan key
    built by `make_step` (the correct one by default)."""

    def __init__(self, trainer, graphs: StepGraphs, make_step=None, fresh: bool = False):
        self.t, self.graphs = trainer, graphs
        xp = self.xp = trainer.backend.xp
        self.velocity = [xp.zeros_like(p) for p in trainer.params]
        self.lr = xp.zeros((), dtype=trainer.params[0].dtype)
        self.static: dict = {}  # batch size -> the batch's device buffers
        self.steps: dict = {}  # key -> the step function
        self.make_step = make_step or Run.step
        self.host_lr = 0.0
        self.fresh = fresh  # WRONG when true: each step's plan reads the batch's own arrays

    def step(self, plan, feeds):
        """The training step as the trainer will capture it: plan, device norm and clip
        factor, momentum SGD reading its learning rate from `self.lr`, new layer states."""
        xp, t, n = self.xp, self.t, len(self.t.params)

        def step():
            outs = plan.run(feeds)
            grads = outs[2:2 + n]
            total = xp.zeros((), dtype="float64")
            for g in grads:
                flat = g.ravel()
                total += xp.vdot(flat, flat)
            norm = xp.sqrt(total)
            factor = xp.minimum(CLIP / (norm + 1e-6), 1.0)
            for p, g, v in zip(t.params, grads, self.velocity):
                xp.multiply(v, MOMENTUM, out=v)
                v += g * factor.astype(g.dtype)
                p -= self.lr * v
            for state, new in zip(t.states, outs[2 + n:]):
                xp.copyto(state, new)
            return outs[0], norm
        return step

    def train(self, epochs: int) -> list:
        """(loss, norm, weights, states) after each step, read on the host."""
        t, xp, records = self.t, self.xp, []
        for epoch in range(epochs):
            order = t.batches("train", 32, True, np.random.default_rng(epoch))
            for idx in order:
                data, steps = t.batch_feeds("train", idx)  # fresh device arrays
                key = (steps, len(idx))
                plan = t.train_plan(steps)
                self.host_lr = 0.1 / (1 + len(records))  # a schedule: a new rate each step
                self.lr.fill(self.host_lr)
                if self.fresh:
                    step = self.make_step(self, plan, [*data, *t.params, *t.states])
                else:
                    static = self.static.get(len(idx))
                    if static is None:
                        static = self.static[len(idx)] = [xp.empty_like(d) for d in data]
                    for buffer, d in zip(static, data):
                        xp.copyto(buffer, d)  # the batch into the graph's buffers
                    if key not in self.steps:
                        self.steps[key] = self.make_step(self, plan, [*static, *t.params,
                                                                      *t.states])
                    step = self.steps[key]
                loss, norm = self.graphs.run(key, step, plan)
                to_host = t.backend.to_host
                records.append((float(loss), float(norm), [to_host(p) for p in t.params],
                                [to_host(s) for s in t.states]))
        return records


def _same(a: list, b: list) -> list[int]:
    """The steps at which two runs' records differ (loss, norm, weights or states)."""
    def equal(x, y):
        return x[:2] == y[:2] and all(np.array_equal(p, q) for p, q in zip(x[2] + x[3],
                                                                          y[2] + y[3]))
    return [k for k, (x, y) in enumerate(zip(a, b)) if not equal(x, y)]


def test_replays_of_a_compiled_training_step_equal_the_eager_steps(tmp_path, capturable_ops):
    eager = Run(_trainer(tmp_path, RecordingBackend()), StepGraphs(RecordingBackend(),
                                                                   enabled=False))
    backend = RecordingBackend()
    graphs = StepGraphs(backend)
    replayed = Run(_trainer(tmp_path, backend), graphs)
    want, got = eager.train(2), replayed.train(2)
    assert len(want) == 8 and _same(want, got) == []
    # 120 training samples: three batches of 32 and one of 24 per epoch, two keys; each
    # key's first step eager, its second captured (and launched), the rest replays
    assert graphs.captures == 2 and graphs.launches == 6 and graphs.notices() == []
    assert eager.graphs.captures == 0
    assert want[0][0] != want[1][0] and want[2][2][0].tolist() != want[1][2][0].tolist()
    assert len(replayed.t.states) == 2  # batch norm's running mean and variance
    assert not np.array_equal(want[7][3][0], want[0][3][0])  # updated in the replays too


def test_a_step_given_a_fresh_batch_array_replays_the_captured_batch(tmp_path, capturable_ops):
    eager = Run(_trainer(tmp_path, RecordingBackend()), StepGraphs(None, enabled=False),
                fresh=True)
    backend = RecordingBackend()
    wrong = Run(_trainer(tmp_path, backend), StepGraphs(backend), fresh=True)
    want, got = eager.train(1), wrong.train(1)
    assert wrong.graphs.captures == 1
    # the eager step (0) and the captured one (1) agree; the first replay (2) reads the
    # batch of the capture, not its own
    assert _same(want, got)[:1] == [2]


def test_a_learning_rate_passed_as_a_python_float_is_frozen_at_the_capture(tmp_path,
                                                                          capturable_ops):
    def python_lr(run, plan, feeds):
        xp, t, n = run.xp, run.t, len(run.t.params)

        def step():
            outs = plan.run(feeds)
            for p, g in zip(t.params, outs[2:2 + n]):
                p -= run.host_lr * g  # WRONG: a Python float, baked into the kernel
            return outs[0], xp.zeros(())
        return step

    eager = Run(_trainer(tmp_path, RecordingBackend()), StepGraphs(None, enabled=False),
                python_lr)
    backend = RecordingBackend()
    wrong = Run(_trainer(tmp_path, backend), StepGraphs(backend), python_lr)
    want, got = eager.train(1), wrong.train(1)
    assert _same(want, got)[:1] == [2]  # the replay updates with step 1's rate
    assert wrong.graphs.captures == 1


# ---- the fallback rules -------------------------------------------------------------------------

class _Plan:
    def __init__(self, ops=()):
        self.capturable, self._ops = not ops, list(ops)

    def uncapturable(self):
        return self._ops


def _counter(backend):
    total = backend.asarray(np.zeros(()))
    one = backend.asarray(np.ones(()))
    calls = []

    def step():
        calls.append(1)
        total.__iadd__(one)
        return total
    return step, total, calls


def test_capture_once_per_key_after_the_warm_up_then_replays():
    backend = RecordingBackend()
    graphs = StepGraphs(backend, warmup=2)
    step, total, calls = _counter(backend)
    for _ in range(5):
        graphs.run("a", step, _Plan())
    graphs.run("b", step, _Plan())
    # a: two eager runs, the capture (Python runs once more, the graph once), two replays
    assert float(total) == 6 and len(calls) == 4 and graphs.captures == 1
    assert graphs.launches == 3 and list(graphs.graphs) == ["a"]
    for _ in range(3):
        graphs.run("b", step, _Plan())
    assert graphs.captures == 2 and float(total) == 9 and graphs.notices() == []
    graphs.clear()
    graphs.run("a", step, _Plan())
    assert graphs.graphs == {} and float(total) == 10 and len(calls) == 7


def test_switched_off_every_step_runs_eagerly_and_nothing_is_said():
    backend = RecordingBackend()
    graphs = StepGraphs(backend, enabled=False)
    step, total, calls = _counter(backend)
    for _ in range(4):
        graphs.run("a", step, _Plan())
    assert len(calls) == 4 and float(total) == 4 and graphs.captures == 0
    assert graphs.notices() == [] and graphs.refusal("a") == "train.cuda_graphs is false"


def test_a_backend_without_graphs_runs_eagerly_and_says_so_once():
    backend = StrictBackend()
    graphs = StepGraphs(backend)
    step, total, calls = _counter(backend)
    for key in ("a", "a", "a", "b", "b"):
        graphs.run(key, step, _Plan())
    assert len(calls) == 5 and float(total) == 5 and graphs.captures == 0
    (notice,) = graphs.notices()
    assert "strict backend" in notice and "no graphs" in notice
    assert graphs.notices() == [] and graphs.refusal("b") == graphs.refusal("a")


def test_a_plan_with_an_op_that_cannot_be_captured_runs_eagerly(tmp_path, monkeypatch):
    from nnctl.ops import nn, shape
    for op in (shape.Numel, nn.CrossEntropy, nn.SoftmaxXentGrad):
        monkeypatch.setattr(op, "capturable", False)
    backend = RecordingBackend()
    trainer = _trainer(tmp_path, backend)
    data, steps = trainer.batch_feeds("train", np.arange(32))
    plan = trainer.train_plan(steps)
    assert not plan.capturable and plan.uncapturable() == ["cross_entropy", "numel",
                                                            "softmax_xent_grad"]
    graphs = StepGraphs(backend)
    step, total, calls = _counter(backend)
    for _ in range(3):
        graphs.run("a", step, plan)
    assert len(calls) == 3 and graphs.captures == 0
    assert graphs.notices() == ["the training step runs eagerly, not as a CUDA graph: its ops "
                                "cross_entropy, numel, softmax_xent_grad cannot be captured"]


def test_a_capture_that_fails_falls_back_to_eager_and_names_the_culprit():
    backend = RecordingBackend()
    xp = backend.xp
    loss = backend.asarray(np.full((), 2.0))
    seen = []

    def step():  # reads the loss on the host: a sync, refused during capture
        xp.multiply(loss, 0.5, out=loss)
        seen.append(float(loss))
        return loss
    graphs = StepGraphs(backend)
    for _ in range(4):
        graphs.run("a", step, _Plan())
    assert seen == [1.0, 0.5, 0.25, 0.125]  # every step ran, eagerly, exactly once
    (notice,) = graphs.notices()
    assert "float() of a device array" in notice and "test_capture.py" in notice
    assert "in step" in notice and graphs.captures == 0 and graphs.refusal("a") == notice


def test_the_optimizers_own_step_replays_the_scalars_of_its_capture():
    """Why the trainer cannot capture `optimizer.step` as it is: its learning rate, step
    count and Adam's bias corrections are Python values (on CuPy refilled into the kernels'
    coefficient array with a host copy, which the capture refuses), so a replay repeats the
    captured step's update. The fused update must read them from a device array filled
    before the launch."""
    from nnctl.optim.adam import Adam

    def run(enabled: bool) -> list:
        backend = RecordingBackend()
        p, g = backend.asarray(np.ones(3)), backend.asarray(np.zeros(3))
        optimizer, graphs = Adam(backend.xp, lr=0.1), StepGraphs(backend, enabled=enabled)
        weights = []
        for k in range(4):
            g[...] = 0.5 + k
            graphs.run("key", lambda: optimizer.step([p], [g]))
            weights.append(float(p[0]))
        return weights
    eager, replayed = run(False), run(True)
    assert eager[:2] == replayed[:2] and eager[2] != replayed[2]


SHIPPED = sorted(p.name for p in (Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_configs_step_replays_as_it_runs_eagerly(name, capturable_ops):
    """Four steps of 8 samples of each shipped config (with the two op changes): the
    replays give the eager steps' values bit for bit. A convolution's capture is refused on
    this backend only: its GPU path is a RawModule kernel the recorder cannot run, and the
    array-module fallback copies a gather table from the host (window_kernels.py)."""
    config = Path(__file__).resolve().parents[2] / "configs" / name
    records, graphs = [], None
    for enabled in (False, True):
        backend = RecordingBackend()
        trainer = Trainer(load_config(config), backend, out=None)
        graphs = StepGraphs(backend, enabled=enabled)
        run, xp, out = Run(trainer, graphs), backend.xp, []
        for k in range(4):
            data, steps = trainer.batch_feeds("train", np.arange(8 * k, 8 * k + 8))
            static = run.static.setdefault(steps, [xp.empty_like(d) for d in data])
            for buffer, d in zip(static, data):
                xp.copyto(buffer, d)
            run.lr.fill(0.01 / (k + 1))
            plan = trainer.train_plan(steps)
            if steps not in run.steps:
                run.steps[steps] = run.step(plan, [*static, *trainer.params, *trainer.states])
            loss, norm = graphs.run(steps, run.steps[steps], plan)
            out.append((float(loss), float(norm), [backend.to_host(p) for p in trainer.params],
                        [backend.to_host(s) for s in trainer.states]))
        records.append(out)
    notices = graphs.notices()
    if notices and "window_kernels.py" in notices[0]:
        pytest.skip(notices[0])
    assert notices == [] and graphs.captures >= 1 and _same(*records) == []
