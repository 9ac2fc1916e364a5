"""Two tiny generated data kinds of padded token sequences, for the trainer's tests only.

Importing this module registers them (registration is global, so the names are unique to
the tests):

- `test_padded_toy`: one label per sequence, 1 when token 5 occurs more often than token 6
  among the real tokens (a count a recurrent layer must carry to the end);
- `test_padded_tags`: one label per step (tagging), 1 where the token equals the previous one.

Tokens are ids 4..9 (0..3 are the special ids PAD, UNK, BOS, EOS); x is padded at the end
with PAD to `max_len + extra_padding` steps. `extra_padding` only widens the padding: the
samples, their lengths, labels and splits do not change, which is what lets a test check
that padding changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnctl.config.schema import _DataCommon, register_dataset_spec
from nnctl.config.validate import field, integer, string
from nnctl.data.batching import PAD
from nnctl.data.dataset import Dataset
from nnctl.data.kinds import register_loader

FIRST_TOKEN, LAST_TOKEN = 4, 9


@dataclass(frozen=True, kw_only=True)
class PaddedToyData(_DataCommon):
    dataset: str = field(string, "test_padded_toy", "test only: does 5 occur more than 6")
    samples: int = field(integer(min=10), 120, "sequences in all")
    min_len: int = field(integer(min=1), 2, "the shortest sequence")
    max_len: int = field(integer(min=1), 14, "the longest sequence")
    extra_padding: int = field(integer(min=0), 0, "PAD steps added after the longest")


@dataclass(frozen=True, kw_only=True)
class PaddedTagsData(PaddedToyData):
    dataset: str = field(string, "test_padded_tags", "test only: tag repeated tokens")


def tokens(spec, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(x [N, max_len + extra_padding] int64 padded with PAD, lengths [N] int64)."""
    rng = np.random.default_rng(seed)
    n, width = spec.samples, spec.max_len + spec.extra_padding
    lengths = rng.integers(spec.min_len, spec.max_len + 1, size=n).astype(np.int64)
    x = rng.integers(FIRST_TOKEN, LAST_TOKEN + 1, size=(n, spec.max_len))
    x = np.concatenate([x, np.zeros((n, spec.extra_padding), np.int64)], axis=1)
    x[np.arange(width)[None, :] >= lengths[:, None]] = PAD
    return x.astype(np.int64), lengths


@register_loader("test_padded_toy")
def load_padded_toy(spec, seed: int, dtype: str) -> Dataset:
    x, lengths = tokens(spec, seed)
    y = ((x == 5).sum(1) > (x == 6).sum(1)).astype(np.int64)
    return Dataset(x, y, "test_padded_toy", x_len=lengths)


@register_loader("test_padded_tags")
def load_padded_tags(spec, seed: int, dtype: str) -> Dataset:
    x, lengths = tokens(spec, seed)
    y = np.zeros_like(x)
    y[:, 1:] = x[:, 1:] == x[:, :-1]
    y[x == PAD] = PAD  # padded labels are never read: the mask leaves them out
    return Dataset(x, y, "test_padded_tags", x_len=lengths)


KINDS = (PaddedToyData, PaddedTagsData)


def register() -> None:
    """Put the test kinds in the config vocabulary (`unregister` takes them out again, so
    that no other test sees them: `nnctl datasets` lists every kind)."""
    for spec in KINDS:
        register_dataset_spec(spec)


def unregister() -> None:
    from nnctl.config.schema import DATASETS
    for spec in KINDS:
        DATASETS.pop(spec.__dataclass_fields__["dataset"].default, None)
