"""`train.dtype: float64` means float64 end to end (issue 8, point 12): features and targets
reach the training step with every bit of the file, never through float32."""

import textwrap

import numpy as np
import pytest

from nnctl.backend import get_backend
from nnctl.config import load_config
from nnctl.step import load_splits
from nnctl.train import Trainer

FINE = 0.1 + 2**-40  # a float64 that float32 cannot hold


def config_text(dataset: str, dtype: str) -> str:
    return textwrap.dedent(f"""\
        data: {{{dataset}, normalize: none, split: {{val: 0.0, test: 0.0}}}}
        model: {{layers: [{{dense: {{units: 1}}}}]}}
        loss: mse
        optimizer: {{name: sgd, lr: 0.01}}
        train: {{epochs: 1, dtype: {dtype}, shuffle: false, batch_size: 4}}
        """)


def write_data(tmp_path, kind: str) -> str:
    x = np.array([[FINE, 1.0], [2.0, FINE * 3], [0.5, 0.25], [1e-20, 7.0]])
    y = np.array([FINE * 5, 1.0, 2.0, 1e-30])
    if kind == "npz":
        np.savez(tmp_path / "d.npz", x=x, y=y)
        return "dataset: npz, path: d.npz"
    rows = [f"{float(a)!r},{float(b)!r},{float(t)!r}" for (a, b), t in zip(x, y)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    return "dataset: csv, path: d.csv"


@pytest.mark.parametrize("kind", ["npz", "csv"])
def test_float64_splits_keep_every_bit(tmp_path, kind):
    dataset = write_data(tmp_path, kind)
    (tmp_path / "c.yaml").write_text(config_text(dataset, "float64"))
    splits = load_splits(load_config(tmp_path / "c.yaml"))
    x, y = splits.train.x, splits.train.y
    assert x.dtype == np.float64 and y.dtype == np.float64
    rows = {tuple(r) for r in x.tolist()}
    assert (FINE, 1.0) in rows and (2.0, FINE * 3) in rows and (1e-20, 7.0) in rows
    assert sorted(y[:, 0].tolist()) == sorted([FINE * 5, 1.0, 2.0, 1e-30])


def test_float64_standard_normalisation_is_computed_in_float64(tmp_path):
    dataset = write_data(tmp_path, "npz")
    text = config_text(dataset, "float64").replace("normalize: none", "normalize: standard")
    (tmp_path / "c.yaml").write_text(text)
    splits = load_splits(load_config(tmp_path / "c.yaml"))
    raw = np.load(tmp_path / "d.npz")["x"]
    norm = splits.normalizer
    expected = (raw - norm.offset) / norm.scale
    assert splits.train.x.dtype == np.float64
    assert {tuple(r) for r in splits.train.x.tolist()} == {tuple(r) for r in expected.tolist()}


def test_float32_runs_are_unchanged(tmp_path):
    dataset = write_data(tmp_path, "csv")
    (tmp_path / "c.yaml").write_text(config_text(dataset, "float32"))
    splits = load_splits(load_config(tmp_path / "c.yaml"))
    assert splits.train.x.dtype == np.float32 and splits.train.y.dtype == np.float32
    assert np.float32(FINE) in splits.train.x


def test_float64_trains_on_the_exact_targets(tmp_path):
    dataset = write_data(tmp_path, "npz")
    (tmp_path / "c.yaml").write_text(config_text(dataset, "float64"))
    trainer = Trainer(load_config(tmp_path / "c.yaml"), get_backend("cpu"), out=None)
    xs, ys = trainer.device_data["train"]
    assert xs.dtype == np.float64 and ys.dtype == np.float64
    summary = trainer.fit()
    assert summary["status"] == "completed"
    assert all(p.dtype == np.float64 for p in trainer.params)
