"""Config specs of the text data kinds: `text` (classify a text), `text_pairs` (sequence to
sequence) and the generated `dates` (registered into the data-set vocabulary).

Their loaders live in nnctl.data.text_lines, nnctl.data.pairs and nnctl.data.dates (the data
layer sits above config, so config names the kinds and data registers how to load them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from nnctl.config.schema import _DataCommon, register_dataset_spec
from nnctl.config.validate import (Context, boolean, choice, field, integer, list_of, one_of,
                                   optional, string)

# the names of nnctl.data.dates.FORMATS (tests/data/test_dates.py keeps the two equal)
DATE_FORMATS = ("iso", "dmy_slash", "dmy_dot", "dmy_dash", "dmy_short", "ymd_slash", "compact",
                "d_month_y", "d_mon_y", "month_d_y", "mon_d_y", "month_dth_y",
                "weekday_d_month_y", "weekday_month_d_y", "the_dth_of_month_y",
                "the_ordinal_of_month_y", "dth_month_year_words",
                "the_ordinal_of_month_year_words")

_positive = integer(min=1)
_column = optional(one_of(integer(), string, what="a column index or a header name"))


def _normalize():
    return field(choice("standard", "minmax", "none"), "none",
                 "token ids are never normalised: none")


def _check_normalize(spec, path, ctx: Context) -> None:
    if spec.normalize != "none":
        ctx.error(path + ("normalize",), f"token ids are never normalised, so "
                                         f"'{spec.normalize}' would do nothing; leave normalize "
                                         "out (or write none)")


@dataclass(frozen=True, kw_only=True)
class _TokenKeys(_DataCommon):
    """How texts become token ids (nnctl.data.tokens.TokenVocab); the keys of both file kinds."""

    normalize: str = _normalize()
    tokens: str = field(choice("chars", "words"), "chars",
                        "tokens: every character (spaces too), or words split at whitespace")
    lowercase: bool = field(boolean, False, "lowercase the texts before splitting them")
    min_count: int = field(_positive, 1, "a token seen fewer times in the training split is "
                           "read as <unk>")
    max_size: int | None = field(optional(integer(min=5, what="an integer >= 5")), None,
                                 "at most this many ids, the 4 specials included (the most "
                                 "frequent tokens are kept)")
    unknown: str = field(choice("unk", "error"), "unk",
                         "a token not in the vocabulary: read it as <unk>, or stop with an "
                         "error naming its line")
    truncate: bool = field(boolean, False, "cut a text longer than its max_len (default: an "
                           "error naming its line)")
    header: bool | None = field(optional(boolean), None, "the file starts with a header row "
                                "naming the columns (default: yes for .csv and .tsv, no for "
                                ".txt)")

    COLUMN_KEYS: ClassVar[tuple[str, ...]] = ()

    def validate(self, path, ctx: Context) -> None:
        super().validate(path, ctx)
        _check_normalize(self, path, ctx)
        header = self.header if self.header is not None else \
            Path(self.path).suffix.lower() in (".csv", ".tsv")
        for key in self.COLUMN_KEYS:
            if not header and isinstance(getattr(self, key), str):
                ctx.error(path + (key,), "names a column, but the file has no header row "
                                         "(see data.header); give a column index (0 first)")


@dataclass(frozen=True, kw_only=True)
class TextData(_TokenKeys):
    dataset: str = field(string, "text", "texts with class labels: `label<TAB>text` per line "
                         "(.txt), or columns of a .csv/.tsv")
    path: str = field(string, doc="the file; a relative path is relative to the config file")
    text_column: int | str | None = field(_column, None, "the text's column: a header name or "
                                          "an index (default: 'text', or 1 without a header)")
    label_column: int | str | None = field(_column, None, "the label's column (default: "
                                           "'label', or 0 without a header)")
    max_len: int | None = field(optional(_positive), 256, "the most tokens of a text (null: "
                                "no limit)")

    COLUMN_KEYS: ClassVar[tuple[str, ...]] = ("text_column", "label_column")


@dataclass(frozen=True, kw_only=True)
class TextPairsData(_TokenKeys):
    dataset: str = field(string, "text_pairs", "pairs of texts, source to target: "
                         "`source<TAB>target` per line (.txt), or columns of a .csv/.tsv")
    path: str = field(string, doc="the file; a relative path is relative to the config file")
    source_column: int | str | None = field(_column, None, "the source's column: a header "
                                            "name or an index (default: 'source', or 0 "
                                            "without a header)")
    target_column: int | str | None = field(_column, None, "the target's column (default: "
                                            "'target', or 1 without a header)")
    max_len: int | None = field(optional(_positive), 256, "the most tokens of a source (null: "
                                "no limit)")
    max_target_len: int | None = field(optional(_positive), 256, "the most tokens of a target, "
                                       "EOS not counted (null: no limit)")

    COLUMN_KEYS: ClassVar[tuple[str, ...]] = ("source_column", "target_column")


@dataclass(frozen=True, kw_only=True)
class DatesData(_DataCommon):
    dataset: str = field(string, "dates", "dates written in many formats -> YYYY-MM-DD, "
                         "generated with the seed, as characters")
    normalize: str = _normalize()
    samples: int = field(integer(min=10, what="an integer >= 10"), 20000, "pairs in all")
    formats: list | None = field(optional(list_of(choice(*DATE_FORMATS), min_len=1,
                                                  what="a list of format names")),
                                 None, "draw only from these formats (default: all)")

    def validate(self, path, ctx: Context) -> None:
        super().validate(path, ctx)
        _check_normalize(self, path, ctx)


for _spec in (TextData, TextPairsData, DatesData):
    register_dataset_spec(_spec)
