"""Sequence pairs (sequence to sequence): the `text_pairs` data kind, and the path every
pair kind (the generated dates too) takes from texts to padded ids.

Source and target share ONE vocabulary, built from both sides of the training split: the
encoder's and the decoder's embeddings (`vocab: auto`) and the output layer (`units:
classes`) then agree on the ids, and a token copied from source to target (a digit, a name)
keeps its id. The target ends with EOS, so a decoder learns where to stop; the decoder's
input (BOS, then the target shifted right) is made per batch (nnctl.data.batching).
"""

from __future__ import annotations

from pathlib import Path

from nnctl.data.batching import EOS
from nnctl.data.dataset import Dataset
from nnctl.data.kinds import register_loader
from nnctl.data.text_lines import encode_texts, read_columns, vocab_options
from nnctl.data.tokens import TokenVocab, pad_ids, training_indices


def pairs_dataset(sources: list[str], targets: list[str], wheres: list[str], *, split_spec,
                  seed: int, name: str, level: str = "chars", lowercase: bool = False,
                  min_count: int = 1, max_size: int | None = None, unknown: str = "unk",
                  max_len: int | None = None, max_target_len: int | None = None,
                  truncate: bool = False) -> Dataset:
    """x: source ids int64 [N, S] padded with PAD, x_len; y: target ids then EOS [N, T]
    padded, y_len (EOS included); info["input"] and info["target"]: the one TokenVocab,
    built from both sides of the samples load_splits will train on. wheres: a 'file:line'
    per pair, for messages. max_target_len counts the target's tokens, EOS not included."""
    train = training_indices(len(sources), None, split_spec, seed, stratify=False)
    vocab = TokenVocab.build([t for i in train for t in (sources[i], targets[i])], level,
                             lowercase, min_count, max_size, unknown)
    x, x_len = pad_ids(encode_texts(vocab, sources, wheres, max_len, truncate))
    y, y_len = pad_ids(encode_texts(vocab, targets, wheres, max_target_len, truncate,
                                    key="max_target_len"), end=EOS)
    return Dataset(x, y, name, x_len=x_len, y_len=y_len, info={"input": vocab, "target": vocab})


@register_loader("text_pairs")
def load_text_pairs(spec, seed: int, dtype: str) -> Dataset:
    """`dataset: text_pairs`: `source<TAB>target` per line (or columns of a .csv/.tsv with a
    header), see pairs_dataset."""
    wheres, cols = read_columns(spec.path, spec.header, {"source": (spec.source_column, 0),
                                                         "target": (spec.target_column, 1)})
    return pairs_dataset(cols["source"], cols["target"], wheres, split_spec=spec.split,
                         seed=seed, name=Path(spec.path).stem, max_len=spec.max_len,
                         max_target_len=spec.max_target_len, truncate=spec.truncate,
                         **vocab_options(spec))
