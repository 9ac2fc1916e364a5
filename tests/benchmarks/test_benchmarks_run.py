"""The benchmarks stay runnable: each script runs its quickest form and exits 0 (timings are
the benchmarks' business, not the tests')."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.parametrize("args", [
    ["run.py", "--quick", "--no-torch", "--samples", "1", "--repeats", "2", "--warmup", "1",
     "--cases", "digits_mlp"],
])
def test_benchmark_script_runs(args):
    proc = subprocess.run([sys.executable, str(BENCH / args[0]), *args[1:]],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "digits_mlp" in proc.stdout
