"""Weights under PyTorch's names and layouts (nnctl.torch_weights, `nnctl export-weights`,
`train.init_from`): an exported run loads into the equivalent torch.nn modules with
load_state_dict(strict=True) and gives nnctl's outputs (float64, rtol 1e-10); a PyTorch state
dict saved as safetensors starts a run that gives PyTorch's outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnctl.backend import get_backend
from nnctl.config import load_config
from nnctl.errors import DataError
from nnctl.train.trainer import Trainer

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

MLP = """\
seed: 0
data: {dataset: digits, normalize: standard}
model:
  layers:
    - dense: {units: 32}
    - batch_norm: {}
    - activation: relu
    - layer_norm: {}
    - dense: {units: 10}
loss: cross_entropy
optimizer: {name: adam, lr: 0.01}
train: {epochs: 2, batch_size: 64, dtype: float64}
"""

RECURRENT = """\
seed: 0
data: {dataset: adding, samples: 200, length: 6, normalize: none}
model:
  layers:
    - KIND: {units: 5, layers: 2}
    - dense: {units: 1}
loss: mse
optimizer: {name: adam, lr: 0.01}
train: {epochs: 1, batch_size: 32, dtype: float64}
"""


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dense_0 = torch.nn.Linear(64, 32)
        self.batch_norm_1 = torch.nn.BatchNorm1d(32)
        self.layer_norm_3 = torch.nn.LayerNorm(32)
        self.dense_4 = torch.nn.Linear(32, 10)

    def forward(self, x):
        h = torch.relu(self.batch_norm_1(self.dense_0(x)))
        return self.dense_4(self.layer_norm_3(h))


class Recurrent(torch.nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
        setattr(self, f"{kind}_0", cls(2, 5, num_layers=2, batch_first=True))
        self.kind, self.dense_1 = kind, torch.nn.Linear(5, 1)

    def forward(self, x):
        return self.dense_1(getattr(self, f"{self.kind}_0")(x)[0][:, -1])


def trained(tmp_path: Path, text: str) -> tuple[Trainer, Path]:
    (tmp_path / "c.yaml").write_text(text)
    trainer = Trainer(load_config(tmp_path / "c.yaml"), get_backend("cpu"),
                      out=tmp_path / "runs")
    trainer.fit()
    (run,) = (tmp_path / "runs").iterdir()
    return trainer, run


def exported(cli_args, run: Path, out: Path) -> dict:
    from typer.testing import CliRunner

    from nnctl.cli.app import app
    result = CliRunner().invoke(app, ["export-weights", str(run), "-o", str(out), *cli_args])
    assert result.exit_code == 0, result.output
    from safetensors.torch import load_file
    return load_file(str(out))


@pytest.mark.parametrize("case", ["mlp", "rnn", "lstm", "gru"])
def test_exported_weights_load_into_torch_modules_and_agree(tmp_path, case):
    text = MLP if case == "mlp" else RECURRENT.replace("KIND", case)
    trainer, run = trained(tmp_path, text)
    state = exported([], run, tmp_path / "w.safetensors")
    module = (Mlp() if case == "mlp" else Recurrent(case)).double()
    module.load_state_dict({k: v.double() if v.is_floating_point() else v
                            for k, v in state.items()}, strict=True)
    module.eval()
    x = trainer.splits.test.x[:7]
    ours = trainer.forward(x)
    with torch.no_grad():
        theirs = module(torch.tensor(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", ["mlp", "gru"])
def test_a_pytorch_state_dict_starts_a_run_with_pytorchs_outputs(tmp_path, case):
    from safetensors.torch import save_file
    torch.manual_seed(3)
    module = (Mlp() if case == "mlp" else Recurrent(case)).double()
    if case == "mlp":  # running statistics and biases away from their defaults
        with torch.no_grad():
            module.batch_norm_1.running_mean.uniform_(-1, 1)
            module.batch_norm_1.running_var.uniform_(0.5, 2)
            module.layer_norm_3.bias.uniform_(-1, 1)
    else:
        with torch.no_grad():
            for name, p in module.named_parameters():
                if "bias_hh" in name:
                    p.uniform_(-1, 1)  # nnctl folds the two recurrent biases into one
    module.eval()
    save_file({k: v.contiguous() for k, v in module.state_dict().items()},
              str(tmp_path / "torch.safetensors"))
    text = (MLP if case == "mlp" else RECURRENT.replace("KIND", case)).replace(
        "dtype: float64}", "dtype: float64, init_from: torch.safetensors}")
    (tmp_path / "c.yaml").write_text(text)
    trainer = Trainer(load_config(tmp_path / "c.yaml"), get_backend("cpu"), out=None)
    x = trainer.splits.test.x[:5]
    with torch.no_grad():
        theirs = module(torch.tensor(x)).numpy()
    np.testing.assert_allclose(trainer.forward(x), theirs, rtol=1e-10, atol=1e-12)


def test_a_state_dict_of_another_model_is_one_line(tmp_path):
    from safetensors.torch import save_file
    save_file({"dense_0.weight": torch.zeros(16, 64)}, str(tmp_path / "w.safetensors"))
    (tmp_path / "c.yaml").write_text(MLP.replace("dtype: float64}",
                                                 "dtype: float64, init_from: w.safetensors}"))
    with pytest.raises(DataError) as err:
        Trainer(load_config(tmp_path / "c.yaml"), get_backend("cpu"), out=None)
    message = str(err.value)
    assert "dense_0.weight has shape [16, 64]; dense_0.weight needs [32, 64] in torch" in message
    assert "\n" not in message


def test_npz_and_nnctl_names(tmp_path):
    trainer, run = trained(tmp_path, MLP)
    from typer.testing import CliRunner

    from nnctl.cli.app import app
    result = CliRunner().invoke(app, ["export-weights", str(run), "--format", "npz",
                                      "--names", "nnctl", "-o", str(tmp_path / "w.npz")])
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "w.npz", allow_pickle=False) as npz:
        assert set(npz.files) == set(trainer.weights())
        np.testing.assert_array_equal(npz["dense_0.weight"], trainer.weights()["dense_0.weight"])
