"""Config specs of the neural comparators (siamese models): the comparison layers (distance,
triplet_distance, difference), the losses contrastive and triplet, and the data kinds pairs
and triplets, registered into the config vocabulary. The layers live in
nnctl.layers.compare, the loaders in nnctl.data.comparisons (the nnctl.data package imports
that module, which registers them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nnctl.config.layer_specs import LayerSpec, register_layer_spec
from nnctl.config.schema import _DataCommon, register_dataset_spec, register_loss_spec
from nnctl.config.validate import (Context, boolean, choice, field, integer, number, optional,
                                   string)

METRICS = ("euclidean", "squared_euclidean", "cosine")  # nnctl.layers.compare.METRICS
SOURCES = ("digits", "npz")  # the labelled data sets pairs and triplets are drawn from

_METRIC = field(choice(*METRICS), "euclidean",
                "euclidean: sqrt(sum (a-b)^2 + 1e-12); squared_euclidean: sum (a-b)^2; "
                "cosine: 1 - cos(a, b)")
_MARGIN = number(0.0, None, low_open=True, what="a number > 0")


@dataclass(frozen=True, kw_only=True)
class DistanceSpec(LayerSpec):
    kind: ClassVar[str] = "distance"
    merge: ClassVar[bool] = True
    shorthand: ClassVar[str] = "metric"
    metric: str = _METRIC

    def validate(self, path, ctx: Context) -> None:
        if self.inputs is not None and len(self.inputs) != 2:
            ctx.error(path + ("inputs",), f"distance compares two layers (left, right), got "
                                          f"{len(self.inputs)}")


@dataclass(frozen=True, kw_only=True)
class TripletDistanceSpec(LayerSpec):
    kind: ClassVar[str] = "triplet_distance"
    merge: ClassVar[bool] = True
    shorthand: ClassVar[str] = "metric"
    metric: str = _METRIC

    def validate(self, path, ctx: Context) -> None:
        if self.inputs is not None and len(self.inputs) != 3:
            ctx.error(path + ("inputs",), f"triplet_distance compares three layers (anchor, "
                                          f"positive, negative), got {len(self.inputs)}")


@dataclass(frozen=True, kw_only=True)
class DifferenceSpec(LayerSpec):
    kind: ClassVar[str] = "difference"
    merge: ClassVar[bool] = True

    def validate(self, path, ctx: Context) -> None:
        if self.inputs is not None and len(self.inputs) != 2:
            ctx.error(path + ("inputs",), f"difference reads two layers, got "
                                          f"{len(self.inputs)}")


@dataclass(frozen=True, kw_only=True)
class ContrastiveSpec:
    name: str = field(string, "contrastive", "same/different pairs from a distance: mean of "
                                             "y d^2 + (1 - y) max(0, margin - d)^2")
    margin: float = field(_MARGIN, 1.0, "how far apart different pairs are pushed")


@dataclass(frozen=True, kw_only=True)
class TripletSpec:
    name: str = field(string, "triplet", "triplets from (d(anchor, positive), d(anchor, "
                                         "negative)): mean of max(0, d_ap - d_an + margin)")
    margin: float = field(_MARGIN, 1.0, "how much nearer the positive must be than the negative")


_NO_NORMALIZE = field(choice("none"), "none",
                      "always none: the samples are scaled before pairing (see `scale`), so "
                      "that every side of a pair is scaled alike")


@dataclass(frozen=True, kw_only=True)
class _Comparisons(_DataCommon):
    """Keys pairs and triplets share: where the labelled samples come from and how they are
    scaled."""

    of: str = field(choice(*SOURCES), "digits",
                    "the labelled data set drawn from: digits (the shipped 8x8 digits) or npz "
                    "(`path`, arrays `x_key` and `y_key`, integer labels)")
    path: str | None = field(optional(string), None,
                             "with of: npz, the file; a relative path is relative to the "
                             "config file")
    x_key: str = field(string, "x", "with of: npz, the features' array")
    y_key: str = field(string, "y", "with of: npz, the labels' array (integers)")
    seed_offset: int = field(integer(min=0), 0,
                             "added to the run's seed for drawing the samples (the split of "
                             "the source samples uses the run's seed)")
    scale: str = field(choice("standard", "minmax", "none"), "standard",
                       "feature scaling of the source samples, fitted on the training group")
    normalize: str = _NO_NORMALIZE
    online: bool = field(boolean, False,
                         "draw the training split's rows afresh every epoch (seeded by the "
                         "seed and the epoch) from its source samples; val and test stay fixed")
    hard_negatives: float = field(number(0.0, 1.0, what="a fraction in [0, 1]"), 0.0,
                                  "with online: this share of the other-class sides is the "
                                  "nearest, by the model's embedding at the epoch's start, of "
                                  "`candidates` random samples of other classes")
    candidates: int = field(integer(min=2, what="an integer >= 2"), 16,
                            "other-class samples a hard negative is chosen among")

    def validate(self, path, ctx: Context) -> None:
        super().validate(path, ctx)
        if self.of == "npz" and self.path is None:
            ctx.error(path + ("path",), "of: npz needs the file's path")
        if self.of != "npz" and self.path is not None:
            ctx.error(path + ("path",), f"path is for of: npz; of: {self.of} is built in")
        if self.hard_negatives and not self.online:
            ctx.error(path + ("hard_negatives",), "hard negatives are mined as training goes; "
                                                  "set online: true")


@dataclass(frozen=True, kw_only=True)
class PairsData(_Comparisons):
    dataset: str = field(string, "pairs", "pairs of samples of a labelled data set, labelled 1 "
                                          "(same class) or 0 (different): x the left sample, "
                                          "input 'right' the other (docs/comparator.md)")
    pairs: int = field(integer(min=10, what="an integer >= 10"), 4000, "pairs in all")
    positive_fraction: float = field(number(0.0, 1.0, low_open=True, high_open=True,
                                            what="a fraction in (0, 1)"), 0.5,
                                     "the share of same-class pairs")


@dataclass(frozen=True, kw_only=True)
class TripletsData(_Comparisons):
    dataset: str = field(string, "triplets", "triplets of samples of a labelled data set: x the "
                                             "anchor, inputs 'positive' (same class) and "
                                             "'negative' (another class); labels all 0")
    triplets: int = field(integer(min=10, what="an integer >= 10"), 4000, "triplets in all")


for _spec in (DistanceSpec, TripletDistanceSpec, DifferenceSpec):
    register_layer_spec(_spec)
for _spec in (ContrastiveSpec, TripletSpec):
    register_loss_spec(_spec)
for _spec in (PairsData, TripletsData):
    register_dataset_spec(_spec)
