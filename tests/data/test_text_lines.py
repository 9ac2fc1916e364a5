"""The `text` data kind: label and text per line (.txt) or columns of a .csv/.tsv; labels as
sorted names; the vocabulary from the training split only; one file:line error per mistake,
through `nnctl train` too."""

import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

import nnctl.data.text_lines  # noqa: F401  (registers the text loader)
from nnctl.cli.app import app
from nnctl.config import load_config
from nnctl.data.batching import PAD, UNK
from nnctl.data.text_lines import load_text_classes
from nnctl.data.tokens import TokenVocab, training_indices
from nnctl.errors import ConfigError, DataError
from nnctl.step import load_dataset, load_splits

CONFIG = """\
seed: {seed}
data:
  dataset: text
  path: {path}
{extra}model:
  layers:
    - embedding: {{dim: 8}}
    - gru: {{units: 8}}
    - dense: {{units: classes}}
loss: cross_entropy
optimizer: adam
train: {{epochs: 1, batch_size: 4}}
"""


def write_config(tmp_path: Path, path="data.txt", seed=0, **keys) -> Path:
    extra = "".join(f"  {k}: {v}\n" for k, v in keys.items())
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG.format(seed=seed, path=path, extra=extra))
    return config


def spec(path, **keys):
    """What a validated TextData gives the loader (nnctl.config.text_specs)."""
    base = dict(path=str(path), header=None, text_column=None, label_column=None,
                tokens="chars", lowercase=False, min_count=1, max_size=None, unknown="unk",
                max_len=256, truncate=False, split=SimpleNamespace(val=0.0, test=0.0))
    base.update(keys)
    return SimpleNamespace(**base)


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_label_tab_text_lines(tmp_path):
    path = write(tmp_path, "names.txt", "10\tann\n2\tbo\n10\tcab\n")
    data = load_text_classes(spec(path), 0, "float32")
    vocab = data.info["input"]
    assert isinstance(vocab, TokenVocab) and vocab.tokens == ("a", "b", "n", "c", "o")
    assert data.info["labels"] == ["10", "2"]  # names, in string order: "10" < "2"
    assert data.y.tolist() == [0, 1, 0] and data.y.dtype == np.int64
    assert data.x.tolist() == [[4, 6, 6], [5, 8, PAD], [7, 4, 5]]
    assert data.x_len.tolist() == [3, 2, 3] and data.x.dtype == data.x_len.dtype == np.int64
    assert data.name == "names"


def test_csv_with_a_header_named_or_indexed_columns_and_quoted_commas(tmp_path):
    path = write(tmp_path, "reviews.csv", 'id,text,label\n1,"good, really",pos\n'
                                          '2,"bad ""film""",neg\n')
    data = load_text_classes(spec(path, tokens="words"), 0, "float32")
    assert data.info["labels"] == ["neg", "pos"] and data.y.tolist() == [1, 0]
    vocab = data.info["input"]
    assert [vocab.decode(row) for row in data.x] == ["good, really", 'bad "film"']
    same = load_text_classes(spec(path, tokens="words", text_column=1, label_column=-1), 0,
                             "float32")
    assert np.array_equal(same.x, data.x) and np.array_equal(same.y, data.y)


def test_tsv_has_a_header_and_no_quoting(tmp_path):
    path = write(tmp_path, "s.tsv", 'sentence\tlabel\nsay "hi"\t1\nno\t0\n')
    data = load_text_classes(spec(path, text_column="sentence"), 0, "float32")
    assert data.info["input"].decode(data.x[0]) == 'say "hi"'
    assert data.y.tolist() == [1, 0]


def test_words_lowercase_min_count_and_truncate(tmp_path):
    path = write(tmp_path, "t.txt", "a\tThe cat sat\nb\tthe dog\nb\tThe end of it\n")
    data = load_text_classes(spec(path, tokens="words", lowercase=True, min_count=2,
                                  max_len=3, truncate=True), 0, "float32")
    vocab = data.info["input"]
    assert vocab.tokens == ("the",)
    assert data.x.tolist() == [[4, UNK, UNK], [4, UNK, PAD], [4, UNK, UNK]]
    assert data.x_len.tolist() == [3, 2, 3]


def test_the_vocabulary_comes_from_the_training_split_only(tmp_path):
    # each line has a character of its own: it is in the vocabulary iff its line trains
    letters = "ABCDEFGHIJKLMNOPQRST"
    lines = [f"{'xy'[i % 2]}\tab{c}" for i, c in enumerate(letters)]
    path = write(tmp_path, "t.txt", "\n".join(lines) + "\n")
    s = spec(path, split=SimpleNamespace(val=0.2, test=0.2))
    data = load_text_classes(s, 3, "float32")
    train = training_indices(20, data.y, s.split, 3, stratify=True)
    assert len(train) == 12
    assert {letters[i] for i in train} == set(data.info["input"].tokens) - {"a", "b"}
    held_out = sorted(set(range(20)) - set(train.tolist()))
    assert all(data.x[i, 2] == UNK for i in held_out)


def test_training_indices_agree_with_load_splits(tmp_path):
    lines = [f"{'xyz'[i % 3]}\t{'ab' * (1 + i % 7)}{i}" for i in range(40)]
    write(tmp_path, "data.txt", "\n".join(lines) + "\n")
    config = load_config(write_config(tmp_path, seed=11, split="{val: 0.2, test: 0.1}"))
    data = load_dataset(config)
    splits = load_splits(config)
    train = training_indices(len(data.y), data.y, config.spec.data.split, 11, stratify=True)
    assert np.array_equal(splits.train.x, data.x[train])
    assert np.array_equal(splits.train.y, data.y[train])
    assert len(splits.val.y) == 8 and len(splits.test.y) == 4


# ---- mistakes: one DataError naming file:line ----------------------------------------------

@pytest.mark.parametrize("name, content, keys, where, fragment", [
    ("t.txt", "a\tfine\n\nb\tfine\n", {}, ":2", "empty line"),
    ("t.txt", "a\tfine\nb\t   \n", {}, ":2", "empty text"),
    ("t.txt", "a\tfine\n \tx\n", {}, ":2", "empty label"),
    ("t.txt", "a\tfine\nb\tx\ty\n", {}, ":2", "3 tab-separated fields, expected 2 as in line 1 "
                                            "(a tab inside a text?)"),
    ("t.txt", "a\tfine\nb\n", {}, ":2", "1 tab-separated fields, expected 2"),
    ("t.txt", "a\tfine\nb\t" + "x" * 73 + "\n", {"max_len": 64}, ":2",
     "73 tokens, more than max_len 64 (raise data.max_len or set data.truncate: true)"),
    ("t.csv", "text,label\nfine,a\n", {"text_column": "body"}, ":1",
     "no column 'body' in the header (text, label); set data.text_column"),
    ("t.csv", "text,label\nfine,a\n,b\n", {}, ":3", "empty text"),
    ("t.csv", 'text,label\n"fine\nstill",a\n\nx,b\n', {}, ":4", "empty line"),
    ("t.txt", "a\tfine\n", {"text_column": 2}, ":1",
     "data.text_column is 2, but the rows have 2 fields (columns 0..1)"),
])
def test_bad_lines(tmp_path, name, content, keys, where, fragment):
    path = write(tmp_path, name, content)
    with pytest.raises(DataError) as err:
        load_text_classes(spec(path, **keys), 0, "float32")
    msg = str(err.value)
    assert msg.startswith(f"{path}{where}: "), msg
    assert fragment in msg, msg


def test_not_utf8_names_the_line(tmp_path):
    path = write(tmp_path, "t.txt", b"a\tok\nb\tcaf\xe9\n")
    with pytest.raises(DataError, match=r"t\.txt:2: not UTF-8 text: byte 0xe9"):
        load_text_classes(spec(path), 0, "float32")


def test_unknown_error_names_the_held_out_line_and_token(tmp_path):
    lines = [f"{'xy'[i % 2]}\tab" for i in range(9)] + ["x\tabq"]
    path = write(tmp_path, "t.txt", "\n".join(lines) + "\n")
    s = spec(path, unknown="error", split=SimpleNamespace(val=0.1, test=0.0))
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 0])  # x = 0, y = 1
    seed = next(seed for seed in range(100)
                if 9 not in training_indices(10, labels, s.split, seed, True))
    with pytest.raises(DataError, match=r"t\.txt:10: the char 'q' is not in the vocabulary"):
        load_text_classes(s, seed, "float32")
    line_10_trains = next(seed for seed in range(100)
                          if 9 in training_indices(10, labels, s.split, seed, True))
    assert load_text_classes(s, line_10_trains, "float32").info["input"].tokens[-1] == "q"


def test_no_examples_and_a_name_without_a_header(tmp_path):
    with pytest.raises(DataError, match="no examples below the header"):
        load_text_classes(spec(write(tmp_path, "t.csv", "text,label\n")), 0, "float32")
    with pytest.raises(DataError, match="no examples"):
        load_text_classes(spec(write(tmp_path, "e.txt", "")), 0, "float32")
    with pytest.raises(DataError, match="names a column, but the file has no header row"):
        load_text_classes(spec(write(tmp_path, "n.txt", "a\tb\n"), text_column="text"), 0,
                          "float32")


# ---- config keys ---------------------------------------------------------------------------

def test_config_defaults_and_resolved_path(tmp_path):
    write(tmp_path, "data.txt", "a\tx\n")
    d = load_config(write_config(tmp_path)).spec.data
    assert (d.tokens, d.normalize, d.max_len, d.unknown, d.min_count) == \
        ("chars", "none", 256, "unk", 1)
    assert Path(d.path) == (tmp_path / "data.txt").resolve()


@pytest.mark.parametrize("keys, fragment", [
    ({"normalize": "standard"}, "data.normalize: token ids are never normalised"),
    ({"header": "false", "text_column": "body"},
     "data.text_column: names a column, but the file has no header row"),
    ({"tokens": "bytes"}, "data.tokens: unknown value 'bytes'"),
    ({"max_size": 3}, "data.max_size: expected an integer >= 5"),
])
def test_config_mistakes(tmp_path, keys, fragment):
    write(tmp_path, "data.txt", "a\tx\n")
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, **keys))
    assert fragment in str(err.value), str(err.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="data.path: no such data file: nowhere.txt"):
        load_config(write_config(tmp_path, path="nowhere.txt"))


def test_nnctl_train_on_a_bad_file_exits_2_with_one_line(tmp_path):
    data = write(tmp_path, "data.txt", "a\tfine\nb\t" + "x" * 300 + "\n")
    config = write_config(tmp_path)
    before = data.read_bytes()
    result = CliRunner().invoke(app, ["train", str(config), "--out", str(tmp_path / "runs"),
                                      "--no-progress"])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stdout + result.stderr, result.stderr
    assert lines[0].startswith("error: ") and "data.txt:2: 300 tokens, more than max_len 256" \
        in lines[0], lines[0]
    assert not (tmp_path / "runs").exists() and data.read_bytes() == before


def test_config_text_is_what_the_docs_show(tmp_path):
    """The example in docs/text-data.md loads as written."""
    write(tmp_path, "names.txt", "english\tSmith\ngreek\tPapadopoulos\nenglish\tJones\n")
    config = tmp_path / "names.yaml"
    config.write_text(textwrap.dedent("""\
        seed: 0
        data:
          dataset: text
          path: names.txt
          lowercase: true
          split: {val: 0, test: 0}
        model:
          layers:
            - embedding: {dim: 16}
            - gru: {units: 32}
            - dense: {units: classes}
        loss: cross_entropy
        optimizer: adam
        train: {epochs: 1}
        """))
    data = load_dataset(load_config(config))
    assert data.info["labels"] == ["english", "greek"]
    assert data.info["input"].decode(data.x[1]) == "papadopoulos"
