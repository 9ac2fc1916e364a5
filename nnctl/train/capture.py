"""The steady-state training step as a CUDA graph: captured once per plan key, then replayed.

A small model's step on a GPU is launch-bound: hundreds of kernels of microseconds each,
every one a Python call and a driver launch. CUDA graph capture (CuPy's
`Stream.begin_capture`/`end_capture`, `Graph.launch`) records a step's launches once; each
later step is one `launch()` of the lot. A replay re-runs the recorded kernels on the same
device addresses, with the arguments they had at capture, so the step must be written for it.

How the trainer uses it (`train.cuda_graphs`, default true, means something on CUDA only):

    graphs = StepGraphs(backend, enabled=spec.train.cuda_graphs and backend.name == "cuda")
    ...
    # each step, on the host, before the graph runs (none of this is captured):
    xp.copyto(static_x, batch_x); xp.copyto(static_y, batch_y)  # the batch, device to device
    lr_buffer.fill(schedule(step))                              # per-step scalars, on the device
    result = graphs.run(key, step_fn, plan)  # eager, or captured, or replayed
    for notice in graphs.notices(): events.on_notice(notice)   # once per reason

- `key`: whatever tells the static buffers apart: the plan's padded steps and the batch
  size B (the plan binds other views per B; the last, smaller batch of an epoch is another
  key). One graph per key.
- `step_fn()`: takes no argument and returns the device arrays the host reads after the
  step (loss, norm, flags: `result`). It must
  (a) run `plan.run` on the static feeds: the same static batch arrays, the same parameter
      and state arrays at every call (written in place, never rebound);
  (b) compute the gradient norm and the clip factor on the device (no `float()`: a host
      read during capture is an error; nnctl/train/device_steps.py's `clip_on_device`);
  (c) call the optimizer's fused update, its per-step scalars (learning rate, Adam's bias
      corrections, the step count) read from device arrays the host fills before each call;
  (d) change nothing on the host that later steps depend on: Python code in `step_fn` runs
      at the warm-up and at the capture only, never at a replay. Counters and schedules
      move outside it.
  Arrays it allocates are fine: on CUDA they come from a memory pool the graph keeps
  (cupy_backend.CudaGraph), so each replay finds them at the same addresses.
- `plan`: its `capturable` (every op allows capture, Op.capturable) is checked once per key.

`run` runs `step_fn` eagerly the first `warmup` times per key (kernels compile, cuBLAS and
the memory pool settle, lazy state is made: the optimizer's, the plan's arena), then
captures it and launches the graph, then only launches. It falls back to eager, for good,
where the backend cannot capture (the CPU), the plan has an op that cannot be captured, or
the capture fails (a host read, a host-to-device copy inside `step_fn`); each reason comes
out of `notices()` once, for the trainer to print. After anything that replaces an array a
graph reads (a resume that loads new parameter arrays, an arena that grows), `clear()`.

tests/train/test_capture.py runs a compiled training step of nnctl's on the recording backend
(nnctl/backend/recording.py: capture as CUDA does it, on the CPU) and checks that replays
give the eager step's values, and that a step written wrongly is caught.
"""

from __future__ import annotations

from nnctl.backend.base import Backend, CaptureUnsupported


class StepGraphs:
    """One captured graph per plan key; eager where capture is off or refused."""

    def __init__(self, backend: Backend, enabled: bool = True, warmup: int = 1):
        self.backend, self.enabled, self.warmup = backend, enabled, warmup
        self.graphs: dict = {}  # key -> the captured graph (with .launch(), .result)
        self.captures = 0  # how many graphs were captured (once per key)
        self.launches = 0  # how many steps ran as a replay
        self._eager_runs: dict = {}  # key -> eager runs so far
        self._refused: dict = {}  # key -> why it stays eager
        self._backend_refusal: str | None = None  # why nothing is captured on this device
        self._said: set = set()
        self._pending: list = []

    def run(self, key, step_fn, plan=None):
        """One step: `step_fn()` eagerly, or its graph launched; what `step_fn` returned (at
        the capture, for a replay: the same arrays, which each launch writes)."""
        graph = self.graphs.get(key)
        if graph is not None:
            graph.launch()
            self.launches += 1
            return graph.result
        if not self._may_capture(key, plan) or \
                self._eager_runs.get(key, 0) < self.warmup:
            self._eager_runs[key] = self._eager_runs.get(key, 0) + 1
            return step_fn()
        try:
            graph = self.backend.capture(step_fn)
        except CaptureUnsupported as err:
            self._backend_refusal = str(err)
            self._notice(f"CUDA graphs are off: {err}")
            return step_fn()
        except Exception as err:  # nothing of step_fn ran: a capture launches nothing
            self._refuse(key, f"capturing the training step failed, so it runs eagerly: "
                              f"{type(err).__name__}: {err}")
            return step_fn()
        self.graphs[key] = graph
        self.captures += 1
        graph.launch()
        self.launches += 1
        return graph.result

    def _may_capture(self, key, plan) -> bool:
        if not self.enabled or self._backend_refusal is not None or key in self._refused:
            return False
        if plan is not None and not plan.capturable:
            self._refuse(key, "the training step runs eagerly, not as a CUDA graph: its ops "
                              f"{', '.join(plan.uncapturable())} cannot be captured")
            return False
        return True

    def _refuse(self, key, reason: str) -> None:
        self._refused[key] = reason
        self._notice(reason)

    def _notice(self, reason: str) -> None:
        if reason not in self._said:
            self._said.add(reason)
            self._pending.append(reason)

    def notices(self) -> list[str]:
        """The reasons for running eagerly found since the last call, each said once."""
        pending, self._pending = self._pending, []
        return pending

    def refusal(self, key) -> str | None:
        """Why `key`'s step runs eagerly (None: it is, or will be, captured)."""
        if not self.enabled:
            return "train.cuda_graphs is false"
        return self._backend_refusal or self._refused.get(key)

    def clear(self) -> None:
        """Drop every graph (their arrays may have been replaced): each key warms up and is
        captured again."""
        self.graphs.clear()
        self._eager_runs.clear()
