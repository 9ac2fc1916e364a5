"""Vocabulary, load_text, char_windows, load_words, and the shipped datasets/words.txt."""

import hashlib
import json
import re

import numpy as np
import pytest

from nnctl.data import DATASETS_DIR, Vocabulary, char_windows, load_text, load_words
from nnctl.errors import DataError

WORDS = DATASETS_DIR / "words.txt"
WORDS_SHA256 = "3d658ca50ef9f0fd780acd27c3117b269f8a9dce3b878d50c8dd5801e8865600"


# --- the shipped corpus --------------------------------------------------------------------

def test_words_file_hash_matches_readme():
    assert hashlib.sha256(WORDS.read_bytes()).hexdigest() == WORDS_SHA256
    readme = (DATASETS_DIR / "README.md").read_text()
    assert WORDS_SHA256 in readme


def test_words_file_properties():
    raw = WORDS.read_bytes()
    assert len(raw) <= 200_000
    assert raw.endswith(b"\n") and b"\r" not in raw
    words = raw.decode("ascii").split("\n")[:-1]
    assert 19_000 <= len(words) <= 21_000
    assert all(re.fullmatch(r"[a-z]+", w) for w in words)
    assert words == sorted(words)
    assert len(set(words)) == len(words)
    assert set("".join(words)) == set("abcdefghijklmnopqrstuvwxyz")


def test_words_are_english():
    words = set(WORDS.read_text().split())
    # A 20,000-word sample of ~64,000 words: about a third of any fixed set is in it.
    common = {"the", "and", "house", "water", "people", "small", "number", "night", "music",
              "animal", "garden", "window", "mother", "question", "simple", "river", "yellow",
              "table", "happy", "forest", "paper", "winter", "letter", "bridge", "silver",
              "dinner", "doctor", "market", "pencil", "travel"}
    assert len(common & words) >= 3
    lengths = np.array([len(w) for w in words])
    assert 6 < lengths.mean() < 11 and lengths.max() < 30


# --- Vocabulary ----------------------------------------------------------------------------

def test_vocabulary_ids_boundary_first_then_code_point_order():
    v = Vocabulary("hello\nworld")
    assert v.chars == ("\n", "d", "e", "h", "l", "o", "r", "w")
    assert len(v) == 8 and v.boundary_id == 0
    np.testing.assert_array_equal(v.encode("\nhold"), [0, 3, 5, 4, 1])
    assert v.encode("\n").tolist() == [0]


def test_vocabulary_boundary_reserved_even_without_newline_and_before_lower_chars():
    v = Vocabulary("b\ta")  # "\t" sorts before "\n" by code point, still gets id 1
    assert v.chars == ("\n", "\t", "a", "b")
    assert Vocabulary("").chars == ("\n",)


def test_vocabulary_encode_dtype_and_empty():
    v = Vocabulary("abc")
    ids = v.encode("cab")
    assert ids.dtype == np.int64 and ids.tolist() == [3, 1, 2]
    e = v.encode("")
    assert e.dtype == np.int64 and e.shape == (0,)
    assert v.decode([]) == "" and v.decode(np.zeros(0, np.int64)) == ""


def test_vocabulary_non_ascii_round_trip():
    text = "naïve café\n日本語 🙂\n"
    v = Vocabulary(text)
    assert v.decode(v.encode(text)) == text
    assert "🙂" in v and "x" not in v


def test_vocabulary_round_trip_on_all_words():
    text = WORDS.read_text()
    v = Vocabulary(text)
    assert len(v) == 27 and v.chars[0] == "\n" and "".join(v.chars[1:]) == \
        "abcdefghijklmnopqrstuvwxyz"
    ids = v.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert v.decode(ids) == text
    # The boundary id marks exactly the word ends.
    assert int((ids == 0).sum()) == text.count("\n") == 20_000
    # a..z are ids 1..26 in order.
    np.testing.assert_array_equal(ids[ids > 0], np.frombuffer(
        text.replace("\n", "").encode(), np.uint8).astype(np.int64) - ord("a") + 1)


def test_vocabulary_unknown_character():
    v = Vocabulary("abc\n")
    with pytest.raises(DataError, match=r"character 'z' at position 2 is not in the vocabulary"):
        v.encode("abzc")
    with pytest.raises(DataError, match="not in the vocabulary"):
        v.encode("\x00")  # below every code point in the vocabulary
    with pytest.raises(DataError, match="not in the vocabulary"):
        v.encode("\U0010ffff")  # above every one


def test_vocabulary_decode_checks_ids():
    v = Vocabulary("ab")
    assert v.decode(np.array([1, 2, 0], dtype=np.int32)) == "ab\n"
    with pytest.raises(ValueError, match=r"id 3 is out of range .*\(ids 0\.\.2\)"):
        v.decode([1, 3])
    with pytest.raises(ValueError, match="id -1 is out of range"):
        v.decode([-1])
    with pytest.raises(ValueError, match="1-D"):
        v.decode([[1, 2]])
    with pytest.raises(ValueError, match="integer ids"):
        v.decode([1.0])


def test_vocabulary_to_dict_from_dict_via_json():
    v = Vocabulary(WORDS.read_text() + "Z!é")
    d = json.loads(json.dumps(v.to_dict()))
    assert d["chars"][0] == "\n"
    w = Vocabulary.from_dict(d)
    assert w == v and w.chars == v.chars and len(w) == len(v)
    sample = "zebra\nZ!é\n"
    np.testing.assert_array_equal(w.encode(sample), v.encode(sample))


@pytest.mark.parametrize("d, message", [
    ({}, "mapping with a 'chars' list"),
    (["\n", "a"], "mapping with a 'chars' list"),
    ({"chars": []}, "non-empty list of one-character strings"),
    ({"chars": "\nab"}, "non-empty list of one-character strings"),
    ({"chars": ["\n", "ab"]}, "non-empty list of one-character strings"),
    ({"chars": ["\n", 1]}, "non-empty list of one-character strings"),
    ({"chars": ["a", "\n"]}, "code-point order"),
    ({"chars": ["\n", "b", "a"]}, "code-point order"),
    ({"chars": ["\n", "a", "a"]}, "unique"),
])
def test_vocabulary_from_dict_rejects(d, message):
    with pytest.raises(DataError, match=message):
        Vocabulary.from_dict(d)


# --- load_text -----------------------------------------------------------------------------

def test_load_text_reads_and_normalises_newlines(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes("\ufeffone\r\ntwo\rthree\nfé\n".encode("utf-8"))
    assert load_text(p) == "one\ntwo\nthree\nfé\n"
    assert load_text(str(p)) == "one\ntwo\nthree\nfé\n"


def test_load_text_missing(tmp_path):
    with pytest.raises(DataError, match="no such file") as e:
        load_text(tmp_path / "nope.txt")
    assert str(e.value).startswith(str(tmp_path / "nope.txt"))


def test_load_text_directory(tmp_path):
    with pytest.raises(DataError, match="not a regular file"):
        load_text(tmp_path)


def test_load_text_not_utf8(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("café".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8 text: byte 0xe9 at offset 3"):
        load_text(p)


def test_load_text_empty(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_bytes(b"")
    with pytest.raises(DataError, match="empty file"):
        load_text(p)
    p.write_bytes(b"\xef\xbb\xbf")  # a BOM and nothing else
    with pytest.raises(DataError, match="empty file"):
        load_text(p)


# --- char_windows --------------------------------------------------------------------------

def test_char_windows_default_stride_non_overlapping():
    text = "abcdefghij"  # 10 characters: windows of 3 need 4, so starts 0, 3, 6
    v = Vocabulary(text)
    ds = char_windows(text, v, seq_len=3)
    assert ds.x.dtype == np.int64 and ds.y.dtype == np.int64
    assert ds.x.shape == (3, 3) and ds.y.shape == (3, 3)
    assert [v.decode(r) for r in ds.x] == ["abc", "def", "ghi"]
    assert [v.decode(r) for r in ds.y] == ["bcd", "efg", "hij"]


def test_char_windows_last_partial_window_dropped():
    text = "abcdefghi"  # 9 characters: start 6 would need index 9
    ds = char_windows(text, Vocabulary(text), seq_len=3)
    assert len(ds) == 2


def test_char_windows_stride_one_and_overlap():
    text = "abcdef"
    v = Vocabulary(text)
    ds = char_windows(text, v, seq_len=2, stride=1)
    assert [v.decode(r) for r in ds.x] == ["ab", "bc", "cd", "de"]
    assert [v.decode(r) for r in ds.y] == ["bc", "cd", "de", "ef"]
    ds = char_windows(text, v, seq_len=5, stride=1)  # exactly seq_len + 1 characters
    assert v.decode(ds.x[0]) == "abcde" and v.decode(ds.y[0]) == "bcdef" and len(ds) == 1


def test_char_windows_y_is_x_shifted_on_the_corpus():
    text = WORDS.read_text()
    v = Vocabulary(text)
    ids = v.encode(text)
    for seq_len, stride in ((32, None), (16, 5), (1, 1), (100, 250)):
        ds = char_windows(text, v, seq_len, stride)
        s = seq_len if stride is None else stride
        assert ds.x.shape == ds.y.shape == (len(ds), seq_len)
        assert len(ds) == (len(ids) - seq_len - 1) // s + 1
        np.testing.assert_array_equal(ds.x[:, 1:], ds.y[:, :-1])
        starts = np.arange(len(ds)) * s
        np.testing.assert_array_equal(ds.x[:, 0], ids[starts])
        np.testing.assert_array_equal(ds.y[:, -1], ids[starts + seq_len])


def test_char_windows_errors():
    v = Vocabulary("abcd")
    with pytest.raises(DataError, match="text has 4 characters; windows of seq_len=4 need "
                                        "at least 5"):
        char_windows("abcd", v, seq_len=4)
    with pytest.raises(DataError, match="not in the vocabulary"):
        char_windows("abcdz", v, seq_len=2)
    for kwargs, message in ((dict(seq_len=0), "seq_len must be an integer >= 1"),
                            (dict(seq_len=2.0), "seq_len must be an integer"),
                            (dict(seq_len=2, stride=0), "stride must be an integer >= 1"),
                            (dict(seq_len=2, stride=True), "stride must be an integer")):
        with pytest.raises(ValueError, match=message):
            char_windows("abcd", v, **kwargs)


# --- load_words ----------------------------------------------------------------------------

def test_load_words_default():
    ds, vocab = load_words()
    text = WORDS.read_text()
    assert ds.name == "words" and len(vocab) == 27 and vocab == Vocabulary(text)
    assert ds.x.shape == (len(text) // 32 - (len(text) % 32 == 0), 32)
    assert ds.x.dtype == ds.y.dtype == np.int64
    np.testing.assert_array_equal(ds.x[:, 1:], ds.y[:, :-1])
    # Windows tile the text from its start.
    assert "".join(vocab.decode(r) for r in ds.x[:3]) == text[:96]
    assert vocab.decode(ds.x[0]).startswith(text.split("\n")[0] + "\n")


def test_load_words_seq_len_and_stride():
    ds, vocab = load_words(seq_len=8, stride=4)
    assert ds.x.shape[1] == 8
    np.testing.assert_array_equal(ds.x[1, :4], ds.x[0, 4:])


def test_load_words_explicit_path_ignores_blank_lines(tmp_path):
    p = tmp_path / "w.txt"
    p.write_text("  cat\n\ndog \r\nemu")
    ds, vocab = load_words(p, seq_len=3, stride=1)
    # text is "cat\ndog\nemu\n": 12 characters, 9 windows of 3.
    assert len(ds) == 9 and vocab.chars == ("\n", "a", "c", "d", "e", "g", "m", "o", "t", "u")
    assert vocab.decode(ds.x[0]) == "cat" and vocab.decode(ds.y[-1]) == "mu\n"


def test_load_words_follows_nnctl_datasets(tmp_path, monkeypatch):
    (tmp_path / "words.txt").write_text("ab\ncd\n")
    monkeypatch.setenv("NNCTL_DATASETS", str(tmp_path))
    ds, vocab = load_words(seq_len=2)
    # text "ab\ncd\n": windows of 2 start at 0 and 2 (start 4 would need index 6)
    assert len(vocab) == 5 and vocab.decode(ds.x.reshape(-1)) == "ab\nc"


def test_load_words_missing_shipped_file(tmp_path, monkeypatch):
    monkeypatch.setenv("NNCTL_DATASETS", str(tmp_path))
    with pytest.raises(DataError, match="make_words.py"):
        load_words()


def test_load_words_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_words(tmp_path / "nope.txt")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n")
    with pytest.raises(DataError, match="no words"):
        load_words(blank)
    short = tmp_path / "short.txt"
    short.write_text("ab\n")
    with pytest.raises(DataError, match="need at least 33"):
        load_words(short)
