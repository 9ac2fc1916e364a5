"""`nnctl sample --temperature`: a value that is not a positive finite number is refused with
one line and exit 2, before any run folder is read (issue 8, point 8)."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.errors import UsageError
from nnctl.train.sample import sample_text


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), -1.0, 0.0])
def test_sample_text_refuses_bad_temperature(tmp_path, value):
    with pytest.raises(UsageError, match="--temperature must be a finite number > 0"):
        sample_text(tmp_path, 5, "", value, 0)


@pytest.mark.parametrize("text", ["nan", "inf", "-2", "1e400"])
def test_cli_refuses_bad_temperature(tmp_path, text):
    result = CliRunner().invoke(app, ["sample", str(tmp_path), "--temperature", text])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --temperature must be a finite")
    assert "Traceback" not in result.output


def test_finite_temperature_still_reaches_the_run_folder(tmp_path):
    from nnctl.errors import DataError
    with pytest.raises(DataError, match="vocab.json: no such file"):
        sample_text(Path(tmp_path), 5, "", 0.5, 0)
