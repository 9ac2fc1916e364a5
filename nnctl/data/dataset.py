"""The in-memory Dataset and what the trainer does with one: split, normalise, batch."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from nnctl.errors import DataError


# Class labels are 0..K-1 and the model gets K outputs. A few classes absent from the data
# are normal; a label far beyond the labels present (an id column, a typo such as 10**9) would
# size a model of billions of parameters, so it is refused before any model is built.
MAX_ABSENT_CLASSES = 1000


def check_class_labels(largest: int, distinct: int, what: str, where: str) -> None:
    """Refuse labels whose largest value implies many more classes than the data has.
    `what` says where the largest label is (a line, an index), for the message."""
    classes = largest + 1
    if classes - distinct > max(MAX_ABSENT_CLASSES, distinct):
        raise DataError(f"{what} implies {classes:,} classes, but only {distinct:,} distinct "
                        f"labels appear; expected class labels numbered 0..K-1 (write "
                        f"regression targets as floats, e.g. {largest}.0)", path=where)


@dataclass
class Dataset:
    """Samples in memory. x: float (N, *features) in the run's dtype (float32 unless
    train.dtype says float64); y: int64 class labels (N,) or float regression targets (N,) /
    (N, k). Loaders enforce the dtypes; this class trusts them."""

    x: np.ndarray
    y: np.ndarray
    name: str = ""
    # Variable-length sequences are padded at the end to one length; these hold each
    # sample's real length (int64 (N,)). x_len: steps of x (its padding mask); y_len: steps
    # of a target sequence of its own length (sequence to sequence; a tagger's labels follow
    # x_len). None: no padding.
    x_len: np.ndarray | None = None
    y_len: np.ndarray | None = None
    # facts every split shares: vocabularies ("input", "target", "tags": objects with
    # to_dict), the audio sample rate, which axes of an extra input are padded steps
    # ("trim": {name: axes}), ...; subsets keep the same dict
    info: dict = dataclasses.field(default_factory=dict)
    # further named model inputs, per sample (first axis N): a graph's adjacency, ...
    extra: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} samples but y has {len(self.y)}")
        for key in ("x_len", "y_len"):
            lengths = getattr(self, key)
            if lengths is not None and len(lengths) != len(self.x):
                raise ValueError(f"{key} has {len(lengths)} entries for {len(self.x)} samples")
        for key, array in self.extra.items():
            if len(array) != len(self.x):
                raise ValueError(f"input {key} has {len(array)} samples for {len(self.x)}")

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, indices) -> Dataset:
        # intp so an empty list still indexes (a float64 empty array would not).
        idx = np.asarray(indices, dtype=np.intp)
        return dataclasses.replace(
            self, x=self.x[idx], y=self.y[idx],
            x_len=None if self.x_len is None else self.x_len[idx],
            y_len=None if self.y_len is None else self.y_len[idx],
            extra={k: v[idx] for k, v in self.extra.items()})

    def with_x(self, x: np.ndarray) -> Dataset:
        """The same samples (labels, lengths, info) with other features."""
        return dataclasses.replace(self, x=x)

    @property
    def num_classes(self) -> int | None:
        if not np.issubdtype(self.y.dtype, np.integer):
            return None
        return int(self.y.max()) + 1 if self.y.size else 0


def split(dataset: Dataset, val_fraction: float, test_fraction: float, seed: int,
          stratify: bool = True) -> tuple[Dataset, Dataset, Dataset]:
    """Split into (train, val, test), deterministic for a seed.

    Split sizes are round(n * fraction). With integer labels and stratify=True each split
    takes its share from every class (largest-remainder allocation), so class proportions
    are kept to within one sample per class."""
    for label, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not (isinstance(f, numbers.Real) and not isinstance(f, bool)
                and math.isfinite(f) and f >= 0):
            raise ValueError(f"{label} must be a number >= 0, got {f!r}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got "
                         f"{val_fraction} + {test_fraction}")
    n = len(dataset)
    n_val, n_test = _round(n * val_fraction), _round(n * test_fraction)
    n_train = n - n_val - n_test
    for label, f, k in (("train", 1 - val_fraction - test_fraction, n_train),
                        ("val", val_fraction, n_val), ("test", test_fraction, n_test)):
        if f > 0 and k <= 0:
            raise ValueError(f"{label} split would be empty: {n} samples, "
                             f"{label} fraction {f:g}")

    rng = np.random.default_rng(seed)
    if stratify and np.issubdtype(dataset.y.dtype, np.integer):
        classes, inverse = np.unique(dataset.y, return_inverse=True)
        # Shuffle each class once, then cut it into test | val | train pieces.
        members = [rng.permutation(np.flatnonzero(inverse == c)) for c in range(len(classes))]
        counts = np.array([len(m) for m in members])
        take_test = _allocate(n_test, counts, rng)
        take_val = _allocate(n_val, counts - take_test, rng)
        parts: list[list[np.ndarray]] = [[], [], []]
        for m, t, v in zip(members, take_test, take_val):
            parts[0].append(m[t + v:])
            parts[1].append(m[t:t + v])
            parts[2].append(m[:t])
        # Concatenation groups samples by class; permute so a split is not class-ordered.
        pieces = [rng.permutation(np.concatenate(p)) for p in parts]
    else:
        order = rng.permutation(n)
        pieces = [order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]]
    train, val, test = (dataset.subset(p) for p in pieces)
    return train, val, test


def _round(v: float) -> int:
    # Half-up, not Python's banker's rounding, so sizes do not flip between even/odd n.
    return int(math.floor(v + 0.5))


def _allocate(total: int, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split `total` across classes in proportion to `counts`, never exceeding a count."""
    if total == 0 or counts.sum() == 0:
        return np.zeros_like(counts)
    ideal = total * counts / counts.sum()
    take = np.minimum(np.floor(ideal).astype(np.int64), counts)
    # Largest remainders get the leftover samples; ties broken at random, not by class id.
    order = np.lexsort((rng.random(len(counts)), -(ideal - take)))
    left = total - int(take.sum())
    for c in order:
        if left == 0:
            break
        if take[c] < counts[c]:
            take[c] += 1
            left -= 1
    return take


_METHODS = ("standard", "minmax", "none")


@dataclass
class Normalizer:
    """Per-feature affine map x -> (x - offset) / scale, fitted on training data only."""

    method: str
    offset: np.ndarray  # float64, shape = features
    scale: np.ndarray   # float64, shape = features, never 0

    @classmethod
    def fit(cls, x: np.ndarray, method: str = "standard") -> Normalizer:
        if method not in _METHODS:
            raise ValueError(f"normalization method must be one of {', '.join(_METHODS)}; "
                             f"got {method!r}")
        x = np.asarray(x, dtype=np.float64)  # float64 so sums over many samples stay exact
        if x.ndim < 1 or len(x) == 0:
            raise ValueError("cannot fit a normalizer on an empty array")
        if method == "standard":
            offset, scale = x.mean(axis=0), x.std(axis=0)
        elif method == "minmax":
            offset = x.min(axis=0)
            scale = x.max(axis=0) - offset
        else:
            offset, scale = np.zeros(x.shape[1:]), np.ones(x.shape[1:])
        # A constant feature keeps its centred value (0) instead of dividing by zero.
        scale = np.where(scale > 0, scale, 1.0)
        return cls(method, np.asarray(offset, np.float64), np.asarray(scale, np.float64))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The normalised samples in float64: the caller casts them to the run's dtype, so
        a float64 run keeps every bit."""
        x = np.asarray(x)
        if x.shape[1:] != self.offset.shape:
            raise DataError(f"normalizer was fitted on samples of shape {self.offset.shape}, "
                            f"got samples of shape {x.shape[1:]}")
        return (x.astype(np.float64) - self.offset) / self.scale

    def to_dict(self) -> dict[str, Any]:
        # Plain lists of Python floats: JSON round-trips float64 exactly.
        return {"method": self.method, "shape": list(self.offset.shape),
                "offset": self.offset.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalizer:
        try:
            method, shape = d["method"], tuple(int(s) for s in d["shape"])
            offset = np.asarray(d["offset"], dtype=np.float64).reshape(shape)
            scale = np.asarray(d["scale"], dtype=np.float64).reshape(shape)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError("normalizer: expected a mapping with method, shape, offset, scale "
                            f"(numbers); {type(e).__name__}: {e}") from None
        if method not in _METHODS:
            raise DataError(f"normalizer: unknown method {method!r}; expected one of "
                            f"{', '.join(_METHODS)}")
        if not (np.all(np.isfinite(offset)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise DataError("normalizer: offset must be finite and scale finite and > 0")
        return cls(method, offset, scale)


def batch_indices(n: int, batch_size: int, shuffle: bool,
                  rng: np.random.Generator | None = None) -> Iterator[np.ndarray]:
    """Index arrays that cover 0..n-1 exactly once; the last batch may be smaller."""
    if n < 0 or batch_size < 1:
        raise ValueError(f"need n >= 0 and batch_size >= 1, got n={n}, batch_size={batch_size}")
    if shuffle:
        if rng is None:
            raise ValueError("shuffle=True needs a numpy Generator as rng")
        order = rng.permutation(n)
    else:
        order = np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]
