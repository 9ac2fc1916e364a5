"""Config mistakes through the CLI: each is one line naming file:line and the key path,
exit code 2, never a traceback."""

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

VALID = textwrap.dedent("""\
    seed: 0
    data:
      dataset: spirals
      samples: 200
    model:
      layers:
        - dense: {units: 16, activation: tanh}
        - dense: {units: 2}
    loss: cross_entropy
    optimizer:
      name: adam
      lr: 0.01
    train:
      epochs: 1
      batch_size: 32
    """)

# (name, text edit as (old, new) on VALID, expected line, expected key path, message fragment)
CASES = [
    ("wrong type", ("epochs: 1", "epochs: ten"), 14, "train.epochs",
     "expected a positive integer, got 'ten'"),
    ("negative size", ("units: 16,", "units: -3,"), 7, "model.layers[0].dense.units",
     "expected a positive integer, got -3"),
    ("unknown layer", ("- dense: {units: 2}", "- dens: {units: 2}"), 8, "model.layers[1].dens",
     "unknown layer type 'dens' (did you mean 'dense'?)"),
    ("unknown key", ("activation: tanh", "activaton: tanh"), 7,
     "model.layers[0].dense.activaton", "unknown key (did you mean 'activation'?)"),
    ("unknown optimizer", ("name: adam", "name: adamx"), 11, "optimizer.name",
     "unknown optimizer 'adamx' (did you mean 'adam'?)"),
    ("unknown activation", ("activation: tanh", "activation: tanhh"), 7,
     "model.layers[0].dense.activation", "unknown value 'tanhh' (did you mean 'tanh'?)"),
    ("unknown dataset", ("dataset: spirals", "dataset: spiral"), 3, "data.dataset",
     "unknown dataset 'spiral'"),
    ("duplicate key", ("  lr: 0.01", "  lr: 0.01\n  lr: 0.5"), 13, "optimizer.lr",
     "duplicate key 'lr' (first defined at line 12)"),
    ("bad YAML syntax", ("  batch_size: 32", "  batch_size: [32"), None, None, "invalid YAML"),
    ("python tag", ("seed: 0", "seed: !!python/object/apply:os.system ['true']"), 1, "seed",
     "unsupported YAML tag '!!python/object/apply:os.system'"),
    ("dropout out of range", ("- dense: {units: 2}", "- dropout: 1.5\n    - dense: {units: 2}"),
     8, "model.layers[1].dropout.rate", "expected a fraction in [0, 1), got 1.5"),
    ("wrong type for a mapping", ("train:\n  epochs: 1\n  batch_size: 32", "train: 5"), 13,
     "train", "expected a mapping, got 5"),
    ("metric for the wrong loss", ("loss: cross_entropy", "loss: mse\nmetrics: [accuracy]"),
     10, "metrics[0]", "metric 'accuracy' needs loss cross_entropy"),
    ("split leaves nothing", ("  samples: 200", "  samples: 200\n  split: {val: 0.5, test: 0.5}"),
     5, "data.split", "val + test must leave samples to train on"),
    ("output size does not match the classes", ("- dense: {units: 2}", "- dense: {units: 5}"),
     8, "model.layers[1].dense",
     "the model's output per sample is [5], but the data has 2 classes; expected [2]"),
    ("duplicate layer names", ("- dense: {units: 2}", "- dense: {units: 2, name: dense_0}"), 8,
     "model.layers[1].dense.name", "layer name 'dense_0' is already used by layers[0]"),
    ("shape mismatch between layers", ("- dense: {units: 16, activation: tanh}",
                                       "- dense: {units: 16, activation: tanh}\n    - reshape: [3, 5]"),
     8, "model.layers[1].reshape", "cannot reshape each sample of shape [16] (16 values) to [3, 5] (15 values)"),
]


def write(tmp_path, text, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_one_line_error(result, path, line, key_path, fragment):
    assert result.exit_code == 2, result.stdout + result.stderr
    err = result.stderr.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in result.stderr + result.stdout
    prefix = f"error: {path}:{line}: " if line else f"error: {path}:"
    assert err[0].startswith(prefix), err[0]
    if key_path:
        assert f": {key_path}: " in err[0], err[0]
    assert fragment in err[0], err[0]


def test_valid_base_config_trains(cli, tmp_path):
    result = cli("train", write(tmp_path, VALID, "ok.yaml"), "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("name,edit,line,key_path,fragment", CASES, ids=[c[0] for c in CASES])
def test_config_mistake_is_one_line(cli, tmp_path, name, edit, line, key_path, fragment):
    old, new = edit
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new, 1))
    result = cli("train", path, "--out", tmp_path / "runs")
    assert_one_line_error(result, path, line, key_path, fragment)
    assert not (tmp_path / "runs").exists(), "a bad config must not leave a run folder"


def test_missing_section(cli, tmp_path):
    text = VALID[:VALID.index("train:")]
    path = write(tmp_path, text)
    assert_one_line_error(cli("train", path), path, 1, None, "missing required section 'train'")


def test_missing_data_file(cli, tmp_path):
    path = write(tmp_path, VALID.replace("dataset: spirals\n  samples: 200",
                                         "dataset: npz\n  path: nowhere.npz"))
    assert_one_line_error(cli("train", path), path, 4, "data.path",
                          "no such data file: nowhere.npz (relative to the config file)")


def test_corrupt_data_file(cli, tmp_path):
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 this is not a zip")
    path = write(tmp_path, VALID.replace("dataset: spirals\n  samples: 200",
                                         "dataset: npz\n  path: broken.npz"))
    result = cli("train", path, "--out", tmp_path / "runs")
    assert_one_line_error(result, path, 2, "data", "broken.npz")


def test_regression_targets_with_cross_entropy(cli, tmp_path):
    np.savez(tmp_path / "reg.npz", x=np.ones((20, 3), np.float32), y=np.linspace(0, 1, 20))
    path = write(tmp_path, VALID.replace("dataset: spirals\n  samples: 200",
                                         "dataset: npz\n  path: reg.npz"))
    assert_one_line_error(cli("train", path), path, 9, "loss",
                          "cross_entropy needs integer class labels")


def test_several_mistakes_are_all_listed(cli, tmp_path):
    path = write(tmp_path, VALID.replace("epochs: 1", "epochs: 0").replace("lr: 0.01", "lr: -1"))
    result = cli("train", path)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert any("optimizer.lr: expected a positive learning rate, got -1" in x for x in lines)
    assert any("train.epochs: expected a positive integer, got 0" in x for x in lines)


def test_missing_config_file(cli, tmp_path):
    result = cli("train", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nope.yaml'}: no such file"


def test_top_level_not_a_mapping(cli, tmp_path):
    path = write(tmp_path, "- just\n- a list\n")
    result = cli("train", path)
    assert result.exit_code == 2
    assert "expected a mapping of sections at the top level" in result.stderr


def test_cuda_without_cupy_or_gpu_is_one_line(cli, tmp_path):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    result = cli("train", write(tmp_path, VALID, "ok.yaml"), "--device", "cuda")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: --device cuda needs CuPy on a machine with an NVIDIA GPU: pip install "
        "cupy-cuda12x (the nnctl[cuda] extra; in a source checkout: pip install -e '.[cuda]')"]


def test_error_through_the_real_entry_point_has_no_traceback(tmp_path):
    path = write(tmp_path, VALID.replace("units: 16,", "units: -3,"))
    proc = subprocess.run([sys.executable, "-m", "nnctl", "train", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert re.fullmatch(r"error: .*bad\.yaml:7: model\.layers\[0\]\.dense\.units: expected a "
                        r"positive integer, got -3\n", proc.stderr), proc.stderr


def test_debug_flag_shows_the_traceback(cli, tmp_path):
    path = write(tmp_path, VALID.replace("units: 16,", "units: -3,"))
    result = CliRunnerWithExceptions().invoke(["--debug", "train", str(path)])
    assert result.exception is not None and type(result.exception).__name__ == "ConfigError"


class CliRunnerWithExceptions:
    def invoke(self, args):
        from typer.testing import CliRunner

        from nnctl.cli.app import app
        return CliRunner().invoke(app, args, catch_exceptions=True)
