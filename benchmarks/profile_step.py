"""Profile nnctl's training step with cProfile: where does a step's time go?

    python benchmarks/profile_step.py                      # the CNN workload
    python benchmarks/profile_step.py --case lstm --steps 50 --top 15
    python benchmarks/profile_step.py --case transformer --threads 1

Builds the step exactly as benchmarks/run.py does (the trainer's path: prepare ->
training_step -> compile_graph -> plan + SGD; workloads in benchmarks/workloads.py), runs
warm-up steps, then profiles `--steps` steps and prints the functions with the most time spent
in their own code (tottime): the plan's kernels, NumPy's calls, the plan loop.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import CASE_NAMES  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", default="cnn", choices=CASE_NAMES)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--threads", type=int, help="BLAS threads (threadpoolctl)")
    ap.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    args = ap.parse_args(argv)
    if args.threads:
        import numpy  # noqa: F401  (threadpoolctl limits only the BLAS already loaded)
        from threadpoolctl import threadpool_limits
        main.limiter = threadpool_limits(limits=args.threads)
    from impl_nnctl import NnctlStep
    from workloads import Case
    with tempfile.TemporaryDirectory(prefix="nnctl-prof-") as tmp:
        case = Case(args.case, Path(tmp))
        step = NnctlStep(case)
        batches = case.batches
        for i in range(10):
            step(*batches[i % len(batches)])
        prof = cProfile.Profile()
        prof.enable()
        for i in range(args.steps):
            step(*batches[i % len(batches)])
        prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    total = stats.total_tt
    stats.sort_stats(args.sort).print_stats(args.top)
    print(f"{case.name}: {case.description}, batch {case.batch}; {args.steps} steps, "
          f"{total / args.steps * 1e3:.3f} ms/step under the profiler")
    print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
