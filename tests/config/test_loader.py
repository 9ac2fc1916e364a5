"""Tests for nnctl.config.loader: values, line marks, and every refusal with its exact line."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from nnctl.config.loader import LoadedYaml, load_yaml, load_yaml_text
from nnctl.errors import ConfigError

NNCTL_SRC = Path(__file__).resolve().parents[2] / "nnctl"

NESTED = """\
# a comment, line 1
model:
  input: 4
  layers:
    - dense:
        units: 8
        activation: relu
    - dense:
        units: 3
optimizer:
  name: adam
  lr: 1e-3
"""


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    err = info.value
    assert err.file == str(path)
    assert "\n" not in str(err)
    return err


# --- values and marks -------------------------------------------------------------------------

def test_nested_values_and_marks(tmp_path):
    loaded = load_yaml(write(tmp_path, NESTED))
    assert isinstance(loaded, LoadedYaml)
    assert loaded.file == str(tmp_path / "cfg.yaml")
    assert loaded.data == {
        "model": {"input": 4, "layers": [{"dense": {"units": 8, "activation": "relu"}},
                                         {"dense": {"units": 3}}]},
        "optimizer": {"name": "adam", "lr": 0.001},
    }
    m = loaded.marks
    assert m[()] == 1
    assert m[("model",)] == 2
    assert m[("model", "input")] == 3
    assert m[("model", "layers")] == 4
    assert m[("model", "layers", 0)] == 5
    assert m[("model", "layers", 0, "dense")] == 5
    assert m[("model", "layers", 0, "dense", "units")] == 6
    assert m[("model", "layers", 0, "dense", "activation")] == 7
    assert m[("model", "layers", 1)] == 8
    assert m[("model", "layers", 1, "dense", "units")] == 9
    assert m[("optimizer", "lr")] == 12


def test_line_of_walks_up_to_nearest_ancestor():
    loaded = load_yaml_text(NESTED, "cfg.yaml")
    assert loaded.line_of(("model", "layers", 1, "dense", "units")) == 9
    assert loaded.line_of(("model", "layers", 1, "dense", "missing_key")) == 8
    assert loaded.line_of(("model", "layers", 7, "dense")) == 4
    assert loaded.line_of(("nowhere", "at", "all")) == 1
    assert LoadedYaml(data={}, marks={}, file="x").line_of(("a",)) is None


def test_scalars_floats_bools_null_ints():
    data = load_yaml_text(
        "a: 1e-3\nb: 5e-4\nc: 1E+2\nd: .5\ne: -2.5e3\nf: 1.0e-3\n"
        "t: true\nu: false\nn: null\nm: ~\ni: 42\nj: -7\nk: 0\ns: adam\nq: '1e-3'\nd8: 2024-01-01\n"
    ).data
    assert data["a"] == 0.001 and isinstance(data["a"], float)
    assert (data["b"], data["c"], data["d"], data["e"], data["f"]) == (0.0005, 100.0, 0.5, -2500.0, 0.001)
    assert all(type(data[k]) is float for k in "bcdef")
    assert data["t"] is True and data["u"] is False
    assert data["n"] is None and data["m"] is None
    assert (data["i"], data["j"], data["k"]) == (42, -7, 0) and all(type(data[k]) is int for k in "ijk")
    assert data["s"] == "adam"
    assert data["q"] == "1e-3"                  # quoted stays a string
    assert data["d8"] == "2024-01-01"           # dates stay text: only plain Python types come out


def test_aliases_below_cap_are_copies():
    loaded = load_yaml_text("base: &b {units: 4}\nl1: *b\nl2: *b\n")
    assert loaded.data == {"base": {"units": 4}, "l1": {"units": 4}, "l2": {"units": 4}}
    assert loaded.data["l1"] is not loaded.data["l2"]
    loaded.data["l1"]["units"] = 9
    assert loaded.data["l2"]["units"] == 4


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfname: x\n")
    assert load_yaml(path).data == {"name": "x"}


# --- file-level errors ------------------------------------------------------------------------

def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert str(info.value) == f"{path}: no such file"


def test_directory(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_yaml(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, expected a YAML file"


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"a: 1\nname: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert info.value.line == 2
    assert str(info.value).startswith(f"{path}:2: not valid UTF-8")


def test_file_over_one_mib_refused_before_parsing(tmp_path):
    # Invalid YAML on purpose: if it were parsed we would get a syntax error instead.
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: [\n" + b"#" * (1 << 20))
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert "larger than 1024 KiB" in str(info.value)
    assert str(info.value).startswith(f"{path}: ")


# --- YAML-level errors, each with its exact line ----------------------------------------------

@pytest.mark.parametrize("text, line, message", [
    ("a: 1\nb: [1, 2\nc: 3\n", 3, "invalid YAML: expected ',' or ']'"),
    ("a:\n  b: 1\n c: 2\n", 3, "invalid YAML: expected <block end>"),
    ("a: 1\n\tb: 2\n", 2, "invalid YAML: found character '\\t' that cannot start any token"),
    ("a: 1\nb: *nope\n", 2, "invalid YAML: found undefined alias 'nope'"),
])
def test_syntax_errors(tmp_path, text, line, message):
    err = error_of(tmp_path, text)
    assert err.line == line
    assert str(err).startswith(f"{tmp_path / 'cfg.yaml'}:{line}: {message}")


def test_duplicate_key(tmp_path):
    err = error_of(tmp_path, "optimizer:\n  name: sgd\n  lr: 0.1\n  momentum: 0.9\n  lr: 0.5\n")
    assert str(err) == f"{tmp_path / 'cfg.yaml'}:5: optimizer.lr: duplicate key 'lr' (first defined at line 3)"


def test_duplicate_key_inside_list(tmp_path):
    err = error_of(tmp_path, "layers:\n  - dense:\n      units: 1\n      units: 2\n")
    assert err.line == 4 and err.key_path == "layers[0].dense.units"


@pytest.mark.parametrize("text, line, what", [
    ("a: 1\n1: x\n", 2, "an integer"),
    ("a: 1\nnull: x\n", 2, "null"),
    ("a: 1\n[x, y]: z\n", 2, "a list"),
])
def test_non_string_keys(tmp_path, text, line, what):
    err = error_of(tmp_path, text)
    assert str(err) == (f"{tmp_path / 'cfg.yaml'}:{line}: mapping keys must be strings, "
                        f"got {what}; quote the key if you meant text")


def test_python_tag_refused_and_nothing_executed(tmp_path):
    marker = tmp_path / "pwned"
    text = f"name: ok\nrun: !!python/object/apply:os.system ['touch {marker}']\n"
    err = error_of(tmp_path, text)
    assert str(err) == (f"{tmp_path / 'cfg.yaml'}:2: run: "
                        "unsupported YAML tag '!!python/object/apply:os.system'")
    assert not marker.exists()


@pytest.mark.parametrize("text, line, tag", [
    ("a:\n  b: !custom 3\n", 2, "!custom"),
    ("a: !!binary aGk=\n", 1, "!!binary"),
    ("a: 1\nb: !!set {x}\n", 2, "!!set"),
    ("a: 1\nb: !!python/name:os.system\n", 2, "!!python/name:os.system"),
])
def test_unknown_tags_refused(tmp_path, text, line, tag):
    err = error_of(tmp_path, text)
    assert err.line == line and err.message == f"unsupported YAML tag '{tag}'"


def test_merge_key_refused(tmp_path):
    err = error_of(tmp_path, "base: &b {units: 4}\nlayer:\n  <<: *b\n  act: relu\n")
    assert err.line == 3 and "merge keys '<<' are not supported" in err.message
    assert str(err).startswith(f"{tmp_path / 'cfg.yaml'}:3: layer: ")


def test_too_many_aliases(tmp_path):
    text = "x: &x 1\n" + "".join(f"k{i}: *x\n" for i in range(101))
    err = error_of(tmp_path, text)
    assert err.line == 102      # the 101st alias
    assert err.message == "more than 100 aliases in one document, refused"


def test_billion_laughs_refused_fast(tmp_path):
    # The classic 9-level bomb: only 72 aliases, but 9**9 "lol"s once expanded.
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    path = write(tmp_path, "\n".join(lines) + "\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert time.perf_counter() - start < 1.0
    assert "aliases expand to more than" in info.value.message
    assert info.value.line == 5


def test_recursive_alias_refused(tmp_path):
    err = error_of(tmp_path, "a: 1\nb: &b [1, *b]\n")
    assert err.line == 2 and "recursive" in err.message


def test_deep_nesting_refused(tmp_path):
    err = error_of(tmp_path, "a: " + "[" * 500 + "]" * 500 + "\n")
    assert err.line == 1 and "nested more than 100 levels" in err.message


@pytest.mark.parametrize("text, line, got", [
    ("", 1, "nothing (empty file)"),
    ("# only a comment\n\n", 1, "nothing (empty file)"),
    ("# top\n- a\n- b\n", 2, "a list"),
    ("\n\njust text\n", 3, "a string"),
    ("42\n", 1, "an integer"),
])
def test_top_level_must_be_mapping(tmp_path, text, line, got):
    err = error_of(tmp_path, text)
    assert str(err) == (f"{tmp_path / 'cfg.yaml'}:{line}: "
                        f"expected a mapping of sections at the top level, got {got}")


def test_multiple_documents_refused(tmp_path):
    err = error_of(tmp_path, "a: 1\n---\nb: 2\n")
    assert err.line == 2 and "single YAML document" in err.message


def test_control_character_refused(tmp_path):
    err = error_of(tmp_path, "a: 1\nb: x\x07y\n")
    assert err.line == 2 and err.message.startswith("invalid YAML: unacceptable character")


def test_load_yaml_text_default_file_name():
    with pytest.raises(ConfigError) as info:
        load_yaml_text("a: 1\na: 2\n")
    assert str(info.value) == "<string>:2: a: duplicate key 'a' (first defined at line 1)"


# --- the source never uses an unsafe loader (A8) ----------------------------------------------

UNSAFE = re.compile(r"yaml\.load\(|yaml\.load_all\(|unsafe_load|UnsafeLoader|yaml\.Loader\b"
                    r"|FullLoader|full_load")


def test_unsafe_pattern_catches_what_it_should():
    for bad in ("yaml.load(f)", "yaml.unsafe_load(s)", "Loader=yaml.Loader", "yaml.FullLoader",
                "yaml.full_load(s)", "yaml.load_all(s)"):
        assert UNSAFE.search(bad), bad
    assert not UNSAFE.search("class _Loader(yaml.SafeLoader):")
    assert not UNSAFE.search("yaml.safe_load(s)")


def test_source_never_uses_unsafe_yaml_loading():
    files = sorted(NNCTL_SRC.rglob("*.py"))
    assert any(f.name == "loader.py" for f in files)
    offenders = [f"{f.relative_to(NNCTL_SRC.parent)}:{n}: {line.strip()}"
                 for f in files
                 for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
                 if UNSAFE.search(line)]
    assert offenders == []
