"""nnctl's training step, exactly as the trainer builds and runs it:

    outputs, feeds = StepBuilder.training_step(batch)        # graph: forward, loss, gradients
    plan = compile_graph(outputs, feeds, get_backend("cpu"), rng=..., capacity={"B": batch})
    per step: outs = plan.run([x, y, *params]); float(outs[0]); optimizer.step(params, grads)

with the config's optimizer (SGD, lr 0.01) from `make_optimizer`. Optional plan attributes
(planned bytes) are read with getattr, so the benchmark keeps running while the compiler
changes.
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

    def __init__(self, case):
        from nnctl.backend import get_backend
        from nnctl.compile import compile_graph
        from nnctl.optim import make_optimizer
        from nnctl.step import seed_streams

        t0 = time.perf_counter()
        self.backend = get_backend("cpu")
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

    def __call__(self, x, y) -> float:
        # run(): the outputs as views into the plan's arena, as the trainer consumes them
        # (plan(...) would copy them for the caller to keep)
        run = getattr(self.plan, "run", self.plan)
        outs = run([x, y, *self.params])
        loss = float(outs[0])
        self.optimizer.step(self.params, outs[2:2 + self.n])
        return loss
