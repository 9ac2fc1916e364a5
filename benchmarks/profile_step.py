"""Profile nnctl's training step with cProfile: where does a step's time go?

    python benchmarks/profile_step.py                  # the 784-256-256-10 case, batch 128
    python benchmarks/profile_step.py --case digits_mlp --steps 2000 --top 15

Builds the step exactly as benchmarks/run.py does (the trainer's path: prepare ->
training_step -> compile_graph -> plan + Adam), runs warm-up steps, then profiles `--steps`
steps and prints the functions with the most time spent in their own code (tottime).
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

import run  # noqa: E402  (benchmarks/run.py)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", default="mlp_784", choices=["digits_mlp", "mlp_784"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nnctl-prof-") as tmp:
        case = run.digits_case() if args.case == "digits_mlp" else run.synthetic_case(Path(tmp))
        step = run.NnctlStep(case)
        batches = case.batches
        for i in range(20):
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
    print(f"{case.name}: {case.shape}, batch {case.batch}; {args.steps} steps, "
          f"{total / args.steps * 1e3:.3f} ms/step under the profiler")
    print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
