"""TokenVocab: ids in frequency order after the specials, chars and words, unknown tokens,
decode, and an exact JSON round trip; pad_ids and training_indices."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from nnctl.data.batching import BOS, EOS, PAD, UNK
from nnctl.data.dataset import Dataset, split
from nnctl.data.tokens import SPECIALS, TokenVocab, pad_ids, training_indices
from nnctl.errors import DataError


def test_specials_then_tokens_by_frequency_ties_in_code_point_order():
    vocab = TokenVocab.build(["abracadabra", "cab"])
    # a: 6, b: 3, c: 2, r: 2, d: 1
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)
    assert vocab.tokens == ("a", "b", "c", "r", "d")
    assert len(vocab) == 9
    assert vocab.encode("abcrd").tolist() == [4, 5, 6, 7, 8]
    assert vocab.encode("").dtype == np.int64


def test_characters_include_spaces_and_case_unless_lowercase():
    assert TokenVocab.build(["Ab a"]).tokens == (" ", "A", "a", "b")
    assert TokenVocab.build(["Ab a"], lowercase=True).tokens == ("a", " ", "b")


def test_words_split_at_whitespace_and_lowercase():
    vocab = TokenVocab.build(["The cat  sat", "the\tdog sat\n"], level="words", lowercase=True)
    assert vocab.tokens == ("sat", "the", "cat", "dog")
    assert vocab.encode("THE  dog").tolist() == [5, 7]
    assert vocab.decode(vocab.encode("the cat sat")) == "the cat sat"


def test_min_count_and_max_size():
    texts = ["aaaa", "bbb", "cc", "d"]
    assert TokenVocab.build(texts, min_count=2).tokens == ("a", "b", "c")
    assert TokenVocab.build(texts, min_count=2).encode("d").tolist() == [UNK]
    assert TokenVocab.build(texts, max_size=6).tokens == ("a", "b")  # 4 specials + 2
    with pytest.raises(ValueError, match="max_size must be an integer >= 5"):
        TokenVocab.build(texts, max_size=4)
    with pytest.raises(ValueError, match="min_count"):
        TokenVocab.build(texts, min_count=0)


def test_unknown_token_is_unk_or_an_error_naming_where_and_the_token():
    vocab = TokenVocab.build(["ab"])
    assert vocab.encode("abz").tolist() == [4, 5, UNK]
    strict = TokenVocab.build(["ab"], unknown="error")
    with pytest.raises(DataError) as err:
        strict.encode("abz", where="data.txt:7")
    msg = str(err.value)
    assert msg.startswith("data.txt:7: the char 'z' is not in the vocabulary"), msg
    words = TokenVocab.build(["red fox"], level="words", unknown="error")
    with pytest.raises(DataError, match="data.tsv:2: the word 'dog' is not"):
        words.encode("red dog", where="data.tsv:2")


def test_decode_stops_at_eos_and_drops_pad_and_bos():
    vocab = TokenVocab.build(["ab"])
    a, b = vocab.id("a"), vocab.id("b")
    assert vocab.decode([BOS, a, b, UNK, a, EOS, b, b, PAD]) == "ab\ufffda"
    assert vocab.decode(np.array([a, PAD, b], dtype=np.int32)) == "ab"
    assert vocab.decode([]) == ""
    words = TokenVocab.build(["red fox"], level="words")
    assert words.decode([BOS, words.id("red"), UNK, words.id("fox"), EOS]) == "red <unk> fox"
    with pytest.raises(ValueError, match="id 6 is out of range"):
        vocab.decode([a, 6])
    with pytest.raises(ValueError, match="1-D"):
        vocab.decode([[a]])


@pytest.mark.parametrize("level, texts", [
    ("chars", ["héllo wörld\u00a0\"'\\", "tab\there"]),
    ("words", ["Über straße 東京 \"quoted\"", "<unk> <eos> a"]),
])
def test_json_round_trip_is_exact(level, texts):
    vocab = TokenVocab.build(texts, level=level, lowercase=True, unknown="error")
    back = TokenVocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert back == vocab and back.tokens == vocab.tokens
    assert (back.level, back.lowercase, back.unknown) == (level, True, "error")
    for text in texts:
        assert back.encode(text).tolist() == vocab.encode(text).tolist()
    assert vocab.to_dict()["specials"] == list(SPECIALS)


def test_a_literal_special_name_in_a_text_is_an_ordinary_token():
    words = TokenVocab.build(["<eos> x"], level="words")
    ids = words.encode("<eos> x")
    assert ids.tolist() == [4, 5] and words.decode(ids) == "<eos> x"


@pytest.mark.parametrize("bad, fragment", [
    ([], "expected a mapping"),
    ({"level": "chars", "lowercase": False, "unknown": "unk"}, "missing tokens"),
    ({"level": "bytes", "lowercase": False, "unknown": "unk", "tokens": []}, "level must be"),
    ({"level": "chars", "lowercase": "no", "unknown": "unk", "tokens": []}, "lowercase must"),
    ({"level": "chars", "lowercase": False, "unknown": "skip", "tokens": []}, "unknown must"),
    ({"level": "chars", "lowercase": False, "unknown": "unk", "tokens": ["ab"]},
     "token 0 ('ab') is not one character"),
    ({"level": "words", "lowercase": False, "unknown": "unk", "tokens": ["a b"]},
     "is not a word without whitespace"),
    ({"level": "chars", "lowercase": False, "unknown": "unk", "tokens": ["a", "b", "a"]},
     "token 'a' appears more than once"),
    ({"level": "chars", "lowercase": False, "unknown": "unk", "tokens": "ab"},
     "tokens must be a list"),
    ({"level": "chars", "lowercase": False, "unknown": "unk", "tokens": [],
      "specials": ["<unk>", "<pad>", "<bos>", "<eos>"]}, "specials must be"),
])
def test_from_dict_refuses_what_to_dict_never_writes(bad, fragment):
    with pytest.raises(DataError, match="token vocabulary") as err:
        TokenVocab.from_dict(bad)
    assert fragment in str(err.value)


def test_pad_ids_pads_with_pad_and_appends_end():
    x, lengths = pad_ids([np.array([5, 6]), np.array([7]), np.array([8, 9, 10])])
    assert x.tolist() == [[5, 6, 0], [7, 0, 0], [8, 9, 10]] and lengths.tolist() == [2, 1, 3]
    y, y_len = pad_ids([np.array([5, 6]), np.array([7])], end=EOS)
    assert y.tolist() == [[5, 6, EOS], [7, EOS, 0]] and y_len.tolist() == [3, 2]
    assert x.dtype == y.dtype == lengths.dtype == np.int64


@pytest.mark.parametrize("stratify", [True, False])
def test_training_indices_are_splits_training_samples(stratify):
    labels = np.array([0] * 30 + [1] * 12 + [2] * 7, dtype=np.int64)
    spec = SimpleNamespace(val=0.2, test=0.1)
    idx = training_indices(len(labels), labels, spec, seed=5, stratify=stratify)
    data = Dataset(np.arange(49) * 10, labels)
    train, _, _ = split(data, 0.2, 0.1, seed=5, stratify=stratify)
    assert np.array_equal(data.x[idx], train.x) and len(idx) == 49 - 10 - 5
    other = training_indices(len(labels), labels, spec, seed=6, stratify=stratify)
    assert not np.array_equal(idx, other)


def test_training_indices_leave_a_refused_split_to_load_splits():
    idx = training_indices(3, None, SimpleNamespace(val=0.1, test=0.1), 0, False)
    assert idx.tolist() == [0, 1, 2]  # split refuses (an empty val split): every index
