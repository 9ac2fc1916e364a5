"""Class weights in the cross-entropy (loss.class_weights: balanced or a list): PyTorch's
CrossEntropyLoss(weight=) in float64, values and gradients (with label smoothing and with a
padding mask), sklearn's balanced weights, and the effect on an imbalanced task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.config import load_config
from nnctl.errors import ConfigError
from nnctl.graph import Tensor
from nnctl.step import weighted_cross_entropy
from nnctl.train.trainer import Trainer


@pytest.mark.parametrize("smoothing", [0.0, 0.15])
def test_matches_pytorch_weighted_cross_entropy(smoothing):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    out, y = rng.normal(size=(9, 4)), rng.integers(0, 4, 9)
    w = np.array([0.5, 2.0, 1.0, 3.0])
    x = Tensor(out)
    loss = weighted_cross_entropy(x, Tensor(y), w, None, smoothing)
    (g,) = grad(loss, [x])
    xt = torch.tensor(out, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(xt, torch.tensor(y), weight=torch.tensor(w),
                                            label_smoothing=smoothing)
    ref.backward()
    assert float(loss.numpy()) == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(g.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_a_mask_leaves_padded_steps_out():
    rng = np.random.default_rng(2)
    out, y = rng.normal(size=(3, 5, 4)), rng.integers(0, 4, (3, 5))
    mask = (np.arange(5)[None] < np.array([[5], [2], [3]])).astype(float)
    w = np.array([1.0, 0.2, 4.0, 1.5])
    got = float(weighted_cross_entropy(Tensor(out), Tensor(y), w, Tensor(mask)).numpy())
    real = mask.astype(bool)
    logp = out - np.log(np.exp(out).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, y[..., None], -1)[..., 0]
    expected = (w[y] * nll)[real].sum() / w[y][real].sum()
    assert got == pytest.approx(float(expected), rel=1e-12)


IMBALANCED = """\
seed: 0
data: {dataset: npz, path: d.npz, normalize: none, split: {val: 0.2, test: 0.3}}
model:
  layers:
    - dense: {units: classes}
loss: {name: cross_entropy, class_weights: WEIGHTS}
optimizer: {name: adam, lr: 0.05}
train: {epochs: 30, batch_size: 64, dtype: float64}
metrics: [accuracy, recall_macro]
"""


def write_imbalanced(folder: Path) -> None:
    """95% of class 0; class 1 overlaps it (a linear model must trade errors off)."""
    rng = np.random.default_rng(0)
    n = 2000
    y = (rng.random(n) < 0.05).astype(np.int64)
    x = rng.normal(size=(n, 2)) + y[:, None] * 1.5
    np.savez(folder / "d.npz", x=x, y=y)


def train(folder: Path, weights: str) -> tuple[Trainer, dict]:
    (folder / "c.yaml").write_text(IMBALANCED.replace("WEIGHTS", weights))
    trainer = Trainer(load_config(folder / "c.yaml"), get_backend("cpu"), out=None)
    return trainer, trainer.fit()


def test_balanced_weights_are_sklearns_and_lift_the_rare_class(tmp_path):
    write_imbalanced(tmp_path)
    trainer, balanced = train(tmp_path, "balanced")
    y = trainer.splits.train.y
    counts = np.bincount(y)
    np.testing.assert_allclose(trainer.builder.class_weights, len(y) / (2 * counts),
                               rtol=1e-15)
    sklearn = pytest.importorskip("sklearn.utils.class_weight")
    np.testing.assert_allclose(trainer.builder.class_weights, sklearn.compute_class_weight(
        "balanced", classes=np.array([0, 1]), y=y), rtol=1e-12)
    _, plain = train(tmp_path, "null")
    # unweighted, the rare class is mostly given up; balanced, both classes count alike
    assert balanced["test_recall_macro"] > plain["test_recall_macro"] + 0.1
    assert plain["test_accuracy"] > balanced["test_accuracy"]


def test_explicit_weights_and_their_mistakes(tmp_path):
    write_imbalanced(tmp_path)
    trainer, _ = train(tmp_path, "[1.0, 10.0]")
    np.testing.assert_array_equal(trainer.builder.class_weights, [1.0, 10.0])
    for weights, message in (("[1.0, 2.0, 3.0]", "loss.class_weights: expected 2 weights, "
                                                  "one per class, got 3"),
                             ("heavy", "loss.class_weights: expected 'balanced' or a list")):
        with pytest.raises(ConfigError, match=message):
            train(tmp_path, weights)
