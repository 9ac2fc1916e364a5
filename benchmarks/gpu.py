"""The benchmarks' GPU mode: one training step (forward, backward, SGD update; float32) of the
five workloads at GPU-sized batches, nnctl on CuPy against PyTorch on CUDA, side by side.

    python benchmarks/gpu.py                     # or: python benchmarks/run.py --device cuda
    python benchmarks/gpu.py --cases mlp_digits,cnn --json gpu.json --markdown gpu.md
    python benchmarks/gpu.py --accept gpu.json   # issue 14's acceptance ratios: PASS/FAIL

Implementations (a column each, where they run):
  nnctl           the trainer's step on the CUDA backend: plan.run on device batches, then the
                  optimizer's fused update (impl_nnctl.NnctlDeviceStep)
  nnctl-captured  the same step replayed as one CUDA graph, where nnctl can capture it
                  (nnctl.train.capture and Backend.capture; otherwise left out with the reason)
  torch           PyTorch eager on CUDA: nn modules, F.cross_entropy, backward, optim.SGD
  torch-compile   the same model under torch.compile (only with --torch-compile)

Like for like: every implementation starts from nnctl's initial weights and steps through the
same pre-sliced float32 batches, copied to the device once before anything is timed. TF32 is
off in PyTorch (CuPy uses none). The loss stays on the device (no per-step host read, which
would wait for the GPU every step; --read-loss reads it every step). Before
timing, the first losses of each must match nnctl's within a relative 1e-3.

Timing: per workload, warm-up steps, then samples in which each implementation in turn runs
~0.25 s of steps (interleaved). A sample is timed on the host clock between two device-wide
synchronisations (cupy Device.synchronize, torch.cuda.synchronize), so the clock starts on
an idle GPU and stops when every queued step has finished. Medians; ratios nnctl / torch.

Without a GPU (or CuPy), it exits with one line and status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):  # run from a checkout without installing
    if p not in sys.path:
        sys.path.insert(0, p)

from workloads import CASE_NAMES, WORKLOADS  # noqa: E402  (stdlib + numpy only at import time)

#: batch per workload in the GPU mode: large enough to give a GPU work, small enough that the
#: launch-bound small models still show each framework's per-step overhead. mlp_digits is
#: bounded by the digits' training split (1257 samples).
GPU_BATCH = {"mlp_digits": 1024, "mlp_784": 4096, "cnn": 256, "lstm": 128, "transformer": 128}
NNCTL_LABELS = ("nnctl", "nnctl-captured")
TORCH_LABELS = ("torch", "torch-compile")
LABELS = NNCTL_LABELS + TORCH_LABELS
OPTIONAL = ("nnctl-captured", "torch-compile")  # left out, with the reason, when they fail
#: issue 14: nnctl's step over PyTorch CUDA eager's, at most (the captured step where it ran)
ACCEPTANCE = (("mlp_digits", 1.0), ("cnn", 1.5), ("transformer", 1.5))
RTOL = 1e-3  # as run.py
CHECK_STEPS = 3
MAX_REPEATS = 20000
REWARM = 2

assert set(GPU_BATCH) == set(WORKLOADS)


class GpuUnavailable(Exception):
    """No GPU mode here; the message is the one line printed."""


def one_line(err: BaseException, limit: int = 300) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    text = text if isinstance(err, GpuUnavailable) else f"{type(err).__name__}: {text}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---- the device ---------------------------------------------------------------------------

def open_device(stand_in: bool = False):
    """(nnctl's backend, PyTorch's device name, the environment to report), or GpuUnavailable.

    `stand_in` (tests only): the same code on the CPU, nnctl on the strict backend (CuPy's
    rule that a device array never turns into a NumPy array implicitly) and PyTorch on its
    CPU device; nothing it times is a GPU measurement."""
    if stand_in:
        from nnctl.backend.strict import StrictBackend
        return StrictBackend(), "cpu", {"stand_in": "CPU stand-in (tests): not a GPU run"}
    from nnctl.backend import get_backend
    from nnctl.errors import BackendError
    try:
        backend = get_backend("cuda")
    except BackendError as err:
        raise GpuUnavailable(f"GPU mode: {' '.join(str(err).split())}") from None
    except Exception as err:  # a CuPy that imports but cannot start
        raise GpuUnavailable(f"GPU mode: CuPy could not start ({one_line(err)})") from None
    return backend, "cuda", gpu_environment(backend)


def gpu_environment(backend) -> dict:
    """The card, CUDA and CuPy versions (each figure optional: never fails)."""
    env: dict = {}
    cupy = backend.xp
    try:
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        env["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        env["compute_capability"] = f"{props['major']}.{props['minor']}"
        env["gpu_memory_gib"] = round(props["totalGlobalMem"] / 2**30, 1)
    except Exception as err:
        env["gpu"] = f"? ({one_line(err)})"
    for key, get in (("cupy", lambda: cupy.__version__),
                     ("cuda_runtime", lambda: cupy.cuda.runtime.runtimeGetVersion()),
                     ("cuda_driver", lambda: cupy.cuda.runtime.driverGetVersion())):
        try:
            env[key] = get()
        except Exception:
            pass
    return env


def host_environment() -> dict:
    import numpy as np
    env = {"python": platform.python_version(), "numpy": np.__version__,
           "platform": platform.platform(), "cpu_count": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                env["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return env


def make_impls(args, backend, torch_device: str, env: dict) -> tuple[dict, dict]:
    """(label -> factory(case) -> step, label -> why it is left out). A step has run(i),
    read(loss) and sync() (impl_nnctl.NnctlDeviceStep, impl_torch.TorchDeviceStep)."""
    import impl_nnctl
    factories = {"nnctl": lambda case: impl_nnctl.NnctlDeviceStep(case, backend)}
    notes = {}
    if args.no_capture:
        notes["nnctl-captured"] = "left out (--no-capture)"
    else:
        reason = impl_nnctl.capture_unavailable(backend)
        if reason:
            notes["nnctl-captured"] = reason
        else:
            factories["nnctl-captured"] = lambda case: impl_nnctl.NnctlCapturedStep(case,
                                                                                   backend)
    if args.no_torch:
        notes["torch"] = "left out (--no-torch)"
        return factories, notes
    import impl_torch
    torch = impl_torch.import_torch()
    reason = (impl_torch.cuda_unavailable(torch) if torch_device == "cuda" else
              None if torch is not None else "not importable; " + impl_torch.HINT)
    if reason:
        notes["torch"] = reason
        return factories, notes
    env["torch"] = torch.__version__
    if torch_device == "cuda":
        env["torch_cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
        env["torch_settings"] = impl_torch.configure_cuda(torch)
    factories["torch"] = lambda case: impl_torch.TorchDeviceStep(case, torch_device,
                                                                 torch=torch)
    if args.torch_compile:
        factories["torch-compile"] = lambda case: impl_torch.TorchDeviceStep(
            case, torch_device, compile=True, torch=torch)
    return factories, notes


# ---- checking and timing ------------------------------------------------------------------

def build_and_check(case, factories: dict, clock=time.perf_counter):
    """Fresh steps from nnctl's initial weights: each one's time to its first step (built,
    compiled, one step, the device idle again), then CHECK_STEPS losses read back, which must
    match nnctl's within RTOL. An optional variant that fails to build or disagrees is left
    out with the reason; PyTorch disagreeing stops the run, as in run.py.

    Returns (label -> step, label -> start-up figures, the check, label -> why left out)."""
    steps, startup, losses, skipped = {}, {}, {}, {}
    for label, make in factories.items():
        try:
            t0 = clock()
            step = make(case)
            loss = step.run(0)
            step.sync()
            first = clock() - t0
            losses[label] = [step.read(loss)] + [step.read(step.run(i))
                                                 for i in range(1, CHECK_STEPS)]
        except Exception as err:
            if label not in OPTIONAL:
                raise
            skipped[label] = one_line(err)
            continue
        steps[label] = step
        info = {"first_step_s": first}
        for attr in ("graph_s", "compile_s", "planned_bytes", "plan_steps"):
            if hasattr(step, attr):
                info[attr] = getattr(step, attr)
        startup[label] = info
    ref = losses["nnctl"]
    worst = {}
    for label in list(losses):
        if label == "nnctl":
            continue
        vals = losses[label]
        rel = max(abs(a - b) / max(abs(b), 1e-6) for a, b in zip(vals, ref))
        if rel <= RTOL:
            worst[label] = rel
            continue
        message = (f"{case.name}: {label}'s losses {vals} differ from nnctl's {ref} "
                   f"(max relative difference {rel:.2e} > {RTOL:g})")
        if label not in OPTIONAL:
            raise SystemExit(message)
        skipped[label] = message
        del steps[label], losses[label], startup[label]
    check = {"steps": CHECK_STEPS, "losses": losses, "max_rel_diff": worst, "agree": True}
    return steps, startup, check, skipped


def timed_run(step, start: int, n: int, read_loss: bool, clock=time.perf_counter):
    """Steps start .. start+n-1, timed on the host clock between two device-wide waits: the
    first so that no earlier work (warm-up, another implementation's sample) is counted, the
    second so that every step queued is. Returns (seconds, the last loss: on the device, or a
    float with read_loss)."""
    step.sync()
    t0 = clock()
    loss = None
    for i in range(start, start + n):
        loss = step.run(i)
        if read_loss:
            loss = step.read(loss)
    step.sync()
    return clock() - t0, loss


def time_steps(name: str, steps: dict, warmup: int, samples: int, repeats: int | None,
               target_s: float, read_loss: bool = False, clock=time.perf_counter,
               rewarm: int = REWARM) -> tuple[dict, dict]:
    """Interleaved samples: each implementation in turn runs `repeats` steps (default: as many
    as take ~target_s), after `rewarm` untimed ones. Returns (label -> ms per step of each
    sample, label -> steps per sample). A loss that is not finite stops the run."""
    counts, cursor = {}, {}
    for label, step in steps.items():
        start = CHECK_STEPS  # the check ran the first steps
        for i in range(start, start + warmup):
            step.run(i)
        seconds, _ = timed_run(step, start + warmup, 3, read_loss, clock)
        per = seconds / 3
        counts[label] = repeats or max(5, min(MAX_REPEATS, math.ceil(target_s / max(per, 1e-7))))
        cursor[label] = start + warmup + 3
    times = {label: [] for label in steps}
    for _ in range(samples):
        for label, step in steps.items():
            start = cursor[label]
            for i in range(start, start + rewarm):
                step.run(i)
            start += rewarm
            n = counts[label]
            seconds, loss = timed_run(step, start, n, read_loss, clock)
            cursor[label] = start + n
            times[label].append(seconds / n * 1e3)
            value = loss if read_loss else step.read(loss)  # after the clock stopped
            if not math.isfinite(value):
                raise SystemExit(f"{name}/{label}: the loss became {value}")
    return times, counts


def ratios(timing: dict) -> dict:
    """'nnctl variant/PyTorch variant' -> the ratio of their medians (below 1: nnctl faster)."""
    return {f"{a}/{b}": timing[a]["median_ms"] / timing[b]["median_ms"]
            for a in NNCTL_LABELS if a in timing for b in TORCH_LABELS if b in timing}


def bench_case(name: str, tmp: Path, factories: dict, args, clock=time.perf_counter) -> dict:
    from workloads import Case
    case = Case(name, tmp, args.batch or GPU_BATCH[name])
    steps, startup, check, skipped = build_and_check(case, factories, clock)
    times, counts = time_steps(name, steps, args.warmup_n, args.samples_n, args.repeats,
                               args.target_s, args.read_loss, clock)
    timing = {label: {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms),
                      "steps_per_sample": counts[label],
                      "samples_ms": [round(v, 5) for v in ms]}
              for label, ms in times.items()}
    return {"case": name, "description": case.description, "batch": case.batch,
            "params": case.n_params, "check": check, "timing": timing,
            "ratios": ratios(timing), "startup": startup, "skipped": skipped}


# ---- the report ---------------------------------------------------------------------------

def _ms(v):
    return "-" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def device_line(payload: dict) -> str:
    env = payload["environment"]
    if env.get("stand_in"):
        return env["stand_in"]
    parts = [env.get("gpu", "?")]
    if "cuda_runtime" in env:
        parts.append(f"CUDA runtime {env['cuda_runtime']}, driver {env.get('cuda_driver', '?')}")
    if "cupy" in env:
        parts.append(f"cupy {env['cupy']}")
    if "torch" in env:
        parts.append(f"torch {env['torch']} (CUDA {env.get('torch_cuda', '-')}, "
                     f"cuDNN {env.get('cudnn', '-')})")
    return ", ".join(parts)


def markdown(payload: dict) -> str:
    results = payload["results"]
    labels = [x for x in LABELS if any(x in r["timing"] for r in results)]
    keys = [k for k in (f"{a}/{b}" for a in NNCTL_LABELS for b in TORCH_LABELS)
            if any(k in r["ratios"] for r in results)]
    read = ("the loss read to the host every step" if payload["method"]["read_loss"] else
            "the loss left on the device")
    lines = [f"GPU: {device_line(payload)}", "",
             f"Median ms per training step (forward + backward + SGD, float32, batches on the "
             f"device, {read}), and nnctl's median divided by PyTorch's (below 1: nnctl is "
             "faster):", ""]
    head = ["workload", "batch"] + labels + keys
    lines += ["| " + " | ".join(head) + " |",
              "| --- | ---: | " + " | ".join("---:" for _ in head[2:]) + " |"]
    for r in results:
        row = [r["case"], str(r["batch"])]
        row += [_ms(r["timing"][x]["median_ms"]) if x in r["timing"] else "-" for x in labels]
        row += [f"{r['ratios'][k]:.2f}" if k in r["ratios"] else "-" for k in keys]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Start-up (first step s: built, compiled, one step; nnctl's graph and compile "
              "times and its planned arena):", ""]
    head = ["workload", "first step s (" + " / ".join(labels) + ")", "nnctl graph s",
            "nnctl compile s", "nnctl planned MB"]
    lines += ["| " + " | ".join(head) + " |", "| --- " + "| ---: " * (len(head) - 1) + "|"]
    for r in results:
        s = r["startup"]
        nn = s.get("nnctl", {})
        planned = nn.get("planned_bytes")
        lines.append("| " + " | ".join([
            r["case"], " / ".join(f"{s[x]['first_step_s']:.2f}" if x in s else "-"
                                  for x in labels),
            f"{nn['graph_s']:.3f}" if "graph_s" in nn else "-",
            f"{nn['compile_s']:.3f}" if "compile_s" in nn else "-",
            "-" if planned is None else f"{planned / 2**20:.1f}"]) + " |")
    notes = [f"- {label}: {reason}" for label, reason in payload.get("notes", {}).items()]
    notes += [f"- {r['case']}: {label} left out: {reason}" for r in results
              for label, reason in r.get("skipped", {}).items()]
    if notes:
        lines += ["", "Not measured:", ""] + notes
    return "\n".join(lines)


def acceptance(payload: dict) -> list[tuple[bool, str]]:
    """Issue 14's ratios, one (passed, line) per workload: nnctl's median step (the captured
    step where it ran, else the eager one) over PyTorch CUDA eager's."""
    if payload.get("environment", {}).get("stand_in"):
        return [(False, "FAIL acceptance: these results are a CPU stand-in, not a GPU run")]
    out = []
    by_case = {r["case"]: r for r in payload.get("results", [])}
    for name, limit in ACCEPTANCE:
        r = by_case.get(name)
        if r is None:
            out.append((False, f"FAIL {name}: no result (not run, or the run stopped before "
                               f"it); wanted nnctl / torch <= {limit:g}"))
            continue
        timing = r["timing"]
        nn = "nnctl-captured" if "nnctl-captured" in timing else "nnctl"
        if "torch" not in timing or nn not in timing:
            out.append((False, f"FAIL {name}: no PyTorch CUDA timing to compare with"))
            continue
        ratio = timing[nn]["median_ms"] / timing["torch"]["median_ms"]
        ok = ratio <= limit
        why = ""
        if nn == "nnctl":
            reason = r.get("skipped", {}).get("nnctl-captured") or \
                payload.get("notes", {}).get("nnctl-captured")
            why = f"; the eager step: nnctl-captured did not run ({reason or 'not asked for'})"
        out.append((ok, f"{'PASS' if ok else 'FAIL'} {name}: {nn} {_ms(timing[nn]['median_ms'])}"
                        f" ms / torch {_ms(timing['torch']['median_ms'])} ms = {ratio:.2f} "
                        f"(wanted <= {limit:g}){why}"))
    return out


def accept_main(path: str) -> int:
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        print(f"FAIL acceptance: no benchmark results in {path} ({one_line(err)})")
        return 1
    rows = acceptance(payload)
    for _, line in rows:
        print(line)
    return 0 if all(ok for ok, _ in rows) else 1


def write_json(path: str, payload: dict) -> None:
    """Written whole after every workload (a run stopped by a timeout keeps what it did)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(target)


# ---- the command --------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="gpu.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cuda"], default="cuda",
                    help="the GPU mode times CUDA only (run.py --device cuda lands here)")
    ap.add_argument("--cases", default=",".join(CASE_NAMES),
                    help=f"comma-separated, from {', '.join(CASE_NAMES)} (default: all)")
    ap.add_argument("--batch", type=int,
                    help="every workload's batch size (default: "
                         + ", ".join(f"{k} {v}" for k, v in GPU_BATCH.items()) + ")")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 3 samples of ~0.05 s after 3 warm-up steps")
    ap.add_argument("--samples", type=int, help="timed samples per implementation (default 7)")
    ap.add_argument("--repeats", type=int,
                    help="steps per sample (default: as many as take ~0.25 s; ~0.05 s quick)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (default 20; 3 quick)")
    ap.add_argument("--read-loss", action="store_true",
                    help="read the loss to the host every step (a wait for the GPU each "
                         "step); default: once per sample, after its clock stopped")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    ap.add_argument("--no-capture", action="store_true",
                    help="leave out nnctl's CUDA-graph variant (nnctl-captured)")
    ap.add_argument("--torch-compile", action="store_true",
                    help="also time torch.compile'd models (compiles at the first step; "
                         "left out with the reason if it fails)")
    ap.add_argument("--json", metavar="FILE", help="also write every setting and sample as JSON")
    ap.add_argument("--markdown", metavar="FILE", help="also write the tables as Markdown")
    ap.add_argument("--accept", metavar="FILE",
                    help="only check the acceptance ratios of a --json file: PASS/FAIL lines, "
                         "exit 1 if any fails")
    ap.add_argument("--cpu-stand-in", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.case_list = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in args.case_list:
        if c not in CASE_NAMES:
            ap.error(f"unknown case {c!r}; choose from {', '.join(CASE_NAMES)}")
    if not args.case_list:
        ap.error("--cases: no workload named")
    for flag in ("batch", "samples", "repeats"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            ap.error(f"--{flag}: expected a positive integer, got {value}")
    if args.warmup is not None and args.warmup < 0:
        ap.error(f"--warmup: expected 0 or more, got {args.warmup}")
    args.samples_n = args.samples or (3 if args.quick else 7)
    args.warmup_n = args.warmup if args.warmup is not None else (3 if args.quick else 20)
    args.target_s = 0.05 if args.quick else 0.25
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.accept:
        return accept_main(args.accept)
    try:
        backend, torch_device, device_env = open_device(args.cpu_stand_in)
    except GpuUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    env = {**host_environment(), **device_env}
    factories, notes = make_impls(args, backend, torch_device, env)
    payload = {"mode": "gpu", "environment": env, "cases": args.case_list,
               "method": {"warmup": args.warmup_n, "samples": args.samples_n,
                          "repeats": args.repeats, "target_s_per_sample": args.target_s,
                          "rewarm": REWARM, "check_steps": CHECK_STEPS, "rtol": RTOL,
                          "read_loss": args.read_loss, "lr": 0.01, "optimizer": "sgd",
                          "dtype": "float32", "batches": {c: args.batch or GPU_BATCH[c]
                                                          for c in args.case_list},
                          "statistic": "median ms per step"},
               "notes": notes, "results": []}
    print(f"GPU: {device_line(payload)}")
    print(f"method: {args.warmup_n} warm-up steps, then {args.samples_n} samples x "
          f"{f'{args.repeats} steps' if args.repeats else f'~{args.target_s:g} s'} per "
          "implementation, interleaved, each between two device-wide synchronisations\n",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="nnctl-gpu-bench-") as tmp:
        from workloads import Case
        # the one-time costs (CUDA contexts, cuBLAS handles, the first kernels' compiles) are
        # paid here, on a tiny MLP, so that no workload's first step carries them
        tiny = Case("mlp_digits", Path(tmp), 2)
        env["cold_first_step_s"] = {}
        for label, make in list(factories.items()):
            t0 = time.perf_counter()
            try:
                step = make(tiny)
                step.read(step.run(0))
            except Exception as err:
                if label not in OPTIONAL:
                    raise
                notes[label] = f"failed on a tiny MLP, so left out: {one_line(err)}"
                del factories[label]
                continue
            env["cold_first_step_s"][label] = time.perf_counter() - t0
        for label, reason in notes.items():
            print(f"{label}: {reason}")
        for name in args.case_list:
            r = bench_case(name, Path(tmp), factories, args)
            payload["results"].append(r)
            diffs = ", ".join(f"{k} {v:.1e}" for k, v in r["check"]["max_rel_diff"].items())
            print(f"{name} (batch {r['batch']}): losses agree (max rel diff {diffs or '-'}); "
                  "median ms " + ", ".join(f"{k} {v['median_ms']:.3f}"
                                           for k, v in r["timing"].items()) +
                  "".join(f"; {k} left out: {v}" for k, v in r["skipped"].items()), flush=True)
            payload["elapsed_s"] = time.perf_counter() - started
            if args.json:
                write_json(args.json, payload)
    text = markdown(payload)
    print()
    print(text)
    print("\nacceptance (issue 14):")
    for _, line in acceptance(payload):
        print("  " + line)
    print(f"\n{payload['elapsed_s']:.0f} s in all")
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
