"""Data-parallel training (nnctl/distributed.py): shards, sharded dropout draws, the scaled
loss, and real runs under `mpiexec -n 2`, each with a timeout so that a hang fails: 2 ranks
x batch 8 equal 1 process x batch 16 (float64, rtol 1e-12; plain, batch norm, dropout) with
bitwise identical parameters on both ranks; a failing rank ends the job with one line; Ctrl-C
on `nnctl train --ranks 2` checkpoints and exits 130; runs resume across rank counts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nnctl import distributed
from nnctl.backend import get_backend
from nnctl.cli.app import app
from nnctl.config import load_config
from nnctl.distributed import SINGLE, Communicator, ShardedDraws, shard
from nnctl.errors import ConfigError
from nnctl.ops import collective

ROOT = Path(__file__).resolve().parents[1]


# ---- without MPI ---------------------------------------------------------------------------

@pytest.mark.parametrize("n, size", [(16, 2), (17, 2), (16, 3), (5, 4), (1, 2), (9, 9)])
def test_shards_are_contiguous_equal_and_cover_the_batch(n, size):
    idx = np.arange(100, 100 + n)
    parts = [shard(idx, r, size) for r in range(size)]
    assert np.array_equal(np.concatenate([p for p, _ in parts]), idx)
    lengths = [len(p) for p, _ in parts]
    assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)
    assert [before for _, before in parts] == list(np.cumsum([0] + lengths[:-1]))


def test_sharded_draws_are_the_rows_of_the_global_draw():
    """Two ranks' masks, stacked, are the single process's mask, draw after draw; also for a
    draw with several rows per sample ([B*T, H])."""
    whole = np.random.default_rng(7)
    ranks = [ShardedDraws(np.random.default_rng(7)) for _ in range(2)]
    for rows_per_sample, width in ((1, 5), (3, 4), (1, 5)):
        want = np.empty((16 * rows_per_sample, width), np.float32)
        whole.random(dtype="float32", out=want)
        got = []
        for rank, draws in enumerate(ranks):
            local, before = shard(np.arange(16), rank, 2)
            draws.set_shard(before, len(local), 16)
            out = np.empty((len(local) * rows_per_sample, width), np.float32)
            draws.random(dtype="float32", out=out)
            got.append(out)
        assert np.array_equal(np.concatenate(got), want)
    assert ranks[0].bit_generator.state == whole.bit_generator.state


def test_a_process_not_started_by_a_launcher_is_single(monkeypatch):
    for name in distributed._SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert distributed.connect() is SINGLE and SINGLE.size == 1 and SINGLE.is_root


def test_launch_command(monkeypatch):
    monkeypatch.setattr(distributed, "mpiexec", lambda: "/x/mpiexec")
    command, env = distributed.launch_command(2, ["train", "c.yaml", "--out", "r"])
    assert command[:3] == ["/x/mpiexec", "-n", "2"]
    assert command[command.index("-m") - 1] == sys.executable
    assert command[command.index("-m") + 1:] == ["nnctl", "train", "c.yaml", "--out", "r"]
    big, _ = distributed.launch_command((os.cpu_count() or 1) + 1, ["train"])
    assert "--oversubscribe" in big and "--oversubscribe" not in command
    if os.geteuid() == 0:
        assert env["OMPI_ALLOW_RUN_AS_ROOT"] == "1"
    monkeypatch.setattr(distributed, "mpiexec", lambda: None)
    with pytest.raises(Exception, match="needs an MPI launcher"):
        distributed.launch_command(2, ["train"])


def test_the_scaled_step_is_the_step_times_the_scale():
    from nnctl.compile import compile_graph
    from nnctl.data.batching import batch_arrays
    from nnctl.step import prepare
    config = load_config(ROOT / "configs" / "spirals.yaml", ["train.dtype=float64"])
    splits, builder = prepare(config)
    arrays = batch_arrays(splits.train, np.arange(8), 1, "float64")
    params = [np.asarray(builder.model.initial[n]) for n in builder.params]
    results = []
    for scaled in (False, True):
        outputs, feeds = builder.training_step(scaled=scaled)
        plan = compile_graph(outputs, feeds, get_backend("cpu"))
        extra = [np.asarray(0.375)] if scaled else []
        results.append([np.array(o) for o in plan.run([*arrays, *params, *extra])])
    plain, scaled = results
    assert scaled[0] == pytest.approx(0.375 * float(plain[0]), rel=1e-14)
    for g, h in zip(plain[2:], scaled[2:]):
        np.testing.assert_allclose(h, 0.375 * g, rtol=1e-12, atol=1e-15)


class _ThreeRanks(Communicator):
    """A communicator that claims 3 ranks (its collectives are the identity)."""

    size = 3


@pytest.fixture
def reset_collective():
    yield
    collective.set_communicator(None)


def test_batches_too_small_for_the_ranks_are_config_errors(tmp_path, reset_collective):
    from nnctl.train.trainer import Trainer
    config = _config(tmp_path, "- batch_norm: {}", batch=2)
    with pytest.raises(ConfigError, match="2 is smaller than the 3 ranks"):
        Trainer(load_config(config), get_backend("cpu"), out=None, comm=_ThreeRanks())
    # 80 training samples in batches of 39: a last batch of 2 for 3 ranks and batch norm
    config = _config(tmp_path, "- batch_norm: {}", batch=39)
    with pytest.raises(ConfigError, match="the last batch of each epoch has 2 sample"):
        Trainer(load_config(config), get_backend("cpu"), out=None, comm=_ThreeRanks())
    collective.set_communicator(None)
    Trainer(load_config(_config(tmp_path, "", batch=39)), get_backend("cpu"), out=None,
            comm=_ThreeRanks())  # no batch norm: a rank without a sample is a stand-in


# ---- under mpiexec -n 2 ------------------------------------------------------------------------

MPI = pytest.mark.skipif(
    distributed.mpiexec() is None or not __import__("importlib").util.find_spec("mpi4py"),
    reason="needs mpi4py and an MPI launcher (pip install -e '.[dist]')")

MODELS = {
    "plain": "",
    "batch_norm": "- batch_norm: {}",
    "dropout": "- dropout: {rate: 0.3}",
}


def _data(folder: Path) -> Path:
    path = folder / "data.npz"
    if not path.exists():
        rng = np.random.default_rng(0)
        x = rng.normal(size=(100, 6))
        y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1).astype(int)
        np.savez(path, x=x, y=y)
    return path


def _config(folder: Path, middle: str, batch: int = 16, epochs: int = 1, name: str = "m"
            ) -> Path:
    """100 rows (80 for training: 5 steps of 16), float64, the last epoch's weights kept."""
    path = folder / f"{name}.yaml"
    path.write_text(
        f"seed: 3\ndata: {{dataset: npz, path: {_data(folder)}, "
        "split: {val: 0.1, test: 0.1}}\n"
        "model:\n  layers:\n    - dense: {units: 8, activation: tanh}\n"
        f"    {middle}\n    - dense: {{units: 3}}\n"
        "loss: cross_entropy\noptimizer: {name: adam, lr: 0.01}\n"
        f"train: {{epochs: {epochs}, batch_size: {batch}, dtype: float64, "
        "restore_best: false}\n")
    return path


def _env() -> dict:
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NNCTL_THREADS", None)
    return env


def _mpiexec(*args, timeout=120, cwd=None):
    command = [distributed.mpiexec(), "-n", "2", sys.executable, *map(str, args)]
    return subprocess.run(command, env=_env(), capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


WORKER = """
import sys
from pathlib import Path
import numpy as np
from nnctl.backend import get_backend
from nnctl.config import load_config
from nnctl.distributed import connect
from nnctl.train.trainer import Trainer
out = Path(sys.argv[1])
comm = connect()
for config in sys.argv[2:]:
    trainer = Trainer(load_config(config), get_backend("cpu"), out=None, comm=comm)
    trainer.fit()
    np.savez(out / f"{Path(config).stem}-rank{comm.rank}-of{comm.size}.npz", **trainer.weights())
"""


@MPI
def test_two_ranks_of_8_equal_one_process_of_16(tmp_path):
    configs = [_config(tmp_path, middle, name=name) for name, middle in MODELS.items()]
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    single = subprocess.run([sys.executable, worker, tmp_path, *configs], env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr
    result = _mpiexec(worker, tmp_path, *configs)
    assert result.returncode == 0, result.stderr
    for name in MODELS:
        one = np.load(tmp_path / f"{name}-rank0-of1.npz")
        a, b = (np.load(tmp_path / f"{name}-rank{r}-of2.npz") for r in (0, 1))
        assert set(one.files) == set(a.files) and len(one.files) >= 4
        for key in one.files:
            np.testing.assert_allclose(a[key], one[key], rtol=1e-12, atol=1e-15,
                                       err_msg=f"{name}: {key}")
            assert np.array_equal(a[key], b[key]), f"{name}: {key} differs between ranks"
        # the 5 steps of Adam moved every parameter away from its initial value
        from nnctl.train.trainer import Trainer
        start = Trainer(load_config(tmp_path / f"{name}.yaml"), get_backend("cpu"),
                        out=None).weights()
        for key in start:
            assert np.abs(one[key] - start[key]).max() > 1e-4, f"{name}: {key}"


@MPI
def test_cli_on_two_ranks_writes_one_run_that_equals_one_process(tmp_path):
    config = _config(tmp_path, "- batch_norm: {}", epochs=2)
    result = _mpiexec("-m", "nnctl", "train", config, "--out", tmp_path / "two",
                      "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "2 processes (MPI" in result.stderr
    assert result.stderr.count("epoch 1 ") == 1  # rank 0 reports, once
    (run,) = (tmp_path / "two").iterdir()
    one = CliRunner().invoke(app, ["train", str(config), "--out", str(tmp_path / "one"),
                                   "--no-progress"])
    assert one.exit_code == 0, one.output
    (single,) = (tmp_path / "one").iterdir()
    a, b = np.load(run / "weights.npz"), np.load(single / "weights.npz")
    for key in b.files:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=1e-15, err_msg=key)
    import json
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    want = [json.loads(line) for line in (single / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and [set(r) for r in records] == [set(r) for r in want]
    for got, expected in zip(records, want):  # the training metrics reduced over the ranks
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-12), key


FAILING = """
import sys
from nnctl.distributed import launched_rank
from nnctl.train import trainer

original = trainer.Trainer.batch_feeds

def failing(self, split, idx, *rest):
    if split == "train" and launched_rank() == 1 and self.global_step == 1:
        raise RuntimeError("a planted failure")
    return original(self, split, idx, *rest)

trainer.Trainer.batch_feeds = failing
from nnctl.cli.app import main
sys.argv = ["nnctl", "train", *sys.argv[1:]]
main()
"""


@MPI
@pytest.mark.parametrize("middle", ["", "- batch_norm: {}"], ids=["plain", "batch_norm"])
def test_a_rank_that_raises_at_step_2_ends_the_job_with_one_line(tmp_path, middle):
    worker = tmp_path / "failing.py"
    worker.write_text(FAILING)
    config = _config(tmp_path, middle, epochs=3)
    started = time.perf_counter()
    result = _mpiexec(worker, config, "--out", tmp_path / "runs", "--no-progress", timeout=60)
    assert time.perf_counter() - started < 30
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: rank 1 failed at epoch 1, step 2, and every rank stopped there: "
                      "RuntimeError: a planted failure"], result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "checkpoint.npz").is_file()  # rank 0's: the state before the step
    assert '"status": "failed"' in (run / "summary.json").read_text()


@MPI
def test_ctrl_c_on_the_ranks_launcher_checkpoints_and_resumes_on_one_process(tmp_path):
    config = _config(tmp_path, "- dropout: {rate: 0.2}", epochs=400)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "nnctl", "train", str(config), "--ranks", "2", "--out",
         str(tmp_path / "runs"), "--no-progress"], env=_env(), stderr=subprocess.PIPE,
        text=True)
    try:
        seen = []
        for line in launcher.stderr:  # wait for training to be under way
            seen.append(line)
            if line.startswith("epoch 3 "):
                break
        launcher.send_signal(signal.SIGINT)
        _, rest = launcher.communicate(timeout=30)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    stderr = "".join(seen) + rest
    assert launcher.returncode == 130, stderr
    assert "error: interrupted after epoch" in stderr and "resume with: nnctl train" in stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert '"status": "interrupted"' in (run / "summary.json").read_text()
    # resumed on one process for 10 epochs in all: the same as a straight run of 10
    resumed = CliRunner().invoke(app, ["train", str(config), "--resume", str(run),
                                       "--epochs", "10", "--no-progress"])
    assert resumed.exit_code == 0, resumed.output
    straight = CliRunner().invoke(app, ["train", str(config), "--epochs", "10", "--out",
                                        str(tmp_path / "straight"), "--no-progress"])
    assert straight.exit_code == 0, straight.output
    (other,) = (tmp_path / "straight").iterdir()
    _same_weights(run, other)


@MPI
def test_a_one_process_run_resumes_on_two_ranks(tmp_path):
    config = _config(tmp_path, "- batch_norm: {}", epochs=1)
    first = CliRunner().invoke(app, ["train", str(config), "--out", str(tmp_path / "runs"),
                                     "--no-progress"])
    assert first.exit_code == 0, first.output
    (run,) = (tmp_path / "runs").iterdir()
    # by name, without the config: rank 0 resolves the name, reads the run's config and
    # broadcasts both
    result = _mpiexec("-m", "nnctl", "train", "--resume", tmp_path / "runs" / "m-latest",
                      "--epochs", "3", "--no-progress")
    assert result.returncode == 0, result.stderr
    straight = CliRunner().invoke(app, ["train", str(config), "--epochs", "3", "--out",
                                        str(tmp_path / "straight"), "--no-progress"])
    assert straight.exit_code == 0, straight.output
    (other,) = (tmp_path / "straight").iterdir()
    _same_weights(run, other)


def _same_weights(run: Path, other: Path) -> None:
    a, b = np.load(run / "weights.npz"), np.load(other / "weights.npz")
    assert set(a.files) == set(b.files)
    for key in b.files:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=1e-15, err_msg=key)


def test_mpiexec_is_found_beside_the_python(tmp_path, monkeypatch):
    fake = tmp_path / "mpiexec"
    fake.write_text("#!/bin/sh\n")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    assert distributed.mpiexec() == str(fake)
    fake.unlink()
    monkeypatch.setenv("PATH", "")
    assert distributed.mpiexec() is None
