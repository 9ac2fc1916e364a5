"""The `text_pairs` data kind: one vocabulary shared by source and target, built from both
sides of the training split; targets end with EOS; errors name file:line."""

from types import SimpleNamespace

import numpy as np
import pytest

import nnctl.data.pairs  # noqa: F401  (registers the text_pairs loader)
from nnctl.config import load_config
from nnctl.data.batching import BOS, EOS, PAD, UNK, batch_arrays
from nnctl.data.pairs import load_text_pairs
from nnctl.data.tokens import training_indices
from nnctl.errors import DataError
from nnctl.step import load_dataset, load_splits


def spec(path, **keys):
    """What a validated TextPairsData gives the loader (nnctl.config.text_specs)."""
    base = dict(path=str(path), header=None, source_column=None, target_column=None,
                tokens="chars", lowercase=False, min_count=1, max_size=None, unknown="unk",
                max_len=256, max_target_len=256, truncate=False,
                split=SimpleNamespace(val=0.0, test=0.0))
    base.update(keys)
    return SimpleNamespace(**base)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_source_tab_target_with_one_shared_vocabulary(tmp_path):
    path = write(tmp_path, "p.txt", "ab\tba\nc\tcc\n")
    data = load_text_pairs(spec(path), 0, "float32")
    vocab = data.info["input"]
    assert data.info["target"] is vocab
    assert vocab.tokens == ("c", "a", "b")  # c: 3, then a and b (2 each) in code-point order
    c, a, b = 4, 5, 6
    assert data.x.tolist() == [[a, b], [c, PAD]] and data.x_len.tolist() == [2, 1]
    assert data.y.tolist() == [[b, a, EOS], [c, c, EOS]] and data.y_len.tolist() == [3, 3]
    assert data.x.dtype == data.y.dtype == data.y_len.dtype == np.int64
    assert [vocab.decode(row) for row in data.y] == ["ba", "cc"]


def test_words_csv_columns(tmp_path):
    path = write(tmp_path, "p.csv", 'id,fr,en\n1,"le chat, noir",the black cat\n2,oui,yes\n')
    data = load_text_pairs(spec(path, tokens="words", source_column="fr", target_column=2), 0,
                           "float32")
    vocab = data.info["input"]
    assert vocab.decode(data.x[0]) == "le chat, noir" and vocab.decode(data.y[0]) == \
        "the black cat"
    assert data.x_len.tolist() == [3, 1] and data.y_len.tolist() == [4, 2]


def test_the_vocabulary_comes_from_both_sides_of_the_training_split(tmp_path):
    # pair i has letter i in its source and letter i + 20 in its target
    letters = [chr(ord("A") + i) for i in range(26)] + [chr(ord("a") + i) for i in range(14)]
    lines = [f"x{letters[i]}\ty{letters[i + 20]}" for i in range(20)]
    path = write(tmp_path, "p.txt", "\n".join(lines) + "\n")
    s = spec(path, split=SimpleNamespace(val=0.25, test=0.25))
    data = load_text_pairs(s, 7, "float32")
    train = training_indices(20, None, s.split, 7, stratify=False)
    assert len(train) == 10
    expected = {letters[i] for i in train} | {letters[i + 20] for i in train} | {"x", "y"}
    assert set(data.info["input"].tokens) == expected
    for i in sorted(set(range(20)) - set(train.tolist())):
        assert data.x[i, 1] == UNK and data.y[i, 1] == UNK and data.y[i, 2] == EOS


def test_training_indices_agree_with_load_splits(tmp_path):
    lines = [f"{'ab' * (1 + i % 5)}{i}\t{i}{'c' * (1 + i % 3)}" for i in range(30)]
    write(tmp_path, "pairs.tsv", "\n".join(lines) + "\n")
    config = tmp_path / "run.yaml"
    config.write_text("seed: 4\ndata: {dataset: text_pairs, path: pairs.tsv, header: false, "
                      "split: {val: 0.2, test: 0.2}}\nmodel:\n  layers:\n"
                      "    - embedding: {dim: 8}\n    - gru: {units: 8, return_sequences: "
                      "true}\n    - dense: {units: classes}\nloss: cross_entropy\n"
                      "optimizer: adam\ntrain: {epochs: 1}\n")
    config = load_config(config)
    data = load_dataset(config)
    splits = load_splits(config)
    train = training_indices(30, None, config.spec.data.split, 4, stratify=False)
    assert np.array_equal(splits.train.x, data.x[train])
    assert np.array_equal(splits.train.y, data.y[train])


def test_a_batch_has_the_decoder_input_bos_then_the_target(tmp_path):
    path = write(tmp_path, "p.txt", "ab\tba\nc\tcc\nabc\tc\n")
    data = load_text_pairs(spec(path), 0, "float32")
    x, y, x_mask, decoder_input, y_mask = batch_arrays(data, np.array([1, 2]), 1, "float32")
    assert x.shape == (2, 3) and y.shape == (2, 3)
    assert decoder_input[:, 0].tolist() == [BOS, BOS]
    assert np.array_equal(decoder_input[:, 1:], y[:, :-1])
    assert y_mask.tolist() == [[1, 1, 1], [1, 1, 0]] and x_mask.tolist() == [[1, 0, 0],
                                                                             [1, 1, 1]]


@pytest.mark.parametrize("content, keys, where, fragment", [
    ("ab\tba\ncd\t" + "x" * 9 + "\n", {"max_target_len": 8}, ":2",
     "9 tokens, more than max_target_len 8 (raise data.max_target_len or set data.truncate"),
    ("ab\tba\n" + "x" * 9 + "\tcd\n", {"max_len": 8}, ":2",
     "9 tokens, more than max_len 8 (raise data.max_len or set data.truncate: true)"),
    ("ab\tba\ncd\t\n", {}, ":2", "empty text"),
    ("ab\tba\n\tcd\n", {}, ":2", "empty text"),
    ("ab\tba\ncd\n", {}, ":2", "1 tab-separated fields, expected 2 as in line 1"),
    ("ab\tba\n\ncd\tdc\n", {}, ":2", "empty line"),
    ("ab\tba\n", {"source_column": "src"}, "", "names a column, but the file has no header"),
])
def test_bad_pairs(tmp_path, content, keys, where, fragment):
    path = write(tmp_path, "p.txt", content)
    with pytest.raises(DataError) as err:
        load_text_pairs(spec(path, **keys), 0, "float32")
    msg = str(err.value)
    assert msg.startswith(f"{path}{where}: ") and fragment in msg, msg


def test_truncate_keeps_the_eos(tmp_path):
    path = write(tmp_path, "p.txt", "abcdef\tabcdefgh\n")
    data = load_text_pairs(spec(path, max_len=2, max_target_len=3, truncate=True), 0, "float32")
    vocab = data.info["input"]
    assert vocab.decode(data.x[0]) == "ab" and data.y[0].tolist()[-1] == EOS
    assert vocab.decode(data.y[0]) == "abc" and data.y_len.tolist() == [4]


def test_missing_target_column_in_a_header(tmp_path):
    path = write(tmp_path, "p.tsv", "source\ttgt\nab\tba\n")
    with pytest.raises(DataError, match=r"p\.tsv:1: no column 'target' in the header "
                                        r"\(source, tgt\)"):
        load_text_pairs(spec(path), 0, "float32")
