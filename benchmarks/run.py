"""Benchmark one training step (forward, backward, SGD update; float32) of five workloads in
four implementations, interleaved, at 1 and 2 threads:

  nnctl   the trainer's own path: config_from(load_yaml_text(yaml)) -> prepare(config) ->
          StepBuilder.training_step(batch) -> compile_graph(..., get_backend("cpu")) ->
          plan([x, y, *params]), float(loss), make_optimizer(sgd).step(params, grads)
  torch   PyTorch's CPU build, eager: nn modules, F.cross_entropy, backward, optim.SGD
  jax     JAX on the CPU, the whole step (loss, grad, SGD) under jax.jit
  numpy   the step written by hand in NumPy (forward, manual backward, SGD in place)

Workloads (benchmarks/workloads.py): mlp_digits, mlp_784, cnn, lstm, transformer. All four
implementations start from nnctl's initial weights and step through the same batches; before
anything is timed, the first losses of each must agree with nnctl's within a relative 1e-3.

Each thread count runs in its own worker process (JAX's and OpenBLAS's thread pools are sized
when they are imported): the thread-count environment variables are set, the process is
pinned to that many CPUs when fewer than all are asked for, threadpoolctl limits BLAS and
torch.set_num_threads limits PyTorch. In a worker, for each workload: warm-up, then N samples
in which each implementation in turn runs ~0.3 s of steps (interleaved); medians; ratios
nnctl / x. Also: compile time, time to the first step, peak memory of one step.

    python benchmarks/run.py                        # everything, ~7 minutes on 2 cores
    python benchmarks/run.py --quick                # a smoke run (few, short samples)
    python benchmarks/run.py --cases cnn,lstm --threads 1 --json out.json
    python benchmarks/run.py --device cuda          # the GPU mode: gpu.py, nnctl vs PyTorch CUDA
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):  # run from a checkout without installing
    if p not in sys.path:
        sys.path.insert(0, p)

from workloads import CASE_NAMES  # noqa: E402  (stdlib + numpy only at import time)

IMPLS = ("nnctl", "torch", "jax", "numpy")
DEVICES = ("cpu", "cuda")
RTOL = 1e-3
CHECK_STEPS = 3


# ---- the worker: one thread count, all workloads, all implementations -------------------------

def thread_env(n: int, base=None) -> dict:
    """The environment of a worker with n threads: the libraries' thread pools read these when
    they are loaded, so they are set before the worker starts."""
    env = dict(os.environ if base is None else base)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
        env[var] = str(n)
    flags = env.get("XLA_FLAGS", "")
    if n == 1 and "xla_cpu_multi_thread_eigen" not in flags:
        env["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
    return env


def pin_threads(n: int, pin: bool) -> list[int] | None:
    """Before torch and jax are imported: pin to n CPUs (XLA sizes its pool from them)."""
    os.environ.update(thread_env(n))
    if pin and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if n < len(cpus):
            # XLA sizes its pool from the CPUs it may run on; so does everything else
            os.sched_setaffinity(0, cpus[-n:])
        return sorted(os.sched_getaffinity(0))
    return None


def make_impls(wanted):
    """label -> factory(case), for the implementations asked for and importable."""
    import impl_nnctl
    import impl_numpy
    out, missing = {}, {}
    for label in wanted:
        if label == "nnctl":
            out[label] = impl_nnctl.NnctlStep
        elif label == "numpy":
            out[label] = impl_numpy.make
        elif label == "torch":
            import impl_torch
            if impl_torch.import_torch() is None:
                missing[label] = impl_torch.HINT
            else:
                out[label] = impl_torch.TorchStep
        elif label == "jax":
            import impl_jax
            if impl_jax.import_jax() is None:
                missing[label] = impl_jax.HINT
            else:
                out[label] = impl_jax.JaxStep
    return out, missing


def build_and_check(case, impls) -> tuple[dict, dict, dict]:
    """Fresh instances from nnctl's initial weights; for each, the time to its first step
    (construction + compile + first step; data excluded) and the compile time, then
    CHECK_STEPS steps on the same batches whose losses must all match nnctl's within RTOL
    (the run stops otherwise)."""
    import numpy as np
    steps, info, losses = {}, {}, {}
    for label, make in impls.items():
        t0 = time.perf_counter()
        step = make(case)
        first_loss = step(*case.batches[0])
        first = time.perf_counter() - t0
        losses[label] = [first_loss] + [step(*case.batches[i % len(case.batches)])
                                        for i in range(1, CHECK_STEPS)]
        steps[label] = step
        d = {"first_step_s": first}
        if label == "nnctl":
            d.update(compile_s=step.compile_s, graph_s=step.graph_s,
                     planned_bytes=step.planned_bytes, plan_steps=step.plan_steps)
        elif label == "jax":
            d["compile_s"] = step.compile_s
        info[label] = d
    ref = np.array(losses["nnctl"])
    worst = {}
    for label, vals in losses.items():
        if label == "nnctl":
            continue
        rel = float(np.max(np.abs(np.array(vals) - ref) / np.maximum(np.abs(ref), 1e-6)))
        worst[label] = rel
        if not rel <= RTOL:
            raise SystemExit(f"{case.name}: {label}'s losses {vals} differ from nnctl's "
                             f"{list(ref)} (max relative difference {rel:.2e} > {RTOL:g})")
    check = {"steps": CHECK_STEPS, "losses": losses, "max_rel_diff": worst, "agree": True}
    return steps, info, check


def time_steps(case, steps: dict, warmup: int, samples: int, repeats: int | None,
               target_s: float, pause: float, rewarm: int = 3) -> tuple[dict, dict]:
    """Interleaved timing: each sample runs every implementation in turn, so drift of the
    machine hits all alike. Steps per sample: `repeats`, or as many as take ~target_s.

    The libraries keep separate thread pools whose idle workers spin for a while after each
    call; so before each implementation's sample the worker sleeps `pause` seconds and runs
    `rewarm` untimed steps."""
    batches = case.batches
    counts, cursor = {}, {}
    for label, step in steps.items():
        start = CHECK_STEPS  # the check ran the first steps
        for i in range(start, start + warmup):
            step(*batches[i % len(batches)])
        t0 = time.perf_counter()
        for i in range(start + warmup, start + warmup + 3):
            step(*batches[i % len(batches)])
        per = (time.perf_counter() - t0) / 3
        counts[label] = repeats or max(3, min(20000, math.ceil(target_s / max(per, 1e-6))))
        cursor[label] = start + warmup + 3
    times = {label: [] for label in steps}
    for _ in range(samples):
        for label, step in steps.items():
            if pause:
                time.sleep(pause)
            for i in range(cursor[label], cursor[label] + rewarm):
                step(*batches[i % len(batches)])
            start, n = cursor[label] + rewarm, counts[label]
            loss = 0.0
            t0 = time.perf_counter()
            for i in range(start, start + n):
                loss = step(*batches[i % len(batches)])
            times[label].append((time.perf_counter() - t0) / n * 1e3)
            cursor[label] = start + n
            if not math.isfinite(loss):
                raise SystemExit(f"{case.name}/{label}: the loss became {loss}")
    return times, counts


def _proc_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_growth(step, batch) -> int | None:
    """Peak resident memory gained during one step, in bytes: freed heap memory is returned to
    the OS first (malloc_trim), the kernel's high-water mark is reset (clear_refs 5), then the
    step runs and VmHWM - VmRSS(before) is read. Counts every allocator (NumPy, PyTorch, XLA),
    at page granularity; None where Linux's /proc interface is missing."""
    import ctypes
    import gc
    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
    except (OSError, AttributeError):
        return None
    before = _proc_kib("VmRSS")
    step(*batch)
    peak = _proc_kib("VmHWM")
    if before is None or peak is None:
        return None
    return max(0, peak - before) * 1024


def traced_peak(step, batch) -> int:
    """Peak bytes of Python-visible allocations (NumPy's arrays report to tracemalloc) during
    one step, above what was allocated before it."""
    import gc
    import tracemalloc
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        step(*batch)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def measure_memory(case, steps: dict) -> dict:
    out = {}
    batch = case.batches[0]
    for label, step in steps.items():
        rss = [v for v in (rss_growth(step, batch) for _ in range(3)) if v is not None]
        d = {"rss_growth_bytes": statistics.median(rss) if rss else None}
        if label in ("nnctl", "numpy"):  # the others allocate outside Python's tracker
            d["tracemalloc_peak_bytes"] = traced_peak(step, batch)
        out[label] = d
    return out


def worker(args) -> int:
    cpus = pin_threads(args.worker_threads, not args.no_pin)
    import numpy as np
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
        limiter = threadpool_limits(limits=args.worker_threads)  # noqa: F841  (kept alive)
    except ImportError:
        threadpool_info = None
    wanted = [i for i in IMPLS if not (i == "torch" and args.no_torch)
              and not (i == "jax" and args.no_jax)]
    impls, missing = make_impls(wanted)
    env = {"threads": args.worker_threads, "cpus": cpus, "numpy": np.__version__,
           "missing": missing, "loadavg_start": _loadavg()}
    if "torch" in impls:
        import torch
        torch.set_num_threads(args.worker_threads)
        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
    if "jax" in impls:
        import jax
        import jaxlib
        env["jax"] = jax.__version__
        env["jaxlib"] = jaxlib.__version__
        env["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")
    if threadpool_info is not None:
        env["threadpools"] = [{k: p.get(k) for k in ("user_api", "internal_api", "version",
                                                     "num_threads", "architecture", "prefix")}
                              for p in threadpool_info()]
    from workloads import Case
    results = []
    with tempfile.TemporaryDirectory(prefix="nnctl-bench-") as tmp:
        # One-time costs of each library (lazy imports, kernel caches, the runtime's start)
        # are paid here, on a tiny MLP, so that no workload's first step carries them.
        tiny = Case("mlp_digits", Path(tmp), 2)
        env["cold_first_step_s"] = {}
        for label, make in impls.items():
            t0 = time.perf_counter()
            make(tiny)(*tiny.batches[0])
            env["cold_first_step_s"][label] = time.perf_counter() - t0
        for name in args.case_list:
            case = Case(name, Path(tmp), args.batch)
            steps, info, check = build_and_check(case, impls)
            times, counts = time_steps(case, steps, args.warmup_n, args.samples_n, args.repeats,
                                       args.target_s, args.pause_s)
            timing = {}
            for label, ms in times.items():
                timing[label] = {"median_ms": statistics.median(ms), "min_ms": min(ms),
                                 "max_ms": max(ms), "steps_per_sample": counts[label],
                                 "samples_ms": [round(v, 5) for v in ms]}
            memory = measure_memory(case, steps)
            base = timing["nnctl"]["median_ms"]
            ratios = {label: base / t["median_ms"] for label, t in timing.items()
                      if label != "nnctl"}
            results.append({"case": name, "description": case.description,
                            "batch": case.batch, "params": case.n_params, "check": check,
                            "timing": timing, "ratios": ratios, "startup": info,
                            "memory": memory})
            diffs = ", ".join(f"{k} {v:.1e}" for k, v in check["max_rel_diff"].items())
            print(f"[{args.worker_threads} thread{'s' if args.worker_threads > 1 else ''}] "
                  f"{name}: losses agree (max rel diff {diffs or '-'}); median ms " +
                  ", ".join(f"{k} {v['median_ms']:.3f}" for k, v in timing.items()),
                  flush=True)
    env["loadavg_end"] = _loadavg()
    Path(args.worker_out).write_text(json.dumps({"environment": env, "results": results}))
    return 0


# ---- the parent: one worker per thread count, then the tables ---------------------------------

def _loadavg():
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _mb(b):
    return "-" if b is None else f"{b / 2**20:.2f}"


def _ms(v):
    return "-" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def markdown_tables(payload: dict) -> str:
    runs = payload["runs"]  # one per thread count
    labels = [l for l in IMPLS if any(l in r["timing"] for run in runs for r in run["results"])]
    others = [l for l in labels if l != "nnctl"]
    lines = ["Median ms per training step (forward + backward + SGD), and nnctl's median "
             "divided by each (below 1: nnctl is faster):", ""]
    head = ["workload", "threads"] + labels + [f"nnctl/{l}" for l in others]
    lines += ["| " + " | ".join(head) + " |",
              "| --- | ---: | " + " | ".join("---:" for _ in head[2:]) + " |"]
    for name in payload["cases"]:
        for run in runs:
            r = next((r for r in run["results"] if r["case"] == name), None)
            if r is None:
                continue
            row = [name, str(run["environment"]["threads"])]
            row += [_ms(r["timing"][l]["median_ms"]) if l in r["timing"] else "-"
                    for l in labels]
            row += [f"{r['ratios'][l]:.2f}" if l in r["ratios"] else "-" for l in others]
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Start-up and memory (one step; planned = the plan's own figure, traced = "
              "tracemalloc's peak, RSS = resident memory gained during the step):", ""]
    head = ["workload", "threads", "nnctl compile s", "jax compile s", "first step s "
            "(nnctl / torch / jax / numpy)", "nnctl planned MB", "traced MB (nnctl / numpy)",
            "RSS MB (" + " / ".join(labels) + ")"]
    lines += ["| " + " | ".join(head) + " |", "| --- | ---: " + "| ---: " * (len(head) - 2) + "|"]
    for name in payload["cases"]:
        for run in runs:
            r = next((r for r in run["results"] if r["case"] == name), None)
            if r is None:
                continue
            s, m = r["startup"], r["memory"]
            first = " / ".join(f"{s[l]['first_step_s']:.2f}" if l in s else "-"
                               for l in IMPLS)
            traced = " / ".join(_mb(m.get(l, {}).get("tracemalloc_peak_bytes"))
                                for l in ("nnctl", "numpy"))
            rss = " / ".join(_mb(m[l]["rss_growth_bytes"]) for l in labels)
            lines.append("| " + " | ".join([
                name, str(run["environment"]["threads"]), f"{s['nnctl']['compile_s']:.3f}",
                f"{s['jax']['compile_s']:.3f}" if "jax" in s else "-", first,
                _mb(s["nnctl"].get("planned_bytes")), traced, rss]) + " |")
    return "\n".join(lines)


def environment() -> dict:
    from gpu import host_environment  # the host's description, shared with the GPU mode
    return {**host_environment(), "machine": platform.machine(), "loadavg_start": _loadavg(),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=DEVICES, default="cpu",
                    help="cpu (this runner) or cuda: the GPU mode, benchmarks/gpu.py, which "
                         "takes the remaining options (python benchmarks/gpu.py -h)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 3 samples of ~0.05 s after 3 warm-up steps, short pauses")
    ap.add_argument("--cases", default=",".join(CASE_NAMES),
                    help=f"comma-separated, from {', '.join(CASE_NAMES)} (default: all)")
    ap.add_argument("--threads", default="1,2",
                    help="comma-separated thread counts, one worker process each (default 1,2)")
    ap.add_argument("--samples", type=int, help="timed samples per implementation (default 7)")
    ap.add_argument("--repeats", type=int,
                    help="steps per sample (default: as many as take ~0.3 s; ~0.05 s quick)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (default 20; 3 quick)")
    ap.add_argument("--batch", type=int, help="override every workload's batch size (tests)")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    ap.add_argument("--no-jax", action="store_true", help="leave JAX out")
    ap.add_argument("--no-pin", action="store_true",
                    help="do not pin a worker to as many CPUs as it has threads")
    ap.add_argument("--json", metavar="FILE", help="also write every setting and sample as JSON")
    ap.add_argument("--markdown", metavar="FILE", help="also write the tables as Markdown")
    ap.add_argument("--worker-threads", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.case_list = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in args.case_list:
        if c not in CASE_NAMES:
            ap.error(f"unknown case {c!r}; choose from {', '.join(CASE_NAMES)}")
    try:
        args.thread_list = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        ap.error(f"--threads: expected comma-separated integers, got {args.threads!r}")
    if not args.thread_list or min(args.thread_list) < 1:
        ap.error("--threads: expected positive integers")
    args.samples_n = args.samples or (3 if args.quick else 7)
    args.warmup_n = args.warmup if args.warmup is not None else (3 if args.quick else 20)
    args.target_s = 0.05 if args.quick else 0.3
    args.pause_s = 0.05 if args.quick else 0.3
    return args


def wants_gpu(argv) -> bool:
    """Whether the command line asks for the GPU mode (`--device cuda`); anything else about
    --device is parse_args's to judge."""
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--device")
    known, _ = ap.parse_known_args(argv)
    return known.device == "cuda"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if wants_gpu(argv):
        # a runner of its own: one process, no thread counts, PyTorch CUDA against CuPy
        import gpu
        return gpu.main(argv)
    args = parse_args(argv)
    if args.worker_threads:
        return worker(args)
    env = environment()
    print(f"python {env['python']}, numpy {env['numpy']}, {env['cpu_count']} CPUs "
          f"({env.get('cpu', '?')}), {env['platform']}")
    load = (env["loadavg_start"] or [0])[0]
    if load > 1.0:
        print(f"note: load average {load:.2f} at the start: other processes use the CPUs, so "
              "expect noisy samples")
    print(f"method: {args.warmup_n} warm-up steps, then {args.samples_n} samples x "
          f"{f'{args.repeats} steps' if args.repeats else f'~{args.target_s:g} s'} per "
          "implementation, interleaved; one worker process per thread count\n", flush=True)
    runs = []
    passthrough = ["--cases", ",".join(args.case_list), "--samples", str(args.samples_n),
                   "--warmup", str(args.warmup_n)]
    for flag in ("quick", "no_torch", "no_jax", "no_pin"):
        if getattr(args, flag):
            passthrough.append("--" + flag.replace("_", "-"))
    if args.repeats:
        passthrough += ["--repeats", str(args.repeats)]
    if args.batch:
        passthrough += ["--batch", str(args.batch)]
    with tempfile.TemporaryDirectory(prefix="nnctl-bench-run-") as tmp:
        for n in args.thread_list:
            out = Path(tmp) / f"threads{n}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), *passthrough,
                   "--worker-threads", str(n), "--worker-out", str(out)]
            proc = subprocess.run(cmd, env=thread_env(n))
            if proc.returncode != 0:
                print(f"error: the {n}-thread worker failed (exit {proc.returncode})",
                      file=sys.stderr)
                return proc.returncode or 1
            runs.append(json.loads(out.read_text()))
    missing = runs[0]["environment"]["missing"] if runs else {}
    for label, hint in missing.items():
        print(f"{label}: not importable, skipped. To compare with it: {hint}")
    w = runs[0]["environment"] if runs else {}
    versions = ", ".join(f"{k} {w[k]}" for k in ("torch", "jax", "jaxlib") if k in w)
    print(f"versions: numpy {env['numpy']}{', ' + versions if versions else ''}")
    env["loadavg_end"] = _loadavg()
    payload = {"environment": env, "cases": args.case_list,
               "method": {"warmup": args.warmup_n, "samples": args.samples_n,
                          "repeats": args.repeats, "target_s_per_sample": args.target_s,
                          "pause_s": args.pause_s, "check_steps": CHECK_STEPS, "rtol": RTOL,
                          "lr": 0.01, "optimizer": "sgd", "statistic": "median ms per step"},
               "runs": runs}
    text = markdown_tables(payload)
    print()
    print(text)
    print(f"\nload average: start {env['loadavg_start']}, end {env['loadavg_end']}")
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
