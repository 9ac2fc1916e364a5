"""Config error messages stay readable under abuse (issue 8, point 9): a capped list, one
line per error whatever the values hold, and `--set` blamed for what it set."""

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from nnctl.config import LoadedYaml, config_from, load_config, load_yaml_text
from nnctl.errors import ConfigError
from nnctl.step import prepare

VALID = textwrap.dedent("""\
    data:
      dataset: spirals
      samples: 100
    model:
      layers:
        - dense: {units: 8, activation: tanh}
        - dense: {units: 2}
    loss: cross_entropy
    optimizer: {name: adam, lr: 0.01}
    train: {epochs: 1}
    """)


def write(tmp_path, text=VALID, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_sixty_thousand_unknown_keys_are_capped(tmp_path):
    # the parsed file, built directly: PyYAML's pure-Python parse of 60,000 keys takes ~20 s
    source = load_yaml_text(VALID, str(tmp_path / "c.yaml"))
    data, marks = dict(source.data), dict(source.marks)
    for i in range(60_000):
        data[f"k{i}"], marks[(f"k{i}",)] = 1, 11 + i
    path = tmp_path / "c.yaml"
    started = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        config_from(LoadedYaml(data, marks, str(path)), path)
    assert time.perf_counter() - started < 5  # no difflib hint for errors never shown
    errors = [e.value, *e.value.others]
    assert len(errors) == 11
    assert str(errors[0]) == f"{path}:11: k0: unknown key (expected one of: data, model, " \
        "loss, optimizer, train, seed, metrics, aux_losses, logging, distributed, tune)"
    assert str(errors[-1]) == "... and 59,990 more errors"


def test_many_unknown_keys_cli_prints_eleven_lines(tmp_path):
    junk = "".join(f"k{i}: 1\n" for i in range(2_000))
    path = write(tmp_path, VALID + junk)
    done = subprocess.run([sys.executable, "-m", "nnctl", "validate", "--no-data", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 11 and lines[-1] == "error: ... and 1,990 more errors"


def test_few_errors_are_all_listed(tmp_path):
    path = write(tmp_path, VALID + "".join(f"k{i}: 1\n" for i in range(10)))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert len([e.value, *e.value.others]) == 10
    assert "more errors" not in str(e.value.others[-1])


@pytest.mark.parametrize("override", [
    "train.epochs=x\ny",                        # a bad value with a line break
    "optimizer.name=ad\nam",
    "data.normalize=\x1b[31mred",               # a terminal escape
    "model.layers.0.dense.activation=\"ta\\nnh\"",  # a quoted string holding a newline
])
def test_values_with_line_breaks_stay_on_one_line(tmp_path, override):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path), [override])
    text = str(e.value)
    assert "\n" not in text and "\x1b" not in text and text.startswith("--set ")


def test_key_with_line_break_in_the_file_stays_on_one_line(tmp_path):
    path = write(tmp_path, VALID.replace("train: {epochs: 1}",
                                         'train: {epochs: 1, "bad\\nkey": 2}'))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "\n" not in str(e.value) and "bad\\nkey" in str(e.value)


def test_data_path_with_line_break_stays_on_one_line(tmp_path):
    weird = tmp_path / "we\nird.npz"
    weird.write_bytes(b"not a zip")
    path = write(tmp_path, VALID.replace("dataset: spirals\n  samples: 100",
                                         "dataset: npz\n  path: " + json.dumps(str(weird))))
    cfg = load_config(path)
    with pytest.raises(ConfigError) as e:
        prepare(cfg)
    assert "\n" not in str(e.value) and "we\\nird.npz" in str(e.value)


# ---- errors about a --set value name the --set, not the config file's line ----------------

def test_data_error_from_set_data_blames_the_set_option(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    override = f"data={{dataset: npz, path: {bad}}}"
    cfg = load_config(write(tmp_path), [override])
    with pytest.raises(ConfigError) as e:
        prepare(cfg)
    text = str(e.value)
    assert text.startswith(f"--set {override}: data: {bad}: not an .npz (zip) archive")
    assert "c.yaml" not in text


def test_data_error_from_set_data_path_blames_the_set_option(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2)), y=np.array([0, 1, 0, 10**9]))
    text = write(tmp_path, VALID.replace("dataset: spirals\n  samples: 100",
                                         "dataset: npz\n  path: other.npz"))
    (tmp_path / "other.npz").write_bytes(b"")
    cfg = load_config(text, [f"data.path={tmp_path / 'd.npz'}"])
    with pytest.raises(ConfigError) as e:
        prepare(cfg)
    assert str(e.value).startswith(f"--set data.path={tmp_path / 'd.npz'}: data: ")
    assert "class label 1000000000 at index 3" in str(e.value)


def test_data_error_from_the_file_still_names_the_file_line(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    path = write(tmp_path, VALID.replace("dataset: spirals\n  samples: 100",
                                         "dataset: npz\n  path: bad.npz"))
    with pytest.raises(ConfigError) as e:
        prepare(load_config(path))
    assert str(e.value).startswith(f"{path}:1: data: ")


def test_model_error_after_set_names_the_set_option(tmp_path):
    cfg = load_config(write(tmp_path), ["model.layers.1.dense.units=3"])
    with pytest.raises(ConfigError) as e:
        prepare(cfg)
    text = str(e.value)
    assert text.startswith(f"{tmp_path / 'c.yaml'}:7: model.layers[1].dense: the model's output")
    assert text.endswith("expected [2] (with --set model.layers.1.dense.units=3)")


def test_long_values_and_keys_are_quoted_short(tmp_path):
    long = "x" * 5000
    path = write(tmp_path, VALID.replace("name: adam", f"name: {long}").replace(
        "train: {epochs: 1}", f"train: {{epochs: 1, {long[:900]}y: 2}}"))  # keys: < 1024
    with pytest.raises(ConfigError) as e:
        load_config(path)
    for err in [e.value, *e.value.others]:
        assert len(str(err)) < 400
    text = " ".join(map(str, [e.value, *e.value.others]))
    assert f"unknown optimizer '{'x' * 40}...'" in text
    assert f"train['{'x' * 40}...']: unknown key" in text
