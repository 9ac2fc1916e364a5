"""`nnctl tune`: trials as run folders, the ranked table, pruned trials reported, trials.csv
and best.yaml; the space from the config or --space; one-line errors."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import time

import pytest
import yaml

from tests.cli.conftest import CONFIGS

pytest.importorskip("optuna")

SPIRALS = CONFIGS / "spirals.yaml"
# the shipped config less its search (and the comment above it)
BASE = SPIRALS.read_text().split("\ntune:")[0].rsplit("\n#", 1)[0]
TINY = ["--set", "data.samples=200", "--set", "train.epochs=3"]
# lr 0.05 overshoots in the first epoch (val_loss 1.07 against 0.64 at lr 1e-6), so once one
# trial is complete, a trial at 0.05 is pruned after its first epoch
TWO_RATES = """
tune:
  space:
    optimizer.lr: {choice: [0.05, 0.000001]}
  pruner: {startup_trials: 1, warmup_epochs: 0}
"""


def search_folder(out):
    (folder,) = out.iterdir()
    assert re.fullmatch(r"c-tune-\d{8}-\d{6}", folder.name)
    return folder


def records(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_trials_are_run_folders_ranked_with_the_pruned_ones_reported(cli, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(BASE + TWO_RATES)
    result = cli("tune", config, "--trials", 4, *TINY, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    folder = search_folder(tmp_path / "out")
    lines = result.stderr.splitlines()
    assert lines[0] == f"search folder: {folder}"
    assert lines[1] == "4 trials, minimize val_loss over optimizer.lr choice(0.05, 1e-06)"
    assert re.fullmatch(r"trial 1/4  optimizer.lr=1e-06  val_loss 0.6439 \(epoch 3\)  "
                        r"complete, 3 epochs, \d+\.\d s", lines[2])
    assert re.fullmatch(r"trial 2/4  optimizer.lr=0.05  val_loss 1.0733 \(epoch 1\)  "
                        r"pruned at epoch 1, \d+\.\d s", lines[3])
    # the table, best first, the pruned trial after the complete ones
    rows = [re.split(r"\s*│\s*", line.strip("│ ")) for line in result.stdout.splitlines()
            if line.startswith("│")]
    assert rows == [["1", "1", "1e-06", "0.6439", "complete", "3"],
                    ["2", "3", "1e-06", "0.6439", "complete", "3"],
                    ["3", "4", "1e-06", "0.6439", "complete", "3"],
                    ["4", "2", "0.05", "1.0733", "pruned", "1"]]
    assert "3 complete, 1 pruned, 0 failed" in result.stdout
    assert f"best: trial 1, val_loss 0.6439; train it with: nnctl train " \
           f"{folder / 'best.yaml'}" in result.stdout
    # every trial is a normal run folder; the scores are the best epochs of metrics.jsonl
    table = list(csv.DictReader((folder / "trials.csv").open()))
    assert [(r["trial"], r["state"], r["epochs"]) for r in table] == [
        ("1", "complete", "3"), ("3", "complete", "3"), ("4", "complete", "3"),
        ("2", "pruned", "1")]
    for row in table:
        run = folder / f"trial-{int(row['trial']):03d}"
        assert row["run_dir"] == str(run)
        losses = [r["val_loss"] for r in records(run)]
        assert len(losses) == int(row["epochs"])
        assert float(row["val_loss"]) == min(losses)
        assert float(row["optimizer.lr"]) == yaml.safe_load(
            (run / "config.yaml").read_text())["optimizer"]["lr"]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == ("pruned" if row["state"] == "pruned" else "completed")
        assert summary["tune"]["value"] == min(losses)
        assert (run / "weights.npz").exists()
    # best.yaml: the best trial's resolved config, which nnctl train reads
    best = (folder / "best.yaml").read_text()
    assert best.startswith("# best of nnctl tune " + str(config) + ": trial 1, val_loss ")
    assert "# its values: --set optimizer.lr=1e-06\n" in best
    assert best.split("\n", 2)[2] == (folder / "trial-001" / "config.yaml").read_text()
    assert yaml.safe_load(best)["optimizer"]["lr"] == 1e-06


def test_space_on_the_command_line_without_a_tune_section(cli, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(BASE)
    tensorboard = ["--set", "logging.tensorboard=true"] \
        if importlib.util.find_spec("tensorboardX") else []
    result = cli("tune", config, "--trials", 2, *TINY, "--space",
                 "train.batch_size=choice(25, 50)", "--space",
                 "optimizer.lr=log_uniform(1e-3, 1e-1)", *tensorboard, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert "2 trials, minimize val_loss over train.batch_size choice(25, 50), optimizer.lr " \
           "log_uniform(0.001, 0.1)" in result.stderr
    folder = search_folder(tmp_path / "out")
    for row in csv.DictReader((folder / "trials.csv").open()):
        resolved = yaml.safe_load((folder / f"trial-{int(row['trial']):03d}" /
                                   "config.yaml").read_text())
        assert resolved["train"]["batch_size"] == int(row["train.batch_size"]) in (25, 50)
        assert 1e-3 <= resolved["optimizer"]["lr"] == float(row["optimizer.lr"]) <= 1e-1
        if tensorboard:  # trials write event files when the config asks for them
            assert list((folder / f"trial-{int(row['trial']):03d}" / "tensorboard").glob(
                "events.out.tfevents.*"))
    assert "2 complete, 0 pruned, 0 failed" in result.stdout


def test_timeout_starts_no_trial_after_it(cli, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(BASE + TWO_RATES)
    started = time.perf_counter()
    result = cli("tune", config, "--trials", 1000, *TINY, "--timeout", 1, "--out",
                 tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert time.perf_counter() - started < 20
    rows = list(csv.DictReader((search_folder(tmp_path / "out") / "trials.csv").open()))
    assert 1 <= len(rows) < 1000


@pytest.mark.parametrize("args, message", [
    (["--space", "optimizer.lr=log_uniform(1e-4)"],
     "error: --space optimizer.lr=log_uniform(1e-4): log_uniform: expected [low, high] of "
     "numbers, got [0.0001]"),
    (["--space", "model.layers.5.dense.units=choice(1, 2)"],
     "error: --space model.layers.5.dense.units=choice(1, 2): choice(1, 2) can draw 1, which "
     "the config refuses: model.layers[5]: no such list item (the list has 3)"),
    (["--set", "tune.metric=val_f1_macro"],
     "error: --set tune.metric=val_f1_macro: tune.metric: 'val_f1_macro' is not a reported "
     "metric; expected one of: train_loss, train_accuracy, val_loss, val_accuracy"),
])
def test_mistakes_are_one_line_and_exit_2(cli, tmp_path, args, message):
    config = tmp_path / "c.yaml"
    config.write_text(BASE + TWO_RATES)
    result = cli("tune", config, *args, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.strip() == message
    assert not (tmp_path / "out").exists()


def test_without_optuna_the_install_line(cli, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "optuna" else real(name, *a))
    result = cli("tune", SPIRALS, "--trials", 2)
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: nnctl tune needs Optuna: pip install 'nnctl[tune]'"


def test_the_shipped_search_parses(cli, tmp_path):
    from nnctl.config import load_config
    from nnctl.tune import search_space, target
    cfg = load_config(SPIRALS)
    space, _ = search_space(cfg, [])
    assert set(space) == {"optimizer.lr", "model.layers.0.dense.units",
                          "model.layers.1.dense.units", "train.batch_size"}
    assert (target(cfg).metric, target(cfg).direction) == ("val_loss", "minimize")


@pytest.mark.slow
def test_acceptance_ten_spirals_trials_in_two_minutes_beat_the_shipped_config(cli, tmp_path):
    result = cli("train", SPIRALS, "--no-progress", "--out", tmp_path / "shipped")
    assert result.exit_code == 0, result.stderr
    (run,) = (tmp_path / "shipped").iterdir()
    shipped = min(r["val_loss"] for r in records(run))
    started = time.perf_counter()
    result = cli("tune", SPIRALS, "--trials", 10, "--out", tmp_path / "tune")
    seconds = time.perf_counter() - started
    assert result.exit_code == 0, result.stderr
    assert seconds < 120
    (folder,) = (tmp_path / "tune").iterdir()
    rows = list(csv.DictReader((folder / "trials.csv").open()))
    assert len(rows) == 10 and rows[0]["state"] == "complete"
    assert float(rows[0]["val_loss"]) <= shipped
    assert any(r["state"] == "pruned" for r in rows)
    assert re.search(r"\d+ complete, [1-9]\d* pruned, 0 failed", result.stdout)


def test_a_search_folder_is_no_run_but_lists_its_trials(cli, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(BASE)
    out = tmp_path / "runs"
    assert cli("train", config, *TINY, "--no-progress", "--out", out).exit_code == 0
    time.sleep(1.1)  # the search's folder is the newer by the time in its name
    result = cli("tune", config, "--trials", 2, *TINY, "--space",
                 "optimizer.lr=choice(0.01, 0.02)", "--out", out)
    assert result.exit_code == 0, result.stderr
    (search,) = out.glob("c-tune-*")
    assert json.loads((search / "search.json").read_text())["best_trial"] in (1, 2)
    (run,) = out.glob("c-2*")
    listing = cli("runs", out)
    assert listing.exit_code == 0, listing.stderr
    assert run.name in listing.stdout and search.name not in listing.stdout
    latest = cli("evaluate", out / "latest")
    assert latest.exit_code == 0, latest.stderr
    assert latest.stdout.lstrip().startswith(f"{run.name}: test split")
    trials = cli("runs", search)
    assert trials.exit_code == 0, trials.stderr
    assert re.search(r"trial-002\s+c\s+completed", trials.stdout)
    assert re.search(r"trial-001\s+c\s+completed", trials.stdout)
