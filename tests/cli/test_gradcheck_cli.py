"""`nnctl gradcheck`: the op table and a model, and a planted wrong vjp that must fail."""

import pytest
from conftest import CONFIGS

from nnctl.ops.registry import Sample, register, unregister
from nnctl.ops.elementwise import Unary


@pytest.mark.slow  # the same table is checked by tests/test_gradcheck.py and per op in tests/ops
def test_every_op_passes(cli):
    result = cli("gradcheck")
    assert result.exit_code == 0, result.stdout
    assert "FAIL" not in result.stdout
    summary = result.stdout.strip().splitlines()[-1]
    passed = int(summary.split()[0])
    assert summary == f"{passed} passed, 0 failed" and passed > 100


def test_one_op(cli):
    result = cli("gradcheck", "--op", "tanh")
    assert result.exit_code == 0
    assert result.stdout.strip().splitlines()[-1] == "2 passed, 0 failed"  # first and second order


def test_unknown_op(cli):
    result = cli("gradcheck", "--op", "tahn")
    assert result.exit_code == 2
    assert "unknown op 'tahn' (did you mean 'tanh'?)" in result.stderr


def test_model_gradients(cli):
    result = cli("gradcheck", CONFIGS / "digits_mlp.yaml")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "4 passed, 0 failed"
    assert "dense_0.weight" in result.stdout


def test_a_wrong_vjp_is_caught(cli):
    @register
    class WrongSin(Unary):
        """y = sin x with a deliberately wrong derivative (sin instead of cos)."""
        name = "wrong_sin"

        def forward(self, xp, x):
            return xp.sin(x)

        def vjp(self, g, out, x):
            return (g * x.sin(),)

        def samples(self):
            yield Sample(shapes=((3, 4),))
    try:
        result = cli("gradcheck", "--op", "wrong_sin")
    finally:
        unregister("wrong_sin")
    assert result.exit_code == 1
    assert "FAIL" in result.stdout
    assert "gradients disagree for: wrong_sin" in result.stderr
