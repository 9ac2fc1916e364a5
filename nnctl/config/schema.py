"""The config vocabulary: one frozen dataclass per section, layer type, optimizer and data set.

Each field's `check` and `doc` live here, next to its default; docs/config.md documents the
same keys. Layers and the trainer consume these specs and never see YAML.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from nnctl.config import sequence_specs  # noqa: F401  (registers rnn/lstm/gru/attention specs)
from nnctl.config.logging_specs import DistributedSpec, LoggingSpec
from nnctl.config.tune_specs import TuneSpec
from nnctl.config.layer_specs import (ACTIVATIONS, INITS, LAYERS, ActivationSpec, DenseSpec,
                                      DropoutSpec, ModelSpec, ReshapeSpec)
from nnctl.config.validate import (Context, Invalid, boolean, choice, field, got, integer,
                                   nested, number, one_of, optional, string, suggest, tagged,
                                   list_of)


CLASSIFICATION_METRICS = ("accuracy", "top5_accuracy", "precision_macro", "recall_macro",
                          "f1_macro", "bits_per_char", "span_f1", "exact_match",
                          "char_error_rate", "bleu")
CLASSIFICATION_LOSSES = ("cross_entropy", "crf", "focal")
# comparators: the model's output is a distance (pairs) or two (triplets), the labels say
# same (1) or different (0)
VERIFICATION_METRICS = ("verification_accuracy", "roc_auc", "recall_at_1", "recall_at_2",
                        "recall_at_4", "recall_at_8")
VERIFICATION_LOSSES = ("contrastive", "triplet")
REGRESSION_METRICS = ("mae", "rmse", "r2")
REGRESSION_LOSSES = ("mse", "l1", "huber", "smooth_l1")
# binary and multi-label: one logit per label, targets 0/1 (or in [0, 1]), decided at
# sigmoid > 0.5; `accuracy` is then the share of label decisions right (Keras's
# binary_accuracy), `subset_accuracy` the share of samples with every label right
MULTILABEL_METRICS = ("accuracy", "subset_accuracy", "precision_micro", "recall_micro",
                      "f1_micro", "precision_macro", "recall_macro", "f1_macro", "roc_auc")
MULTILABEL_LOSSES = ("bce_with_logits", "sigmoid_focal")
# which metrics go with which losses: a metric may serve several families (accuracy, roc_auc)
FAMILIES = {"classification": (CLASSIFICATION_LOSSES, CLASSIFICATION_METRICS),
            "verification": (VERIFICATION_LOSSES, VERIFICATION_METRICS),
            "regression": (REGRESSION_LOSSES, REGRESSION_METRICS),
            "multilabel": (MULTILABEL_LOSSES, MULTILABEL_METRICS)}
METRICS = tuple(dict.fromkeys(m for _, metrics in FAMILIES.values() for m in metrics))
DTYPES = ("float32", "float64")
MIXED_PRECISION = ("float16",)  # compute dtypes of train.mixed_precision (docs/mixed_precision.md)


def mixed_precision(v, path, ctx):
    """train.mixed_precision: float16, or null / false for off. bfloat16 is refused by name:
    NumPy and CuPy have no bfloat16 dtype to compute in."""
    if v is None or v is False:
        return None
    if v == "bfloat16":
        raise Invalid("bfloat16 is not supported (NumPy and CuPy have no bfloat16 dtype); "
                      "accepted: float16, or null (off)")
    if v not in MIXED_PRECISION:
        raise Invalid(f"expected float16, or null (off); got {got(v)}")
    return v
_MULTILABEL_DEFAULT = ["accuracy", "f1_micro", "roc_auc"]
DEFAULT_METRICS = {"cross_entropy": ["accuracy", "f1_macro"], "mse": ["mae", "rmse", "r2"],
                   "crf": ["accuracy", "span_f1"],
                   "contrastive": list(VERIFICATION_METRICS[:2]),
                   "triplet": list(VERIFICATION_METRICS[:2]),
                   "focal": ["accuracy", "f1_macro"],
                   "l1": list(REGRESSION_METRICS), "huber": list(REGRESSION_METRICS),
                   "smooth_l1": list(REGRESSION_METRICS),
                   "bce_with_logits": _MULTILABEL_DEFAULT,
                   "sigmoid_focal": list(_MULTILABEL_DEFAULT)}

positive = integer(min=1)
fraction = number(0.0, 1.0, high_open=True, what="a fraction in [0, 1)")

__all__ = ["ACTIVATIONS", "INITS", "LAYERS", "ActivationSpec", "DenseSpec", "DropoutSpec",
           "ModelSpec", "ReshapeSpec", "RunSpec"]


# ---- data -------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class SplitSpec:
    val: float = field(fraction, 0.15, "fraction of the samples held out for validation")
    test: float = field(fraction, 0.15, "fraction of the samples held out for the final test")

    def validate(self, path, ctx: Context) -> None:
        if self.val + self.test >= 1.0:
            ctx.error(path, f"val + test must leave samples to train on, got "
                            f"{self.val:g} + {self.test:g} >= 1")


@dataclass(frozen=True, kw_only=True)
class _DataCommon:
    """Keys every data set has; each subclass adds `dataset` and its own keys."""

    split: SplitSpec = field(nested(SplitSpec), SplitSpec(), "validation and test fractions")
    normalize: str = field(choice("standard", "minmax", "none"), "standard",
                           "feature scaling fitted on the training split")

    FILE_KEYS: ClassVar[tuple[str, ...]] = ("path", "images", "labels")

    def validate(self, path, ctx: Context) -> None:
        for key in self.FILE_KEYS:
            file = getattr(self, key, None)
            if file is not None and not (ctx.base_dir / file).is_file():
                where = "" if Path(file).is_absolute() else " (relative to the config file)"
                ctx.error(path + (key,), f"no such data file: {file}{where}")


@dataclass(frozen=True, kw_only=True)
class DigitsData(_DataCommon):
    dataset: str = field(string, "digits", "the shipped 8x8 handwritten digits (1797 samples)")


@dataclass(frozen=True, kw_only=True)
class SpiralsData(_DataCommon):
    dataset: str = field(string, "spirals", "two interleaved spirals, generated")
    samples: int = field(integer(min=10, what="an integer >= 10"), 1000, "points in all")
    noise: float = field(number(0.0), 0.2, "noise level: gaussian noise of standard deviation "
                         "0.1 x noise (the spirals span radius 1)")
    turns: float = field(number(0.0, low_open=True), 1.5, "turns of each spiral")


@dataclass(frozen=True, kw_only=True)
class NpzData(_DataCommon):
    dataset: str = field(string, "npz", "a NumPy .npz file of features and labels")
    path: str = field(string, doc="the file; a relative path is relative to the config file")
    x_key: str = field(string, "x", "array name of the features")
    y_key: str = field(string, "y", "array name of the labels or targets")
    inputs: list | None = field(optional(list_of(string, min_len=1, what="a list of array "
                                                                       "names")), None,
                                "further arrays, one row per sample: model inputs of the same "
                                "names (list them in model.inputs)")
    targets: list | None = field(optional(list_of(string, min_len=1, what="a list of array "
                                                                        "names")), None,
                                 "further arrays, one row per sample: targets of aux_losses "
                                 "(their `target`)")


def _column_overrides(v, path, ctx) -> dict:
    """{column name: "numeric" | "categorical" | "ignore" | {type, impute, fill}} as plain
    {name: {"type": ..., "impute": ..., "fill": ...}} (keys absent where not given)."""
    if not isinstance(v, dict):
        raise Invalid(f"expected a mapping of column names to types, got {got(v)}")
    types, strategies = ("numeric", "categorical", "ignore"), ("mean", "median",
                                                               "most_frequent", "constant")
    out = {}
    for name, body in v.items():
        where = path + (str(name),)
        if isinstance(body, str):
            body = {"type": body}
        if not isinstance(body, dict):
            ctx.error(where, f"expected a type ({', '.join(types)}) or a mapping with type, "
                             f"impute, fill; got {got(body)}")
            continue
        extra = set(body) - {"type", "impute", "fill", "encoding"}
        if extra:
            ctx.error(where, f"unknown key '{sorted(extra)[0]}' (expected type, impute, fill, "
                             "encoding)")
        if "encoding" in body and body["encoding"] not in ("onehot", "embedding"):
            ctx.error(where + ("encoding",), f"expected onehot or embedding, got "
                                             f"{got(body['encoding'])}")
        if "type" in body and body["type"] not in types:
            ctx.error(where + ("type",), f"expected one of {', '.join(types)}, got "
                                         f"{got(body['type'])}")
        if "impute" in body and body["impute"] not in strategies:
            ctx.error(where + ("impute",), f"expected one of {', '.join(strategies)}, got "
                                           f"{got(body['impute'])}")
        out[str(name)] = dict(body)
    return out


@dataclass(frozen=True, kw_only=True)
class CsvData(_DataCommon):
    dataset: str = field(string, "csv", "a CSV file, one sample per row")
    path: str = field(string, doc="the file; a relative path is relative to the config file")
    label_column: int | str = field(one_of(integer(), string, what="a column index or name"),
                                    -1, "the label column: an index (negative from the end) "
                                    "or a header name")
    header: bool | None = field(optional(boolean), None, "first row is a header; null detects it")
    delimiter: str = field(string, ",", "field separator")
    columns: dict | None = field(optional(_column_overrides), None,
                                 "per column (by header name): its type (numeric, categorical, "
                                 "ignore) or {type, impute, fill, encoding}; others are "
                                 "inferred from the training split (docs/tabular.md)")
    impute: str = field(choice("mean", "median", "most_frequent", "constant"), "mean",
                        "how gaps in numeric columns are filled, from the training split")
    fill: float | str | None = field(optional(one_of(number(), string,
                                                     what="a number or a string")), None,
                                     "the value impute: constant fills in")


@dataclass(frozen=True, kw_only=True)
class IdxData(_DataCommon):
    dataset: str = field(string, "idx", "images and labels in the IDX format (MNIST's files)")
    images: str = field(string, doc="the images file, e.g. train-images-idx3-ubyte(.gz)")
    labels: str = field(string, doc="the labels file, e.g. train-labels-idx1-ubyte(.gz)")


@dataclass(frozen=True, kw_only=True)
class ParityData(_DataCommon):
    dataset: str = field(string, "parity", "bit strings labelled by their parity, generated")
    samples: int = field(integer(min=10, what="an integer >= 10"), 2000, "sequences in all")
    length: int = field(positive, 12, "bits per sequence")


@dataclass(frozen=True, kw_only=True)
class AddingData(_DataCommon):
    dataset: str = field(string, "adding", "the adding problem (sum of two marked values), generated")
    samples: int = field(integer(min=10, what="an integer >= 10"), 2000, "sequences in all")
    length: int = field(integer(min=2, what="an integer >= 2"), 20, "time steps per sequence")


@dataclass(frozen=True, kw_only=True)
class WordsData(_DataCommon):
    dataset: str = field(string, "words", "the shipped English word list, as characters")
    path: str | None = field(optional(string), None,
                             "another word list, one word per line (default: the shipped "
                             "datasets/words.txt)")
    seq_len: int = field(positive, 32, "characters per training window")
    stride: int | None = field(optional(positive), None,
                               "characters between window starts (default: seq_len)")


DATASETS = {"digits": DigitsData, "spirals": SpiralsData, "npz": NpzData, "csv": CsvData,
            "idx": IdxData, "parity": ParityData, "adding": AddingData, "words": WordsData}


# ---- optimizer and training -------------------------------------------------------------

_lr = number(0.0, low_open=True, what="a positive learning rate")
_decay = number(0.0, what="a non-negative number")


@dataclass(frozen=True, kw_only=True)
class SGDSpec:
    name: str = field(string, "sgd", "stochastic gradient descent")
    lr: float = field(_lr, 0.01, "learning rate")
    momentum: float = field(fraction, 0.0, "heavy-ball momentum in [0, 1)")
    nesterov: bool = field(boolean, False, "Nesterov momentum")
    weight_decay: float = field(_decay, 0.0, "L2 penalty added to the gradient")

    def validate(self, path, ctx: Context) -> None:
        if self.nesterov and self.momentum == 0:
            ctx.error(path + ("nesterov",), "nesterov needs a momentum > 0")


@dataclass(frozen=True, kw_only=True)
class AdamSpec:
    name: str = field(string, "adam", "Adam (Kingma and Ba, 2015)")
    lr: float = field(_lr, 0.001, "learning rate")
    beta1: float = field(fraction, 0.9, "decay of the first-moment average")
    beta2: float = field(fraction, 0.999, "decay of the second-moment average")
    eps: float = field(number(0.0, low_open=True), 1e-8, "added to the denominator")
    weight_decay: float = field(_decay, 0.0, "L2 penalty added to the gradient")


OPTIMIZERS = {"sgd": SGDSpec, "adam": AdamSpec}


@dataclass(frozen=True, kw_only=True)
class CrossEntropySpec:
    name: str = field(string, "cross_entropy", "classes, from the model's raw outputs (logits)")
    label_smoothing: float = field(fraction, 0.0, "mix the one-hot targets with a uniform "
                                                  "distribution by this much")
    class_weights: str | list | None = field(
        optional(one_of(choice("balanced"), list_of(number(0.0), min_len=1),
                        what="'balanced' or a list of weights >= 0, one per class")), None,
        "weight each sample's loss by its class: balanced (n / (classes x count), from the "
        "training split) or one weight per class, as PyTorch's CrossEntropyLoss(weight=)")


@dataclass(frozen=True, kw_only=True)
class MSESpec:
    name: str = field(string, "mse", "mean squared error")


_positive_number = number(0.0, low_open=True)


@dataclass(frozen=True, kw_only=True)
class BCEWithLogitsSpec:
    name: str = field(string, "bce_with_logits", "binary cross-entropy on logits: one output "
                      "per label, targets 0/1 (binary [N] or [N, 1]; multi-label [N, K])")
    pos_weight: float | list | None = field(
        optional(one_of(_positive_number, list_of(_positive_number, min_len=1),
                        what="a positive number or a list of them, one per label")), None,
        "weight of the positive targets' term: a number, or one per label (PyTorch's "
        "pos_weight; negatives / positives balances a rare label)")


@dataclass(frozen=True, kw_only=True)
class L1Spec:
    name: str = field(string, "l1", "mean absolute error")


@dataclass(frozen=True, kw_only=True)
class HuberSpec:
    name: str = field(string, "huber", "squared error below delta, absolute error above")
    delta: float = field(_positive_number, 1.0, "where the loss turns from squared to linear")


@dataclass(frozen=True, kw_only=True)
class SmoothL1Spec:
    name: str = field(string, "smooth_l1", "huber divided by beta (PyTorch's SmoothL1Loss)")
    beta: float = field(number(0.0), 1.0, "where the loss turns linear; 0 is plain l1")


@dataclass(frozen=True, kw_only=True)
class FocalSpec:
    name: str = field(string, "focal", "multi-class focal loss on logits (Lin et al. 2017, "
                      "softmax): cross-entropy scaled down by (1 - p_label)^gamma")
    gamma: float = field(number(0.0), 2.0, "focusing: 0 is cross-entropy")
    alpha: list | None = field(optional(list_of(number(0.0), min_len=1, what="a list of "
                                                "class weights")), None,
                               "a weight per class (alpha_t); default none")


@dataclass(frozen=True, kw_only=True)
class SigmoidFocalSpec:
    name: str = field(string, "sigmoid_focal", "binary / multi-label focal loss on logits "
                      "(torchvision's sigmoid_focal_loss)")
    gamma: float = field(number(0.0), 2.0, "focusing: 0 is (alpha-weighted) bce_with_logits")
    alpha: float | None = field(optional(number(0.0, 1.0)), 0.25,
                                "weight of positive targets (1 - alpha for negatives); null: "
                                "no weighting")


LOSSES = {"cross_entropy": CrossEntropySpec, "mse": MSESpec}
AUX_LOSSES = dict(LOSSES)  # what an auxiliary output may be scored with
LOSSES.update({"bce_with_logits": BCEWithLogitsSpec, "l1": L1Spec, "huber": HuberSpec,
               "smooth_l1": SmoothL1Spec, "focal": FocalSpec,
               "sigmoid_focal": SigmoidFocalSpec})


@dataclass(frozen=True, kw_only=True)
class AuxLossSpec:
    """A further loss term on a named layer's output: total = loss + sum of weight x term."""

    output: str = field(string, doc="the layer whose output this term scores")
    loss: object = field(tagged("name", AUX_LOSSES, "loss"),
                         doc="cross_entropy (integer targets) or mse")
    target: str = field(string, "y", "what the output is compared with: y (the labels), input "
                                     "(the model's input: reconstruction) or a named array of "
                                     "the data (e.g. an npz `targets` key)")
    weight: float = field(number(0.0, low_open=True), 1.0,
                          "the term's weight in the total loss (the main loss has weight 1)")


@dataclass(frozen=True, kw_only=True)
class AdamWSpec:
    name: str = field(string, "adamw", "Adam with decoupled weight decay (Loshchilov and Hutter)")
    lr: float = field(_lr, 0.001, "learning rate")
    beta1: float = field(fraction, 0.9, "decay of the first-moment average")
    beta2: float = field(fraction, 0.999, "decay of the second-moment average")
    eps: float = field(number(0.0, low_open=True), 1e-8, "added to the denominator")
    weight_decay: float = field(_decay, 0.01, "decoupled decay: p -= lr * weight_decay * p")


@dataclass(frozen=True, kw_only=True)
class RMSpropSpec:
    name: str = field(string, "rmsprop", "RMSprop (Tieleman and Hinton)")
    lr: float = field(_lr, 0.01, "learning rate")
    alpha: float = field(fraction, 0.99, "decay of the squared-gradient average")
    eps: float = field(number(0.0, low_open=True), 1e-8, "added to the denominator")
    momentum: float = field(fraction, 0.0, "momentum in [0, 1)")
    weight_decay: float = field(_decay, 0.0, "L2 penalty added to the gradient")


@dataclass(frozen=True, kw_only=True)
class AdagradSpec:
    name: str = field(string, "adagrad", "Adagrad (Duchi et al.)")
    lr: float = field(_lr, 0.01, "learning rate")
    eps: float = field(number(0.0, low_open=True), 1e-10, "added to the denominator")
    weight_decay: float = field(_decay, 0.0, "L2 penalty added to the gradient")
    initial_accumulator_value: float = field(_decay, 0.0, "starting sum of squared gradients")


OPTIMIZERS.update(adamw=AdamWSpec, rmsprop=RMSpropSpec, adagrad=AdagradSpec)


@dataclass(frozen=True, kw_only=True)
class _ScheduleCommon:
    warmup_epochs: float = field(number(0.0), 0.0,
                                 "linear warm-up from ~0 to the schedule over these epochs")


@dataclass(frozen=True, kw_only=True)
class ConstantSchedule(_ScheduleCommon):
    name: str = field(string, "constant", "the optimizer's lr throughout")


@dataclass(frozen=True, kw_only=True)
class StepSchedule(_ScheduleCommon):
    name: str = field(string, "step", "multiply the lr by gamma every few epochs")
    every_epochs: int = field(positive, doc="epochs between decays")
    gamma: float = field(number(0.0, 1.0, low_open=True), 0.1, "factor at each decay")


@dataclass(frozen=True, kw_only=True)
class ExponentialSchedule(_ScheduleCommon):
    name: str = field(string, "exponential", "multiply the lr by gamma every epoch")
    gamma: float = field(number(0.0, 1.0, low_open=True), doc="factor per epoch")


@dataclass(frozen=True, kw_only=True)
class CosineSchedule(_ScheduleCommon):
    name: str = field(string, "cosine", "cosine decay to min_lr over the whole run")
    min_lr: float = field(number(0.0), 0.0, "the lr at the last step")


@dataclass(frozen=True, kw_only=True)
class OneCycleSchedule(_ScheduleCommon):
    name: str = field(string, "one_cycle", "one cycle (Smith): up to max_lr, then far down")
    max_lr: float | None = field(optional(_lr), None, "peak lr (default: the optimizer's lr)")
    pct_start: float = field(number(0.0, 1.0, low_open=True, high_open=True), 0.3,
                             "fraction of the run spent rising")


SCHEDULES = {
    "constant": ConstantSchedule, "step": StepSchedule, "exponential": ExponentialSchedule,
    "cosine": CosineSchedule, "one_cycle": OneCycleSchedule}


@dataclass(frozen=True, kw_only=True)
class AugmentSpec:
    shift: int = field(integer(min=0), 0, "shift images by up to this many pixels")
    flip: bool = field(boolean, False, "mirror images left-right with probability 1/2")
    noise: float = field(number(0.0), 0.0, "add gaussian noise of this std to the features")
    image_shape: list | None = field(optional(list_of(positive, min_len=2,
                                                      what="a list of positive integers")),
                                     None, "how flat features form an image: [H, W] or "
                                           "[C, H, W] (for shift and flip)")

    def validate(self, path, ctx: Context) -> None:
        if self.image_shape is not None and len(self.image_shape) > 3:
            ctx.error(path + ("image_shape",), "expected [H, W] or [C, H, W]")


@dataclass(frozen=True, kw_only=True)
class DivergenceSpec:
    """When a finite loss counts as diverged (nnctl.train.divergence); `divergence: false`
    turns the test off."""

    enabled: bool = field(boolean, True, "stop a run whose loss has clearly diverged")
    factor: float | None = field(optional(number(1.0, low_open=True)), 1e4,
                                 "diverged: the loss above factor x the run's first loss "
                                 "(null: no relative test)")
    steps: int = field(positive, 10, "for this many steps in a row")
    max_loss: float | None = field(optional(number(0.0, low_open=True)), None,
                                   "also diverged: the loss above this bound")

    shorthand: ClassVar[str] = "enabled"


@dataclass(frozen=True, kw_only=True)
class TrainSpec:
    epochs: int = field(positive, doc="passes over the training split")
    batch_size: int = field(positive, 32, "samples per training step")
    eval_batch_size: int = field(positive, 512, "samples per step when evaluating")
    shuffle: bool = field(boolean, True, "reshuffle the training split every epoch")
    dtype: str = field(choice(*DTYPES), "float32", "floating-point type of the model")
    mixed_precision: str | None = field(mixed_precision, None,
                                        "float16: compute in float16 from float32 master "
                                        "weights, with dynamic loss scaling "
                                        "(docs/mixed_precision.md); null: off")
    log_every: int = field(integer(min=0), 0,
                           "without a terminal, also log every N steps (0: once per epoch)")
    schedule: object = field(tagged("name", SCHEDULES, "schedule"), ConstantSchedule(),
                             "learning-rate schedule")
    clip_norm: float | None = field(optional(number(0.0, low_open=True)), None,
                                    "scale gradients down to this global L2 norm")
    clip_value: float | None = field(optional(number(0.0, low_open=True)), None,
                                     "clip each gradient element to [-v, v]")
    on_nonfinite: str = field(choice("stop", "skip"), "stop",
                              "a NaN/Inf loss or gradient: stop, or skip that batch")
    divergence: DivergenceSpec = field(nested(DivergenceSpec), DivergenceSpec(),
                                       "stop a run whose finite loss has clearly diverged")
    monitor: str | None = field(optional(string), None,
                                "the metric that picks the best checkpoint and drives early "
                                "stopping (default: val_loss, or train_loss without a "
                                "validation split)")
    patience: int | None = field(optional(positive), None,
                                 "stop after this many epochs without improvement")
    restore_best: bool = field(boolean, True,
                               "test metrics and weights.npz from the best epoch by "
                               "train.monitor (false: from the last epoch)")
    init_from: str | None = field(optional(string), None,
                                  "start from these weights: a PyTorch state dict of the "
                                  "equivalent modules (.safetensors or .npz; names as "
                                  "nnctl export-weights writes them, docs/export.md); "
                                  "relative to the config file")
    threads: int | str = field(one_of(choice("auto"), integer(min=1, max=1024),
                                      what="a positive integer (at most 1024) or 'auto'"), 1,
                               "threads of BLAS and of numba's pool ('auto': the idle cores)")
    cuda_graphs: bool = field(boolean, True,
                              "on CUDA, capture the steady-state training step once per batch "
                              "shape as a CUDA graph and replay it (docs/cuda.md); false: "
                              "launch each kernel from Python every step. Ignored on the CPU")
    augment: AugmentSpec = field(nested(AugmentSpec), AugmentSpec(), "training-batch "
                                                                     "augmentation")
    pad_multiple: int = field(positive, 8, "padded sequences: each batch is cut to its longest "
                              "sample, rounded up to a multiple of this many steps (one "
                              "compiled plan per length; 1: no extra padding)")

    def validate(self, path, ctx: Context) -> None:
        if self.mixed_precision and self.dtype != "float32":
            ctx.error(path + ("mixed_precision",), f"mixed precision keeps float32 master "
                      f"weights: it needs train.dtype: float32, not {self.dtype}")


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    data: object = field(tagged("dataset", DATASETS, "dataset"), doc="where the samples come from")
    model: ModelSpec = field(nested(ModelSpec), doc="the network")
    loss: object = field(tagged("name", LOSSES, "loss"),
                         doc="cross_entropy or focal (classes, from logits); "
                             "bce_with_logits or sigmoid_focal (binary, multi-label); mse, "
                             "l1, huber or smooth_l1 (regression); docs/losses.md")
    optimizer: object = field(tagged("name", OPTIMIZERS, "optimizer"), doc="how parameters are updated")
    train: TrainSpec = field(nested(TrainSpec), doc="the training loop")
    seed: int = field(integer(min=0), 0, "seeds initialisation, splits, shuffling and dropout")
    metrics: list | None = field(optional(list_of(choice(*METRICS))), None,
                                 "reported besides the loss (default: accuracy and f1_macro "
                                 "for cross_entropy and focal; mae, rmse and r2 for mse, l1, "
                                 "huber and smooth_l1; accuracy, f1_micro and roc_auc for "
                                 "bce_with_logits and sigmoid_focal)")
    aux_losses: list | None = field(optional(list_of(nested(AuxLossSpec), min_len=1,
                                                     what="a list of {output, loss, target, "
                                                          "weight} mappings")), None,
                                    "further weighted losses on named layers' outputs "
                                    "(auxiliary heads, reconstructions); the model's last "
                                    "layer is scored by `loss`")
    logging: LoggingSpec = field(nested(LoggingSpec), LoggingSpec(),
                                 "dashboards: TensorBoard event files in the run folder")
    distributed: DistributedSpec = field(nested(DistributedSpec), DistributedSpec(),
                                         "data-parallel training over MPI ranks "
                                         "(docs/distributed.md)")
    tune: TuneSpec | None = field(optional(nested(TuneSpec)), None,
                                  "the hyperparameter search of `nnctl tune` (docs/tune.md); "
                                  "`nnctl train` ignores it")

    def validate(self, path, ctx: Context) -> None:
        layers = self.model.layers
        self._check_aux_losses(ctx)
        if self.loss.name == "crf" and layers[-1].kind != "crf":
            ctx.error(("loss",), "loss crf needs a crf layer as the model's last layer "
                                 "(e.g. dense: {units: classes}, then crf: {constraints: bio})")
        for i, spec in enumerate(layers):
            if spec.kind == "crf" and (i != len(layers) - 1 or self.loss.name != "crf"):
                ctx.error(("model", "layers", i, "crf"), "a crf layer must be the model's "
                          "last layer, with loss: crf")
        for i, metric in enumerate(self.metrics or ()):
            families = metric_families(metric)
            if loss_family(self.loss.name) not in families:
                wants = [loss for f in families for loss in FAMILIES[f][0]]
                losses = f"{', '.join(wants[:-1])} or {wants[-1]}" if len(wants) > 1 \
                    else wants[0]
                ctx.error(("metrics", i), f"metric '{metric}' needs loss {losses}, but the "
                                          f"loss is {self.loss.name}")


    def _check_aux_losses(self, ctx: Context) -> None:
        names = self.model.layer_names()
        outputs, errors_before = [], len(ctx.errors)
        for k, aux in enumerate(self.aux_losses or ()):
            where = ("aux_losses", k)
            if aux.output not in names:
                ctx.error(where + ("output",),
                          f"unknown layer '{aux.output}'{suggest(aux.output, names)}")
            elif aux.output == names[-1]:
                ctx.error(where + ("output",), f"'{aux.output}' is the model's output, which "
                                               "`loss` scores; name another layer")
            else:
                outputs.append(aux.output)
            if aux.target == "input" and aux.loss.name == "cross_entropy":
                ctx.error(where + ("target",), "cross_entropy needs integer class targets; "
                                               "reconstruct the input with mse")
        if len(ctx.errors) == errors_before:  # a misspelt output would also strand its layer
            self.model.check_all_used(("model",), ctx, tuple(outputs))


def metric_families(metric: str) -> tuple[str, ...]:
    """The loss families (FAMILIES) a metric is computed for."""
    return tuple(f for f, (_, metrics) in FAMILIES.items() if metric in metrics)


def metric_family(metric: str) -> str:
    """The first family of a metric (see metric_families: some serve two)."""
    return metric_families(metric)[0]


def loss_family(loss: str) -> str:
    """classification, verification, regression or multilabel: which metrics and labels a
    loss takes (a loss registered elsewhere without a family counts as regression)."""
    return next((f for f, (losses, _) in FAMILIES.items() if loss in losses), "regression")


def register_dataset_spec(cls) -> None:
    """Add a data-set kind to the config vocabulary (its loader goes in nnctl.data.kinds)."""
    DATASETS[cls.__dataclass_fields__["dataset"].default] = cls


def register_loss_spec(cls) -> None:
    LOSSES[cls.__dataclass_fields__["name"].default] = cls


# the modules below register their layers, data kinds and losses into the tables above
from nnctl.config import audio_specs, crf_specs, seq2seq_specs, text_specs  # noqa: E402,F401
from nnctl.config import compare_specs, graph_specs, video_specs  # noqa: E402,F401
