"""Training comparators (pairs, triplets): retrieval recall@k from the model's embedding of
each split's source samples, online pairs drawn afresh every epoch, hard negatives mined with
the current embedding, and the config mistakes around them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnctl.backend import get_backend
from nnctl.comparator_metrics import recall_at_k
from nnctl.config import load_config
from nnctl.errors import ConfigError
from nnctl.train.trainer import Trainer

PAIRS = """\
seed: 1
data: {dataset: pairs, of: digits, pairs: 1500, online: true}
model:
  inputs: [right]
  layers:
    - dense: {name: a, units: 8, inputs: [input]}
    - dense: {name: b, units: 8, inputs: [right], shares: a}
    - distance: {inputs: [a, b]}
loss: {name: contrastive, margin: 1.0}
metrics: [verification_accuracy, recall_at_1, recall_at_4]
optimizer: {name: adam, lr: 0.01}
train: {epochs: 3, batch_size: 64, dtype: float64}
"""


def config(tmp_path: Path, text: str = PAIRS):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_config(path)


def test_recall_is_computed_from_the_towers_embedding_of_the_splits_digits(tmp_path):
    trainer = Trainer(config(tmp_path), get_backend("cpu"), out=None)
    summary = trainer.fit()
    x, labels = trainer.splits.info["comparison"].samples("test")
    w = trainer.weights()
    embedding = x @ w["a.weight"] + w["a.bias"]  # the tower by hand
    np.testing.assert_allclose(trainer.embed(x), embedding, rtol=1e-12, atol=1e-12)
    expected = recall_at_k(embedding, labels, [1, 4])
    assert summary["test_recall_at_1"] == expected[1]
    assert summary["test_recall_at_4"] == expected[4]
    # 10 classes (chance about 0.1); a linear 8-d tower after 3 epochs
    assert 0.25 < summary["test_recall_at_1"] <= summary["test_recall_at_4"]


def test_online_rows_change_every_epoch_and_runs_repeat(tmp_path):
    seen = []
    trainer = Trainer(config(tmp_path), get_backend("cpu"), out=None)
    original = trainer.splits.train.x.copy()
    redraw = trainer.splits.info["comparison"].redraw

    def spy(train, epoch, embedding=None):
        out = redraw(train, epoch, embedding)
        seen.append((epoch, out.x.copy(), embedding))
        return out
    trainer.splits.info["comparison"].redraw = spy
    trainer.fit()
    assert [e for e, _, _ in seen] == [1, 2, 3]
    assert all(emb is None for _, _, emb in seen)  # no mining asked
    assert not np.array_equal(seen[0][1], seen[1][1])
    assert not np.array_equal(seen[0][1], original)
    again = Trainer(config(tmp_path), get_backend("cpu"), out=None)
    again.fit()
    for name, value in trainer.weights().items():
        np.testing.assert_array_equal(value, again.weights()[name])


def test_hard_negatives_mine_with_the_embedding_at_each_epochs_start(tmp_path):
    text = PAIRS.replace("online: true}", "online: true, hard_negatives: 0.5, candidates: 4}")
    trainer = Trainer(config(tmp_path, text), get_backend("cpu"), out=None)
    source = trainer.splits.info["comparison"]
    seen = []
    redraw = source.redraw

    def spy(train, epoch, embedding=None):
        x, _ = source.samples("train")
        seen.append(np.allclose(embedding, trainer.embed(x), rtol=0, atol=0))
        return redraw(train, epoch, embedding)
    source.redraw = spy
    summary = trainer.fit()
    assert seen == [True, True, True]
    assert 0.0 <= summary["test_verification_accuracy"] <= 1.0


NO_DISTANCE = ("    - distance: {inputs: [a, b]}\n",
               "    - concat: {inputs: [a, b]}\n    - dense: {units: 1}\n")


@pytest.mark.parametrize("edits, message", [
    ([("    - distance: {inputs: [a, b]}\n",
       "    - difference: {inputs: [b, a]}\n    - dense: {units: 1}\n")],
     "metrics[1]: retrieval recall embeds single samples through layer 'b', but it reads "
     "right"),
    ([NO_DISTANCE], "metrics[1]: retrieval recall needs the model's embedding"),
    ([NO_DISTANCE, ("online: true}", "online: true, hard_negatives: 0.5}"),
      ("[verification_accuracy, recall_at_1, recall_at_4]", "[roc_auc]")],
     "data.hard_negatives: hard negatives needs the model's embedding"),
])
def test_mistakes_are_one_line(tmp_path, edits, message):
    text = PAIRS
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    with pytest.raises(ConfigError) as info:
        Trainer(config(tmp_path, text), get_backend("cpu"), out=None)
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_recall_needs_comparison_data(tmp_path):
    rng = np.random.default_rng(0)
    x, right = rng.normal(size=(100, 4)), rng.normal(size=(100, 4))
    np.savez(tmp_path / "p.npz", x=x, right=right, y=rng.integers(0, 2, 100))
    text = PAIRS.replace("{dataset: pairs, of: digits, pairs: 1500, online: true}",
                         "{dataset: npz, path: p.npz, inputs: [right], normalize: none}")
    with pytest.raises(ConfigError, match="metrics\\[1\\]: retrieval recall needs comparison "
                                          "data \\(dataset: pairs or triplets\\)"):
        Trainer(config(tmp_path, text), get_backend("cpu"), out=None)


def test_online_mining_run_resumed_at_an_epoch_end_is_bit_identical(tmp_path):
    """Epoch e's rows depend on (seed, e) and, when mining, on the weights at e's start,
    which the checkpoint holds: 2 epochs + resume + 2 equals 4 straight."""
    from typer.testing import CliRunner
    from nnctl.cli.app import app
    text = PAIRS.replace("online: true}", "online: true, hard_negatives: 0.5}")
    (tmp_path / "c.yaml").write_text(text)

    def cli(*args):
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
    cli("train", tmp_path / "c.yaml", "--epochs", 4, "--out", tmp_path / "straight")
    cli("train", tmp_path / "c.yaml", "--epochs", 2, "--out", tmp_path / "split")
    (run,) = (tmp_path / "split").iterdir()
    cli("train", tmp_path / "c.yaml", "--epochs", 4, "--resume", run)
    (straight,) = (tmp_path / "straight").iterdir()
    assert (run / "metrics.jsonl").read_bytes() == (straight / "metrics.jsonl").read_bytes()
    with np.load(run / "weights.npz") as a, np.load(straight / "weights.npz") as b:
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
