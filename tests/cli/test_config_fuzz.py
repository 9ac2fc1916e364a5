"""Property-based fuzzing of `nnctl validate`: mutate every shipped config (as data and as
text) and check that the CLI never crashes.

The property, for every mutated file:
  * exit code 0, or exit code 2 with stderr made only of lines starting with "error: ";
  * never a traceback; result.exception is None or the SystemExit of the exit code.

Mutations compose: scalar retyping (int/str/float/bool/null/list/mapping), negative, zero,
huge and non-finite numbers, deleted/unknown/misspelled keys, sections replaced by scalars,
swapped layer types, injected `inputs`, shuffled lists; then text edits: duplicated key lines,
YAML punctuation/anchors/aliases/tags/merge keys inserted anywhere, truncation.
Most examples run `validate --no-data`; about one in five also loads the data and builds the
model.

Runs are derandomized (the same examples every time, stable in CI). For a deeper local hunt:
NNCTL_FUZZ_EXAMPLES=5000 NNCTL_FUZZ_RANDOM=1 pytest tests/cli/test_config_fuzz.py

Crashes found so far have their own strict-xfail regression tests at the bottom; the
fuzz tolerates exactly those (KNOWN_CRASHES) so the suite stays green until they are fixed.
When a regression test starts to pass (XPASS fails the suite), drop its xfail mark and its
KNOWN_CRASHES entry.
"""

from __future__ import annotations

import math
import os
import re
import traceback
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

import dataclasses

from nnctl.config import schema
from nnctl.config.schema import LAYERS

ROOT = Path(__file__).resolve().parents[2]
CONFIG_FILES = sorted((ROOT / "configs").glob("*.yaml"))
TEXTS = {p.name: p.read_text() for p in CONFIG_FILES}
TREES = {name: yaml.safe_load(text) for name, text in TEXTS.items()}
LAYER_KINDS = sorted(LAYERS)


def _field_names(*classes) -> list[str]:
    return sorted({f.name for cls in classes for f in dataclasses.fields(cls)
                   if "check" in f.metadata})


def _registry(name: str) -> dict:
    return getattr(schema, name, None) or {}


# Known keys per section, from the schema itself (so new keys are fuzzed as they appear).
KNOWN_KEYS = {
    "data": _field_names(*_registry("DATASETS").values()),
    "optimizer": _field_names(*_registry("OPTIMIZERS").values()),
    "train": _field_names(schema.TrainSpec),
    "loss": _field_names(*_registry("LOSSES").values()),
    "schedule": _field_names(*_registry("SCHEDULES").values()),
    "augment": _field_names(*([schema.AugmentSpec] if hasattr(schema, "AugmentSpec") else [])),
    "layer": _field_names(*LAYERS.values()),
}
NAMES = {"data": "dataset", "optimizer": "name", "loss": "name", "schedule": "name"}
CHOICES = {"data": sorted(_registry("DATASETS")), "optimizer": sorted(_registry("OPTIMIZERS")),
           "loss": sorted(_registry("LOSSES")), "schedule": sorted(_registry("SCHEDULES"))}

# The default run tries 150 mutated configs (~15 s); the slow run 600 (~1 min), and
# NNCTL_FUZZ_EXAMPLES=N sets both for a deeper search.
EXAMPLES = int(os.environ.get("NNCTL_FUZZ_EXAMPLES", "0"))
DERANDOMIZE = not os.environ.get("NNCTL_FUZZ_RANDOM")

# ---- values -------------------------------------------------------------------------------

IDENT = st.from_regex(r"[a-z_][a-z0-9_]{0,11}", fullmatch=True)
# Any text but line breaks (str.splitlines() breaks on these; see test_key_with_a_line_break)
# and lone surrogates.
ODD_KEY = st.text(st.characters(exclude_categories=("Cs",),
                                exclude_characters="\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"),
                  min_size=1, max_size=6)
# Huge values all fail allocation at once (well above RAM even alone), so examples that load
# data stay fast and never push the machine into swapping.
HUGE = [10**15, 2**63, -(2**63), 10**30, -(10**30), 1e300, -1e300]
SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, 0.5, 1.5]
SPECIAL_STRINGS = ["", " ", "classes", "auto", "same", "valid", "input", "1e-3", "0x10", "~",
                   "yes", "null", ".nan", "-.inf", "relu", "dense", "adam", "npz", "x"]
SCALARS = st.one_of(
    st.integers(-3, 3),
    st.sampled_from(HUGE),
    st.sampled_from(SPECIAL_FLOATS),
    st.floats(-10.0, 10.0),
    st.booleans(),
    st.none(),
    IDENT,
    st.sampled_from(SPECIAL_STRINGS),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(IDENT, SCALARS, max_size=2),
)
# YAML fragments that break structure when dropped at a random text position.
TOKENS = [":", "[", "]", "{", "}", "-", "- ", "\t", ",", "&a ", "*a", "&a", " *a ",
          '!!python/object/apply:os.system ["true"]', "<<: *a", "<<: *a\n", "!!binary ",
          "!!set ", "!!float ", "!!int ", "!!str ", "!!map ", "!!seq ", "!foo ", "? ", "|",
          ">", "#", "'", '"', "%YAML 1.1\n---\n", "---\n", "\n...\n", "\n", "  ", "\x00",
          "\ufeff", "\x85", "key: value\n", ": :", "@", "`", "&a [*a]", "\\"]


def _scalar_paths(tree, prefix=()):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _scalar_paths(v, prefix + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _scalar_paths(v, prefix + (i,))
    else:
        yield prefix


def _paths(tree, prefix=(), kind=None):
    """All paths to nodes (the root is ()), optionally only to dicts or lists."""
    if kind is None or isinstance(tree, kind):
        yield prefix
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _paths(v, prefix + (k,), kind)
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _paths(v, prefix + (i,), kind)


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def _set(tree, path, value):
    if not path:
        return value
    _get(tree, path[:-1])[path[-1]] = value
    return tree


def _retype(value, target):
    """The same scalar written as another type, where that means something."""
    if target == "str":
        return str(value)
    if target == "int":
        try:
            return int(value)
        except (TypeError, ValueError, OverflowError):
            return 0
    if target == "float":
        try:
            return float(value)
        except (TypeError, ValueError):
            return math.nan
    if target == "bool":
        return bool(value)
    if target == "null":
        return None
    if target == "list":
        return [value]
    if target == "mapping":
        return {value: value} if isinstance(value, (str, int, float, bool)) or value is None \
            else {"value": value}
    raise AssertionError(target)


def _layers(tree):
    model = tree.get("model") if isinstance(tree, dict) else None
    layers = model.get("layers") if isinstance(model, dict) else None
    return layers if isinstance(layers, list) and layers else None


# ---- data mutations: each takes (draw, tree) and returns the new tree --------------------

def m_set_value(draw, tree):
    path = draw(st.sampled_from(list(_paths(tree))[1:] or [()]))
    return _set(tree, path, draw(VALUES))


def m_retype_scalar(draw, tree):
    paths = [p for p in _scalar_paths(tree) if p]
    if not paths:
        return tree
    path = draw(st.sampled_from(paths))
    target = draw(st.sampled_from(["str", "int", "float", "bool", "null", "list", "mapping"]))
    return _set(tree, path, _retype(_get(tree, path), target))


def m_number(draw, tree):
    """A number somewhere (where one is, or anywhere) becomes negative, zero, huge or non-finite."""
    numeric = [p for p in _scalar_paths(tree) if p and isinstance(_get(tree, p), (int, float))
               and not isinstance(_get(tree, p), bool)]
    path = draw(st.sampled_from(numeric or [p for p in _scalar_paths(tree) if p] or [()]))
    old = _get(tree, path) if path else 0
    new = draw(st.one_of(
        st.sampled_from(HUGE + SPECIAL_FLOATS + [0, -1, 1]),
        st.just(-old) if isinstance(old, (int, float)) and not isinstance(old, bool) else st.just(-1),
    ))
    return _set(tree, path, new)


def m_delete_key(draw, tree):
    dicts = [p for p in _paths(tree, kind=dict) if _get(tree, p)]
    if not dicts:
        return tree
    d = _get(tree, draw(st.sampled_from(dicts)))
    del d[draw(st.sampled_from(list(d)))]
    return tree


def m_add_unknown_key(draw, tree):
    d = _get(tree, draw(st.sampled_from(list(_paths(tree, kind=dict)) or [()])))
    if isinstance(d, dict):
        d[draw(st.one_of(IDENT, ODD_KEY))] = draw(VALUES)
    return tree


def m_rename_key(draw, tree):
    """One character of a key inserted, deleted or replaced (a typo)."""
    dicts = [p for p in _paths(tree, kind=dict) if _get(tree, p)]
    if not dicts:
        return tree
    path = draw(st.sampled_from(dicts))
    d = _get(tree, path)
    key = draw(st.sampled_from(list(d)))
    if not isinstance(key, str):
        return tree
    i = draw(st.integers(0, len(key)))
    c = draw(st.sampled_from(list("abcdefghijklmnopqrstuvwxyz_-.0 ")))
    op = draw(st.sampled_from(["insert", "delete", "replace"]))
    if op == "insert":
        new = key[:i] + c + key[i:]
    elif op == "delete":
        new = key[:i] + key[i + 1:]
    else:
        new = key[:i] + c + key[i + 1:]
    renamed = {(new if k == key else k): v for k, v in d.items()}
    return _set(tree, path, renamed) if path else renamed


def m_section_to_scalar(draw, tree):
    containers = [p for p in _paths(tree) if p and isinstance(_get(tree, p), (dict, list))]
    if not containers:
        return tree
    return _set(tree, draw(st.sampled_from(containers)), draw(SCALARS))


def m_swap_layer_type(draw, tree):
    layers = _layers(tree)
    if layers is None:
        return tree
    i = draw(st.integers(0, len(layers) - 1))
    layer = layers[i]
    kind = draw(st.sampled_from(LAYER_KINDS))
    if isinstance(layer, dict) and len(layer) == 1:
        (body,) = layer.values()
        keep_body = draw(st.booleans())
        layers[i] = {kind: body if keep_body else draw(st.one_of(st.none(), st.just({}), VALUES))}
    else:
        layers[i] = {kind: {}}
    return tree


def m_inject_inputs(draw, tree):
    layers = _layers(tree)
    if layers is None:
        return tree
    names = ["input"]
    for j, layer in enumerate(layers):
        if isinstance(layer, dict) and len(layer) == 1:
            (kind, body), = layer.items()
            named = body.get("name") if isinstance(body, dict) else None
            names.append(named if isinstance(named, str) else f"{kind}_{j}")
    i = draw(st.integers(0, len(layers) - 1))
    layer = layers[i]
    if not (isinstance(layer, dict) and len(layer) == 1):
        return tree
    (kind, body), = layer.items()
    body = dict(body) if isinstance(body, dict) else ({} if body is None else {"value": body})
    body["inputs"] = draw(st.one_of(
        st.lists(st.one_of(st.sampled_from(names), IDENT), max_size=4),
        SCALARS,
    ))
    if draw(st.booleans()):
        body["name"] = draw(st.one_of(st.sampled_from(names), IDENT))
    layers[i] = {kind: body}
    return tree


def m_shuffle_list(draw, tree):
    lists = [p for p in _paths(tree, kind=list) if len(_get(tree, p)) > 1]
    if not lists:
        return tree
    path = draw(st.sampled_from(lists))
    return _set(tree, path, draw(st.permutations(_get(tree, path))))


def m_add_known_key(draw, tree):
    """A real key of some section (train, optimizer, schedule, augment, data, loss, a layer)
    set to a random value, or a section switched to another registered kind."""
    if not isinstance(tree, dict):
        return tree
    layers = _layers(tree)
    sections = ["data", "optimizer", "train", "loss", "schedule", "augment"] + \
        (["layer"] if layers else [])
    section = draw(st.sampled_from([s for s in sections if KNOWN_KEYS.get(s)] or ["train"]))
    if section == "layer":
        i = draw(st.integers(0, len(layers) - 1))
        layer = layers[i]
        if not (isinstance(layer, dict) and len(layer) == 1):
            return tree
        (kind, body), = layer.items()
        body = dict(body) if isinstance(body, dict) else {}
        body[draw(st.sampled_from(KNOWN_KEYS["layer"]))] = draw(VALUES)
        layers[i] = {kind: body}
        return tree
    if section in ("schedule", "augment"):
        train = tree.get("train")
        if not isinstance(train, dict):
            return tree
        parent, key = train, section
    else:
        parent, key = tree, section
    body = parent.get(key)
    if isinstance(body, str):
        body = {NAMES.get(section, "name"): body}
    body = dict(body) if isinstance(body, dict) else {}
    if section in CHOICES and CHOICES[section] and draw(st.booleans()):
        body[NAMES[section]] = draw(st.sampled_from(CHOICES[section]))
    for name in draw(st.lists(st.sampled_from(KNOWN_KEYS.get(section) or ["x"]), max_size=3)):
        body[name] = draw(VALUES)
    parent[key] = body
    return tree


DATA_MUTATIONS = [m_set_value, m_add_known_key, m_retype_scalar, m_number, m_delete_key, m_add_unknown_key,
                  m_rename_key, m_section_to_scalar, m_swap_layer_type, m_inject_inputs,
                  m_shuffle_list]


# ---- text mutations -----------------------------------------------------------------------

_KEY_LINE = re.compile(r"^\s*(?:-\s+)?[A-Za-z_][\w]*\s*:")


def t_duplicate_key_line(draw, text):
    lines = text.splitlines(keepends=True)
    keyed = [i for i, line in enumerate(lines) if _KEY_LINE.match(line)]
    if not keyed:
        return text
    i = draw(st.sampled_from(keyed))
    j = draw(st.integers(i + 1, len(lines)))  # the copy goes right after it or further down
    line = lines[i] if lines[i].endswith("\n") else lines[i] + "\n"
    return "".join(lines[:j] + [line] + lines[j:])


def t_insert_token(draw, text):
    i = draw(st.integers(0, len(text)))
    return text[:i] + draw(st.sampled_from(TOKENS)) + text[i:]


def t_truncate(draw, text):
    return text[:draw(st.integers(0, len(text)))]


def t_delete_span(draw, text):
    i = draw(st.integers(0, len(text)))
    return text[:i] + text[i + draw(st.integers(1, 20)):]


TEXT_MUTATIONS = [t_duplicate_key_line, t_insert_token, t_truncate, t_delete_span]


@st.composite
def mutated_configs(draw):
    """(config name, mutated text, description, with_data)."""
    name = draw(st.sampled_from(sorted(TEXTS)))
    # ~1 in 5 also loads the data; 1..2 of 0..9 so that hypothesis's lean towards 0 (its
    # simplest value) does not tip the balance.
    with_data = draw(st.integers(0, 9)) in (1, 2)
    ops = draw(st.lists(st.sampled_from(DATA_MUTATIONS + TEXT_MUTATIONS), min_size=1,
                        max_size=4))
    data_ops = [op for op in ops if op in DATA_MUTATIONS]
    text_ops = [op for op in ops if op in TEXT_MUTATIONS]
    if data_ops:
        tree = yaml.safe_load(TEXTS[name])  # a fresh copy
        for op in data_ops:
            tree = op(draw, tree)
        text = yaml.safe_dump(tree, sort_keys=False, allow_unicode=draw(st.booleans()),
                              default_flow_style=draw(st.sampled_from([False, None, True])))
    else:
        text = TEXTS[name]  # the file as shipped, comments and flow style included
    for op in text_ops:
        text = op(draw, text)
    return name, text, " + ".join(op.__name__ for op in ops), with_data


# ---- the property -------------------------------------------------------------------------

# Crashes already reported, each with a strict-xfail regression test below: (exception
# type(s), message regex). Anything else that escapes the CLI fails the fuzz.
KNOWN_CRASHES: list = []  # all fixed; add (types, regex) here for a new, reported crash


def _known_crash(exc: BaseException) -> str | None:
    for types, pattern in KNOWN_CRASHES:
        if isinstance(exc, types) and re.search(pattern, str(exc)):
            return f"known crash: {type(exc).__name__}: {pattern[:40]}"
    return None


def check_validate(cli, path: Path, with_data: bool, tolerate_known: bool = False):
    """Run `nnctl validate` on `path` and assert the error contract; returns the result.
    With tolerate_known, a crash listed in KNOWN_CRASHES is recorded as an event instead."""
    args = ["validate", path] + ([] if with_data else ["--no-data"])
    result = cli(*args)
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        known = _known_crash(exc) if tolerate_known else None
        if known:
            event(known)
            return result
        tb = "".join(traceback.format_exception(exc))
        raise AssertionError(f"nnctl {' '.join(map(str, args))} crashed:\n{tb}")
    assert result.exit_code in (0, 2), (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        assert lines, "exit code 2 without a message"
        assert all(line.startswith("error: ") for line in lines), result.stderr
    return result


@pytest.mark.parametrize("examples", [150, pytest.param(600, marks=pytest.mark.slow)])
def test_validate_survives_mutated_configs(cli, tmp_path, examples):
    assert len(CONFIG_FILES) >= 5, "the shipped configs are the seeds of the fuzz"
    max_examples = EXAMPLES or examples
    min_examples = max_examples * 5 // 6
    stats = {"runs": 0, "data": 0, "ok": 0, "error": 0, "known_crash": 0}
    path = tmp_path / "fuzz.yaml"

    @settings(max_examples=max_examples, deadline=None, derandomize=DERANDOMIZE,
              database=None, print_blob=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(case=mutated_configs())
    def fuzz(case):
        name, text, how, with_data = case
        note(f"seed config {name}, mutations {how}, with data {with_data}\n--- text ---\n{text}")
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        result = check_validate(cli, path, with_data, tolerate_known=True)
        stats["runs"] += 1
        stats["data"] += with_data
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        stats["known_crash" if crashed else "ok" if result.exit_code == 0 else "error"] += 1
        event(f"exit {result.exit_code}")

    fuzz()
    print(f"fuzz stats: {stats}")
    assert stats["runs"] >= min_examples, stats
    assert stats["data"] >= min_examples // 10, stats   # the data path was exercised too
    assert stats["error"] >= min_examples // 2, stats   # most mutations are mistakes...
    assert stats["ok"] >= 1, stats                      # ...but not all of them


def test_shipped_configs_are_valid(cli):
    """The seeds themselves pass, with and without data (else every mutation is noise)."""
    for path in CONFIG_FILES:
        for with_data in (False, True):
            result = check_validate(cli, path, with_data)
            assert result.exit_code == 0, (path, result.stderr)


# ---- regression tests for crashes the fuzz found (strict xfail until fixed) ---------------

def edited(tmp_path, config: str, old: str, new: str) -> Path:
    text = TEXTS[config]
    assert old in text, (config, old)
    path = tmp_path / "bad.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def assert_one_error_line(result, *fragments):
    exc = result.exception
    assert exc is None or isinstance(exc, SystemExit), "".join(traceback.format_exception(exc))
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# Found by the fuzz (TypeError: unhashable type in tagged()), fixed in 6881f2d.
@pytest.mark.parametrize("config,old,new,key", [
    ("spirals.yaml", "dataset: spirals", "dataset: [spirals]", "data.dataset"),
    ("spirals.yaml", "{name: adam,", "{name: [adam],", "optimizer.name"),
    ("spirals.yaml", "{name: adam,", "{name: {adam: 1},", "optimizer.name"),
], ids=["dataset-list", "optimizer-name-list", "optimizer-name-mapping"])
def test_unhashable_tag_value(cli, tmp_path, config, old, new, key):
    result = cli("validate", edited(tmp_path, config, old, new), "--no-data")
    assert_one_error_line(result, key)


@pytest.mark.parametrize("new", ["seed: !!int", 'seed: !!int ""', "seed: !!float",
                                 "seed: !!float ''"])
def test_empty_int_or_float_tag(cli, tmp_path, new):
    result = cli("validate", edited(tmp_path, "spirals.yaml", "seed: 0", new), "--no-data")
    assert_one_error_line(result, "seed")


HUGE_SIZE = 10**15  # far beyond any RAM: numpy refuses at once, nothing is allocated
HUGE_CASES = {
    "dense-units": ("spirals.yaml", "units: 64", f"units: {HUGE_SIZE}"),
    "spirals-samples": ("spirals.yaml", "samples: 1000", f"samples: {HUGE_SIZE}"),
    "adding-length": ("seq_lstm.yaml", "length: 20", f"length: {HUGE_SIZE}"),
    "adding-samples": ("seq_lstm.yaml", "samples: 3000", f"samples: {HUGE_SIZE}"),
    "parity-samples": ("spirals.yaml",
                       "dataset: spirals\n  samples: 1000\n  noise: 0.2\n  turns: 1.5",
                       f"dataset: parity\n  samples: {HUGE_SIZE}"),
    "gru-units": ("seq_gru.yaml", "units: 32", f"units: {HUGE_SIZE}"),
    "lstm-units": ("chars_lstm.yaml", "units: 128", f"units: {HUGE_SIZE}"),
    "embedding-dim": ("chars_lstm.yaml", "dim: 32", f"dim: {HUGE_SIZE}"),
    "embedding-vocab": ("chars_lstm.yaml", "dim: 32", f"dim: 32, vocab: {HUGE_SIZE}"),
    "transformer-ff-units": ("chars_transformer.yaml", "ff_units: 128", f"ff_units: {HUGE_SIZE}"),
    "conv-filters": ("digits_cnn.yaml", "filters: 32", f"filters: {HUGE_SIZE}"),
    "conv-kernel": ("digits_cnn.yaml", "kernel: 3, padding: same", f"kernel: {HUGE_SIZE}"),
    "conv-padding": ("digits_cnn.yaml", "kernel: 3, padding: same",
                     f"kernel: 3, padding: {HUGE_SIZE}"),
}


@pytest.mark.parametrize("case", sorted(HUGE_CASES))
def test_huge_size_is_a_config_error(cli, tmp_path, case):
    result = cli("validate", edited(tmp_path, *HUGE_CASES[case]))
    assert_one_error_line(result, "bad.yaml")


@pytest.mark.parametrize("config", ["seq_lstm.yaml", "seq_gru.yaml", "chars_lstm.yaml"])
def test_batch_size_beyond_int64_with_recurrent_layer(cli, tmp_path, config):
    old = re.search(r"batch_size: \d+", TEXTS[config]).group(0)
    result = cli("validate", edited(tmp_path, config, old, f"batch_size: {2**63}"))
    assert_one_error_line(result, "bad.yaml")


@pytest.mark.parametrize("old,new", [("noise: 0.2", "noise: .inf"), ("turns: 1.5", "turns: .inf")],
                         ids=["noise", "turns"])
def test_spirals_infinite_noise_or_turns_is_a_config_error(cli, tmp_path, old, new):
    result = cli("validate", edited(tmp_path, "spirals.yaml", old, new))
    assert_one_error_line(result, old.split(":")[0])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("old,new", [("noise: 0.2", "noise: 1e308"), ("turns: 1.5", "turns: 1e308")],
                         ids=["noise", "turns"])
def test_spirals_overflowing_noise_or_turns_is_refused(cli, tmp_path, old, new):
    result = cli("validate", edited(tmp_path, "spirals.yaml", old, new))
    assert_one_error_line(result)


@pytest.mark.parametrize("new", ["{name: adam, lr: .inf}", "{name: adam, lr: 0.01, eps: .inf}",
                                 "{name: adam, lr: 0.01, weight_decay: .inf}"],
                         ids=["lr", "eps", "weight_decay"])
def test_infinite_hyperparameter_is_refused(cli, tmp_path, new):
    result = cli("validate", edited(tmp_path, "spirals.yaml", "{name: adam, lr: 0.01}", new),
                 "--no-data")
    assert_one_error_line(result, "optimizer.")


@pytest.mark.parametrize("old,new", [("seed: 0", 'seed: 0\n"a\\nb": 1'),
                                     ("noise: 0.2", '"noi\\nse": 0.2'),
                                     ("- dense: {units: 2}", '- "den\\nse": {units: 2}')],
                         ids=["top-level", "nested", "layer-type"])
def test_key_with_a_line_break(cli, tmp_path, old, new):
    result = cli("validate", edited(tmp_path, "spirals.yaml", old, new), "--no-data")
    assert_one_error_line(result)
