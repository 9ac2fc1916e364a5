"""Fault injection on the file system: a full disk, a read-only mount, an output path that is a
file, a data path too long for the OS, a torn metrics log. Each ends in one `error:` line naming
the path and the cause, with the right exit code, and never loses the last good checkpoint."""

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.train import checkpoint as ckpt
from nnctl.train import run_dir as run_dir_module

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MLP = CONFIGS / "digits_mlp.yaml"
SPIRALS = CONFIGS / "spirals.yaml"


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def only(folder: Path) -> Path:
    (run,) = list(folder.iterdir())
    return run


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def assert_one_error_line(result, *fragments):
    assert "Traceback" not in result.stderr + result.stdout
    (line,) = error_lines(result)
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def fail_writes(monkeypatch, errnum, *, name=None, after=0, half=True):
    """Make atomic_write of files called `name` (all files when None) fail with `errnum`
    after `after` successful writes; `half`: the failing write gets half its bytes out first,
    as a disk that fills mid-write does."""
    real = run_dir_module.atomic_write
    seen = {"n": 0}

    def faulty(path, write):
        if name is not None and Path(path).name != name:
            return real(path, write)
        seen["n"] += 1
        if seen["n"] <= after:
            return real(path, write)

        def torn(f):
            if half:
                import io
                buffer = io.BytesIO()
                write(buffer)
                f.write(buffer.getvalue()[:len(buffer.getvalue()) // 2])
            raise OSError(errnum, os.strerror(errnum))
        return real(path, torn)
    import sys
    for module in list(sys.modules.values()):  # every module that bound the name on import
        if getattr(module, "atomic_write", None) is real:
            monkeypatch.setattr(module, "atomic_write", faulty)
    import nnctl.train.inference  # noqa: F401  (imported later, it would bind the real one)
    monkeypatch.setattr("nnctl.train.inference.atomic_write", faulty)
    return seen


# ---- a full disk while checkpointing ------------------------------------------------------------
def test_full_disk_during_a_checkpoint_keeps_the_previous_one_and_says_how_to_resume(
        tmp_path, monkeypatch):
    assert cli("train", MLP, "--epochs", "3", "--out", tmp_path / "straight").exit_code == 0
    straight = only(tmp_path / "straight")
    fail_writes(monkeypatch, errno.ENOSPC, name="checkpoint.npz", after=1)
    result = cli("train", MLP, "--epochs", "3", "--out", tmp_path / "full")
    assert result.exit_code == 1, result.stderr
    run = only(tmp_path / "full")
    line = assert_one_error_line(result, str(run / "checkpoint.npz"), "No space left on device",
                                 f"--resume {run}")
    assert "end of epoch 1" in line
    _, meta = ckpt.load_checkpoint(run / "checkpoint.npz")  # the previous one, intact
    assert (meta["epoch"], meta["step_in_epoch"]) == (2, 0)
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "No space left on device" in summary["error"]
    monkeypatch.undo()
    result = cli("train", MLP, "--epochs", "3", "--resume", run)
    assert result.exit_code == 0, result.stderr
    assert (run / "metrics.jsonl").read_bytes() == (straight / "metrics.jsonl").read_bytes()
    a, b = np.load(run / "weights.npz"), np.load(straight / "weights.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a.files)


def test_full_disk_on_the_metrics_log_is_one_line_and_resumable(tmp_path, monkeypatch):
    real_open, appends = open, []

    def full_open(file, mode="r", *args, **kwargs):
        if str(file).endswith("metrics.jsonl") and "a" in mode:
            appends.append(file)
            if len(appends) == 2:  # epoch 2's record: epoch 1 is checkpointed
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real_open(file, mode, *args, **kwargs)
    monkeypatch.setattr("builtins.open", full_open)
    result = cli("train", SPIRALS, "--epochs", "2", "--out", tmp_path)
    monkeypatch.undo()
    assert result.exit_code == 1
    run = only(tmp_path)
    assert_one_error_line(result, "metrics.jsonl", "No space left on device", "end of epoch 1",
                          f"--resume {run}")
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    result = cli("train", SPIRALS, "--epochs", "2", "--resume", run)
    assert result.exit_code == 0, result.stderr
    assert [json.loads(r)["epoch"] for r in (run / "metrics.jsonl").read_text().splitlines()] \
        == [1, 2]


# ---- the output folder: checked before training ------------------------------------------------
def test_out_is_an_existing_file(tmp_path):
    target = tmp_path / "afile"
    target.write_text("keep me")
    for out in (target, target / "sub"):
        result = cli("train", SPIRALS, "--epochs", "1", "--out", out)
        assert result.exit_code == 2, result.stderr
        assert_one_error_line(result, f"--out {out}", "not a folder" if out == target
                              else "Not a directory")
        assert "epoch" not in result.stderr  # nothing trained
    assert target.read_text() == "keep me"


def test_out_on_a_read_only_mount_fails_before_training(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), kwargs.get("dir"))
    monkeypatch.setattr(run_dir_module.tempfile, "mkstemp", read_only)
    result = cli("train", SPIRALS, "--epochs", "1", "--out", tmp_path)
    assert result.exit_code == 2
    assert_one_error_line(result, f"--out {tmp_path}", "Read-only file system")
    assert "epoch" not in result.stderr and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes through chmod 0o555")
def test_out_in_a_folder_without_write_permission(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        result = cli("train", SPIRALS, "--epochs", "1", "--out", locked)
        assert result.exit_code == 2
        assert_one_error_line(result, f"--out {locked}", "Permission denied")
    finally:
        locked.chmod(0o755)


def test_resume_into_a_read_only_run_folder_fails_before_training(tmp_path, monkeypatch):
    assert cli("train", SPIRALS, "--epochs", "1", "--out", tmp_path).exit_code == 0
    run = only(tmp_path)
    before = (run / "checkpoint.npz").read_bytes()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), kwargs.get("dir"))
    monkeypatch.setattr(run_dir_module.tempfile, "mkstemp", read_only)
    result = cli("train", SPIRALS, "--epochs", "2", "--resume", run)
    assert result.exit_code == 2
    assert_one_error_line(result, f"--resume {run}", "Read-only file system")
    assert (run / "checkpoint.npz").read_bytes() == before


# ---- other commands' outputs -------------------------------------------------------------------
@pytest.fixture
def spirals_run(tmp_path):
    assert cli("train", SPIRALS, "--epochs", "1", "--out", tmp_path / "runs").exit_code == 0
    return only(tmp_path / "runs")


def test_predict_output_on_a_read_only_mount(tmp_path, spirals_run, monkeypatch):
    np.savez(tmp_path / "x.npz", x=np.zeros((3, 2), np.float32))
    fail_writes(monkeypatch, errno.EROFS, half=False)
    out = tmp_path / "p.csv"
    result = cli("predict", spirals_run, tmp_path / "x.npz", "-o", out)
    assert result.exit_code == 2
    assert_one_error_line(result, str(out), "Read-only file system")
    assert not out.exists()


def test_predict_output_in_a_missing_folder_on_a_read_only_mount(tmp_path, spirals_run,
                                                                 monkeypatch):
    np.savez(tmp_path / "x.npz", x=np.zeros((3, 2), np.float32))
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if self.name == "sub":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)
    monkeypatch.setattr(Path, "mkdir", read_only)
    result = cli("predict", spirals_run, tmp_path / "x.npz", "-o", tmp_path / "sub" / "p.csv")
    assert result.exit_code == 2
    assert_one_error_line(result, str(tmp_path / "sub"), "Read-only file system")


def test_export_graph_output_on_a_read_only_mount(tmp_path, monkeypatch):
    fail_writes(monkeypatch, errno.EROFS, half=False)
    out = tmp_path / "g.dot"
    result = cli("export-graph", SPIRALS, "-o", out)
    assert result.exit_code == 2
    assert_one_error_line(result, str(out), "Read-only file system")
    assert not out.exists()


def test_export_graph_output_on_a_full_disk_exits_1(tmp_path, monkeypatch):
    fail_writes(monkeypatch, errno.ENOSPC)
    result = cli("export-graph", SPIRALS, "-o", tmp_path / "g.json", "--format", "json")
    assert result.exit_code == 1
    assert_one_error_line(result, str(tmp_path / "g.json"), "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_a_datasets_folder_name_too_long_for_the_os(tmp_path, monkeypatch):
    monkeypatch.setenv("NNCTL_DATASETS", "x" * 5000)
    result = cli("train", MLP, "--epochs", "1", "--out", tmp_path)
    assert result.exit_code == 2
    line = assert_one_error_line(result, "File name too long", "xxxx")
    assert len(line) < 300  # the path is named, shortened, not echoed 5,000 characters long


# ---- a torn metrics log ------------------------------------------------------------------------
@pytest.mark.parametrize("tail", [b'{"epoch": 3, "train_lo', b'\xff\xfe{"epoch": 3}\n',
                                  b'{"epoch": 3, "train_loss": 0.5}{"epo'])
def test_resume_recovers_a_torn_metrics_log(tmp_path, tail):
    assert cli("train", SPIRALS, "--epochs", "3", "--out", tmp_path / "straight").exit_code == 0
    straight = only(tmp_path / "straight")
    assert cli("train", SPIRALS, "--epochs", "2", "--out", tmp_path / "torn").exit_code == 0
    run = only(tmp_path / "torn")
    with open(run / "metrics.jsonl", "ab") as f:  # a crash or a full disk mid-line
        f.write(tail)
    result = cli("train", SPIRALS, "--epochs", "3", "--resume", run)
    assert result.exit_code == 0, result.stderr
    (warning,) = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert f"{run / 'metrics.jsonl'}:3" in warning and "kept the 2 complete records" in warning
    assert (run / "metrics.jsonl").read_bytes() == (straight / "metrics.jsonl").read_bytes()
    assert (run / "metrics.csv").read_bytes() == (straight / "metrics.csv").read_bytes()


def test_reading_a_torn_log_keeps_the_complete_records(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_bytes(b'{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3, "lo')
    run = run_dir_module.RunDir(tmp_path)
    assert run.read_metrics() == [{"epoch": 1}, {"epoch": 2}]
    assert "metrics.jsonl:3" in run.metrics_warning
    clean = run_dir_module.RunDir(tmp_path)
    log.write_bytes(b'{"epoch": 1}\n{"epoch": 2}')  # a last record without its newline is whole
    assert clean.read_metrics() == [{"epoch": 1}, {"epoch": 2}] and not clean.metrics_warning


def test_a_full_disk_when_checkpointing_an_interrupt_still_writes_the_summary(tmp_path,
                                                                             monkeypatch):
    from nnctl.backend import get_backend
    from nnctl.config import load_config
    from nnctl.train import Trainer
    from nnctl.train.events import TrainerEvents
    from nnctl.train.run_dir import WriteError

    trainer = Trainer(load_config(SPIRALS), get_backend("cpu"), out=tmp_path, epochs=3)

    class CtrlCInEpoch2(TrainerEvents):
        def on_step(self, epoch, step, *rest):
            if (epoch, step) == (2, 3):
                trainer._stop_requested = True  # what the first Ctrl-C does
    trainer.events = CtrlCInEpoch2()
    fail_writes(monkeypatch, errno.ENOSPC, name="checkpoint.npz", after=1)
    with pytest.raises(WriteError) as caught:
        trainer.fit()
    assert caught.value.exit_code == 1
    run = only(tmp_path)
    assert "No space left on device" in str(caught.value)
    assert "is from the end of epoch 1; fix the cause and resume with: " in str(caught.value)
    _, meta = ckpt.load_checkpoint(run / "checkpoint.npz")
    assert (meta["epoch"], meta["step_in_epoch"]) == (2, 0)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "No space left" in summary["error"]


def test_divergence_on_a_full_disk_keeps_its_diagnosis_and_exit_3(tmp_path, monkeypatch):
    import yaml
    config = tmp_path / "diverge.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"dataset": "spirals", "samples": 200},
        "model": {"layers": [{"dense": {"units": 16, "activation": "relu"}},
                             {"dense": {"units": 2}}]},
        "loss": "cross_entropy", "optimizer": {"name": "sgd", "lr": 1e30},
        "train": {"epochs": 3}}))
    fail_writes(monkeypatch, errno.ENOSPC, name="checkpoint.npz")
    result = cli("train", config, "--out", tmp_path / "runs")
    assert result.exit_code == 3
    line = assert_one_error_line(result, "the loss became nan at epoch 1, step 2",
                                 "checkpoint.npz: No space left on device",
                                 "no checkpoint was written yet")
    assert "the last good state is in" not in line
    summary = json.loads((only(tmp_path / "runs") / "summary.json").read_text())
    assert summary["status"] == "failed"


@pytest.fixture
def small_disk(tmp_path):
    """A real 480 KiB tmpfs (root and a mount(8) that may mount are needed, else skip): room
    for the digits MLP's first checkpoint, not for the second beside it."""
    import shutil
    import subprocess
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=480k", "tmpfs", str(mount)],
            capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True, check=False)


def test_a_real_full_disk_then_more_space_then_resume(tmp_path, small_disk):
    import subprocess
    assert cli("train", MLP, "--epochs", "3", "--out", tmp_path / "straight").exit_code == 0
    result = cli("train", MLP, "--epochs", "3", "--out", small_disk / "runs")
    assert result.exit_code == 1, result.stderr
    run = only(small_disk / "runs")
    assert_one_error_line(result, f"cannot write {run / 'checkpoint.npz'}: No space left",
                          "is from the end of epoch 1", f"--resume {run}")
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    subprocess.run(["mount", "-o", "remount,size=20m", str(small_disk)], check=True)
    result = cli("train", MLP, "--epochs", "3", "--resume", run)
    assert result.exit_code == 0, result.stderr
    straight = only(tmp_path / "straight")
    for name in ("metrics.jsonl", "metrics.csv", "checkpoint.npz"):
        assert (run / name).read_bytes() == (straight / name).read_bytes(), name


def test_records_after_an_unreadable_line_are_not_trusted(tmp_path):
    (tmp_path / "metrics.jsonl").write_bytes(b'{"epoch": 1}\n{"epo\n{"epoch": 3}\n[]\n')
    run = run_dir_module.RunDir(tmp_path)
    assert run.read_metrics() == [{"epoch": 1}]
    assert "metrics.jsonl:2:" in run.metrics_warning and "dropped 3 lines" in run.metrics_warning
