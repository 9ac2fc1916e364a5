"""runs/<config>-latest, runs/latest and a bare latest name the newest run folder for every
command that takes one; `nnctl train --resume RUN_DIR` needs no config."""

import json
import os
from pathlib import Path

import pytest
from conftest import tiny_config

from nnctl.errors import UsageError
from nnctl.train.run_dir import resolve_run_dir, run_folders

TINY = tiny_config(epochs=2)


def folders(parent: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        (parent / name).mkdir(parents=True)
        out.append(parent / name)
    return out


def test_the_newest_is_by_the_time_in_the_name_not_the_file_times(tmp_path):
    old, new, same_second = folders(tmp_path / "runs", "mlp-20260101-120000",
                                    "mlp-20260301-090000", "mlp-20260301-090000-1")
    os.utime(old, (2e9, 2e9))  # touched last (a copy, a resume): still the oldest
    assert run_folders(tmp_path / "runs") == [old, new, same_second]
    assert resolve_run_dir(tmp_path / "runs" / "mlp-latest") == same_second
    assert resolve_run_dir(tmp_path / "runs" / "latest") == same_second


def test_config_latest_picks_that_config_only(tmp_path):
    runs = tmp_path / "runs"
    mlp, = folders(runs, "my-mlp-20260101-120000")
    other, = folders(runs, "my-mlp-wide-20260201-120000")  # newer, another config
    folders(runs, "notes", "my-mlp-latest-notes")  # not run folders: ignored
    (runs / "my-mlp-20260501-000000").write_text("a file, not a folder")
    assert resolve_run_dir(runs / "my-mlp-latest") == mlp
    assert resolve_run_dir(runs / "my-mlp-wide-latest") == other
    assert resolve_run_dir(runs / "latest") == other


def test_a_bare_latest_looks_in_runs_and_real_folders_win(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    newest = folders(Path("runs"), "a-20260101-000000", "b-20260102-000000")[-1]
    assert resolve_run_dir(Path("latest")) == newest
    assert resolve_run_dir(Path("a-latest")) == Path("runs/a-20260101-000000")
    Path("latest").mkdir()  # a folder really named so is taken as it is
    assert resolve_run_dir(Path("latest")) == Path("latest")
    assert resolve_run_dir(Path("runs/x-20260101-000000")) == Path("runs/x-20260101-000000")


def test_no_such_run_is_one_line_naming_what_was_looked_for(tmp_path):
    folders(tmp_path / "runs", "a-20260101-000000")
    with pytest.raises(UsageError) as err:
        resolve_run_dir(tmp_path / "runs" / "b-latest")
    assert str(err.value) == (f"{tmp_path}/runs/b-latest: no run folder in {tmp_path}/runs/ "
                              "(looked for b-YYYYMMDD-HHMMSS, as nnctl train names them)")
    with pytest.raises(UsageError, match=r"no folder .*/nowhere \(looked for <config>-"):
        resolve_run_dir(tmp_path / "nowhere" / "latest")


# one call per command that takes a run folder: each must resolve the name first
COMMANDS = [("evaluate", "{run}"), ("predict", "{run}", "x.csv", "-o", "out.csv"),
            ("sample", "{run}"), ("translate", "{run}", "hello"), ("plot", "{run}"),
            ("train", "--resume", "{run}"), ("runs", "{run}")]


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_command_resolves_latest(cli, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    Path("runs").mkdir()
    result = cli(*[a.format(run="runs/spirals-latest") for a in command])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        "error: runs/spirals-latest: no run folder in runs/ (looked for "
        "spirals-YYYYMMDD-HHMMSS, as nnctl train names them)")


@pytest.fixture
def two_runs(cli, tmp_path, monkeypatch):
    """Runs of two configs in ./runs, spirals_b newer."""
    monkeypatch.chdir(tmp_path)
    for name in ("spirals_a", "spirals_b"):
        Path(f"{name}.yaml").write_text(TINY)
        result = cli("train", f"{name}.yaml")
        assert result.exit_code == 0, result.output
    a, b = run_folders(Path("runs"))
    assert a.name.startswith("spirals_a-") and b.name.startswith("spirals_b-")
    return a, b


def test_resume_latest_without_the_config(cli, two_runs):
    a, b = two_runs
    result = cli("train", "--resume", "runs/spirals_a-latest", "--epochs", "4")
    assert result.exit_code == 0, result.output
    assert f"run folder: {a}" in result.stdout
    summary = json.loads((a / "summary.json").read_text())
    assert summary["epochs_completed"] == 4 and summary["config"] == "spirals_a"
    records = (a / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in records] == [1, 2, 3, 4]
    # the same four epochs as a run trained straight through (bit for bit)
    straight = cli("train", "spirals_a.yaml", "--epochs", "4", "--out", "straight")
    assert straight.exit_code == 0, straight.output
    (c,) = run_folders(Path("straight"))
    assert (c / "metrics.jsonl").read_bytes() == (a / "metrics.jsonl").read_bytes()
    assert (b / "summary.json").exists() and \
        json.loads((b / "summary.json").read_text())["epochs_completed"] == 2  # untouched
    # the config argument still works beside --resume
    again = cli("train", "spirals_a.yaml", "--resume", "latest", "--epochs", "3")
    assert again.exit_code == 0, again.output
    assert json.loads((b / "summary.json").read_text())["epochs_completed"] == 3


def test_resume_of_a_folder_without_its_config_says_what_to_do(cli, tmp_path):
    run = tmp_path / "runs" / "x-20260101-000000"
    run.mkdir(parents=True)
    result = cli("train", "--resume", run)
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: --resume {run}: it has no config.yaml; give the "
                                     f"run's config too: nnctl train CONFIG --resume {run}")
    result = cli("train")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: missing CONFIG: nnctl train CONFIG, or nnctl "
                                     "train --resume RUN_DIR to continue a run")


def test_evaluate_and_predict_on_latest(cli, two_runs, tmp_path):
    a, b = two_runs
    result = cli("evaluate", "latest", "--split", "val")
    assert result.exit_code == 0, result.output
    assert b.name in result.stdout and a.name not in result.stdout
    val_loss = json.loads((b / "metrics.jsonl").read_text().splitlines()[-1])["val_loss"]
    assert f"{val_loss:.4f}" in result.stdout  # weights.npz: the best epoch's, here the last
    Path("x.csv").write_text("0.5,0.5\n-1.0,0.25\n")
    predicted = cli("predict", "runs/spirals_a-latest", "x.csv", "-o", "p.csv")
    assert predicted.exit_code == 0, predicted.output
    assert len(Path("p.csv").read_text().splitlines()) == 3  # a header and two rows
