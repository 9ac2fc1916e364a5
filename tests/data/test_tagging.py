"""Tagging data: CoNLL files (columns, sentences, errors with file:line, vocabulary from the
training split only) and the generated chunks (seeded, valid BIO, ambiguous chunk starts)."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from nnctl.config import load_config
from nnctl.data.batching import PAD, UNK
from nnctl.data.tagging import MODIFIERS, make_chunks, order_tags, read_conll, word_vocabulary
from nnctl.data.tokens import TokenVocab, training_indices
from nnctl.errors import ConfigError, DataError
from nnctl.spans import parse_tags
from nnctl.step import load_dataset, load_splits

CONLL = ("-DOCSTART- -X- O\n\n"
         "The DT B-NP\nDog\tNN\tI-NP\nruns VBZ B-VP\n\n\n"
         "a DT B-NP\ncat NN I-NP\n")


def write(tmp_path, text: str, name: str = "train.conll"):
    path = tmp_path / name
    path.write_text(text)
    return path


def config(tmp_path, data: str, loss: str = "cross_entropy"):
    """A run config whose data section is `data` (YAML lines), loaded and validated."""
    section = "".join(f"  {line}\n" for line in textwrap.dedent(data).splitlines())
    path = tmp_path / "run.yaml"
    crf = "\n            - crf: {}" if loss == "crf" else ""
    path.write_text("seed: 3\ndata:\n" + section + textwrap.dedent(f"""\
        model:
          layers:
            - embedding: {{dim: 4, vocab: auto}}
            - dense: {{units: classes}}{crf}
        loss: {loss}
        optimizer: adam
        train: {{epochs: 1}}
        """))
    return load_config(path)


def test_read_conll_columns_sentences_and_docstart(tmp_path):
    sentences, tags = read_conll(write(tmp_path, CONLL))
    assert sentences == [["The", "Dog", "runs"], ["a", "cat"]]
    assert tags == [["B-NP", "I-NP", "B-VP"], ["B-NP", "I-NP"]]


def test_read_conll_errors_name_the_line(tmp_path):
    with pytest.raises(DataError, match="expected a token and its tag") as err:
        read_conll(write(tmp_path, "a B-NP\nb\n"))
    assert err.value.path.endswith("train.conll:2")
    long = "x O\ny O\nz O\n\nw O\n"
    with pytest.raises(DataError, match="3 tokens is longer than max_len 2") as err:
        read_conll(write(tmp_path, long), max_len=2)
    assert err.value.path.endswith("train.conll:1")
    sentences, tags = read_conll(write(tmp_path, long), max_len=2, truncate=True)
    assert sentences == [["x", "y"], ["w"]] and tags == [["O", "O"], ["O"]]
    with pytest.raises(DataError, match="no sentences"):
        read_conll(write(tmp_path, "\n\n-DOCSTART- O\n"))
    with pytest.raises(DataError, match="no such file"):
        read_conll(tmp_path / "absent.conll")


def test_word_vocabulary_is_a_word_token_vocab():
    vocab = word_vocabulary([["The", "dog"], ["the", "dog", "cat"]], min_count=2,
                            lowercase=True)
    assert isinstance(vocab, TokenVocab) and vocab.level == "words"
    assert vocab.tokens == ("dog", "the")  # by frequency, ties in code-point order
    assert vocab.encode("DOG cat The").tolist() == [4, UNK, 5]


def test_order_tags_puts_o_first():
    assert order_tags(["I-VP", "B-NP", "O", "B-VP", "I-NP"]) == \
        ["O", "B-NP", "I-NP", "B-VP", "I-VP"]


def test_conll_kind_builds_words_from_the_training_split_only(tmp_path):
    # 20 sentences, each with its own word; only the training split's words get ids
    lines = [f"w{i} B-NP\nend O\n" for i in range(20)]
    path = write(tmp_path, "\n".join(lines))
    cfg = config(tmp_path, f"""\
        dataset: conll
        path: {path.name}
        split: {{val: 0.2, test: 0.2}}""")
    data = load_dataset(cfg)
    train = training_indices(20, None, cfg.spec.data.split, seed=3, stratify=False)
    assert len(train) == 12
    vocab = data.info["input"]
    assert data.info["tags"] == ["O", "B-NP"]
    assert data.x.shape == (20, 2) and data.x.dtype == np.int64
    assert data.x_len.tolist() == [2] * 20
    known = data.x[:, 0] != UNK
    assert sorted(np.flatnonzero(known).tolist()) == sorted(train.tolist())
    assert vocab.decode(data.x[train, 0]).split() == [f"w{i}" for i in train]
    assert (data.y[:, 0] == 1).all() and (data.y[:, 1] == 0).all()
    # the trainer's own split puts exactly these samples in train
    splits = load_splits(cfg)
    assert sorted(map(tuple, splits.train.x.tolist())) == \
        sorted(map(tuple, data.x[train].tolist()))


def test_conll_pads_and_counts(tmp_path):
    path = write(tmp_path, "a B-NP\nb I-NP\nc O\n\nd O\n\na B-NP\n")
    cfg = config(tmp_path, f"""\
        dataset: conll
        path: {path.name}
        split: {{val: 0.0, test: 0.0}}
        min_count: 2""")
    data = load_dataset(cfg)
    assert data.x_len.tolist() == [3, 1, 1]
    assert data.x.tolist() == [[4, UNK, UNK], [UNK, PAD, PAD], [4, PAD, PAD]]
    assert data.y.tolist() == [[1, 2, 0], [0, 0, 0], [1, 0, 0]]


def test_conll_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such data file: nowhere.conll"):
        config(tmp_path, "dataset: conll\npath: nowhere.conll")


def test_chunks_are_seeded_valid_bio_and_ambiguous():
    a, b = make_chunks(400, seed=1), make_chunks(400, seed=1)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.x, make_chunks(400, seed=2).x)
    assert a.x_len.min() >= 5 and a.x_len.max() <= 25 and a.x.shape[1] == a.x_len.max()
    tags, vocab = a.info["tags"], a.info["input"]
    assert tags == ["O", "B-NP", "I-NP", "B-PP", "B-VP", "I-VP"]
    assert 100 <= len(vocab) <= 300
    parsed = parse_tags(tags)
    modifiers = {vocab.id(w) for w in MODIFIERS}  # words that start noun and verb chunks
    starts = ambiguous = 0
    for words, seq, n in zip(a.x, a.y, a.x_len):
        assert (words[n:] == PAD).all() and (words[:n] != PAD).all()
        for t in range(n):  # every I-X follows B-X or I-X of the same type
            kind, kind_type = parsed[seq[t]]
            if kind == "I":
                assert t and parsed[seq[t - 1]][1] == kind_type
            if kind == "B" and kind_type in ("NP", "VP"):
                starts += 1
                ambiguous += int(words[t]) in modifiers
    assert 0.35 < ambiguous / starts < 0.7


def test_chunks_spec_checks_lengths(tmp_path):
    with pytest.raises(ConfigError, match=r"min_len \(20\) is above max_len \(10\)"):
        config(tmp_path, "dataset: chunks\nmin_len: 20\nmax_len: 10")
    cfg = config(tmp_path, "dataset: chunks\nsamples: 50", loss="crf")
    assert cfg.spec.loss.name == "crf"
    assert len(load_dataset(cfg)) == 50
