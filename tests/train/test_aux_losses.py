"""Weighted losses on named outputs (`aux_losses`): the total is the config's loss plus each
term times its weight, every term's gradient reaches the shared layers, each term is
reported per split, targets come from y, the input or named data arrays, and the mistakes
around them are one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.config import load_config
from nnctl.data.batching import batch_arrays
from nnctl.errors import ConfigError
from nnctl.train.trainer import Trainer, aux_loss_names

MULTITASK = """\
seed: 0
data: {dataset: npz, path: tasks.npz, targets: [size], normalize: none,
       split: {val: 0.2, test: 0.2}}
model:
  layers:
    - dense: {name: shared, units: 8, activation: tanh}
    - dense: {name: size_head, units: 2, inputs: [shared]}
    - dense: {name: recon, units: 3, inputs: [shared]}
    - dense: {name: logits, units: classes, inputs: [shared]}
loss: cross_entropy
aux_losses:
  - {output: size_head, loss: mse, target: size, weight: 0.25}
  - {output: recon, loss: mse, target: input, weight: 2.0}
optimizer: {name: adam, lr: 0.02}
train: {epochs: 20, batch_size: 32, dtype: float64}
"""


def write_tasks(folder: Path, n: int = 300) -> None:
    """Class: the sign of x0 + x1; a second task: two float targets from x (size)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    size = np.stack([x[:, 2] * 2.0, x[:, 0] - x[:, 2]], 1)
    np.savez(folder / "tasks.npz", x=x, y=y, size=size)


def config(tmp_path: Path, text: str = MULTITASK):
    write_tasks(tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_config(path)


def numpy_losses(w: dict, x, y, size):
    """The three terms by hand from the weights: cross-entropy, size mse, recon mse."""
    h = np.tanh(x @ w["shared.weight"] + w["shared.bias"])
    logits = h @ w["logits.weight"] + w["logits.bias"]
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ce = -logp[np.arange(len(y)), y].mean()
    size_mse = (((h @ w["size_head.weight"] + w["size_head.bias"]) - size) ** 2).mean()
    recon_mse = (((h @ w["recon.weight"] + w["recon.bias"]) - x) ** 2).mean()
    return ce, size_mse, recon_mse


def test_the_total_is_the_loss_plus_the_weighted_terms(tmp_path):
    trainer = Trainer(config(tmp_path), get_backend("cpu"), out=None)
    builder = trainer.builder
    assert builder.input_names == () and builder.target_names == ("size",)
    data = trainer.splits.train
    idx = np.arange(16)
    arrays = batch_arrays(data, idx, 1, "float64", builder.extra_names)
    outputs, feeds = builder.evaluation_step()
    plan = compile_graph(outputs, feeds, get_backend("cpu"))
    total, _, size_term, recon_term = plan.run([*arrays, *trainer.params, *trainer.states])
    ce, size_mse, recon_mse = numpy_losses(trainer.weights(), data.x[idx], data.y[idx],
                                           data.extra["size"][idx])
    assert float(size_term) == pytest.approx(size_mse, rel=1e-12)
    assert float(recon_term) == pytest.approx(recon_mse, rel=1e-12)
    assert float(total) == pytest.approx(ce + 0.25 * size_mse + 2.0 * recon_mse, rel=1e-12)


def test_every_terms_gradient_is_right(tmp_path):
    from nnctl.gradcheck import check_model
    rows = check_model(config(tmp_path))
    assert len(rows) == 8 and all(row.passed for row in rows)  # heads and the shared layer


def test_training_learns_every_task_and_reports_each_term(tmp_path):
    trainer = Trainer(config(tmp_path), get_backend("cpu"), out=None)
    before = trainer.evaluate("test")
    summary = trainer.fit()
    assert summary["test_accuracy"] > 0.9
    for name in ("size_head", "recon"):
        assert summary[f"test_{name}_loss"] < 0.5 * before[f"test_{name}_loss"]
    assert summary["test_size_head_loss"] < 0.3  # size = a linear function of x


def test_a_head_no_loss_scores_is_refused(tmp_path):
    """Without aux_losses the same model would train its heads for nothing."""
    text = MULTITASK.split("aux_losses:")[0] + \
        "optimizer: sgd\ntrain: {epochs: 1, dtype: float64}\n"
    with pytest.raises(ConfigError) as info:
        config(tmp_path, text)
    assert "model.layers[1].dense: layer 'size_head' does not lead to the output" in \
        str(info.value)


def test_predict_needs_no_target_arrays(tmp_path):
    from nnctl.train.inference import predict_run
    text = MULTITASK.replace("epochs: 20", "epochs: 2")
    trainer = Trainer(config(tmp_path, text), get_backend("cpu"), out=tmp_path / "runs")
    trainer.fit()
    (run,) = (tmp_path / "runs").iterdir()
    x = np.random.default_rng(5).normal(size=(7, 3))
    np.savez(tmp_path / "new.npz", x=x)
    assert predict_run(run, tmp_path / "new.npz", tmp_path / "p.npz", get_backend("cpu")) == 7
    with np.load(tmp_path / "p.npz") as p:
        probabilities = p["probabilities"]
    w = trainer.weights()
    logits = np.tanh(x @ w["shared.weight"] + w["shared.bias"]) @ w["logits.weight"] + \
        w["logits.bias"]
    z = np.exp(logits - logits.max(-1, keepdims=True))
    assert np.allclose(probabilities, z / z.sum(-1, keepdims=True), rtol=1e-12)


def test_two_terms_on_one_output_are_named_by_target():
    from nnctl.config.schema import AuxLossSpec, MSESpec
    terms = [AuxLossSpec(output="a", loss=MSESpec(), target="y"),
             AuxLossSpec(output="a", loss=MSESpec(), target="input"),
             AuxLossSpec(output="b", loss=MSESpec(), target="y")]
    assert aux_loss_names(terms) == ["a_y", "a_input", "b"]


@pytest.mark.parametrize("old, new, message", [
    ("output: size_head,", "output: size_hed,", "aux_losses[0].output: unknown layer 'size_hed'"),
    ("output: size_head,", "output: logits,",
     "aux_losses[0].output: 'logits' is the model's output, which `loss` scores"),
    ("target: input, weight: 2.0", "target: nowhere",
     "aux_losses[1].target: the data has no array 'nowhere' (its further arrays: size"),
    ("loss: mse, target: input", "loss: cross_entropy, target: input",
     "aux_losses[1].target: cross_entropy needs integer class targets"),
    ("units: 3, inputs", "units: 4, inputs",
     "aux_losses[1].output: layer 'recon' gives [4] per sample; its target input needs [3]"),
    ("loss: mse, target: size", "loss: mse, target: y",
     "aux_losses[0].output: layer 'size_head' gives [2] per sample; mse needs float targets, "
     "but y is int64"),
    ("weight: 0.25", "weight: 0", "aux_losses[0].weight: expected a number > 0"),
    ("loss: mse, target: size", "loss: huber, target: size",
     "aux_losses[0].loss.name: unknown loss 'huber'"),
])
def test_mistakes_are_one_line_naming_the_key(tmp_path, old, new, message):
    assert old in MULTITASK
    with pytest.raises(ConfigError) as info:
        Trainer(config(tmp_path, MULTITASK.replace(old, new)), get_backend("cpu"), out=None)
    text = str(info.value)
    assert message in text and "\n" not in text, text


def test_the_cli_reports_the_terms_and_exits_2_on_a_mistake(tmp_path):
    from typer.testing import CliRunner
    from nnctl.cli.app import app
    config(tmp_path)
    runner = CliRunner()
    ok = runner.invoke(app, ["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r"),
                             "--set", "train.epochs=2"])
    assert ok.exit_code == 0, ok.output
    assert "test_size_head_loss" in ok.output and "test_recon_loss" in ok.output
    (tmp_path / "bad.yaml").write_text(MULTITASK.replace("output: recon", "output: recn"))
    bad = runner.invoke(app, ["validate", str(tmp_path / "bad.yaml")])
    assert bad.exit_code == 2
    assert "bad.yaml:13: aux_losses[1].output: unknown layer 'recn'" in bad.output
    assert len(bad.output.strip().splitlines()) == 1, bad.output


def test_summary_lists_every_output_with_what_scores_it(tmp_path):
    from nnctl.summary import model_summary
    s = model_summary(config(tmp_path))
    assert s["outputs"] == [
        {"name": "logits", "shape": [2], "loss": "cross_entropy", "target": "y", "weight": 1.0},
        {"name": "size_head", "shape": [2], "loss": "mse", "target": "size", "weight": 0.25},
        {"name": "recon", "shape": [3], "loss": "mse", "target": "input", "weight": 2.0}]
    recon = next(r for r in s["layers"] if r["name"] == "recon")
    assert recon["activation_bytes"] == 2 * 3 * 8  # the head counts: matmul, then + bias
