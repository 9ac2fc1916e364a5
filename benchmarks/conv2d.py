"""Benchmark conv2d forward + backward: nnctl's compiled plan vs PyTorch on the CPU.

The case: x [64, 16, 28, 28], w [32, 16, 3, 3], padding 1, float32; the loss is
sum(conv2d(x, w) * c) for a fixed random c, and one step computes the loss and its gradients
with respect to x and w.

  nnctl   input_placeholder / parameter -> apply("conv2d") -> autodiff.grad(loss, [x, w]) ->
          compile_graph(..., get_backend("cpu")); a step is plan([x, w])
  torch   torch.nn.functional.conv2d on tensors with requires_grad, loss.backward()

Before timing, both compute the loss and gradients from the same arrays and are compared.
Timing is interleaved (a pause and re-warm steps before each sample, as benchmarks/run.py
does, so one library's spinning thread pool does not steal the other's cores); the median
ms/step and the ratio nnctl/torch are printed. The issue's bar is a ratio of at most 3.

    python benchmarks/conv2d.py              # 7 samples of ~0.5 s each
    python benchmarks/conv2d.py --quick      # a smoke run
    python benchmarks/conv2d.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from nnctl.autodiff import grad  # noqa: E402
from nnctl.backend import get_backend  # noqa: E402
from nnctl.compile import compile_graph  # noqa: E402
from nnctl.graph.tensor import Tensor, apply, input_placeholder, parameter  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from impl_torch import HINT as TORCH_HINT, import_torch  # noqa: E402


def blas_threads(default: int) -> int:
    """The thread count of NumPy's BLAS (threadpoolctl), or `default`."""
    try:
        from threadpoolctl import threadpool_info
        for p in threadpool_info():
            if p.get("user_api") == "blas":
                return int(p["num_threads"])
    except ImportError:
        pass
    return default


def environment(torch) -> dict:
    import platform
    env = {"python": platform.python_version(), "numpy": np.__version__,
           "platform": platform.platform(), "cpu_count": os.cpu_count(),
           "blas_threads": blas_threads(os.cpu_count() or 1)}
    if torch is not None:
        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
    return env

BATCH, C_IN, C_OUT, SIZE, KERNEL, PADDING = 64, 16, 32, 28, 3, 1


def arrays(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, C_IN, SIZE, SIZE), dtype=np.float32)
    w = (rng.standard_normal((C_OUT, C_IN, KERNEL, KERNEL), dtype=np.float32)
         / np.float32(np.sqrt(C_IN * KERNEL * KERNEL)))
    c = rng.standard_normal((BATCH, C_OUT, SIZE, SIZE), dtype=np.float32)
    return x, w, c


class NnctlStep:
    label = "nnctl"

    def __init__(self, x, w, c):
        xs = input_placeholder("x", x.shape, "float32")
        ws = parameter("w", w.shape, "float32")
        y = apply("conv2d", xs, ws, padding=(PADDING, PADDING))
        loss = (y * Tensor(c)).sum()
        self.plan = compile_graph([loss, *grad(loss, [xs, ws])], [xs, ws], get_backend("cpu"))
        self.x, self.w = x, w

    def __call__(self):
        loss, gx, gw = self.plan([self.x, self.w])
        return float(loss), gx, gw


class TorchStep:
    label = "torch"

    def __init__(self, x, w, c):
        torch = import_torch()
        self.F = torch.nn.functional
        self.x = torch.from_numpy(x.copy()).requires_grad_()
        self.w = torch.from_numpy(w.copy()).requires_grad_()
        self.c = torch.from_numpy(c)

    def __call__(self):
        self.x.grad = self.w.grad = None
        loss = (self.F.conv2d(self.x, self.w, padding=PADDING) * self.c).sum()
        loss.backward()
        return loss.item(), self.x.grad, self.w.grad


def check_same(steps, rtol: float = 1e-3) -> float:
    """Both compute the same loss and gradients; returns the worst relative difference."""
    results = [[np.asarray(v) for v in step()] for step in steps]
    worst = 0.0
    for ours, theirs in zip(results[0], results[1]):
        scale = max(float(np.max(np.abs(theirs))), 1e-6)
        worst = max(worst, float(np.max(np.abs(ours - theirs))) / scale)
    assert worst <= rtol, f"nnctl and torch differ: max relative difference {worst:.2e}"
    return worst


def time_steps(steps, samples: int, target_s: float, warmup: int = 3, rewarm: int = 2,
               pause: float = 0.3) -> dict:
    counts = {}
    for step in steps:
        for _ in range(warmup):
            step()
        t0 = time.perf_counter()
        step()
        counts[step.label] = max(3, round(target_s / (time.perf_counter() - t0)))
    times = {step.label: [] for step in steps}
    for _ in range(samples):
        for step in steps:
            if len(steps) > 1:
                time.sleep(pause)
            for _ in range(rewarm):
                step()
            n = counts[step.label]
            t0 = time.perf_counter()
            for _ in range(n):
                step()
            times[step.label].append((time.perf_counter() - t0) / n * 1e3)
    return {"times_ms": times, "steps_per_sample": counts}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 samples of ~0.1 s each")
    ap.add_argument("--samples", type=int, help="timed samples per implementation (default 7)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)
    samples = args.samples or (3 if args.quick else 7)
    target_s = 0.1 if args.quick else 0.5

    torch = import_torch()
    threads = blas_threads(os.cpu_count() or 1)
    if torch is not None:
        torch.set_num_threads(threads)
    env = environment(torch)
    print(f"numpy {env['numpy']} ({threads} BLAS threads), "
          + (f"torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch else
             f"torch not importable: {TORCH_HINT}"))
    print(f"conv2d forward + backward: x [{BATCH}, {C_IN}, {SIZE}, {SIZE}], "
          f"w [{C_OUT}, {C_IN}, {KERNEL}, {KERNEL}], padding {PADDING}, float32")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 1.0:
        print(f"note: load average {load:.2f}: other processes share the CPUs, so expect "
              "noisy samples (nnctl's memory-bound steps suffer more than torch's)")
    x, w, c = arrays()
    steps = [NnctlStep(x, w, c)] + ([TorchStep(x, w, c)] if torch is not None else [])
    if torch is not None:
        print(f"loss and gradients match torch's (max relative difference "
              f"{check_same(steps):.1e})")
    result = time_steps(steps, samples, target_s)
    medians = {k: statistics.median(v) for k, v in result["times_ms"].items()}
    for label, ms in result["times_ms"].items():
        print(f"  {label:6s} median {medians[label]:8.2f} ms/step   samples "
              + " ".join(f"{v:.2f}" for v in ms))
    if torch is not None:
        ratio = medians["nnctl"] / medians["torch"]
        fastest = min(result["times_ms"]["nnctl"]) / min(result["times_ms"]["torch"])
        print(f"nnctl / torch = {ratio:.2f}x  (the issue's bar: <= 3x); "
              f"fastest samples {fastest:.2f}x")
        result.update(ratio_nnctl_vs_torch=ratio, ratio_of_fastest=fastest)
    if args.json:
        result.update(environment=env, medians_ms=medians)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
