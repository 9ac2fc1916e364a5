"""Memory pre-flight (issue 8, point 7): the planned memory of a run is compared with what
the machine allows before any parameter is allocated; too much is one line with the estimate
and the limit, exit 2, and no run folder."""

import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.config import load_config
from nnctl.step import load_splits
from nnctl.train import preflight
from nnctl.train.preflight import available_memory, check_memory, estimate

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

SMALL = textwrap.dedent("""\
    data: {dataset: digits}
    model:
      layers:
        - dense: {units: 10}
    loss: cross_entropy
    optimizer: adam
    train: {epochs: 1, batch_size: 16, eval_batch_size: 64}
    """)

HUGE = textwrap.dedent("""\
    data: {dataset: digits}
    model:
      layers:
        - dense: {units: 20000, activation: relu}
        - dense: {units: 20000, activation: relu}
        - dense: {units: classes}
    loss: cross_entropy
    optimizer: adam
    train: {epochs: 1}
    """)


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_estimate_counts_parameters_and_adam_slots_exactly(tmp_path):
    config = load_config(write(tmp_path, SMALL))
    planned = estimate(config, load_splits(config), allowed=0)  # 0: compile the plans
    params = (64 * 10 + 10) * 4  # float32 weight and bias
    assert planned.parameters == params
    assert planned.optimizer == 2 * params  # Adam's m and v
    assert planned.batch == 16 and planned.eval_batch == 64
    assert planned.train_step >= 2 * 16 * 10 * 4  # at least the logits and their gradient
    assert planned.total == planned.parameters + planned.optimizer + planned.train_step + \
        planned.eval_step


def test_estimate_allocates_no_parameter(tmp_path):
    # 1.6 GB of weights in the dense 20000 x 20000: the estimate must not draw them
    config = load_config(write(tmp_path, HUGE))
    splits = load_splits(config)
    started = time.perf_counter()
    planned = estimate(config, splits, allowed=0)
    assert time.perf_counter() - started < 30
    assert planned.parameters == (64 * 20000 + 20000 + 20000 * 20000 + 20000
                                  + 20000 * 10 + 10) * 4
    assert planned.optimizer == 2 * planned.parameters


def test_too_little_memory_is_one_line_exit_2_and_no_run_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(preflight, "available_memory", lambda: (1 << 12, "a test limit"))
    path = write(tmp_path, SMALL)
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["train", str(path), "--out", str(out), "--no-progress"])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}:2: model: the run needs about ")
    assert "parameters 2.5 KiB, optimizer state 5.1 KiB, training step at batch 16 " in line
    assert line.endswith("but 4.0 KiB is available (a test limit); make the model smaller or "
                         "lower train.batch_size / train.eval_batch_size")
    assert not out.exists() or not any(out.iterdir())


def test_enough_memory_passes(tmp_path):
    config = load_config(write(tmp_path, SMALL))
    check_memory(config, load_splits(config), available=lambda: (1 << 30, "1 GiB"))


def test_no_known_limit_checks_nothing(tmp_path):
    config = load_config(write(tmp_path, SMALL))
    check_memory(config, None, available=lambda: None)  # splits unused: nothing is built


def test_shipped_config_fits_this_machine():
    config = load_config(CONFIGS / "digits_cnn.yaml")
    check_memory(config, load_splits(config))


def _limit_address_space():
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def test_dense_20000_under_rlimit_as_fails_fast_with_the_estimate(tmp_path):
    path = write(tmp_path, HUGE)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nnctl", "train", str(path), "--out",
                           str(tmp_path / "runs"), "--no-progress"], capture_output=True,
                          text=True, timeout=300, preexec_fn=_limit_address_space, check=False)
    assert time.perf_counter() - started < 60
    assert done.returncode == 2, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}:2: model: the run needs about 6.1 GiB of memory "
                           "(parameters 1.5 GiB, optimizer state 3.0 GiB")
    assert "is available (RLIMIT_AS (ulimit -v) of 3.0 GiB, less " in line


def test_available_memory_reads_rlimit_as():
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
            "from nnctl.train.preflight import available_memory; print(available_memory())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert "RLIMIT_AS (ulimit -v) of 2.0 GiB" in done.stdout, done.stderr
    free = available_memory()
    assert free is None or free[0] > 0


def test_parameters_are_counted_in_the_run_dtype(tmp_path):
    config = load_config(write(tmp_path, SMALL.replace("batch_size: 16,",
                                                       "batch_size: 16, dtype: float64,")))
    assert estimate(config, load_splits(config)).parameters == (64 * 10 + 10) * 8


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adagrad"])
def test_optimizer_slots(tmp_path, name):
    config = load_config(write(tmp_path, SMALL.replace("optimizer: adam", f"optimizer: {name}")))
    planned = estimate(config, load_splits(config))
    slots = {"sgd": 1, "rmsprop": 2, "adagrad": 1}[name]
    assert planned.optimizer == slots * planned.parameters
    assert np.isfinite(planned.total)


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_config_is_estimated_without_drawing_weights(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    planned = estimate(config, load_splits(config), allowed=float("inf"))
    # the cheap bound (every intermediate alive at once, no buffer reuse): an unrolled
    # encoder-decoder with attention over 53 steps is about 1.2 GB by it (58 MB planned)
    assert 0 < planned.parameters < planned.total < 2 << 30
