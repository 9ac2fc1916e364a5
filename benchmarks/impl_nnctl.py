"""nnctl's training step, exactly as the trainer builds and runs it:

    outputs, feeds = StepBuilder.training_step(batch)        # graph: forward, loss, gradients
    plan = compile_graph(outputs, feeds, backend, rng=..., capacity={"B": batch})
    per step: outs = plan.run([x, y, *params]); float(outs[0]); optimizer.step(params, grads)

with the config's optimizer (SGD, lr 0.01) from `make_optimizer`. Optional plan attributes
(planned bytes) are read with getattr, so the benchmark keeps running while the compiler
changes.

`NnctlStep` is the CPU benchmark's (run.py): NumPy batches in, the loss read back every step.
The GPU mode (gpu.py) uses `NnctlDeviceStep`: the batches are copied to the device once (as
the trainer keeps its data there), `run(i)` queues step i and returns the loss still on the
device, `read` and `sync` are the only places that wait for the device. `NnctlCapturedStep`
replays the same step as one CUDA graph, when nnctl can capture one (see its docstring).
"""

from __future__ import annotations

import time

import numpy as np


def planned_bytes(plan):
    """The plan's own figure for its peak memory, wherever this version keeps it (or None)."""
    memory = getattr(plan, "memory", None)
    for obj, attr in ((memory, "planned_bytes"), (memory, "peak_bytes"), (plan, "planned_bytes"),
                      (plan, "peak_bytes"), (plan, "arena_bytes")):
        value = getattr(obj, attr, None) if obj is not None else None
        if callable(value):
            try:
                value = value()
            except TypeError:
                value = None
        if isinstance(value, (int, np.integer)):
            return int(value)
    return None


class NnctlStep:
    label = "nnctl"

    def __init__(self, case, backend=None):
        from nnctl.backend import get_backend
        from nnctl.compile import compile_graph
        from nnctl.optim import make_optimizer
        from nnctl.step import seed_streams

        t0 = time.perf_counter()
        self.backend = backend if backend is not None else get_backend("cpu")
        outputs, feeds = case.builder.training_step(case.batch)
        t1 = time.perf_counter()
        rng = self.backend.rng(seed_streams(case.config.spec.seed)["dropout"])
        # as the trainer: the arena laid out for the batch size, which also decides whether
        # the model is large enough for numba's kernels (jit="auto")
        self.plan = compile_graph(outputs, feeds, self.backend, rng=rng,
                                  capacity={"B": case.batch})
        t2 = time.perf_counter()
        self.graph_s, self.compile_s, self.build_start = t1 - t0, t2 - t1, t0
        self.n = len(case.param_names)
        self.params = [self.backend.asarray(case.initial[k].copy()) for k in case.param_names]
        self.optimizer = make_optimizer(case.config.spec.optimizer, self.backend.xp)
        self.planned_bytes = planned_bytes(self.plan)
        self.plan_steps = len(self.plan) if hasattr(self.plan, "__len__") else None
        # run(): the outputs as views into the plan's arena, as the trainer consumes them
        # (plan(...) would copy them for the caller to keep)
        self._run = getattr(self.plan, "run", self.plan)

    def step(self, x, y):
        """One training step on arrays of this backend; the loss as the plan returned it (a
        view into the arena on the device, valid until the next step)."""
        outs = self._run([x, y, *self.params])
        self.optimizer.step(self.params, outs[2:2 + self.n])
        return outs[0]

    def __call__(self, x, y) -> float:
        return float(self.step(x, y))


def device_sync(backend) -> None:
    """Wait until the device has finished everything queued on it, on every stream (a captured
    graph may be replayed on a stream of its own): CuPy's device-wide synchronize where the
    array module has one, the backend's own synchronize otherwise (a no-op on the CPU)."""
    cuda = getattr(backend.xp, "cuda", None)
    if cuda is not None:
        cuda.Device().synchronize()
    else:
        backend.synchronize()


class NnctlDeviceStep(NnctlStep):
    """The GPU mode's nnctl: `run(i)` queues a step on device batch i (mod the batches) and
    returns the loss without waiting; `read(loss)` copies it to the host; `sync()` waits."""

    label = "nnctl"

    def __init__(self, case, backend):
        super().__init__(case, backend)
        # copied once, outside any timing, as the trainer keeps its splits on the device
        self.batches = [(backend.asarray(x), backend.asarray(y)) for x, y in case.batches]

    def run(self, i: int):
        x, y = self.batches[i % len(self.batches)]
        return self.step(x, y)

    def read(self, loss) -> float:
        return float(loss)  # a synchronising device-to-host copy on CuPy

    def sync(self) -> None:
        device_sync(self.backend)


class CaptureUnavailable(RuntimeError):
    """nnctl cannot capture the step here (why, in one line)."""


def capture_unavailable(backend) -> str | None:
    """Why the captured variant cannot be tried on `backend` (None: it can)."""
    try:
        from nnctl.train.capture import StepGraphs  # noqa: F401
    except ImportError:
        return ("nnctl.train.capture (the training step as a CUDA graph) is not in this "
                "checkout")
    if not callable(getattr(backend, "capture", None)):
        return f"the {backend.name} backend has no capture()"
    return None


class NnctlCapturedStep(NnctlDeviceStep):
    """nnctl's step replayed as one CUDA graph, the way the trainer runs it: through
    `nnctl.train.capture.StepGraphs`, whose `run(key, step_fn, plan)` runs `step_fn` eagerly
    for its warm-up, then captures it (`Backend.capture`) and from then on launches the graph.
    `step_fn` is the plan's run on static feed buffers, then the optimizer's update; per step
    the batch is copied into the static buffers on the device and the graph launched; the loss
    is the arena slot the graph writes.

    The graph is captured here, in the constructor: the warm-up steps and the captured step
    move the weights, so they are put back to the initial ones afterwards (in place: the graph
    holds their addresses), and step 0 is the first timed or checked one, like the eager
    step's. As in the trainer, the optimizer's host half (`begin_step`: its step count and
    its scalars copied to the device, which a capture may not hold) runs before each launch
    and only its kernels (`update_params`) are in the graph. Where StepGraphs runs the step
    eagerly instead (the backend cannot capture, an op cannot be captured, the capture
    failed), this variant is not timed: CaptureUnavailable carries StepGraphs's reason."""

    label = "nnctl-captured"
    WARM_STEPS = 2

    def __init__(self, case, backend, unavailable=capture_unavailable):
        reason = unavailable(backend)
        if reason:
            raise CaptureUnavailable(reason)
        super().__init__(case, backend)
        from nnctl.train.capture import StepGraphs

        xp = backend.xp
        self.static = [xp.empty_like(a) for a in self.batches[0]]
        self.start = [backend.asarray(case.initial[k].copy()) for k in case.param_names]
        self.graphs = StepGraphs(backend, enabled=True, warmup=self.WARM_STEPS)
        self.key = ("benchmark", case.name, case.batch)
        # StepGraphs checks plan.capturable (every op allows capture) where the plan has it
        self._plan_arg = self.plan if hasattr(self.plan, "capturable") else None
        for i in range(self.WARM_STEPS + 1):  # eager, eager, then captured and launched once
            self._feed(i)
            self.optimizer.begin_step(self.params)
            self.graphs.run(self.key, self._body, self._plan_arg)
        if not self.graphs.captures:
            why = "; ".join(self.graphs.notices()) or self.graphs.refusal(self.key)
            raise CaptureUnavailable(why or "StepGraphs captured no graph")
        self._reset()

    def _body(self):
        outs = self._run([*self.static, *self.params])
        self.optimizer.update_params(self.params, outs[2:2 + self.n])
        return outs[0]

    def _feed(self, i: int) -> None:
        xp = self.backend.xp
        for static, array in zip(self.static, self.batches[i % len(self.batches)]):
            xp.copyto(static, array)

    def _reset(self) -> None:
        """The initial weights back in the parameters' own arrays (queued after the steps)."""
        xp = self.backend.xp
        for p, p0 in zip(self.params, self.start):
            xp.copyto(p, p0)

    def run(self, i: int):
        self._feed(i)
        self.optimizer.begin_step(self.params)
        return self.graphs.run(self.key, self._body, self._plan_arg)
