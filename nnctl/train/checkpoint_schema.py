"""What a checkpoint must hold to resume a given trainer, checked whole before any of it is used.

A checkpoint can be hand-made or damaged and still be a valid zip with the right config
fingerprint. Restoring it field by field would then fail halfway (a KeyError, a broadcast
error inside an optimizer kernel, numpy refusing an RNG state) with part of the trainer already
overwritten, or worse, train on from nonsense ("epoch -7"). So every metadata field's type and
range, every RNG state, the partial sums, and every array's name, shape and dtype against the
model and the optimizer are checked first; the first problem is one DataError naming the
checkpoint and the field (exit 2).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnctl.errors import DataError
from nnctl.train.metrics import MetricSums
from nnctl.train.safe_npz import HEADER_MAX, NpzLimits, brief

FORMAT_VERSION = 1
META = "__meta__"
META_MAX_BYTES = 16 * 2 ** 20  # the metadata is a resolved config and a few numbers
# unknown entries beyond these are refused by name, not read: a few get the exact message
SPARE_MEMBERS = 64
_UNSET = object()
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")

# field -> its value when an older checkpoint lacks it (None: required)
FIELDS = {
    "format_version": None, "nnctl_version": "", "config": None, "config_fingerprint": None,
    "epoch": None, "step_in_epoch": None, "global_step": None, "shuffle_state": None,
    "augment_state": None, "dropout_state": None, "partial": None, "best": None,
    "bad_epochs": 0, "skipped": 0, "divergence": None, "loss_scale": None,
}
REQUIRED = ("format_version", "config", "config_fingerprint", "epoch", "step_in_epoch",
            "global_step", "shuffle_state", "augment_state")


def refuse(path: Path, field: str, message: str) -> DataError:
    return DataError(f"{field}: {message}", path=str(path))


def check_meta_blob(path: Path, blob) -> None:
    if blob.dtype != np.uint8 or blob.ndim != 1:
        raise refuse(path, META, f"expected a 1-D uint8 array, got shape {blob.shape} "
                                 f"{blob.dtype}")


def check_header(path: Path, meta) -> None:
    """What must hold before the config can even be compared: a mapping of the known format,
    with a config and its fingerprint."""
    if not isinstance(meta, dict):
        raise refuse(path, "metadata", f"expected a JSON object, got a {_json_type(meta)}")
    version = meta.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise DataError(f"checkpoint format {brief(version)} is not the supported format "
                        f"{FORMAT_VERSION}", path=str(path))
    if not isinstance(meta.get("nnctl_version", ""), str):
        raise refuse(path, "nnctl_version", f"expected a string, got "
                                            f"{brief(meta['nnctl_version'])}")
    if not isinstance(meta.get("config"), dict):
        raise refuse(path, "config", f"expected a mapping (the run's resolved config), got "
                                     f"{brief(meta.get('config'))}")
    fingerprint = meta.get("config_fingerprint")
    if not (isinstance(fingerprint, str) and _FINGERPRINT.fullmatch(fingerprint)):
        raise refuse(path, "config_fingerprint", f"expected 64 hex digits, got "
                                                 f"{brief(fingerprint)}")


def _json_type(value) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class ArraySpec:
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def problem(self, array: np.ndarray) -> str | None:
        if array.shape == self.shape and array.dtype == self.dtype:
            return None
        return (f"expected shape {self.shape} and dtype {self.dtype}, got shape {array.shape} "
                f"and dtype {array.dtype}")


STEP = ArraySpec((), np.dtype(np.int64))


@dataclass(frozen=True)
class CheckpointSchema:
    params: dict[str, ArraySpec]
    states: dict[str, ArraySpec]
    slots: tuple[str, ...]  # the optimizer's per-parameter state, saved as optim/<slot>.<i>
    steps_per_epoch: int
    batch_size: int
    # meta field -> the bit generator class its state is for (or the classes it may be for)
    generators: dict[str, type | tuple[type, ...]]
    partial: dict[str, object]  # the fields of fresh partial sums, and their starting values

    @classmethod
    def for_trainer(cls, trainer) -> CheckpointSchema:
        def specs(names, arrays):
            return {n: ArraySpec(tuple(a.shape), np.dtype(a.dtype)) for n, a in zip(names, arrays)}

        host = type(trainer.shuffle_rng.bit_generator)
        # the dropout stream is NumPy's PCG64 on the CPU and Philox on the GPU; a checkpoint
        # of either device resumes on the other (its dropout stream then starts afresh)
        from nnctl.backend.philox import PhiloxBits
        dropout = (type(trainer.dropout_rng.bit_generator), np.random.PCG64, PhiloxBits)
        sums = MetricSums(None, trainer.spec.metrics, trainer.classification,
                          trainer.multilabel)
        return cls(params=specs(trainer.param_names, trainer.params),
                   states=specs(trainer.state_names, trainer.states),
                   slots=tuple(trainer.optimizer.slots),
                   steps_per_epoch=trainer.steps_per_epoch,
                   batch_size=trainer.spec.train.batch_size,
                   generators={"shuffle_state": host,
                               "augment_state": type(trainer.augment_rng.bit_generator),
                               "dropout_state": dropout},
                   partial=dict(vars(sums), xp=None))

    # ---- before reading: how big the archive may be ----------------------------------------
    def expected_arrays(self) -> dict[str, ArraySpec]:
        arrays = {f"param/{n}": s for n, s in self.params.items()}
        arrays.update({f"state/{n}": s for n, s in self.states.items()})
        arrays["optim/step"] = STEP
        for slot in self.slots:
            arrays.update({f"optim/{slot}.{i}": s for i, s in enumerate(self.params.values())})
        return arrays

    def limits(self) -> NpzLimits:
        sizes = [s.nbytes for s in self.expected_arrays().values()]
        members = len(sizes) + 1 + SPARE_MEMBERS
        return NpzLimits(member_bytes=max(sizes + [META_MAX_BYTES]) + HEADER_MAX,
                         total_bytes=sum(sizes) + META_MAX_BYTES + members * HEADER_MAX,
                         members=members)

    # ---- after reading: everything ---------------------------------------------------------
    def validate(self, path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
        check_header(path, meta)
        Fields(self, path, meta).check()
        self._check_arrays(path, arrays, meta["global_step"])

    def _check_arrays(self, path: Path, arrays: dict, global_step: int) -> None:
        expected = self.expected_arrays()
        for key, array in arrays.items():
            if key not in expected:
                raise refuse(path, key, "unknown entry (not a parameter, layer state or "
                                        "optimizer state of this model)")
        required = [k for k in expected if k.startswith(("param/", "state/")) or k == "optim/step"]
        for key in required:
            if key not in arrays:
                raise refuse(path, key, "missing")
        for key, array in arrays.items():
            problem = expected[key].problem(array)
            if problem:
                raise refuse(path, key, problem)
        if int(arrays["optim/step"]) != global_step:
            raise refuse(path, "optim/step", f"expected {global_step} (global_step), got "
                                             f"{int(arrays['optim/step'])}")
        self._check_slots(path, arrays, global_step)

    def _check_slots(self, path: Path, arrays: dict, steps: int) -> None:
        """Every step updates every parameter, so a slot holds all of them or none."""
        everyone = set(range(len(self.params)))
        for slot in self.slots:
            held = {int(k.rpartition(".")[2]) for k in arrays if k.startswith(f"optim/{slot}.")}
            if held and steps == 0:
                raise refuse(path, f"optim/{slot}", "expected no state before the first step")
            if held and held != everyone:
                missing = ", ".join(str(i) for i in sorted(everyone - held)[:5])
                raise refuse(path, f"optim/{slot}", f"expected one array per parameter "
                                                    f"(0..{len(everyone) - 1}), missing {missing}")


class Fields:
    """The metadata's progress fields, checked in an order where each bound is known."""

    def __init__(self, schema: CheckpointSchema, path: Path, meta: dict):
        self.schema, self.path, self.meta = schema, path, meta

    def refuse(self, field: str, message: str) -> DataError:
        return refuse(self.path, field, message)

    def check(self) -> None:
        meta = self.meta
        for key in meta:
            if key not in FIELDS:
                raise self.refuse(key, "unknown field")
        for key in REQUIRED:
            if key not in meta:
                raise self.refuse(key, "missing")
        epochs = self.integer_at(("config", "train", "epochs"), 1, None)
        epoch = self.integer("epoch", 1, epochs + 1)
        spe = self.schema.steps_per_epoch
        step = self.integer("step_in_epoch", 0, spe)
        done = (epoch - 1) * spe + step
        global_step = self.integer("global_step", 0, None)
        skipped = self.integer("skipped", 0, None)
        if global_step + skipped != done:
            raise self.refuse("global_step", (
                f"expected global_step + skipped = {done} ({epoch - 1} epochs of {spe} steps "
                f"and {step} of epoch {epoch}), got {global_step} + {skipped}"))
        for field, generator in self.schema.generators.items():
            self.generator_state(field, generator, optional=field == "dropout_state")
        self.partial(epoch, step)
        best = meta.get("best")
        if best is not None and not _is_number(best):
            raise self.refuse("best", f"expected null or a number, got {brief(best)}")
        self.integer("bad_epochs", 0, epoch - 1)
        scale = meta.get("loss_scale")
        if scale is not None and not (
                isinstance(scale, dict) and set(scale) == {"scale", "good_steps"}
                and _is_number(scale["scale"]) and math.isfinite(scale["scale"])
                and scale["scale"] > 0 and type(scale["good_steps"]) is int
                and scale["good_steps"] >= 0):
            raise self.refuse("loss_scale", "expected null or {scale: a number > 0, "
                                            f"good_steps: an integer >= 0}}, got {brief(scale)}")

    def integer(self, field: str, low: int, high: int | None, value=_UNSET) -> int:
        if value is _UNSET:
            value = self.meta.get(field, FIELDS.get(field))
        bounds = f"from {low} to {high}" if high is not None else f">= {low}"
        if type(value) is not int or value < low or (high is not None and value > high):
            raise self.refuse(field, f"expected an integer {bounds}, got {brief(value)}")
        return value

    def integer_at(self, keys: tuple[str, ...], low: int, high: int | None) -> int:
        value = self.meta
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return self.integer(".".join(keys), low, high, value=value)

    def generator_state(self, field: str, generator: type, optional: bool) -> None:
        value = self.meta.get(field)
        if value is None and optional:
            return
        kinds = generator if isinstance(generator, tuple) else (generator,)
        if not any(_round_trips(kind, value) for kind in kinds):
            names = " or ".join(dict.fromkeys(getattr(kind, "display_name", kind.__name__)
                                              for kind in kinds))
            raise self.refuse(field, f"expected a {names} generator state, got {brief(value)}")

    def partial(self, epoch: int, step: int) -> None:
        value, fresh = self.meta.get("partial"), self.schema.partial
        if value is None:
            if step:
                raise self.refuse("partial", f"expected the sums of the {step} steps done in "
                                             f"epoch {epoch}, got None")
            return
        if not isinstance(value, dict) or set(value) != set(fresh):
            raise self.refuse("partial", f"expected null or the sums of an epoch's steps "
                                         f"(fields {', '.join(sorted(fresh))}), got "
                                         f"{brief(value)}")
        for key, start in fresh.items():
            self.partial_field(key, value[key], start)
        if "n" in fresh:  # no more samples than the steps done hold
            self.integer("partial.n", 0, step * self.schema.batch_size, value=value["n"])
        if "correct" in fresh and "positions" in fresh:
            self.integer("partial.correct", 0, value["positions"], value=value["correct"])

    def partial_field(self, key: str, value, start) -> None:
        field = f"partial.{key}"
        if type(start) is int:
            self.integer(field, 0, None, value=value)
        elif type(start) is float:
            if not (_is_number(value) and math.isfinite(value)):
                raise self.refuse(field, f"expected a finite number, got {brief(value)}")
        elif not _same(value, start):  # settings (metrics, classification): this run's own
            raise self.refuse(field, f"expected {brief(start)}, got {brief(value)}")


def _is_number(value) -> bool:
    return type(value) in (int, float)


def _round_trips(generator: type, state) -> bool:
    """Whether `state` is exactly a state of `generator`: numpy accepts it and gives it back
    unchanged (it silently truncates a float and ignores unknown keys, so acceptance alone
    is not enough)."""
    if not isinstance(state, dict):
        return False
    try:
        bit_generator = generator()
        bit_generator.state = state
        return _same(bit_generator.state, state)
    except (TypeError, ValueError, OverflowError, KeyError, IndexError, AttributeError):
        return False  # what numpy's setter raises for a state of the wrong form


def _same(a, b) -> bool:
    """Equal, with equal types all the way down (True is not 1, 1.0 is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b
