"""Fixtures shared by the checkpoint tests: one short spirals run, copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app

SPIRALS = Path(__file__).resolve().parents[2] / "configs" / "spirals.yaml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run folder after one epoch of spirals (its checkpoint is at epoch 2, step 0)."""
    out = tmp_path_factory.mktemp("trained")
    result = CliRunner().invoke(app, ["train", str(SPIRALS), "--epochs", "1", "--no-progress",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    (run,) = out.iterdir()
    return run


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A copy of `trained` the test may damage."""
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy
