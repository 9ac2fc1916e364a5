"""The data kinds of neural comparators: `pairs` (two samples of a labelled data set, labelled
1 same class / 0 different) and `triplets` (anchor, positive of its class, negative of
another), drawn once at load, seeded.

Held-out items: nnctl.step.load_splits cuts the rows into train / val / test with
nnctl.data.dataset.split after this loader returns. The loader computes that same row
assignment (same row count, labels and seed), splits the SOURCE samples into three disjoint
groups (seeded, stratified by class, the same fractions) and fills every row of a split only
with samples of that split's group: a test pair never shows a sample the model trained on.
"""

from __future__ import annotations

import numpy as np

from nnctl.data.dataset import Dataset, Normalizer, split
from nnctl.data.kinds import register_loader
from nnctl.data.loaders import load_digits, load_npz
from nnctl.errors import DataError

SPLITS = ("train", "val", "test")


def _source(spec, dtype: str) -> tuple[Dataset, str]:
    """The labelled data set drawn from, and where it lives (for messages)."""
    if spec.of == "digits":
        return load_digits(), "digits"
    data = load_npz(spec.path, spec.x_key, spec.y_key, dtype=dtype)
    if not np.issubdtype(data.y.dtype, np.integer) or data.y.ndim != 1:
        raise DataError(f"pairs and triplets need one integer class label per sample in "
                        f"'{spec.y_key}', got {data.y.dtype} of shape {list(data.y.shape)}",
                        path=spec.path)
    return data, spec.path


def _groups(source: Dataset, spec, seed: int, where: str) -> list[np.ndarray]:
    """Three disjoint sets of source indices (train, val, test groups), stratified by class,
    with the config's split fractions."""
    classes = np.unique(source.y)
    if len(classes) < 2:
        if where == "digits":
            raise DataError(f"{spec.dataset} need at least two classes; digits has "
                            f"{len(classes)}")
        raise DataError(f"{spec.dataset} need at least two classes; the labels "
                        f"'{spec.y_key}' hold {len(classes)}", path=where)
    try:
        parts = split(Dataset(np.arange(len(source)), source.y), spec.split.val,
                      spec.split.test, seed=seed, stratify=True)
    except ValueError as err:
        raise DataError(f"cannot split the {len(source)} samples of {where}: {err}") from None
    return [np.sort(p.x) for p in parts]


def _row_groups(y: np.ndarray, spec, seed: int) -> list[np.ndarray]:
    """The rows load_splits will put in train, val and test: `split` on the same row count,
    labels and seed, stratified as load_splits stratifies 1-D integer labels. Fractions that
    `split` refuses: every row in train (load_splits then reports the config mistake)."""
    try:
        parts = split(Dataset(np.arange(len(y)), y), spec.split.val, spec.split.test,
                      seed=seed, stratify=True)
    except ValueError:
        return [np.arange(len(y)), np.arange(0), np.arange(0)]
    return [p.x for p in parts]


class _Group:
    """One split's source samples by class: draws same-class pairs (two distinct samples)
    and different-class pairs."""

    def __init__(self, indices: np.ndarray, labels: np.ndarray, name: str, what: str,
                 where: str):
        classes = np.unique(labels[indices])
        self.members = [indices[labels[indices] == c] for c in classes]
        self.pairable = [m for m in self.members if len(m) >= 2]
        self.name, self.what, self.where = name, what, where
        # the same as arrays, for drawing many at once: members padded per class, sizes,
        # and each source index's class position
        self.table, self.sizes = _padded(self.members)
        self.pair_table, self.pair_sizes = _padded(self.pairable)
        self.class_of = np.full(int(indices.max()) + 1 if len(indices) else 0, -1, np.int64)
        for c, m in enumerate(self.members):
            self.class_of[m] = c

    def check(self, same: bool, different: bool) -> None:
        if same and not self.pairable:
            raise DataError(f"the {self.name} split's source samples have no class with two "
                            f"samples, so no same-class {self.what}; use more samples of "
                            f"{self.where} or a larger {self.name} fraction")
        if different and len(self.members) < 2:
            raise DataError(f"the {self.name} split's source samples hold {len(self.members)} "
                            f"class, so no different-class {self.what}; use more samples of "
                            f"{self.where} or a larger {self.name} fraction")

    def same(self, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
        """k pairs of distinct samples of one class (a class drawn uniformly among those with
        two or more samples)."""
        pick = rng.integers(len(self.pairable), size=k)
        sizes = self.pair_sizes[pick]
        i = rng.integers(0, sizes)
        j = rng.integers(0, sizes - 1)
        j = j + (j >= i)  # a second sample, never the first
        return self.pair_table[pick, i], self.pair_table[pick, j]

    def other(self, rng: np.random.Generator, than: np.ndarray) -> np.ndarray:
        """For each sample index in `than`, one sample of another class (uniform class, then
        uniform member)."""
        own = self.class_of[np.asarray(than, np.int64)]
        cls = rng.integers(0, len(self.members) - 1, size=len(than))
        cls = cls + (cls >= own)
        at = rng.integers(0, self.sizes[cls])
        return self.table[cls, at]

    def any(self, rng: np.random.Generator, k: int) -> np.ndarray:
        """k samples, a class drawn uniformly, then a member."""
        cls = rng.integers(len(self.members), size=k)
        at = rng.integers(0, self.sizes[cls])
        return self.table[cls, at]


def _padded(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """([len(groups), longest] the groups' indices padded with -1, [len(groups)] sizes)."""
    sizes = np.array([len(g) for g in groups], np.int64)
    table = np.full((len(groups), int(sizes.max()) if len(groups) else 0), -1, np.int64)
    for c, g in enumerate(groups):
        table[c, :len(g)] = g
    return table, sizes


def _prepare(spec, seed: int, dtype: str):
    """(scaled source features, labels, source groups, where, rng)."""
    source, where = _source(spec, dtype)
    groups = _groups(source, spec, seed, where)
    scaler = Normalizer.fit(source.x[groups[0]], spec.scale)
    x = scaler.apply(source.x).astype(dtype)
    rng = np.random.default_rng([seed, spec.seed_offset, 0x5EED])
    return x, source.y, groups, where, rng


class ComparisonSource:
    """What a pairs or triplets data set was drawn from, kept in Dataset.info["comparison"]
    for the trainer: each split's source samples with their labels (retrieval metrics), and a
    fresh draw of the training rows per epoch (`online`), optionally with hard negatives
    chosen by the model's embedding (the trainer passes it in; data never runs a model)."""

    def __init__(self, kind: str, spec, seed: int, x, labels, groups, where: str):
        self.kind, self.spec, self.seed = kind, spec, seed
        self.x, self.labels, self.groups, self.where = x, labels, groups, where

    @property
    def online(self) -> bool:
        return self.spec.online

    @property
    def mines(self) -> bool:
        return self.spec.online and self.spec.hard_negatives > 0

    def to_dict(self) -> dict:
        return {"kind": self.kind, "of": self.spec.of, "online": self.spec.online,
                "hard_negatives": self.spec.hard_negatives, "candidates": self.spec.candidates,
                "source_samples": {name: len(g) for name, g in zip(SPLITS, self.groups)}}

    def samples(self, split_name: str) -> tuple[np.ndarray, np.ndarray]:
        """(features, labels) of the source samples a split's rows are drawn from."""
        g = self.groups[SPLITS.index(split_name)]
        return self.x[g], self.labels[g]

    def draw(self, split_index: int, y: np.ndarray, rng: np.random.Generator,
             embedding: np.ndarray | None = None) -> np.ndarray:
        """Source indices [len(y), 2] (pairs: y 1 same, 0 different) or [len(y), 3]
        (triplets) from split `split_index`'s group. `embedding`: the group's samples
        embedded (rows in group order), for hard negatives."""
        name = SPLITS[split_index]
        group = _Group(self.groups[split_index], self.labels, name, self.kind, self.where)
        negatives = self._negatives(group, rng, embedding, split_index)
        if self.kind == "triplets":
            group.check(True, True)
            anchor, positive = group.same(rng, len(y))
            return np.stack([anchor, positive, negatives(anchor)], axis=1)
        sources = np.zeros((len(y), 2), np.int64)
        same, different = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        group.check(len(same) > 0, len(different) > 0)
        if len(same):
            sources[same] = np.stack(group.same(rng, len(same)), axis=1)
        if len(different):
            left = group.any(rng, len(different))
            sources[different] = np.stack([left, negatives(left)], axis=1)
        return sources

    def _negatives(self, group: "_Group", rng, embedding, split_index: int):
        """A function anchors -> other-class samples: uniform, or with embeddings, for a
        `hard_negatives` share of anchors the nearest of `candidates` uniform draws."""
        if embedding is None or not self.spec.hard_negatives:
            return lambda anchors: group.other(rng, anchors)
        members = self.groups[split_index]

        def hard(anchors):
            cand = np.stack([group.other(rng, anchors) for _ in range(self.spec.candidates)], 1)
            e_a = embedding[np.searchsorted(members, anchors)]
            e_c = embedding[np.searchsorted(members, cand)]
            nearest = np.argmin(((e_c - e_a[:, None]) ** 2).sum(-1), axis=1)
            use_hard = rng.random(len(anchors)) < self.spec.hard_negatives
            return np.where(use_hard, cand[np.arange(len(anchors)), nearest], cand[:, 0])
        return hard

    def redraw(self, train: Dataset, epoch: int, embedding: np.ndarray | None = None) -> Dataset:
        """The training split with rows drawn afresh for `epoch` (seeded by the run's seed,
        seed_offset and the epoch), the same same/different labels in the same places."""
        rng = np.random.default_rng([self.seed, self.spec.seed_offset, 0x5EED, epoch])
        sources = self.draw(0, train.y, rng, embedding)
        return _rows(self.kind, self.x, sources, train.y, train.name, train.info)


def _rows(kind: str, x: np.ndarray, sources: np.ndarray, y: np.ndarray, name: str,
          info: dict) -> Dataset:
    names = ("right",) if kind == "pairs" else ("positive", "negative")
    return Dataset(x[sources[:, 0]], y, name=name, info=info,
                   extra={n: x[sources[:, k + 1]] for k, n in enumerate(names)})


@register_loader("pairs")
def load_pairs(spec, seed: int, dtype: str) -> Dataset:
    """`dataset: pairs`: x the left sample, extra "right" the other, y int64 1 same / 0
    different (round(pairs * positive_fraction) same pairs); info["pair_of"] the source,
    info["comparison"] the ComparisonSource."""
    return draw_pairs(spec, seed, dtype)[0]


def draw_pairs(spec, seed: int, dtype: str) -> tuple[Dataset, np.ndarray]:
    """The pairs data set and [N, 2] the source sample indices of each row's two sides."""
    return _draw("pairs", spec, seed, dtype, spec.pairs)


@register_loader("triplets")
def load_triplets(spec, seed: int, dtype: str) -> Dataset:
    """`dataset: triplets`: x the anchor, extra "positive" (another sample of its class) and
    "negative" (a sample of another class), y int64 zeros; info as for pairs."""
    return draw_triplets(spec, seed, dtype)[0]


def draw_triplets(spec, seed: int, dtype: str) -> tuple[Dataset, np.ndarray]:
    """The triplets data set and [N, 3] the source sample indices of each row."""
    return _draw("triplets", spec, seed, dtype, spec.triplets)


def _draw(kind: str, spec, seed: int, dtype: str, n: int) -> tuple[Dataset, np.ndarray]:
    x, labels, groups, where, rng = _prepare(spec, seed, dtype)
    y = np.zeros(n, np.int64)
    if kind == "pairs":
        y[:int(np.floor(n * spec.positive_fraction + 0.5))] = 1
        y = rng.permutation(y)
    source = ComparisonSource(kind, spec, seed, x, labels, groups, where)
    sources = np.zeros((n, 2 if kind == "pairs" else 3), np.int64)
    for k, rows in enumerate(_row_groups(y, spec, seed)):
        if len(rows):
            sources[rows] = source.draw(k, y[rows], rng)
    info = {"pair_of": where if spec.of == "digits" else f"npz {where}", "comparison": source}
    return _rows(kind, x, sources, y, f"{kind} of {spec.of}", info), sources
