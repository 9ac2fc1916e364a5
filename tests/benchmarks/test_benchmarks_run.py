"""The benchmarks stay runnable and compare like with like: run.py on a tiny configuration
checks that the implementations' losses agree and reports positive timings and ratios (the
timings themselves are the benchmarks' business, not the tests'). PyTorch and JAX are left
out where they are not installed."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
HAVE = {name: importlib.util.find_spec(name) is not None for name in ("torch", "jax")}


def run(*args, timeout=300):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=BENCH.parent)


def test_run_quick_tiny(tmp_path):
    out = tmp_path / "bench.json"
    flags = [] if HAVE["torch"] else ["--no-torch"]
    flags += [] if HAVE["jax"] else ["--no-jax"]
    # One workload (the CNN: convolution weights mapped to every framework's layout); the
    # worker's warm-up step on a tiny digits MLP runs every implementation's MLP path too.
    proc = run(BENCH / "run.py", "--quick", "--cases", "cnn", "--batch", "8",
               "--threads", "1", "--samples", "1", "--repeats", "2", "--warmup", "1",
               "--json", out, *flags)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| cnn | 1 |" in proc.stdout
    payload = json.loads(out.read_text())
    expected = {"nnctl", "numpy"} | {name for name, ok in HAVE.items() if ok}
    (worker,) = payload["runs"]
    assert worker["environment"]["threads"] == 1
    assert [r["case"] for r in worker["results"]] == ["cnn"]
    assert set(worker["environment"]["cold_first_step_s"]) == expected
    for r in worker["results"]:
        assert set(r["timing"]) == expected
        check = r["check"]
        assert check["agree"] and set(check["losses"]) == expected
        assert all(v <= 1e-3 for v in check["max_rel_diff"].values())
        first = check["losses"]["nnctl"]
        assert len(first) == 3 and all(math.isfinite(v) and v > 0 for v in first)
        assert set(r["ratios"]) == expected - {"nnctl"}
        assert all(math.isfinite(v) and v > 0 for v in r["ratios"].values())
        assert all(t["median_ms"] > 0 for t in r["timing"].values())
        assert r["startup"]["nnctl"]["compile_s"] > 0
        assert r["memory"]["nnctl"]["tracemalloc_peak_bytes"] > 0
        assert r["memory"]["numpy"]["tracemalloc_peak_bytes"] > 0


def test_run_rejects_unknown_case():
    proc = run(BENCH / "run.py", "--cases", "resnet")
    assert proc.returncode == 2 and "unknown case 'resnet'" in proc.stderr


def test_profile_step_runs():
    proc = run(BENCH / "profile_step.py", "--case", "mlp_digits", "--steps", "3", "--top", "3")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "ms/step under the profiler" in proc.stdout


@pytest.mark.skipif(not HAVE["torch"], reason="conv2d.py's check needs PyTorch")
def test_conv2d_script_runs(tmp_path):
    proc = run(BENCH / "conv2d.py", "--quick", "--samples", "1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
