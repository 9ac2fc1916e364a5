"""A run whose loss diverges while staying finite stops like a NaN (issue 8, point 10):
exit 3, the step named, a checkpoint of the state before it; off-able and tunable in
train.divergence; the shipped configs train without a false alarm."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.config.schema import DivergenceSpec
from nnctl.errors import TrainingError
from nnctl.train.divergence import DivergenceWatch

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_adam_at_lr_1e6_stops_naming_the_step(tmp_path):
    result = cli("train", CONFIGS / "spirals.yaml", "--set", "optimizer.lr=1e6", "--epochs", "3",
                 "--out", tmp_path, "--no-progress")
    assert result.exit_code == 3, result.output
    line = next(x for x in result.stderr.splitlines() if x.startswith("error:"))
    assert line.startswith("error: the loss diverged: ")
    assert "at epoch 1, step " in line and "10000 x the first step's loss 0.69" in line
    assert "for 10 steps in a row" in line and "checkpoint.npz" in line
    (run,) = tmp_path.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"].startswith("the loss diverged")
    assert summary["global_step"] < 22  # stopped inside the first epoch (22 steps)
    assert (run / "checkpoint.npz").is_file()


def test_divergence_test_can_be_turned_off(tmp_path):
    result = cli("train", CONFIGS / "spirals.yaml", "--set", "optimizer.lr=1e6", "--epochs", "1",
                 "--set", "train.divergence=false", "--out", tmp_path, "--no-progress")
    assert result.exit_code == 0, result.output


def test_max_loss_bound(tmp_path):
    # a bound below any loss the run reaches: stops after `steps` steps
    result = cli("train", CONFIGS / "spirals.yaml", "--epochs", "1", "--set",
                 "train.divergence={max_loss: 0.01, steps: 3, factor: null}", "--out", tmp_path,
                 "--no-progress")
    assert result.exit_code == 3
    assert "at epoch 1, step 3, above train.divergence.max_loss 0.01 for 3 steps in a row " \
           "(since epoch 1, step 1)" in result.stderr


def test_bad_divergence_settings_are_config_errors(tmp_path):
    result = cli("train", CONFIGS / "spirals.yaml", "--set", "train.divergence.factor=0.5",
                 "--out", tmp_path)
    assert result.exit_code == 2
    assert "train.divergence.factor: expected a number > 1" in result.stderr


def watch(**kw):
    return DivergenceWatch(DivergenceSpec(**kw))


def test_watch_counts_steps_in_a_row_and_resets():
    w = watch(factor=10.0, steps=3)
    w.check(2.0, 1, 1)
    for step, loss in enumerate([25.0, 30.0, 1.0, 21.0, 21.0], 2):
        w.check(loss, 1, step)  # the streak breaks at step 4
    with pytest.raises(TrainingError, match=r"the loss diverged: 22 at epoch 2, step 1, above "
                                            r"10 x the first step's loss 2 for 3 steps in a "
                                            r"row \(since epoch 1, step 5\)"):
        w.check(22.0, 2, 1)


def test_watch_reference_survives_a_checkpoint():
    w = watch(factor=10.0, steps=2)
    w.check(1.0, 1, 1)
    w.check(11.0, 1, 2)
    state = json.loads(json.dumps(w.state_dict()))
    resumed = watch(factor=10.0, steps=2)
    resumed.load_state_dict(state)
    with pytest.raises(TrainingError, match="since epoch 1, step 2"):
        resumed.check(12.0, 1, 3)


def test_watch_zero_first_loss_waits_for_a_positive_one():
    w = watch(factor=10.0, steps=1)
    w.check(0.0, 1, 1)
    w.check(1e-3, 1, 2)
    w.check(5e-3, 1, 3)  # 5 x the first positive loss: fine
    assert w.reference == 1e-3


def test_disabled_watch_never_fires():
    w = watch(enabled=False, factor=2.0, steps=1)
    for step in range(1, 5):
        w.check(10.0 ** step, 1, step)


@pytest.mark.parametrize("name,epochs", [("digits_mlp", 3), ("spirals", 20), ("seq_gru", 1),
                                         ("digits_residual", 1)])
def test_shipped_configs_train_without_false_alarm(tmp_path, name, epochs):
    result = cli("train", CONFIGS / f"{name}.yaml", "--epochs", epochs, "--out", tmp_path,
                 "--no-progress")
    assert result.exit_code == 0, result.output


def test_resume_may_change_the_divergence_test(tmp_path):
    # a false alarm must not strand a run: resuming with other divergence settings is allowed,
    # as for train.epochs
    first = cli("train", CONFIGS / "spirals.yaml", "--epochs", "1", "--out", tmp_path,
                "--no-progress")
    assert first.exit_code == 0, first.output
    (run,) = tmp_path.iterdir()
    resumed = cli("train", CONFIGS / "spirals.yaml", "--epochs", "2", "--resume", run,
                  "--set", "train.divergence={factor: 100, steps: 3}", "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    records = (run / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 2
