"""train.mixed_precision (nnctl/config/schema.py): float16 or off; bfloat16 and other values
refused in one line that points at file:line and says what is accepted."""

from __future__ import annotations

import textwrap

import pytest

from nnctl.config import load_config
from nnctl.errors import ConfigError

CONFIG = textwrap.dedent("""\
    data: {dataset: spirals, samples: 100}
    model:
      layers:
        - dense: {units: 8, activation: tanh}
        - dense: {units: 2}
    loss: cross_entropy
    optimizer: {name: adam, lr: 0.01}
    train:
      epochs: 1
      dtype: {dtype}
      mixed_precision: {mixed}
    """)


def _load(tmp_path, mixed, dtype="float32"):
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG.replace("{mixed}", mixed).replace("{dtype}", dtype))
    return load_config(path), path


@pytest.mark.parametrize("text,want", [("float16", "float16"), ("null", None),
                                       ("false", None)])
def test_accepted_values(tmp_path, text, want):
    config, _ = _load(tmp_path, text)
    assert config.spec.train.mixed_precision == want


def test_off_by_default():
    assert load_config("configs/digits_mlp.yaml").spec.train.mixed_precision is None


@pytest.mark.parametrize("text,message", [
    ("bfloat16", ("bfloat16 is not supported (NumPy and CuPy have no bfloat16 dtype); "
                  "accepted: float16, or null (off)")),
    ("fp16", "expected float16, or null (off); got 'fp16'"),
    ("true", "expected float16, or null (off); got true"),
])
def test_refused_values_name_the_key_and_what_is_accepted(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    path = tmp_path / "c.yaml"
    assert str(err.value) == f"{path}:11: train.mixed_precision: {message}"


def test_it_needs_float32_master_weights(tmp_path):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, "float16", dtype="float64")
    assert str(err.value) == (f"{tmp_path / 'c.yaml'}:11: train.mixed_precision: mixed "
                              "precision keeps float32 master weights: it needs train.dtype: "
                              "float32, not float64")
