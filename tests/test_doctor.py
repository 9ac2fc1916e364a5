"""`nnctl doctor`: the training step op by op on two backends from the same weights, batch
and masks. Without a GPU: float32 against float64, the same backend against itself (exactly
0), and a planted wrong kernel found at its op and layer."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.config import load_config
from nnctl.doctor import diagnose, first_departure

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_the_same_backend_against_itself_differs_nowhere():
    reports, summary = diagnose(load_config(CONFIGS / "digits_residual.yaml"), "cuda", 4,
                                xp_target=np)
    assert summary["worst"] == 0.0 and summary["nodes"] > 100
    assert {"matmul", "relu", "mean", "cross_entropy", "random"} - {r.op for r in reports} \
        == {"random"}  # every op is reported; leaves are not


@pytest.mark.parametrize("name", ["spirals.yaml", "digits_cnn.yaml", "chars_lstm.yaml"])
def test_float32_stays_within_its_tolerance_and_does_differ(name):
    reports, summary = diagnose(load_config(CONFIGS / name), "float32", 4)
    assert 1e-9 < summary["worst"] < 1e-4
    assert first_departure(summary) is None


def test_a_wrong_kernel_is_found_at_its_op_and_layer():
    """A stand-in array module whose tanh is off by 1e-7: the first op outside 1e-10 is tanh
    in the first layer; the ops after it only inherit the difference."""
    fake = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    fake.__name__ = "numpy"
    fake.tanh = lambda x, out=None: np.multiply(np.tanh(x), 1 + 1e-7, out=out)
    reports, summary = diagnose(load_config(CONFIGS / "spirals.yaml"), "cuda", 4,
                                xp_target=fake)
    first = first_departure(summary)
    assert first is not None and (first.op, first.layer) == ("tanh", "dense_0")
    assert summary["worst"] > 1e-8 and first.inherited <= 1e-10


def test_the_command(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["doctor", str(CONFIGS / "spirals.yaml"), "--against",
                                 "float32", "--batch", "4"])
    assert result.exit_code == 0, result.output
    assert "NumPy float32 against NumPy float64" in result.stdout
    assert "every op within 0.001" in result.stdout and "matmul" in result.stdout
    bad = runner.invoke(app, ["doctor", str(CONFIGS / "spirals.yaml"), "--against", "tpu"])
    assert bad.exit_code == 2 and "expected cuda or float32" in bad.stderr
    try:
        import cupy  # noqa: F401
        return  # (a GPU machine: the parity run is the CUDA suite's)
    except ImportError:
        pass
    missing = runner.invoke(app, ["doctor", str(CONFIGS / "spirals.yaml"), "--against",
                                  "cuda"])
    assert missing.exit_code == 2 and "needs CuPy" in missing.stderr
    default = runner.invoke(app, ["doctor", str(CONFIGS / "spirals.yaml")])
    assert default.exit_code == 0 and "comparing float32 with float64" in default.stdout
