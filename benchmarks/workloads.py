"""The five benchmark workloads, each built through nnctl's own config path.

A workload is a YAML config (as a user would write it), parsed by
`config_from(load_yaml_text(...))` and prepared by `nnctl.step.prepare`, which loads and
splits the data and draws the initial weights. Every implementation (nnctl, NumPy by hand,
PyTorch, JAX) starts from those weights (`Case.initial`, by nnctl's parameter names) and
steps through the same pre-sliced float32 batches of the training split.

Synthetic data is written to a temporary .npz (standard normal features around 10 class
centres), so it goes through the same loader as a user's data; `normalize: none` keeps it
as drawn. The digits MLP uses the shipped digits data, standardised.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

LR = 0.01  # plain SGD, no momentum, for every workload

HEADER = """\
seed: 0
data:
{data}
loss: cross_entropy
optimizer: {{name: sgd, lr: {lr}}}
train: {{epochs: 1, batch_size: {batch}}}
metrics: [accuracy]
model:
  layers:
"""

NPZ_DATA = """\
  dataset: npz
  path: {path}
  split: {{val: 0.05, test: 0.05}}
  normalize: none"""

DIGITS_DATA = """\
  dataset: digits
  split: {val: 0.15, test: 0.15}
  normalize: standard"""

# name -> (description, batch, features per sample or None for the digits, layers YAML)
WORKLOADS = {
    "mlp_digits": (
        "MLP 64-128-64-10 (relu) on the digits", 64, None, """\
    - dense: {name: h1, units: 128, activation: relu}
    - dense: {name: h2, units: 64, activation: relu}
    - dense: {name: out, units: 10}
"""),
    "mlp_784": (
        "MLP 784-512-256-10 (relu), synthetic", 128, (784,), """\
    - dense: {name: h1, units: 512, activation: relu}
    - dense: {name: h2, units: 256, activation: relu}
    - dense: {name: out, units: 10}
"""),
    "cnn": (
        "CNN 1x28x28: conv3x3(16, pad 1)+relu+maxpool2, conv3x3(32, pad 1)+relu+maxpool2, "
        "dense 10", 64, (1, 28, 28), """\
    - conv2d: {name: c1, filters: 16, kernel: 3, padding: 1, activation: relu}
    - max_pool2d: {name: p1, kernel: 2}
    - conv2d: {name: c2, filters: 32, kernel: 3, padding: 1, activation: relu}
    - max_pool2d: {name: p2, kernel: 2}
    - flatten: {name: flat}
    - dense: {name: out, units: 10}
"""),
    "lstm": (
        "LSTM input 32, hidden 128, 32 steps; last h -> dense 10", 32, (32, 32), """\
    - lstm: {name: rnn, units: 128}
    - dense: {name: out, units: 10}
"""),
    "transformer": (
        "transformer encoder block (post-norm, 4 heads, d_model 128, ff 256 relu, no "
        "dropout), 64 steps; mean over time -> dense 10", 16, (64, 128), """\
    - transformer_encoder: {name: enc, heads: 4, ff_units: 256, dropout: 0.0}
    - reshape: {name: img, shape: [1, 64, 128]}
    - avg_pool2d: {name: meanpool, kernel: [64, 1]}
    - flatten: {name: flat}
    - dense: {name: out, units: 10}
"""),
}

CASE_NAMES = tuple(WORKLOADS)
BATCHES_PER_CASE = 8  # pre-sliced batches cycled over


def config_text(name: str, npz_path: Path | None, batch: int | None = None) -> str:
    _, default_batch, features, layers = WORKLOADS[name]
    data = DIGITS_DATA if features is None else NPZ_DATA.format(path=json.dumps(str(npz_path)))
    return HEADER.format(data=data, lr=LR, batch=batch or default_batch) + layers


def write_synthetic(path: Path, features: tuple, samples: int, seed: int = 1234) -> None:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10,) + features).astype(np.float32)
    y = rng.integers(0, 10, size=samples).astype(np.int64)
    x = (0.5 * centres[y] + rng.normal(size=(samples,) + features)).astype(np.float32)
    np.savez(path, x=x, y=y)


class Case:
    """One workload: nnctl's config, splits, StepBuilder and initial weights, and the batches."""

    def __init__(self, name: str, tmp: Path, batch: int | None = None):
        from nnctl.config import config_from, load_yaml_text
        from nnctl.step import prepare

        self.name = name
        self.description, default_batch, features, _ = WORKLOADS[name]
        self.batch = batch or default_batch
        npz = None
        if features is not None:
            npz = tmp / f"{name}.npz"
            # enough for BATCHES_PER_CASE batches after the 10% held out
            write_synthetic(npz, features, int(self.batch * BATCHES_PER_CASE / 0.9) + 2)
        self.yaml = config_text(name, npz, self.batch)
        self.config = config_from(load_yaml_text(self.yaml, f"benchmarks/{name}.yaml"),
                                  ROOT / "benchmarks" / f"{name}.yaml")
        self.splits, self.builder = prepare(self.config)
        self.param_names = list(self.builder.params)
        self.initial = {n: np.array(self.builder.model.initial[n], dtype=np.float32)
                        for n in self.param_names}
        self.lr = float(self.config.spec.optimizer.lr)
        x, y = self.splits.train.x, self.splits.train.y
        n = min(len(x) // self.batch, BATCHES_PER_CASE) * self.batch
        if n == 0:
            raise SystemExit(f"{name}: fewer training samples than one batch of {self.batch}")
        self.batches = [(np.ascontiguousarray(x[i:i + self.batch], dtype=np.float32),
                         np.ascontiguousarray(y[i:i + self.batch]))
                        for i in range(0, n, self.batch)]

    @property
    def n_params(self) -> int:
        return int(sum(p.size for p in self.initial.values()))

    def weights(self) -> dict[str, np.ndarray]:
        """A fresh copy of the initial weights, by nnctl's parameter names."""
        return {k: v.copy() for k, v in self.initial.items()}
