from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


def tiny_config(epochs: int) -> str:
    """A spirals MLP that trains in a second: the run folders the run-management tests need."""
    return f"""\
seed: 0
data:
  dataset: spirals
  samples: 200
  split: {{val: 0.2, test: 0.2}}
  normalize: standard
model:
  layers:
    - dense: {{units: 16, activation: tanh}}
    - dense: {{units: 2}}
loss: cross_entropy
optimizer: {{name: adam, lr: 0.05}}
train:
  epochs: {epochs}
  batch_size: 32
metrics: [accuracy]
"""


@pytest.fixture
def cli():
    """Invoke the CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args])
    return invoke
