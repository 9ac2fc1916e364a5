"""From a validated Config to the graphs nnctl runs: data splits, the model, and the
training step (forward, loss, gradients) or the evaluation step, built from symbolic inputs.

Train, gradcheck and export-graph all start here, so they see the same graph.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from nnctl.autodiff import grad
from nnctl.config import Config
from nnctl.config.schema import CLASSIFICATION_LOSSES, VERIFICATION_LOSSES, loss_family
from nnctl.data import (Augmenter, Dataset, Normalizer, load_csv, load_digits, load_idx, load_npz,
                        load_words,
                        make_adding, make_parity, make_spirals, split)
from nnctl.data.kinds import LOADERS
from nnctl.errors import ConfigError, DataError, NnctlError
from nnctl.config.layer_specs import DECODER_INPUT, MODEL_INPUT
from nnctl.graph import Tensor, input_placeholder
from nnctl.graph.precision import autocast
from nnctl.layers import LayerError, Model, build_model
from nnctl import losses
from nnctl.ops.registry import Dim

BATCH = Dim("B")  # the symbolic batch size of every graph the trainer compiles


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset
    normalizer: Normalizer
    num_classes: int | None  # None for regression
    vocab: int | None = None  # token-id inputs: the largest id + 1

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def padded(self) -> bool:
        """Variable-length sequences, padded, with masks."""
        return self.train.x_len is not None

    @property
    def pairs(self) -> bool:
        """Sequence pairs (sequence to sequence): the target has lengths of its own."""
        return self.train.y_len is not None

    @property
    def info(self) -> dict:
        return self.train.info

    def full_steps(self) -> tuple[int, ...]:
        """The padded lengths of the longest batch (what build-time checks use)."""
        if not self.padded:
            return ()
        x = self.train.x.shape[1]
        return (x, self.train.y.shape[1]) if self.pairs else (x,)


@dataclass
class Feeds:
    """The placeholders of one batch: the model's named inputs with their padding masks, the
    labels, and which label positions count (None: all). `data` lists the placeholders in the
    order the trainer feeds host arrays (nnctl.data.batching.batch_arrays)."""

    inputs: dict
    masks: dict
    y: Tensor
    y_mask: Tensor | None
    data: list
    targets: dict = dataclasses.field(default_factory=dict)  # aux_losses' data arrays by name
    layer_outputs: dict = dataclasses.field(default_factory=dict)  # by layer name (build)


def load_dataset(config: Config) -> Dataset:
    d = config.spec.data
    if d.dataset in LOADERS:  # kinds defined in their own modules (text, tagging, audio, ...)
        return LOADERS[d.dataset](d, config.spec.seed, config.spec.train.dtype)
    if d.dataset == "digits":
        return load_digits()
    if d.dataset == "spirals":
        return make_spirals(d.samples, d.noise, d.turns, seed=config.spec.seed)
    if d.dataset == "npz":
        # a binary / multi-label loss reads integer labels as 0/1 targets, not class ids
        targets = {"class_labels": False} if loss_family(config.spec.loss.name) == \
            "multilabel" else {}
        return load_npz(d.path, d.x_key, d.y_key, dtype=config.spec.train.dtype,
                        extra_keys=tuple(dict.fromkeys((*(d.inputs or ()),
                                                        *(d.targets or ())))), **targets)
    if d.dataset == "idx":
        return load_idx(d.images, d.labels, dtype=config.spec.train.dtype)
    if d.dataset == "parity":
        return make_parity(d.samples, d.length, seed=config.spec.seed)
    if d.dataset == "adding":
        return make_adding(d.samples, d.length, seed=config.spec.seed)
    if d.dataset == "words":
        data, _ = load_words(d.path, d.seq_len, d.stride)
        return data
    return load_csv(d.path, d.label_column, d.header, d.delimiter,
                    dtype=config.spec.train.dtype)


def vocabulary(config: Config):
    """The character vocabulary of a text data set (None for other data)."""
    d = config.spec.data
    if d.dataset != "words":
        return None
    return load_words(d.path, d.seq_len, d.stride)[1]


def load_splits(config: Config) -> Splits:
    """Load, check against the loss, split (seeded) and normalise (fitted on train).

    Integer features are token ids: they are never normalised and stay int64."""
    spec = config.spec
    data = load_dataset(config)
    integer_labels = np.issubdtype(data.y.dtype, np.integer)
    if spec.loss.name in CLASSIFICATION_LOSSES:
        if not integer_labels:
            raise config.error(("loss",), f"{spec.loss.name} needs integer class labels, but "
                               f"the data's labels are {data.y.dtype} of shape "
                               f"{list(data.y.shape)}")
        num_classes = _class_count(data)
    elif spec.loss.name in VERIFICATION_LOSSES:  # same (1) / different (0): kept as ints
        if not integer_labels or data.y.ndim != 1:
            raise config.error(("loss",), f"{spec.loss.name} needs one integer label per "
                               "sample (1 same, 0 different; e.g. dataset: pairs), but the "
                               f"data's labels are {data.y.dtype} of shape "
                               f"{list(data.y.shape)}")
        num_classes = None
    elif loss_family(spec.loss.name) == "multilabel":  # a float target per label, in [0, 1]
        y = _binary_targets(config, data.y).astype(spec.train.dtype)
        data = dataclasses.replace(data, y=y[:, None] if y.ndim == 1 else y)  # (N, 1) for one
        num_classes = None
    else:
        y = data.y.astype(spec.train.dtype)
        data = dataclasses.replace(data, y=y[:, None] if y.ndim == 1 else y)  # (N, 1) for one
        num_classes = None
    d = spec.data
    try:
        train, val, test = split(data, d.split.val, d.split.test, seed=spec.seed,
                                 stratify=integer_labels and data.y.ndim == 1)
    except ValueError as err:
        raise config.error(("data", "split"), str(err)) from None
    if np.issubdtype(data.x.dtype, np.integer):
        norm = Normalizer.fit(train.x, "none")
        tokens = data.info.get("input")
        vocab = len(tokens) if tokens is not None else \
            int(data.x.max()) + 1 if data.x.size else 0
        train, val, test = (s.with_x(s.x.astype(np.int64)) for s in (train, val, test))
    else:
        norm, vocab = Normalizer.fit(train.x, d.normalize), None
        dtype = spec.train.dtype
        train, val, test = (s.with_x(norm.apply(s.x).astype(dtype))
                            for s in (train, val, test))
    if data.extra:  # further inputs: float ones in the run's dtype, never normalised
        train, val, test = (dataclasses.replace(s, extra={
            k: v.astype(spec.train.dtype) if np.issubdtype(v.dtype, np.floating) else
            v.astype(np.int64) for k, v in s.extra.items()}) for s in (train, val, test))
    for part in (train, val, test):
        if np.issubdtype(part.x.dtype, np.floating) and not np.isfinite(part.x).all():
            raise DataError(f"the features hold NaN or Inf after normalisation ({d.normalize}); "
                            "check the data's range")
    return Splits(train, val, test, norm, num_classes, vocab)


def _binary_targets(config: Config, y: np.ndarray) -> np.ndarray:
    """The labels of a binary / multi-label loss, checked: numbers in [0, 1] (0/1, or soft
    targets), one per sample ([N]) or one per sample and label ([N, K])."""
    name = config.spec.loss.name
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)
            or y.dtype == np.bool_) or y.ndim not in (1, 2):
        raise config.error(("loss",), f"{name} needs numeric targets in [0, 1], one per sample "
                           f"([N]) or per sample and label ([N, K]), but the data's labels are "
                           f"{y.dtype} of shape {list(y.shape)}")
    bad = ~((y >= 0) & (y <= 1))  # NaN is bad too
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f"sample {at[0]}" + (f", label {at[1]}" if len(at) > 1 else "")
        raise config.error(("loss",), f"{name} needs targets in [0, 1] (0/1 per label), but the "
                           f"data's labels hold {y[at].item()!r} ({where}); a multi-class "
                           "label is for cross_entropy or focal")
    return y


def check_loss_weights(config: Config, splits: Splits) -> None:
    """A loss's per-label or per-class weights (pos_weight, alpha) match the data's labels or
    classes."""
    loss = config.spec.loss
    weights = getattr(loss, "pos_weight", None) if loss.name == "bce_with_logits" else \
        getattr(loss, "alpha", None) if loss.name == "focal" else None
    if not isinstance(weights, list):
        return
    if loss.name == "focal":
        key, want, what, each = "alpha", splits.num_classes, "classes", "class"
    else:
        key, want, what, each = "pos_weight", splits.train.y.shape[-1], "labels per sample", "label"
    if len(weights) != want:
        raise config.error(("loss", key), f"{len(weights)} weights, but the data has {want} "
                                          f"{what}: give one per {each}")


def _class_count(data: Dataset) -> int:
    """Classes: the size of the data's label vocabulary (a target token vocabulary, tag or
    label names) where it has one, so that a class absent from the samples still gets its
    output; else the largest label + 1."""
    for key in ("target", "tags", "labels"):
        names = data.info.get(key)
        if names is not None:
            return len(names)
    return data.num_classes


class StepBuilder:
    """Builds the model once, then training or evaluation graphs for any batch size; every
    graph shares the model's parameter tensors."""

    def __init__(self, config: Config, splits: Splits, init_rng: np.random.Generator):
        self.config, self.splits = config, splits
        self.dtype = config.spec.train.dtype
        info = splits.info
        hints = {"classes": splits.num_classes, "vocab": splits.vocab, "dtype": self.dtype,
                 "tags": info.get("tags"), "sample_rate": info.get("sample_rate"),
                 "input_vocab": info.get("input_vocab", {})}
        have = ", ".join(sorted(splits.train.extra)) or "none"
        self.input_names = tuple(config.spec.model.inputs or ())  # further model inputs
        for k, name in enumerate(self.input_names):
            if name not in splits.train.extra:
                raise config.error(("model", "inputs", k), f"the data has no input '{name}' "
                                   f"(its further inputs: {have})")
        self.class_weights = class_weights(config, splits)
        self.aux_losses = tuple(config.spec.aux_losses or ())
        targets = []  # data arrays the aux_losses compare with (not the labels, not an input)
        for k, aux in enumerate(self.aux_losses):
            if aux.target in ("y", MODEL_INPUT) or aux.target in self.input_names + (*targets,):
                continue
            if aux.target not in splits.train.extra:
                raise config.error(("aux_losses", k, "target"), f"the data has no array "
                                   f"'{aux.target}' (its further arrays: {have}; an npz lists "
                                   "them under data.targets); or use y or input")
            targets.append(aux.target)
        self.target_names = tuple(targets)
        # what the trainer feeds after x, y and masks, in this order (batch_arrays)
        self.extra_names = self.input_names + self.target_names
        if DECODER_INPUT in config.spec.model.model_inputs() and not splits.pairs:
            layers = config.spec.model.layers
            i = next(i for i, names in enumerate(config.spec.model.layer_inputs())
                     if DECODER_INPUT in names)
            raise config.error(("model", "layers", i, layers[i].kind, "inputs"),
                               f"'{DECODER_INPUT}' is the decoder's input of sequence-pair "
                               "data (e.g. dataset: text_pairs or dates); this data has none")
        try:
            self.model: Model = build_model(config.spec.model, init_rng, hints)
        except LayerError as err:
            raise self._layer_error(err) from None
        # creates the parameters and checks every layer's shapes before any data flows
        self.build_forward(config.spec.train.batch_size, training=True)

    @property
    def params(self) -> dict[str, Tensor]:
        return self.model.params

    @property
    def states(self) -> dict[str, Tensor]:
        return self.model.states

    def _layer_error(self, err: LayerError) -> ConfigError:
        layers = self.config.spec.model.layers
        return self.config.error(("model", "layers", err.index, layers[err.index].kind),
                                 str(err))

    def model_feeds(self, batch=BATCH) -> Feeds:
        return self.feeds(batch)

    def inputs(self, batch=BATCH) -> tuple[Tensor, Tensor]:
        feeds = self.feeds(batch)
        return feeds.inputs[MODEL_INPUT], feeds.y

    def feeds(self, batch=BATCH, steps: tuple[int, ...] | None = None) -> Feeds:
        """Placeholders for a batch of `batch` samples whose padded sequences have `steps`
        steps (nnctl.data.batching.batch_steps; default: the longest)."""
        s = self.splits
        steps = s.full_steps() if steps is None else tuple(steps)
        x_shape = s.feature_shape if not steps else (steps[0],) + s.feature_shape[1:]
        y_shape = tuple(s.train.y.shape[1:])
        if s.pairs:
            y_shape = (steps[1],) + y_shape[1:]
        elif steps and len(y_shape) and y_shape[0] == s.feature_shape[0]:
            y_shape = (steps[0],) + y_shape[1:]  # a label per step (tagging)
        x_dtype = "int64" if s.vocab is not None else self.dtype
        x = input_placeholder("x", (batch,) + x_shape, x_dtype)
        integer = s.num_classes is not None or np.issubdtype(s.train.y.dtype, np.integer)
        y = input_placeholder("y", (batch,) + y_shape, "int64" if integer else self.dtype)
        inputs, masks, data, y_mask = {MODEL_INPUT: x}, {}, [x, y], None
        if steps:
            masks[MODEL_INPUT] = input_placeholder("x_mask", (batch, steps[0]), self.dtype)
            data.append(masks[MODEL_INPUT])
            if not s.pairs and len(y_shape) and y_shape[0] == steps[0]:
                y_mask = masks[MODEL_INPUT]
        if s.pairs:
            inputs[DECODER_INPUT] = input_placeholder("decoder_input", (batch, steps[1]),
                                                      "int64")
            y_mask = masks[DECODER_INPUT] = input_placeholder("y_mask", (batch, steps[1]),
                                                              self.dtype)
            data += [inputs[DECODER_INPUT], y_mask]
        trim = s.info.get("trim", {})
        targets = {}
        for name in self.extra_names:  # declared named inputs (model.inputs), then targets
            array = s.train.extra[name]
            shape = tuple(steps[0] if steps and a + 1 in trim.get(name, ()) else d
                          for a, d in enumerate(array.shape[1:]))
            dtype = "int64" if np.issubdtype(array.dtype, np.integer) else self.dtype
            into = targets if name in self.target_names else inputs
            into[name] = input_placeholder(name, (batch,) + shape, dtype)
            data.append(into[name])
        return Feeds(inputs, masks, y, y_mask, data, targets)

    def build(self, batch=BATCH, training: bool = True,
              steps: tuple[int, ...] | None = None) -> tuple[Feeds, Tensor]:
        """(feeds, model output) for a batch (see `feeds`)."""
        feeds = self.feeds(batch, steps)
        try:
            out = self.model(feeds.inputs, training, feeds.masks, trace=feeds.layer_outputs)
        except LayerError as err:
            raise self._layer_error(err) from None
        self._check_output(feeds.y, out)
        return feeds, out

    def build_forward(self, batch=BATCH, training: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """(x, y, output) for a batch of `batch` samples: an int, or the symbolic batch size
        (the default), so that one compiled plan serves every batch size; shape mistakes
        become config errors at the layer."""
        feeds, out = self.build(batch, training)
        return feeds.inputs[MODEL_INPUT], feeds.y, out

    def _check_output(self, y: Tensor, out: Tensor) -> None:
        layers = self.config.spec.model.layers
        loss = self.config.spec.loss.name
        if loss in VERIFICATION_LOSSES:
            width = 1 if loss == "contrastive" else 2
            if tuple(out.shape[1:]) != (width,):
                last = len(layers) - 1
                what = ("a distance per pair ([1]: end with a distance layer)" if width == 1
                        else "d(anchor, positive) and d(anchor, negative) ([2]: end with a "
                             "triplet_distance layer)")
                raise self.config.error(
                    ("model", "layers", last, layers[last].kind),
                    f"the model's output per sample is {list(out.shape[1:])}, but loss {loss} "
                    f"needs {what}")
            return
        expected = y.shape + (self.splits.num_classes,) if self.splits.num_classes is not None \
            else y.shape
        if out.shape != expected:
            last = len(layers) - 1
            what = (f"{self.splits.num_classes} classes" if self.splits.num_classes is not None
                    else f"targets of shape {list(y.shape[1:])}")
            raise self.config.error(
                ("model", "layers", last, layers[last].kind),
                f"the model's output per sample is {list(out.shape[1:])}, but the data has "
                f"{what}; expected {list(expected[1:])}")

    def loss(self, out: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
        """The config's loss; with a mask [batch, steps], the mean over the real steps only
        (padding contributes nothing, to the value or to any gradient)."""
        loss = self.config.spec.loss
        if loss.name == "crf":
            return self.model.layers[self.model.output].nll(out, y, mask)
        if loss.name == "contrastive":
            from nnctl.layers.compare import contrastive_loss
            return contrastive_loss(out, y, loss.margin)
        if loss.name == "triplet":
            from nnctl.layers.compare import triplet_loss
            return triplet_loss(out, loss.margin)
        return score(loss, out, y, mask, self.class_weights)

    def objective(self, feeds: Feeds, out: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(the total loss: the config's loss plus each aux_losses term times its weight,
        the terms unweighted) for a built batch."""
        total = self.loss(out, feeds.y, feeds.y_mask)
        terms = [self.aux_term(k, feeds) for k in range(len(self.aux_losses))]
        for aux, term in zip(self.aux_losses, terms):
            total = total + term * aux.weight
        return total, terms

    def aux_term(self, k: int, feeds: Feeds) -> Tensor:
        """aux_losses[k]'s loss of its layer's output against its target, shapes checked."""
        aux = self.aux_losses[k]
        pred = feeds.layer_outputs[aux.output]
        target = (feeds.y if aux.target == "y" else feeds.targets[aux.target]
                  if aux.target in feeds.targets else feeds.inputs[aux.target])
        mask = feeds.y_mask if aux.target == "y" else None
        integer = target.dtype.startswith("int")
        if aux.loss.name == "mse":
            ok, wants = not integer and pred.shape == target.shape, list(target.shape[1:])
        else:
            ok = integer and pred.shape[:-1] == target.shape and len(pred.shape) >= 2
            wants = list(target.shape[1:]) + ["classes"]
        if not ok:
            what = (f"{aux.loss.name} needs {'float' if aux.loss.name == 'mse' else 'integer'} "
                    f"targets, but {aux.target} is {target.dtype}") if \
                (aux.loss.name == "mse") == integer else \
                f"its target {aux.target} needs {wants}"
            raise self.config.error(("aux_losses", k, "output"),
                                    f"layer '{aux.output}' gives {list(pred.shape[1:])} per "
                                    f"sample; {what}")
        return score(aux.loss, pred, target, mask if len(pred.shape) == 3 else None)

    def training_step(self, batch=BATCH, steps: tuple[int, ...] | None = None,
                      scaled: bool = False, mixed: str | None = None):
        """outputs = [loss, model output, *grads (params order), *new states (states order)],
        feeds = [*data feeds (x, y, masks...), *params, *states].

        `scaled` (data-parallel training): the loss is multiplied by a scalar fed last,
        `loss_scale`, this rank's share of the global batch's loss (its samples, or real
        steps, over the global batch's), so that the ranks' gradients simply add up to the
        global batch's, also through collectives in the forward pass (synchronised batch
        norm), whose backward adds every rank's incoming gradient.

        `mixed` ("float16", train.mixed_precision): the model computes in mixed precision
        (nnctl/graph/precision.py) from its float32 master weights, and one more 0-d float32
        scalar is fed last, `dynamic_loss_scale` (nnctl/train/loss_scale.py): the backward
        pass starts from loss x scale, so that small float16 gradients do not flush to zero,
        and the gradients come out divided by it again, in float32, ready for clipping and
        the update. A float16 overflow shows as inf or NaN in them (the trainer's gradient
        norm sees it). The loss output is the loss before that scale; the model output and
        the new states are float32, as in the float32 step."""
        feeds, out = self.build(batch, True, steps)
        states = list(self.states.values())
        updates = self.model.updates
        new_states = [updates.get(t.node.name, t) for t in states]
        if mixed:
            feeds, out, new_states = self._autocast(feeds, out, new_states, mixed)
        loss, _ = self.objective(feeds, out)
        scale = None
        if scaled:
            scale = input_placeholder("loss_scale", (), self.dtype)
            loss = loss * scale
        params = list(self.params.values())
        extra = [scale] if scaled else []
        if mixed:
            dynamic = input_placeholder("dynamic_loss_scale", (), "float32")
            unscale = 1.0 / dynamic  # a power of two: exact
            grads = [g * unscale for g in grad(loss * dynamic, params)]
            extra.append(dynamic)
        else:
            grads = grad(loss, params)
        return [loss, out, *grads, *new_states], [*feeds.data, *params, *states, *extra]

    def _autocast(self, feeds: Feeds, out: Tensor, new_states: list, mixed: str):
        """(feeds with the aux losses' layer outputs, the model output, the new states), each
        computed in mixed precision and given back in float32, so that every loss is built
        in float32 on them."""
        if self.dtype != "float32":
            raise NnctlError(f"mixed precision ({mixed}) keeps float32 master weights; this "
                             f"model is built in {self.dtype} (train.dtype)")
        names = list(dict.fromkeys(aux.output for aux in self.aux_losses))
        roots = [out, *(feeds.layer_outputs[n] for n in names), *new_states]
        cast = autocast(roots, mixed)
        layer_outputs = dict(feeds.layer_outputs)
        layer_outputs.update(zip(names, cast[1:1 + len(names)]))
        return (dataclasses.replace(feeds, layer_outputs=layer_outputs), cast[0],
                cast[1 + len(names):])

    def evaluation_step(self, batch=BATCH, steps: tuple[int, ...] | None = None,
                        mixed: str | None = None):
        """outputs = [loss, model output, *aux_losses terms (unweighted)],
        feeds = [*data feeds, *params, *states]. `mixed`: the model computes as in the mixed
        training step (no loss scale: nothing is differentiated)."""
        feeds, out = self.build(batch, False, steps)
        if mixed:
            feeds, out, _ = self._autocast(feeds, out, [], mixed)
        loss, terms = self.objective(feeds, out)
        return ([loss, out, *terms],
                [*feeds.data, *self.params.values(), *self.states.values()])

    def embedding_step(self, layer: str, batch=BATCH):
        """outputs = [layer's output], feeds = [x, *params, *states]: a comparator's tower
        on single samples (evaluation mode; the layer must depend on `input` alone)."""
        feeds, _ = self.build(batch, False)
        return ([feeds.layer_outputs[layer]],
                [feeds.inputs[MODEL_INPUT], *self.params.values(), *self.states.values()])

    def forward_step(self, batch=BATCH, steps: tuple[int, ...] | None = None):
        """outputs = [model output], feeds = [*data feeds but y and aux targets, *params,
        *states] (predict)."""
        feeds, out = self.build(batch, False, steps)
        labels = [feeds.y, *feeds.targets.values()]
        data = [t for t in feeds.data if not any(t is u for u in labels)]
        return [out], [*data, *self.params.values(), *self.states.values()]


def score(loss, out: Tensor, y: Tensor, mask: Tensor | None = None,
          class_weights: np.ndarray | None = None) -> Tensor:
    """A loss spec (cross_entropy, focal, mse, l1, huber, smooth_l1, bce_with_logits,
    sigmoid_focal) applied to `out` against `y`, the mean over its terms; with a mask
    [batch, steps], cross-entropy and focal are the mean over the real steps only. With
    `class_weights`, cross-entropy is the weighted mean (PyTorch's weight=)."""
    if loss.name == "mse":
        return out.mse(y)
    if loss.name in ELEMENTWISE_LOSSES:
        return losses.mean_over(ELEMENTWISE_LOSSES[loss.name](loss, out, y))
    if loss.name == "focal":
        return losses.mean_over(losses.focal(out, y, loss.gamma, loss.alpha), mask)
    if class_weights is not None:
        return weighted_cross_entropy(out, y, class_weights, mask, loss.label_smoothing)
    if mask is not None:
        return masked_cross_entropy(out, y, mask, loss.label_smoothing)
    if not loss.label_smoothing:
        return out.cross_entropy(y)
    # (1 - e) CE(onehot) + e CE(uniform): the uniform part is the mean negative log-prob
    e = loss.label_smoothing
    uniform = -out.log_softmax(-1).mean()
    return out.cross_entropy(y) * (1.0 - e) + uniform * e


# the losses with a term per output element, from their spec's settings
ELEMENTWISE_LOSSES = {
    "l1": lambda spec, out, y: losses.l1(out, y),
    "huber": lambda spec, out, y: losses.huber(out, y, spec.delta),
    "smooth_l1": lambda spec, out, y: losses.smooth_l1(out, y, spec.beta),
    "bce_with_logits": lambda spec, out, y: losses.bce_with_logits(out, y, spec.pos_weight),
    "sigmoid_focal": lambda spec, out, y: losses.sigmoid_focal(out, y, spec.gamma, spec.alpha),
}


def class_weights(config: Config, splits: Splits) -> np.ndarray | None:
    """loss.class_weights as one weight per class: "balanced" is sklearn's n / (classes x
    count of the class) over the training split's labels (real steps only for sequences; a
    class absent there counts once), or the config's list, checked against the classes."""
    wanted = getattr(config.spec.loss, "class_weights", None)
    if wanted is None:
        return None
    classes = splits.num_classes
    if wanted != "balanced":
        if len(wanted) != classes:
            raise config.error(("loss", "class_weights"), f"expected {classes} weights, one "
                               f"per class, got {len(wanted)}")
        return np.array(wanted, dtype=np.float64)
    y = splits.train.y
    if splits.padded and y.ndim == 2:  # a label per step: count the real ones
        y = y[np.arange(y.shape[1])[None, :] < splits.train.x_len[:, None]]
    counts = np.bincount(y.ravel(), minlength=classes)[:classes]
    return len(y.ravel()) / (classes * np.maximum(counts, 1))


def weighted_cross_entropy(out: Tensor, y: Tensor, weights: np.ndarray,
                           mask: Tensor | None = None, smoothing: float = 0.0) -> Tensor:
    """Cross-entropy with a weight per class, as PyTorch's CrossEntropyLoss(weight=w,
    label_smoothing=e): sum_i w_{y_i} ((1 - e) nll_i + e/C sum_c w_c/w_{y_i} (-log p_ic))
    / sum_i w_{y_i}, over the real steps where a mask is given."""
    classes = out.shape[-1]
    logp = out.log_softmax(-1)
    onehot = y.one_hot(classes, out.dtype)
    w = Tensor(np.asarray(weights, dtype=out.dtype))
    w_y = (onehot * w).sum(-1)
    terms = -(logp * onehot).sum(-1) * w_y
    if smoothing:
        terms = terms * (1.0 - smoothing) - (logp * w).sum(-1) * (smoothing / classes)
    if mask is not None:
        terms, w_y = terms * mask, w_y * mask
    return terms.sum() / w_y.sum().maximum(1e-12)  # a batch of weight 0: 0, not NaN


def masked_cross_entropy(out: Tensor, y: Tensor, mask: Tensor, smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of scores [batch, steps, classes] against labels [batch, steps], summed
    over the steps where mask is 1 and divided by their number."""
    logp = out.log_softmax(-1)
    picked = (logp * y.one_hot(out.shape[-1], out.dtype)).sum(-1)
    if smoothing:
        picked = picked * (1.0 - smoothing) + logp.mean(-1) * smoothing
    return -(picked * mask).sum() / mask.sum().maximum(1.0)  # a batch of no real step: 0


def seed_streams(seed: int) -> dict[str, np.random.SeedSequence]:
    """Independent random streams from the one config seed (NumPy's SeedSequence spawning)."""
    init, shuffle, dropout, augment = np.random.SeedSequence(seed).spawn(4)
    return {"init": init, "shuffle": shuffle, "dropout": dropout, "augment": augment}


def prepare(config: Config, check=None):
    """Splits and a StepBuilder for `config`, initial weights drawn from the seed's init stream.
    `check(config, splits)` runs between the two (the trainer's memory pre-flight)."""
    try:
        splits = load_splits(config)
    except DataError as err:
        raise config.error(("data",), err.message) from None
    except (MemoryError, OverflowError, ValueError) as err:
        raise _too_large(config, ("data",), err) from None
    make_augmenter(config, splits)
    check_loss_weights(config, splits)
    check_span_metric(config, splits)
    check_comparison_needs(config, splits)
    if check is not None:
        check(config, splits)
    init = seed_streams(config.spec.seed)["init"]
    try:
        return splits, StepBuilder(config, splits, np.random.default_rng(init))
    except (MemoryError, OverflowError, ValueError) as err:
        raise _too_large(config, ("model",), err) from None


def prepare_in(config: Config, dtype: str):
    """prepare(config) with the model built in `dtype`: the float64 checks (gradcheck of a
    model, explain, doctor) build the config's own model at another precision."""
    train = dataclasses.replace(config.spec.train, dtype=dtype)
    return prepare(dataclasses.replace(config, spec=dataclasses.replace(config.spec,
                                                                         train=train)))


def first_batch(splits: Splits, builder: StepBuilder, batch: int, dtype: str,
                multiple: int = 1) -> tuple[int, list[np.ndarray], tuple]:
    """(n, the host arrays of the first n = min(batch, training samples) samples in feed
    order, their padded lengths): the batch the checks evaluate."""
    from nnctl.data.batching import batch_arrays, batch_steps
    n = min(batch, len(splits.train))
    idx = np.arange(n)
    return (n, batch_arrays(splits.train, idx, multiple, dtype, builder.extra_names),
            batch_steps(splits.train, idx, multiple))


def layer_location(config: Config, layer: str) -> str | None:
    """Where the config defines layer `layer`: "file:line" of its entry in model.layers (the
    --set that changed it, where one did); None for a name that is not a layer's."""
    names = config.spec.model.layer_names()
    if layer not in names:
        return None
    i = names.index(layer)
    error = config.error(("model", "layers", i, config.spec.model.layers[i].kind), "")
    return f"{error.file}:{error.line}" if error.line else error.file


COMPARISON_LAYERS = ("distance", "triplet_distance", "difference")
RECALL_METRICS = {"recall_at_1": 1, "recall_at_2": 2, "recall_at_4": 4, "recall_at_8": 8}


def comparison_layer(config: Config):
    """(the first comparison layer's spec: distance, triplet_distance or difference; the
    name of its first input, the embedding), or (None, None) for a model without one."""
    model = config.spec.model
    for spec, inputs in zip(model.layers, model.layer_inputs()):
        if spec.kind in COMPARISON_LAYERS:
            return spec, inputs[0]
    return None, None


def embedding_layer(config: Config) -> str | None:
    """A comparator's embedding: the first input of its first comparison layer; None for a
    model without one."""
    return comparison_layer(config)[1]


def check_comparison_needs(config: Config, splits: Splits) -> None:
    """Retrieval metrics and hard negatives embed single samples: they need comparison data
    (pairs, triplets) and a comparison layer whose first input is the tower on `input`."""
    metrics = config.spec.metrics or []
    wants = [("metrics", metrics.index(m)) for m in metrics if m in RECALL_METRICS]
    source = splits.info.get("comparison")
    if source is not None and source.mines:
        wants.append(("data", "hard_negatives"))
    if not wants:
        return
    if source is None:
        raise config.error(wants[0], "retrieval recall needs comparison data (dataset: pairs "
                                     "or triplets), whose source samples have class labels")
    layer = embedding_layer(config)
    what = "retrieval recall" if wants[0][0] == "metrics" else "hard negatives"
    if layer is None:
        raise config.error(wants[0], f"{what} needs the model's embedding: end the shared "
                                     "tower in a distance, triplet_distance or difference "
                                     "layer, whose first input is the embedding")
    names = config.spec.model.layer_names()
    inputs = config.spec.model.layer_inputs()
    reads, stack = set(), [layer]
    while stack:  # the model inputs the embedding depends on
        name = stack.pop()
        if name in names:
            stack.extend(inputs[names.index(name)])
        else:
            reads.add(name)
    if reads != {MODEL_INPUT}:
        raise config.error(wants[0], f"{what} embeds single samples through layer '{layer}', "
                                     f"but it reads {', '.join(sorted(reads))}; its first "
                                     "input must be the tower on 'input' alone")


def check_span_metric(config: Config, splits: Splits) -> None:
    """span_f1 needs BIO tag names from the data (a tagging kind)."""
    metrics = config.spec.metrics or []
    if "span_f1" not in metrics:
        return
    where = ("metrics", metrics.index("span_f1"))
    tags = splits.info.get("tags")
    if not tags:
        raise config.error(where, "span_f1 needs tagging data with BIO tag names (dataset: "
                                  "conll or chunks)")
    from nnctl.spans import parse_tags
    try:
        parse_tags(tags)
    except ValueError as err:
        raise config.error(where, f"span_f1 needs BIO tags: {err}") from None


def make_augmenter(config: Config, splits: Splits):
    """The training-batch Augmenter the config asks for (None for none), checked against the
    data's shape now, so `nnctl validate` reports a mismatch before any training."""
    a = config.spec.train.augment
    if not (a.shift or a.flip or a.noise):
        return None
    try:
        augmenter = Augmenter(a.shift, a.flip, a.noise,
                              tuple(a.image_shape) if a.image_shape else None)
        augmenter(splits.train.x[:1], np.random.default_rng(0))
    except ValueError as err:
        raise config.error(("train", "augment"), str(err)) from None
    return augmenter


def _too_large(config: Config, where: tuple, err: Exception) -> Exception:
    """Sizes so large that NumPy cannot allocate them are a config mistake, said in one line;
    any other ValueError is a bug and keeps its traceback."""
    text = str(err)
    if isinstance(err, ValueError) and "too big" not in text and "dimension" not in text:
        return err
    return config.error(where, f"too large to allocate ({type(err).__name__}: "
                               f"{text.splitlines()[0] if text else 'out of memory'}); "
                               "check the sizes in this section")
