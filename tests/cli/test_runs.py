"""`nnctl runs`: the runs of a folder with their status and key metrics (newest first), and
two or more runs side by side with the config keys that differ."""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_config
from rich.console import Console

from nnctl.cli.runs import comparison, show
from nnctl.train.run_info import config_differences, flatten, read_run

TINY = tiny_config(epochs=3)


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def best(run: Path) -> dict:
    return json.loads((run / "best.json").read_text())


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def runs(cli, tmp_path, monkeypatch):
    """In ./runs: a completed run (lr 0.05), a completed one with lr 0.2 and seed 1, a
    failed one (its loss became NaN), a copy of the first killed before its summary, and a
    copy of the first being resumed right now (its lock names a live process)."""
    monkeypatch.chdir(tmp_path)
    Path("mlp.yaml").write_text(TINY)
    Path("nan.yaml").write_text(TINY.replace("lr: 0.05", "lr: 1.0e+30").replace(
        "adam", "sgd").replace("tanh", "relu"))
    for args in (["mlp.yaml"], ["mlp.yaml", "--set", "optimizer.lr=0.2", "--seed", "1"]):
        result = cli("train", *args)
        assert result.exit_code == 0, result.output
    assert cli("train", "nan.yaml").exit_code == 3
    first, second = sorted(Path("runs").glob("mlp-*"))
    (failed,) = Path("runs").glob("nan-*")
    # names as nnctl train gives them, later than the real ones (made this second)
    killed = Path("runs/mlp-29990101-000000")
    running = Path("runs/mlp-29990101-000001")
    for copy in (killed, running):
        shutil.copytree(first, copy)
    (killed / "summary.json").unlink()
    (killed / ".lock").write_text(f"{dead_pid()}\n")
    (running / ".lock").write_text(f"{os.getpid()}\n")
    return {"first": first, "second": second, "failed": failed, "killed": killed,
            "running": running}


def columns(line: str) -> list[str]:
    """The cells of a plain-text row (cells are two or more spaces apart)."""
    import re
    return re.split(r"\s{2,}", line.strip())


def test_the_listing_shows_status_epochs_best_and_test_metrics(cli, runs):
    result = cli("runs")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert columns(lines[0]) == ["run", "config", "status", "epochs", "best", "test",
                                 "started"]
    names = [columns(line)[0] for line in lines[1:]]
    # newest first by the time in the name (the -k suffix counts one config's runs within a
    # second; runs of two configs within one second go by the time, then the suffix)
    assert names[:2] == [runs["running"].name, runs["killed"].name]
    assert set(names[2:]) == {runs[k].name for k in ("failed", "second", "first")}
    assert names.index(runs["second"].name) < names.index(runs["first"].name)
    rows = {columns(line)[0]: columns(line) for line in lines[1:]}
    first = runs["first"]
    s, b = summary(first), best(first)
    stamp = first.name.split("-", 1)[1]
    when = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"
    assert rows[first.name] == [
        first.name, "mlp", "completed", "3/3",
        f"val_loss {b['val_loss']:.4f} (epoch {b['epoch']})",
        f"loss {s['test_loss']:.4f}, accuracy {s['test_accuracy']:.4f}", when]
    assert rows[runs["failed"].name][1:5] == ["nan", "failed", "0/3", "-"]
    assert rows[runs["killed"].name][2:4] == ["interrupted", "3/3"]
    assert rows[runs["running"].name][2] == "running"
    assert rows[runs["running"].name][0] == "mlp-29990101-000001"
    assert rows[runs["running"].name][-1] == "2999-01-01 00:00:01"


def test_a_folder_argument_lists_that_folder(cli, runs, tmp_path):
    Path("elsewhere").mkdir()
    shutil.copytree(runs["second"], Path("elsewhere") / runs["second"].name)
    result = cli("runs", "elsewhere")
    assert result.exit_code == 0, result.output
    assert [columns(line)[0] for line in result.stdout.splitlines()[1:]] == \
        [runs["second"].name]
    Path("empty").mkdir()
    assert cli("runs", "empty").stdout == "no runs in empty\n"


def test_compare_two_runs_side_by_side(cli, runs):
    first, second = runs["first"], runs["second"]
    result = cli("runs", first, "runs/mlp-latest")  # the latest: the "running" copy
    assert result.exit_code == 0, result.output
    rows = {columns(line)[0]: columns(line)[1:] for line in result.stdout.splitlines()[1:]}
    assert columns(result.stdout.splitlines()[0]) == [first.name, runs["running"].name]
    assert rows["status"] == ["completed", "running"]
    assert not any(k.startswith("config ") for k in rows)  # a copy: no config differs

    result = cli("runs", first, second, runs["failed"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert columns(lines[0]) == [first.name, second.name, runs["failed"].name]
    rows = {columns(line)[0]: columns(line)[1:] for line in lines[1:]}
    s1, s2 = summary(first), summary(second)
    assert rows["config"] == ["mlp", "mlp", "nan"]
    assert rows["status"] == ["completed", "completed", "failed"]
    assert rows["epochs"] == ["3/3", "3/3", "0/3"]
    assert rows["test_accuracy"] == [f"{s1['test_accuracy']:.4f}",
                                     f"{s2['test_accuracy']:.4f}", "-"]
    assert rows["weights from epoch"] == [str(s1["weights_epoch"]), str(s2["weights_epoch"]),
                                          "-"]
    differing = {k[len("config "):]: v for k, v in rows.items() if k.startswith("config ")}
    assert differing == {  # adam's own keys, which sgd lacks, and sgd's: "-"
        "seed": ["0", "1", "0"],
        "model.layers.0.dense.activation": ["tanh", "tanh", "relu"],
        "optimizer.name": ["adam", "adam", "sgd"],
        "optimizer.lr": ["0.05", "0.2", "1e+30"],
        "optimizer.beta1": ["0.9", "0.9", "-"], "optimizer.beta2": ["0.999", "0.999", "-"],
        "optimizer.eps": ["1e-08", "1e-08", "-"],
        "optimizer.momentum": ["-", "-", "0.0"], "optimizer.nesterov": ["-", "-", "false"]}


def test_mistakes_are_one_line(cli, runs):
    result = cli("runs", "nowhere")
    assert result.exit_code == 2
    assert result.stderr == ("error: nowhere: no such folder (nnctl train writes its runs to "
                             "runs/, or to --out FOLDER)\n")
    result = cli("runs", runs["first"], "mlp.yaml")
    assert result.exit_code == 2
    assert result.stderr == "error: mlp.yaml: not a run folder (it has no config.yaml)\n"
    result = cli("runs", runs["first"], "runs/other-latest")
    assert result.exit_code == 2
    assert result.stderr == ("error: runs/other-latest: no run folder in runs/ (looked for "
                             "other-YYYYMMDD-HHMMSS, as nnctl train names them)\n")


def test_on_a_terminal_it_is_a_rich_table(runs):
    infos = [read_run(runs["first"]), read_run(runs["second"])]
    buffer = io.StringIO()
    show(Console(file=buffer, force_terminal=True, width=200, color_system=None),
         comparison(infos), "runs compared")
    text = buffer.getvalue()
    assert "runs compared" in text and "┃" in text  # a boxed table with a title
    row = next(line for line in text.splitlines() if "config optimizer.lr" in line)
    assert [c.strip() for c in row.strip("│ ").split("│")] == ["config optimizer.lr", "0.05",
                                                               "0.2"]


def test_flatten_and_differences():
    assert flatten({"a": {"b": [1, {"c": 2}], "e": {}}, "d": None}) == \
        {"a.b.0": 1, "a.b.1.c": 2, "a.e": {}, "d": None}
    one, two = read_like({"x": 1, "y": [1, 2]}), read_like({"x": 1, "y": [1, 3], "z": 0})
    keys = [k for k, _ in config_differences([one, two])]
    assert keys == ["y.1", "z"]


def read_like(config: dict):
    from nnctl.train.run_info import RunInfo
    return RunInfo(path=Path("r"), config_name="r", status="completed", epochs_done=0,
                   epochs=None, monitor=None, best=None, best_epoch=None, weights_epoch=None,
                   config=config)


def test_a_resume_that_died_is_interrupted_though_an_old_summary_says_completed(runs):
    first = runs["first"]
    assert read_run(first).status == "completed"
    log = first / "metrics.jsonl"
    last = json.loads(log.read_text().splitlines()[-1])
    with open(log, "a") as f:  # --resume --epochs 4 logged epoch 4, then was killed (-9)
        f.write(json.dumps(dict(last, epoch=4)) + "\n")
    info = read_run(first)
    assert info.status == "interrupted" and info.epochs_done == 4
