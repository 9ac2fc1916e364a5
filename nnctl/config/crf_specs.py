"""Config specs of the tagging task: the crf layer, the crf loss, and the tagging data kinds
(conll, chunks), registered into the config vocabulary. Their loaders live in
nnctl.data.tagging (config sits below data in the layering, so it cannot import them; the
nnctl.data package imports that module, which registers them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from nnctl.config.layer_specs import LayerSpec, positive, register_layer_spec
from nnctl.config.schema import _DataCommon, register_dataset_spec, register_loss_spec
from nnctl.config.validate import Context, boolean, choice, field, integer, string


@dataclass(frozen=True, kw_only=True)
class CRFSpec(LayerSpec):
    kind: ClassVar[str] = "crf"
    constraints: str = field(choice("none", "bio"), "none",
                             "bio: transitions BIO forbids (I-X after O or after another "
                             "type, I-X first) get a fixed -1e4, in the loss and in decoding")


@dataclass(frozen=True, kw_only=True)
class CRFLossSpec:
    name: str = field(string, "crf", "negative log-likelihood of the gold tag paths under the "
                                     "model's last layer, a crf (mean over sequences)")


@dataclass(frozen=True, kw_only=True)
class ConllData(_DataCommon):
    dataset: str = field(string, "conll", "a CoNLL-style tagging file: a token per line, its "
                                          "tag in the last column, blank lines between "
                                          "sentences")
    path: str = field(string, doc="the file; a relative path is relative to the config file")
    min_count: int = field(positive, 1, "words seen fewer times in the training split are UNK")
    lowercase: bool = field(boolean, False, "fold words to lower case")
    max_len: int = field(positive, 100, "the longest sentence allowed (tokens)")
    truncate: bool = field(boolean, False, "cut longer sentences to max_len instead of "
                                           "refusing the file")


@dataclass(frozen=True, kw_only=True)
class ChunksData(_DataCommon):
    dataset: str = field(string, "chunks", "generated sentences with BIO chunk tags (NP, VP, PP), "
                                           "whose chunk types the last word decides")
    samples: int = field(integer(min=10, what="an integer >= 10"), 3000, "sentences in all")
    min_len: int = field(integer(min=3, what="an integer >= 3"), 5, "the shortest sentence")
    max_len: int = field(integer(min=8, what="an integer >= 8"), 25, "the longest sentence")

    def validate(self, path, ctx: Context) -> None:
        super().validate(path, ctx)
        if self.min_len > self.max_len:
            ctx.error(path + ("min_len",), f"min_len ({self.min_len}) is above max_len "
                                           f"({self.max_len})")


register_layer_spec(CRFSpec)
register_loss_spec(CRFLossSpec)
register_dataset_spec(ConllData)
register_dataset_spec(ChunksData)
