"""The video data kinds: the generated moving_shapes task (layout, balance, seeding, the
motion itself, and that one frame does not give the direction away) and frames_npz (good
files, and bad ones through the CLI: one error line, exit 2, nothing written)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import nnctl.config.video_specs  # noqa: F401 - registers the kinds (until schema imports it)
import nnctl.data.video  # noqa: F401 - registers the loaders (until nnctl.data imports it)
import nnctl.layers.video  # noqa: F401 - registers the layers (until nnctl.layers imports it)
from nnctl.cli.app import app
from nnctl.data.video import (DIRECTIONS, SHAPES, STEPS, load_frames_npz,
                              make_moving_shapes)
from nnctl.errors import DataError


# ---- moving_shapes ------------------------------------------------------------------------

def test_layout_balance_and_seed():
    d = make_moving_shapes(202, seed=5, frames=6, size=10)
    assert d.x.shape == (202, 6, 1, 10, 10) and d.x.dtype == np.float32
    assert d.y.dtype == np.int64 and sorted(np.bincount(d.y)) == [50, 50, 51, 51]
    assert d.info["labels"] == list(DIRECTIONS)
    again, other = make_moving_shapes(202, seed=5, frames=6, size=10), \
        make_moving_shapes(202, seed=6, frames=6, size=10)
    assert np.array_equal(d.x, again.x) and np.array_equal(d.y, again.y)
    assert not np.array_equal(d.x, other.x)


def test_each_frame_is_the_last_one_moved_by_the_labelled_direction():
    """Without noise every frame holds the same shape (same pixel count), and frame t+1 is
    frame t rolled (on the torus) by speed * the label's step, for one speed in 1..max."""
    d = make_moving_shapes(200, seed=0, frames=8, size=12, max_speed=3, noise=0.0,
                           dtype="float64")
    sizes = {len(s) for s in SHAPES}
    for clip, label in zip(d.x[:, :, 0], d.y):
        counts = clip.sum(axis=(1, 2))
        assert counts[0] in sizes and np.all(counts == counts[0])
        speeds = [s for s in (1, 2, 3) if all(
            np.array_equal(np.roll(clip[t], s * STEPS[label], axis=(0, 1)), clip[t + 1])
            for t in range(7))]
        assert speeds, f"clip labelled {DIRECTIONS[label]} does not move that way"


def test_one_frame_does_not_tell_the_direction():
    """The per-direction mean of any one frame is flat: every pixel is lit equally often
    whatever the direction (a task with starts away from the edges would fail this)."""
    d = make_moving_shapes(4000, seed=1, noise=0.0, dtype="float64")
    overall = d.x[:, :, 0].mean()
    for t in (0, 7):
        for label in range(4):
            mean = d.x[d.y == label, t, 0].mean(axis=0)  # [12, 12]
            assert np.abs(mean - overall).max() < 0.03, (t, DIRECTIONS[label])


# ---- frames_npz -----------------------------------------------------------------------------

def write_npz(path: Path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_frames_npz_loads(tmp_path):
    x = np.random.default_rng(0).normal(size=(6, 4, 2, 5, 5))
    write_npz(tmp_path / "clips.npz", x=x, y=np.arange(6) % 3)
    d = load_frames_npz(tmp_path / "clips.npz", dtype="float64")
    assert np.array_equal(d.x, x) and d.y.tolist() == [0, 1, 2, 0, 1, 2]
    assert d.info["labels"] == ["0", "1", "2"]


def ragged_file(path: Path):
    x = np.empty(2, dtype=object)
    x[0], x[1] = np.zeros((4, 1, 5, 5)), np.zeros((4, 1, 6, 6))
    with open(path, "wb") as f:
        np.savez(f, x=x, y=np.arange(2), allow_pickle=True)  # the writer pickles it


@pytest.mark.parametrize("make, message", [
    (ragged_file, "holds clips or frames of different sizes"),
    (lambda p: write_npz(p, x=np.zeros((3, 4, 5, 5)), y=np.arange(3)),
     "has shape [3, 4, 5, 5]; expected frame stacks [N, frames, channels, height, width] "
     "(one channel? add its axis"),
    (lambda p: write_npz(p, x=np.zeros((3, 2, 1, 5, 5)), y=np.zeros(3)),
     "labels 'y' are float32; expected integer class labels"),
])
def test_frames_npz_bad_files(tmp_path, make, message):
    path = tmp_path / "clips.npz"
    make(path)
    with pytest.raises(DataError) as err:
        load_frames_npz(path)
    assert message in str(err.value) and str(path) in str(err.value)


CONFIG = """\
seed: 0
data:
  {data}
model:
  layers:
    - permute: [2, 1, 3, 4]
    - conv3d: {{filters: 4, kernel: 3, padding: same, activation: relu}}
    - max_pool3d: 2
    - flatten: {{}}
    - dense: {{units: classes}}
loss: cross_entropy
optimizer: {{name: adam, lr: 0.01}}
train:
  epochs: 1
  batch_size: 16
"""


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("command", ["train", "validate"])
@pytest.mark.parametrize("make, fragment", [
    (ragged_file, "different sizes"),
    (lambda p: write_npz(p, x=np.zeros((3, 4, 5, 5)), y=np.arange(3)), "expected frame stacks"),
])
def test_bad_frames_through_the_cli(tmp_path, command, make, fragment):
    data = tmp_path / "clips.npz"
    make(data)
    before = data.read_bytes()
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG.format(data="{dataset: frames_npz, path: clips.npz}"))
    runs = tmp_path / "runs"
    args = [command, config] + (["--out", runs, "--no-progress"] if command == "train" else [])
    result = cli(*args)
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0] and "clips.npz" in lines[0], lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    assert not runs.exists() and data.read_bytes() == before


def test_moving_shapes_trains_through_the_cli(tmp_path):
    """The whole path: the kind, the normalize default (none), conv3d on the symbolic batch,
    one epoch on a few clips."""
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG.format(data=textwrap.dedent(
        "{dataset: moving_shapes, samples: 64, frames: 4, size: 8}")))
    result = cli("train", config, "--out", tmp_path / "runs", "--no-progress")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "test_loss" in result.stdout and "test_accuracy" in result.stdout
    resolved, = (tmp_path / "runs").glob("*/config.yaml")  # the config with its defaults
    assert "normalize: none" in resolved.read_text()  # pixels are not scaled one by one
