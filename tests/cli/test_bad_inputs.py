"""Bad data files and hostile or broken config files, through `nnctl train` and `nnctl validate`.

Each must end as exactly one line "error: ..." on stderr with exit code 2 (never a traceback),
and must write nothing: no run folder, the config and the data file byte-for-byte unchanged.
"""

from __future__ import annotations

import hashlib
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

COMMANDS = ["train", "validate"]

CONFIG = textwrap.dedent("""\
    seed: 0
    data:
    {data}
    model:
      layers:
    {layers}
    loss: cross_entropy
    optimizer: {{name: adam, lr: 0.01}}
    train:
      epochs: 1
      batch_size: 16
    """)
MLP = ["- dense: {units: 8, activation: tanh}", "- dense: {units: classes}"]


def make_config(tmp_path: Path, data: dict | str, layers=MLP, name="run.yaml") -> Path:
    if isinstance(data, dict):
        data = "\n".join(f"{k}: {v}" for k, v in data.items())
    text = CONFIG.format(data=textwrap.indent(data, "  "),
                         layers=textwrap.indent("\n".join(layers), "    "))
    path = tmp_path / name
    path.write_text(text)
    return path


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def run_and_check(cli, tmp_path: Path, command: str, config: Path, *fragments: str,
                  watch=()):
    """Run `command` on `config`; assert one error line naming fragments, exit 2, nothing
    written (no run folder, config and watched files unchanged). Returns the error line."""
    runs = tmp_path / "runs"
    watched = [config, *watch]
    before = {p: digest(p) for p in watched}
    args = [command, config]
    if command == "train":
        args += ["--out", runs, "--no-progress"]
    result = cli(*args)
    exc = result.exception
    assert exc is None or isinstance(exc, SystemExit), repr(exc)
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not runs.exists(), f"a failed {command} left {sorted(runs.rglob('*'))}"
    assert {p: digest(p) for p in watched} == before, "an input file was changed"
    return lines[0]


# ---- data files ---------------------------------------------------------------------------

def good_arrays(n=60, features=4, classes=3):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, features)).astype(np.float32), np.arange(n) % classes


def npz_config(tmp_path, file="data.npz", layers=MLP):
    return make_config(tmp_path, {"dataset": "npz", "path": file}, layers)


def csv_config(tmp_path, file="data.csv"):
    return make_config(tmp_path, {"dataset": "csv", "path": file})


def write_npz(path: Path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("command", COMMANDS)
def test_good_npz_and_csv_pass(cli, tmp_path, command):
    """The baseline the bad cases are cut from is fine."""
    x, y = good_arrays()
    write_npz(tmp_path / "data.npz", x=x, y=y)
    np.savetxt(tmp_path / "data.csv", np.column_stack([x, y]), delimiter=",",
               fmt=["%.6f"] * x.shape[1] + ["%d"])
    for config in (npz_config(tmp_path), csv_config(tmp_path, "data.csv")):
        args = [command, config] + (["--out", tmp_path / "runs", "--no-progress"]
                                    if command == "train" else [])
        result = cli(*args)
        assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_npz_missing(cli, tmp_path, command):
    run_and_check(cli, tmp_path, command, npz_config(tmp_path, "nowhere.npz"),
                  "data.path", "no such data file: nowhere.npz")


@pytest.mark.parametrize("command", COMMANDS)
def test_npz_not_a_zip(cli, tmp_path, command):
    data = tmp_path / "data.npz"
    data.write_text("x,y\n1,2\n")
    run_and_check(cli, tmp_path, command, npz_config(tmp_path), "data.npz", "not an .npz",
                  watch=[data])


@pytest.mark.parametrize("command", COMMANDS)
def test_npz_truncated(cli, tmp_path, command):
    x, y = good_arrays()
    write_npz(tmp_path / "full.npz", x=x, y=y)
    raw = (tmp_path / "full.npz").read_bytes()
    data = tmp_path / "data.npz"
    data.write_bytes(raw[:len(raw) // 2])
    run_and_check(cli, tmp_path, command, npz_config(tmp_path), "data.npz",
                  "corrupt or truncated", watch=[data])


@pytest.mark.parametrize("command", COMMANDS)
def test_npz_object_array_is_not_unpickled(cli, tmp_path, command):
    data = tmp_path / "data.npz"
    x = np.empty((3, 1), dtype=object)
    x[:, 0] = [1.0, "two", {"three": 3}]
    with open(data, "wb") as f:
        np.savez(f, x=x, y=np.arange(3), allow_pickle=True)  # the writer pickles it
    run_and_check(cli, tmp_path, command, npz_config(tmp_path), "array 'x'", "dtype=object",
                  watch=[data])


@pytest.mark.parametrize("command", COMMANDS)
def test_npz_missing_key(cli, tmp_path, command):
    x, y = good_arrays()
    data = tmp_path / "data.npz"
    write_npz(data, features=x, y=y)
    run_and_check(cli, tmp_path, command, npz_config(tmp_path), "no array named 'x'",
                  "'features'", watch=[data])


@pytest.mark.parametrize("command", COMMANDS)
def test_npz_lengths_differ(cli, tmp_path, command):
    x, y = good_arrays()
    data = tmp_path / "data.npz"
    write_npz(data, x=x, y=y[:-7])
    run_and_check(cli, tmp_path, command, npz_config(tmp_path), "'x' has 60 samples",
                  "'y' has 53", watch=[data])


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_npz_non_finite_features(cli, tmp_path, command, bad):
    x, y = good_arrays()
    x[5, 2] = bad
    data = tmp_path / "data.npz"
    write_npz(data, x=x, y=y)
    run_and_check(cli, tmp_path, command, npz_config(tmp_path), "NaN or Inf",
                  "first at index 5", watch=[data])


@pytest.mark.parametrize("command", COMMANDS)
def test_csv_ragged(cli, tmp_path, command):
    data = tmp_path / "data.csv"
    data.write_text("1,2,0\n3,4,1\n5,1\n6,7,0\n")
    run_and_check(cli, tmp_path, command, csv_config(tmp_path), "line 3", "has 2 columns",
                  watch=[data])


@pytest.mark.parametrize("command", COMMANDS)
def test_csv_non_numeric_cell(cli, tmp_path, command):
    data = tmp_path / "data.csv"
    data.write_text("1,2,0\n3,abc,1\n5,1,0\n")
    run_and_check(cli, tmp_path, command, csv_config(tmp_path), "line 2", "'abc'",
                  watch=[data])


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("content", ["", "\n\n  \n"], ids=["empty", "blank-lines"])
def test_csv_empty(cli, tmp_path, command, content):
    data = tmp_path / "data.csv"
    data.write_text(content)
    run_and_check(cli, tmp_path, command, csv_config(tmp_path), "empty file", watch=[data])


@pytest.mark.parametrize("command", COMMANDS)
def test_features_do_not_fit_reshape(cli, tmp_path, command):
    x, y = good_arrays(features=10)
    data = tmp_path / "data.npz"
    write_npz(data, x=x, y=y)
    config = npz_config(tmp_path, layers=["- reshape: [1, 3, 3]", "- flatten: {}",
                                          "- dense: {units: classes}"])
    run_and_check(cli, tmp_path, command, config, "run.yaml:7:", "model.layers[0].reshape",
                  "[10] (10 values)", "[1, 3, 3] (9 values)", watch=[data])


@pytest.mark.parametrize("command", COMMANDS)
def test_more_classes_than_output_units_digits(cli, tmp_path, command):
    config = make_config(tmp_path, {"dataset": "digits"},
                         ["- dense: {units: 32, activation: relu}", "- dense: {units: 3}"])
    run_and_check(cli, tmp_path, command, config, "run.yaml:7:", "model.layers[1].dense",
                  "10 classes", "[3]")


@pytest.mark.parametrize("command", COMMANDS)
def test_labels_out_of_range_for_output_units_npz(cli, tmp_path, command):
    x, _ = good_arrays()
    data = tmp_path / "data.npz"
    write_npz(data, x=x, y=np.arange(len(x)) % 7)  # labels 0..6, the model has 3 outputs
    config = npz_config(tmp_path, layers=["- dense: {units: 3}"])
    run_and_check(cli, tmp_path, command, config, "model.layers[0].dense", "7 classes",
                  watch=[data])


# ---- hostile and broken config files ------------------------------------------------------

VALID = CONFIG.format(data="  dataset: spirals\n  samples: 100",
                      layers=textwrap.indent("\n".join(MLP), "    "))

PYTHON_TAGS = [
    "seed: !!python/object/apply:os.system ['touch {marker}']",
    "seed: !!python/object/apply:os.system\n  args: ['touch {marker}']",
    "seed: !!python/object/new:os.system ['touch {marker}']",
    "seed: !!python/name:os.system",
    "!!python/object/apply:os.system ['touch {marker}']",
    "seed: !!python/object/apply:subprocess.check_call [['touch', '{marker}']]",
    "data: !!python/object/apply:builtins.exec ['open(r\"{marker}\", \"w\").close()']",
]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("tag", range(len(PYTHON_TAGS)))
def test_python_tags_never_run(cli, tmp_path, command, tag):
    marker = tmp_path / "PWNED"
    line = PYTHON_TAGS[tag].format(marker=marker)
    text = line + "\n" if line.startswith("!!") else VALID.replace("seed: 0", line)
    if line.startswith("data:"):
        text = VALID.replace("data:\n  dataset: spirals\n  samples: 100", line)
    config = tmp_path / "evil.yaml"
    config.write_text(text)
    run_and_check(cli, tmp_path, command, config, "unsupported YAML tag '!!python/")
    assert not marker.exists(), "the YAML tag ran code"


LOL_BOMB = textwrap.dedent("""\
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
    """)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("where", ["top", "in-a-section"])
def test_billion_laughs_is_refused_fast(cli, tmp_path, command, where):
    config = tmp_path / "lol.yaml"
    if where == "top":
        config.write_text(LOL_BOMB)
    else:  # the bomb hidden inside an otherwise valid config, used as a layer list
        config.write_text(VALID.replace("seed: 0", "lol:\n" + textwrap.indent(LOL_BOMB, "  ")))
    start = time.perf_counter()
    run_and_check(cli, tmp_path, command, config, "aliases")
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("padding", ["comment", "data"])
def test_config_over_one_mib(cli, tmp_path, command, padding):
    config = tmp_path / "big.yaml"
    if padding == "comment":  # valid YAML and a valid config, only too big
        text = VALID + "# " + "x" * (1 << 20) + "\n"
    else:
        text = VALID.replace("seed: 0", "seed: 0\nnotes: [" + "1, " * (1 << 19) + "1]")
    config.write_text(text)
    assert config.stat().st_size > 1 << 20
    start = time.perf_counter()
    run_and_check(cli, tmp_path, command, config, "larger than 1024 KiB")
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("command", COMMANDS)
def test_config_is_a_directory(cli, tmp_path, command):
    config = tmp_path / "conf.yaml"
    config.mkdir()
    run_and_check(cli, tmp_path, command, config, "is a directory")


BINARY = {
    "latin-1": VALID.replace("seed: 0", "# caf\xe9\nseed: 0").encode("latin-1"),
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01" + bytes(range(256)),
    "utf-16": VALID.encode("utf-16"),
    "random": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    "nul": VALID.replace("seed: 0", "seed: 0\x00").encode(),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", sorted(BINARY))
def test_binary_config(cli, tmp_path, command, kind):
    config = tmp_path / "bin.yaml"
    config.write_bytes(BINARY[kind])
    line = run_and_check(cli, tmp_path, command, config)
    assert "not valid UTF-8" in line or "unacceptable character" in line, line


# ---- train-section mistakes (found by probing the schedule/augment/monitor keys) ---------

def train_config(tmp_path, extra: str) -> Path:
    config = tmp_path / "run.yaml"
    config.write_text(VALID.replace("  batch_size: 16", "  batch_size: 16\n" + extra))
    return config


def test_infinite_warmup_is_a_config_error(cli, tmp_path):
    config = train_config(tmp_path, "  schedule: {name: cosine, warmup_epochs: .inf}")
    run_and_check(cli, tmp_path, "train", config, "warmup_epochs")


def test_unknown_monitor_refused_before_training(cli, tmp_path):
    config = train_config(tmp_path, "  monitor: val_accuracyy")
    run_and_check(cli, tmp_path, "train", config, "train.monitor", "val_accuracyy")


def test_validate_catches_unknown_monitor(cli, tmp_path):
    config = train_config(tmp_path, "  monitor: val_accuracyy")
    run_and_check(cli, tmp_path, "validate", config, "train.monitor")


def test_augment_shape_mismatch_refused_by_train(cli, tmp_path):
    config = train_config(tmp_path, "  augment: {shift: 1, image_shape: [3, 3]}")
    run_and_check(cli, tmp_path, "train", config, "train.augment", "image_shape")


def test_validate_catches_augment_shape_mismatch(cli, tmp_path):
    config = train_config(tmp_path, "  augment: {shift: 1, image_shape: [3, 3]}")
    run_and_check(cli, tmp_path, "validate", config, "train.augment", "image_shape")
