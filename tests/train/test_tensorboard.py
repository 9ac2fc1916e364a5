"""TensorBoard event files (logging.tensorboard): one scalar per metric per epoch, read back
with TensorBoard's own event reader and compared with the run's metrics.jsonl."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnctl.backend import get_backend
from nnctl.cli.app import app
from nnctl.config import load_config
from nnctl.errors import ConfigError
from nnctl.train import Trainer
from nnctl.train.events import TrainerEvents
from nnctl.train.tensorboard_log import TensorBoardLog, with_tensorboard

SPIRALS = Path(__file__).resolve().parents[2] / "configs" / "spirals.yaml"
SMALL = ["data.samples=200", "train.epochs=3", "train.batch_size=50"]


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)], read by TensorBoard's EventAccumulator (tensorboardX's
    reader where TensorBoard is not installed)."""
    if importlib.util.find_spec("tensorboard") is not None:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
                for tag in acc.Tags()["scalars"]}
    from tensorboardX.event_file_reader import EventFileReader
    out: dict = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in EventFileReader(str(path)).get_events():
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


class Recorder(TrainerEvents):
    def __init__(self):
        self.calls = []

    def on_epoch_end(self, record):
        self.calls.append(("epoch_end", record["epoch"]))

    def on_train_end(self, summary):
        self.calls.append(("train_end", summary["status"]))


def train(tmp_path, extra=(), events=None):
    cfg = load_config(SPIRALS, [*SMALL, "logging.tensorboard=true", *extra])
    inner = events or TrainerEvents()
    trainer = Trainer(cfg, get_backend("cpu"), with_tensorboard(cfg, inner), out=tmp_path)
    summary = trainer.fit()
    return Path(summary["run_dir"]), summary


def test_one_scalar_per_metric_per_epoch_equal_to_metrics_jsonl(tmp_path):
    pytest.importorskip("tensorboardX")
    recorder = Recorder()
    run, summary = train(tmp_path, events=recorder)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    got = scalars(run / "tensorboard")
    metrics = [k for k in records[0] if k != "epoch"]
    assert metrics == ["train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"]
    for key in metrics:
        assert [step for step, _ in got[key]] == [1, 2, 3], key
        for (_, value), record in zip(got[key], records):
            # event files hold float32
            assert value == pytest.approx(float(record[key]), rel=1e-6, abs=1e-7), key
    assert got["test_accuracy"] == [(3, pytest.approx(summary["test_accuracy"], rel=1e-6))]
    assert got["test_loss"] == [(3, pytest.approx(summary["test_loss"], rel=1e-6))]
    assert set(got) == {*metrics, "test_loss", "test_accuracy"}  # nothing per step unasked
    # the wrapped listener still hears every event
    assert recorder.calls == [("epoch_end", 1), ("epoch_end", 2), ("epoch_end", 3),
                              ("train_end", "completed")]


def test_every_steps_writes_the_running_training_loss_at_the_global_step(tmp_path):
    pytest.importorskip("tensorboardX")

    class Steps(TrainerEvents):
        def __init__(self):
            self.losses = {}

        def on_step(self, epoch, step, steps, loss, metric, samples_per_s):
            self.losses[(epoch - 1) * steps + step] = (loss, metric)

    steps = Steps()
    run, _ = train(tmp_path, ["logging.every_steps=2"], events=steps)
    got = scalars(run / "tensorboard")
    # 140 training samples in batches of 50: 3 steps an epoch, 9 in all; every second is logged
    assert [s for s, _ in got["step/train_loss"]] == [2, 4, 6, 8]
    for at, value in got["step/train_loss"]:
        assert value == pytest.approx(steps.losses[at][0], rel=1e-6)
    for at, value in got["step/train_metric"]:
        assert value == pytest.approx(steps.losses[at][1], rel=1e-6)


def test_off_by_default_and_the_listener_is_left_alone(tmp_path):
    cfg = load_config(SPIRALS, SMALL)
    inner = TrainerEvents()
    assert with_tensorboard(cfg, inner) is inner


def test_a_missing_tensorboardx_is_one_config_line_before_training(tmp_path, monkeypatch):
    cfg = load_config(SPIRALS, [*SMALL, "logging.tensorboard=true"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboardX" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        with_tensorboard(cfg, TrainerEvents())
    assert str(err.value) == ("--set logging.tensorboard=true: logging.tensorboard: needs "
                              "tensorboardX: pip install 'nnctl[tensorboard]' (or set "
                              "logging.tensorboard: false)")


def test_no_run_folder_writes_nothing(tmp_path):
    pytest.importorskip("tensorboardX")
    log = TensorBoardLog(TrainerEvents())
    log.on_train_start({"run_dir": None, "steps_per_epoch": 1})
    log.on_epoch_end({"epoch": 1, "train_loss": 0.5})
    log.on_train_end({"status": "completed"})
    assert log.writer is None


def test_train_command_writes_event_files_and_the_plots_need_none(tmp_path):
    pytest.importorskip("tensorboardX")
    result = CliRunner().invoke(app, ["train", str(SPIRALS), "--no-progress", "--out",
                                      str(tmp_path), *sum((["--set", s] for s in SMALL), []),
                                      "--set", "logging.tensorboard=true"])
    assert result.exit_code == 0, result.stderr
    (run,) = tmp_path.iterdir()
    got = scalars(run / "tensorboard")
    assert [s for s, _ in got["val_accuracy"]] == [1, 2, 3]
    # without the section the run folder has no tensorboard folder
    plain = tmp_path / "plain"
    result = CliRunner().invoke(app, ["train", str(SPIRALS), "--no-progress", "--out",
                                      str(plain), *sum((["--set", s] for s in SMALL), [])])
    assert result.exit_code == 0, result.stderr
    (run,) = plain.iterdir()
    assert not (run / "tensorboard").exists()


def test_a_resumed_run_may_switch_the_event_files_on(tmp_path):
    pytest.importorskip("tensorboardX")
    sets = sum((["--set", s] for s in SMALL), [])
    first = CliRunner().invoke(app, ["train", str(SPIRALS), "--no-progress", "--epochs", "1",
                                     "--out", str(tmp_path), *sets])
    assert first.exit_code == 0, first.stderr
    (run,) = tmp_path.iterdir()
    more = CliRunner().invoke(app, ["train", str(SPIRALS), "--no-progress", "--epochs", "3",
                                    "--resume", str(run), *sets,
                                    "--set", "logging.tensorboard=true"])
    assert more.exit_code == 0, more.stderr
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    got = scalars(run / "tensorboard")
    assert [s for s, _ in got["val_loss"]] == [2, 3]
    assert [v for _, v in got["val_loss"]] == pytest.approx([r["val_loss"] for r in records[1:]],
                                                            rel=1e-6)
