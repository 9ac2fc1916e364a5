"""`--threads` and `train.threads` through the CLI: the count BLAS really runs with inside a
command (threadpoolctl), the precedence (option over config over the default of 1), the
resolved config, and bad values as one error line with exit code 2. No timing."""

import json
import re
import textwrap

import numpy as np
import pytest
import yaml

from conftest import CONFIGS

threadpoolctl = pytest.importorskip("threadpoolctl")

from nnctl import threads  # noqa: E402
from nnctl.cli import progress  # noqa: E402
from nnctl.train import inference  # noqa: E402

CONFIG = textwrap.dedent("""\
    seed: 0
    data: {dataset: spirals, samples: 200}
    model:
      layers:
        - dense: {units: 16, activation: tanh}
        - dense: {units: 2}
    loss: cross_entropy
    optimizer: {name: adam, lr: 0.01}
    train:
      epochs: 1
      batch_size: 32
    """)


def blas_counts():
    return sorted({p["num_threads"] for p in threadpoolctl.threadpool_info()
                   if p["user_api"] == "blas"})


@pytest.fixture
def seen(monkeypatch):
    """BLAS thread counts observed inside the run: when training starts, and inside
    evaluate_run / predict_run."""
    counts = []
    start = progress.PlainReporter.on_train_start

    def on_train_start(self, info):
        counts.append(("train", blas_counts()))
        return start(self, info)
    monkeypatch.setattr(progress.PlainReporter, "on_train_start", on_train_start)
    for name in ("evaluate_run", "predict_run"):
        real = getattr(inference, name)

        def wrapped(*args, _real=real, _name=name, **kwargs):
            counts.append((_name, blas_counts()))
            return _real(*args, **kwargs)
        monkeypatch.setattr(inference, name, wrapped)
    return counts


def write_config(tmp_path, extra=""):
    path = tmp_path / "run.yaml"
    path.write_text(CONFIG + extra)
    return path


def train(cli, config, out, *args):
    return cli("train", config, "--out", out, "--no-progress", *args)


def device_line(result):
    return next(line for line in result.stderr.splitlines() if line.startswith("device "))


@pytest.mark.parametrize("n", [1, 2])
def test_train_runs_with_the_threads_asked_for(cli, tmp_path, seen, n):
    before = blas_counts()
    result = train(cli, write_config(tmp_path), tmp_path / "runs", "--threads", n)
    assert result.exit_code == 0, result.stderr
    assert seen == [("train", [n])]
    assert f"device cpu, {n} thread{'s' if n > 1 else ''} (--threads)," in device_line(result)
    (folder,) = (tmp_path / "runs").iterdir()
    assert yaml.safe_load((folder / "config.yaml").read_text())["train"]["threads"] == n
    assert blas_counts() == before  # an in-process command leaves the limits as they were


def test_the_default_is_one_thread(cli, tmp_path, seen):
    result = train(cli, write_config(tmp_path), tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    assert seen == [("train", [1])]
    assert "device cpu, 1 thread (default)," in device_line(result)


def test_the_config_key_sets_it_and_the_option_wins(cli, tmp_path, seen):
    config = write_config(tmp_path, "  threads: 2\n")
    result = train(cli, config, tmp_path / "a")
    assert result.exit_code == 0, result.stderr
    assert "2 threads (train.threads)" in device_line(result)
    result = train(cli, config, tmp_path / "b", "--threads", "1")
    assert result.exit_code == 0, result.stderr
    assert "1 thread (--threads)" in device_line(result)
    result = train(cli, write_config(tmp_path), tmp_path / "c", "--set", "train.threads=2")
    assert result.exit_code == 0, result.stderr
    assert seen == [("train", [2]), ("train", [1]), ("train", [2])]


def test_auto_picks_a_count_between_one_and_the_usable_cores_and_records_it(cli, tmp_path,
                                                                            seen):
    result = train(cli, write_config(tmp_path), tmp_path / "runs", "--threads", "auto")
    assert result.exit_code == 0, result.stderr
    n = int(re.search(r"device cpu, (\d+) threads? \(auto\),", device_line(result)).group(1))
    assert 1 <= n <= threads.usable_cores()
    assert seen == [("train", [n])]
    (folder,) = (tmp_path / "runs").iterdir()
    assert yaml.safe_load((folder / "config.yaml").read_text())["train"]["threads"] == n


def test_evaluate_and_predict_take_threads(cli, tmp_path, seen):
    result = train(cli, write_config(tmp_path), tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    result = cli("evaluate", run, "--threads", "2")
    assert result.exit_code == 0, result.stderr
    np.savez(tmp_path / "x.npz", x=np.zeros((3, 2), np.float32))
    result = cli("predict", run, tmp_path / "x.npz", "-o", tmp_path / "p.csv", "--threads", "2")
    assert result.exit_code == 0, result.stderr
    assert seen == [("train", [1]), ("evaluate_run", [2]), ("predict_run", [2])]
    result = cli("evaluate", run)
    assert result.exit_code == 0, result.stderr
    assert seen[-1] == ("evaluate_run", [1])


def test_resume_may_change_the_thread_count(cli, tmp_path):
    config, out = write_config(tmp_path), tmp_path / "runs"
    result = train(cli, config, out, "--threads", "1")
    assert result.exit_code == 0, result.stderr
    (run,) = out.iterdir()
    result = train(cli, config, out, "--resume", run, "--epochs", "2", "--threads", "2")
    assert result.exit_code == 0, result.stderr
    records = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in records] == [1, 2]


BAD = ["0", "-1", "x", "1.5", "1025"]


def error_lines(result):
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("value", BAD)
def test_a_bad_value_is_one_error_line_and_exit_2(cli, tmp_path, value):
    result = train(cli, write_config(tmp_path), tmp_path / "runs", f"--threads={value}")
    assert result.exit_code == 2
    assert error_lines(result) == [f"error: --threads: expected a positive integer (at most "
                                   f"1024) or 'auto', got '{value}'"]
    assert not (tmp_path / "runs").exists()


def test_a_negative_value_after_a_space_is_the_same_error(cli, tmp_path):
    result = train(cli, write_config(tmp_path), tmp_path / "runs", "--threads", "-1")
    assert result.exit_code == 2
    assert len(error_lines(result)) == 1 and "--threads" in result.stderr


@pytest.mark.parametrize("args", [
    ["evaluate", "RUN"], ["predict", "RUN", "x.npz", "-o", "p.csv"], ["sample", "RUN"],
    ["gradcheck", "--op", "matmul"], ["gradcheck", CONFIGS / "spirals.yaml"]])
@pytest.mark.parametrize("value", ["0", "x"])
def test_every_command_with_threads_refuses_a_bad_value(cli, tmp_path, args, value):
    args = [str(a).replace("RUN", str(tmp_path / "run")) for a in args]
    result = cli(*args, "--threads", value)
    assert result.exit_code == 2
    assert error_lines(result) == [f"error: --threads: expected a positive integer (at most "
                                   f"1024) or 'auto', got '{value}'"]


@pytest.mark.parametrize("value, shown", [("x", "'x'"), ("0", "0"), ("-2", "-2"), ("2.5", "2.5"),
                                          ("true", "true"), ("[2]", "a list"), ("2048", "2048")])
@pytest.mark.parametrize("command", ["validate", "train"])
def test_train_threads_in_a_config_is_validated_with_file_line_and_key(cli, tmp_path, value,
                                                                       shown, command):
    config = write_config(tmp_path, f"  threads: {value}\n")
    args = [command, config] + (["--out", tmp_path / "runs"] if command == "train" else [])
    result = cli(*args)
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert line.startswith(f"error: {config}:12: train.threads: expected a positive integer "
                           f"(at most 1024) or 'auto', got ")
    assert shown in line


def test_gradcheck_runs_with_the_threads_asked_for(cli, monkeypatch):
    from nnctl import gradcheck
    counts = []
    real = gradcheck.check_ops

    def check_ops(*args, **kwargs):
        counts.append(blas_counts())
        return real(*args, **kwargs)
    monkeypatch.setattr(gradcheck, "check_ops", check_ops)
    result = cli("gradcheck", "--op", "matmul", "--first-order", "--threads", "2")
    assert result.exit_code == 0, result.stderr
    assert counts == [[2]]


def test_help_lists_the_option():
    from typer.testing import CliRunner

    from nnctl.cli.app import app
    for command in ("train", "evaluate", "predict", "sample", "gradcheck"):
        result = CliRunner().invoke(app, [command, "--help"])
        assert "--threads" in result.stdout, command
