"""The pairs and triplets data kinds (nnctl.data.comparisons): every split's rows drawn only
from its own group of source samples (checked through nnctl.step.load_splits on a real
config), labels and classes as promised, seeding, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nnctl.config.schema  # noqa: F401
import nnctl.config.compare_specs  # noqa: F401  (registers the kinds, until schema imports it)
import nnctl.data.comparisons  # noqa: F401
import nnctl.data.dataset
from nnctl.config import load_config
from nnctl.config.compare_specs import PairsData, TripletsData
from nnctl.config.schema import SplitSpec
from nnctl.data import load_digits
from nnctl.data.comparisons import draw_pairs, draw_triplets, load_pairs
from nnctl.errors import DataError
from nnctl.step import load_splits

PAIRS = """\
seed: {seed}
data: {{dataset: pairs, of: digits, pairs: 3000, positive_fraction: 0.4}}
model:
  inputs: [right]
  layers:
    - dense: {{name: a, units: 8, inputs: [input]}}
    - dense: {{name: b, units: 8, inputs: [right], shares: a}}
    - distance: {{inputs: [a, b]}}
loss: {{name: contrastive, margin: 1.0}}
optimizer: {{name: adam, lr: 0.01}}
train: {{epochs: 1, batch_size: 64}}
"""


def config(tmp_path: Path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_config(path)


def digit_keys(rows: np.ndarray, scaled_source: np.ndarray) -> set[int]:
    """The source digits (indices) whose scaled features are these rows (the 1797 digits are
    all different images)."""
    index = {row.tobytes(): i for i, row in enumerate(scaled_source)}
    return {index[row.tobytes()] for row in rows}


def test_split_rows_use_disjoint_source_digits_through_load_splits(tmp_path):
    splits = load_splits(config(tmp_path, PAIRS.format(seed=3)))
    # the scaled source: every digit appears as some row's left or right side
    every = np.concatenate([np.concatenate([s.x, s.extra["right"]])
                            for s in (splits.train, splits.val, splits.test)])
    source = np.unique(every, axis=0)
    used = {name: digit_keys(np.concatenate([s.x, s.extra["right"]]), source)
            for name, s in (("train", splits.train), ("val", splits.val),
                            ("test", splits.test))}
    assert not used["train"] & used["test"]
    assert not used["train"] & used["val"]
    assert not used["val"] & used["test"]
    # each split uses most of its ~15% / 70% of the 1797 digits
    assert len(used["test"]) > 200 and len(used["train"]) > 1000
    assert splits.info["pair_of"] == "digits"


def test_labels_balance_and_classes(tmp_path):
    spec = PairsData(pairs=3000, positive_fraction=0.4)
    data, sources = draw_pairs(spec, 0, "float64")
    labels = load_digits().y
    assert data.y.dtype == np.int64 and data.y.sum() == 1200
    same = labels[sources[:, 0]] == labels[sources[:, 1]]
    np.testing.assert_array_equal(same, data.y == 1)
    assert np.all(sources[:, 0] != sources[:, 1])  # a same pair is two different digits
    # every digit class turns up among the same pairs and on both sides of different pairs
    assert set(labels[sources[data.y == 1, 0]]) == set(range(10))
    # the splits keep the 40 % (load_splits stratifies on these labels)
    splits = load_splits(config(tmp_path, PAIRS.format(seed=0)))
    for part in (splits.train, splits.val, splits.test):
        assert abs(part.y.mean() - 0.4) < 0.01
    # scaled on the training group only: mean ~0 there, standardised features
    assert abs(float(data.x.mean())) < 0.05


def test_seeded():
    spec = PairsData(pairs=500)
    a, sa = draw_pairs(spec, 7, "float32")
    b, sb = draw_pairs(spec, 7, "float32")
    c, sc = draw_pairs(spec, 8, "float32")
    d, sd = draw_pairs(PairsData(pairs=500, seed_offset=1), 7, "float32")
    np.testing.assert_array_equal(sa, sb)
    np.testing.assert_array_equal(a.extra["right"], b.extra["right"])
    assert not np.array_equal(sa, sc) and not np.array_equal(sa, sd)


def test_triplets_anchor_positive_same_class_negative_other():
    spec = TripletsData(triplets=1000, split=SplitSpec(val=0.1, test=0.2))
    data, sources = draw_triplets(spec, 2, "float32")
    labels = load_digits().y
    assert set(data.extra) == {"positive", "negative"} and np.all(data.y == 0)
    assert np.all(labels[sources[:, 0]] == labels[sources[:, 1]])
    assert np.all(sources[:, 0] != sources[:, 1])
    assert np.all(labels[sources[:, 0]] != labels[sources[:, 2]])


def test_one_class_is_one_data_error(tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 3))
    np.savez(tmp_path / "one.npz", x=x, y=np.zeros(40, np.int64))
    spec = PairsData(of="npz", path=str(tmp_path / "one.npz"))
    with pytest.raises(DataError) as err:
        load_pairs(spec, 0, "float32")
    assert str(err.value) == f"{tmp_path / 'one.npz'}: pairs need at least two classes; " \
                             "the labels 'y' hold 1"
    assert "\n" not in str(err.value)


def test_one_class_through_the_cli_exits_2_with_one_line(tmp_path):
    from typer.testing import CliRunner

    from nnctl.cli.app import app
    x = np.random.default_rng(0).normal(size=(40, 3))
    np.savez(tmp_path / "one.npz", x=x, y=np.zeros(40, np.int64))
    text = PAIRS.format(seed=0).replace("of: digits, pairs: 3000",
                                        "of: npz, path: one.npz, pairs: 100")
    (tmp_path / "c.yaml").write_text(text)
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["train", str(tmp_path / "c.yaml"), "--out", str(runs),
                                      "--no-progress"])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "one.npz: pairs need at least two classes; the labels 'y' hold 1" in lines[0]
    assert not runs.exists()


@pytest.mark.parametrize("data, message", [
    ("{dataset: pairs, of: npz}", "data.path: of: npz needs the file's path"),
    ("{dataset: pairs, path: x.npz}", "data.path: path is for of: npz"),
    ("{dataset: pairs, normalize: standard}", "data.normalize"),
    ("{dataset: pairs, positive_fraction: 1.0}", "data.positive_fraction"),
])
def test_config_mistakes(tmp_path, data, message):
    from nnctl.errors import ConfigError
    (tmp_path / "x.npz").write_bytes(b"")
    text = PAIRS.format(seed=0).replace(
        "{dataset: pairs, of: digits, pairs: 3000, positive_fraction: 0.4}", data)
    with pytest.raises(ConfigError, match=message):
        config(tmp_path, text)


def test_online_redraws_train_rows_per_epoch_from_the_train_group_only():
    spec = PairsData(pairs=2000, online=True)
    data, sources = draw_pairs(spec, 4, "float64")
    source = data.info["comparison"]
    assert source.online and not source.mines
    labels = load_digits().y
    train_rows = np.zeros(len(data), bool)  # the rows load_splits will put in train
    from nnctl.data.comparisons import _row_groups
    train_rows[_row_groups(data.y, spec, 4)[0]] = True
    train = nnctl.data.dataset.Dataset(data.x[train_rows], data.y[train_rows],
                                       info=data.info,
                                       extra={"right": data.extra["right"][train_rows]})
    one, again, two = (source.redraw(train, e) for e in (1, 1, 2))
    np.testing.assert_array_equal(one.x, again.x)  # seeded by (seed, offset, epoch)
    assert not np.array_equal(one.x, two.x)
    np.testing.assert_array_equal(one.y, train.y)  # the same labels in the same places
    group = set(source.groups[0].tolist())
    index = {row.tobytes(): i for i, row in enumerate(source.x)}
    for redrawn in (one, two):
        left = np.array([index[r.tobytes()] for r in redrawn.x])
        right = np.array([index[r.tobytes()] for r in redrawn.extra["right"]])
        assert set(left) | set(right) <= group  # never a val or test digit
        np.testing.assert_array_equal(labels[left] == labels[right], redrawn.y == 1)
    assert source.to_dict()["source_samples"]["train"] == len(group)


def test_hard_negatives_are_the_nearest_of_the_candidates():
    """An embedding of one number per sample: with every negative hard, each is the nearest
    other-class candidate, much nearer than uniform negatives, and never of the anchor's
    class."""
    labels = load_digits().y
    spec = TripletsData(triplets=600, online=True, hard_negatives=1.0, candidates=8)
    data, _ = draw_triplets(spec, 0, "float64")
    source = data.info["comparison"]
    assert source.mines
    members = source.groups[0]
    embedding = np.random.default_rng(1).normal(size=(len(members), 1))
    rng_hard, rng_uniform = np.random.default_rng(5), np.random.default_rng(5)
    y = np.zeros(400, np.int64)
    hard = source.draw(0, y, rng_hard, embedding)
    uniform = source.draw(0, y, rng_uniform)
    assert np.all(labels[hard[:, 0]] != labels[hard[:, 2]])
    np.testing.assert_array_equal(hard[:, :2], uniform[:, :2])  # anchors drawn alike
    gap = lambda rows: np.abs(embedding[np.searchsorted(members, rows[:, 0])] -  # noqa: E731
                              embedding[np.searchsorted(members, rows[:, 2])]).mean()
    assert gap(hard) < 0.3 * gap(uniform)
    # replay the candidates: the chosen one is the nearest of them
    rng = np.random.default_rng(5)
    from nnctl.data.comparisons import _Group
    group = _Group(members, labels, "train", "triplets", "digits")
    anchor, _ = group.same(rng, 400)
    cand = np.stack([group.other(rng, anchor) for _ in range(8)], 1)
    d = np.abs(embedding[np.searchsorted(members, cand)][..., 0] -
               embedding[np.searchsorted(members, anchor)])
    np.testing.assert_array_equal(hard[:, 2], cand[np.arange(400), d.argmin(1)])


def test_hard_negatives_need_online(tmp_path):
    from nnctl.errors import ConfigError
    text = PAIRS.format(seed=0).replace("positive_fraction: 0.4}",
                                        "positive_fraction: 0.4, hard_negatives: 0.5}")
    with pytest.raises(ConfigError, match="data.hard_negatives: hard negatives are mined as "
                                          "training goes; set online: true"):
        config(tmp_path, text)
