"""kill -9 in the middle of a checkpoint write, at random byte offsets: the run folder keeps
the previous checkpoint, whole, and a resume finishes the run bit for bit as if nothing had
happened (the interrupted write's temporary file is cleaned up on the way)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MLP = CONFIGS / "digits_mlp.yaml"
EPOCHS = "4"

# Run nnctl with the checkpoint writer wrapped: at the K-th checkpoint, after N bytes have
# reached the temporary file, the process kills itself with SIGKILL (no handler runs, nothing
# is flushed or cleaned: what a power cut or the OOM killer leaves).
DYING = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from nnctl.train import checkpoint, run_dir
    nth, after = int(sys.argv[1]), int(sys.argv[2])
    real, seen = run_dir.atomic_write, {"n": 0}

    class Dying:
        def __init__(self, f):
            self.f, self.written = f, 0
        def write(self, data):
            data = bytes(data)
            take = min(len(data), after - self.written)
            self.f.write(data[:take])
            self.written += take
            if self.written >= after:
                self.f.flush()
                os.fsync(self.f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
            return len(data)
        def __getattr__(self, name):
            return getattr(self.f, name)

    def atomic_write(path, write):
        if Path(path).name == "checkpoint.npz":
            seen["n"] += 1
            if seen["n"] == nth:
                return real(path, lambda f: write(Dying(f)))
        return real(path, write)

    checkpoint.atomic_write = run_dir.atomic_write = atomic_write
    from nnctl.cli.app import main
    sys.argv = ["nnctl", *sys.argv[3:]]
    main()
""")


def nnctl(*args, dying=None):
    env = {**os.environ, "NNCTL_JIT": "0"}
    if dying is None:
        cmd = [sys.executable, "-m", "nnctl", *map(str, args)]
    else:
        cmd = [sys.executable, "-c", DYING, *map(str, dying), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    result = nnctl("train", MLP, "--epochs", EPOCHS, "--out", out, "--no-progress")
    assert result.returncode == 0, result.stderr
    (run,) = out.iterdir()
    return run


# (checkpoint number, bytes written before the kill): seeded random offsets inside the
# ~160 KB checkpoint (zip headers, arrays, the metadata member, the central directory)
CASES = [(k, int(b)) for k, b in zip(
    [2, 3, 2, 4], np.random.default_rng(8).integers(1, 150_000, size=4))] + [(3, 1)]


@pytest.mark.parametrize("nth,after", CASES)
def test_kill_9_mid_checkpoint_keeps_the_last_one_and_resumes_bit_for_bit(tmp_path, straight,
                                                                          nth, after):
    out = tmp_path / "runs"
    died = nnctl("train", MLP, "--epochs", EPOCHS, "--out", out, "--no-progress",
                 dying=(nth, after))
    assert died.returncode == -signal.SIGKILL, died.stderr
    (run,) = out.iterdir()
    leftovers = [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert leftovers  # the torn write is still there, beside the previous checkpoint
    resumed = nnctl("train", MLP, "--epochs", EPOCHS, "--resume", run, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    for name in ("metrics.jsonl", "checkpoint.npz", "weights.npz"):
        assert (run / name).read_bytes() == (straight / name).read_bytes(), name


def test_kill_9_in_the_first_checkpoint_leaves_a_folder_that_says_what_happened(tmp_path):
    """Killed before any checkpoint was whole: nothing to resume from, said in one line."""
    out = tmp_path / "runs"
    died = nnctl("train", MLP, "--epochs", EPOCHS, "--out", out, "--no-progress",
                 dying=(1, 5000))
    assert died.returncode == -signal.SIGKILL
    (run,) = out.iterdir()
    resumed = nnctl("train", MLP, "--epochs", EPOCHS, "--resume", run, "--no-progress")
    assert resumed.returncode == 2, resumed.stderr
    errors = [line for line in resumed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "checkpoint" in errors[0] and "Traceback" not in resumed.stderr
