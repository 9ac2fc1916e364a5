"""The generated dates: every source parses back to its ISO target with a parser written
here from the calendar module and hand tables (not the generator's), numeric sources are
unambiguous under the documented day-first rule, the seed decides everything, and formats
and cases are drawn uniformly."""

import calendar
import datetime
import re
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

import nnctl.data.dates  # noqa: F401  (registers the dates loader)
from nnctl.config import load_config
from nnctl.config.text_specs import DATE_FORMATS
from nnctl.data.batching import EOS
from nnctl.data.dates import CASES, FORMATS, in_case, load_dates, make_dates
from nnctl.data.tokens import training_indices
from nnctl.errors import ConfigError
from nnctl.step import load_dataset, load_splits

# ---- an independent parser ---------------------------------------------------------------

MONTH = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
MONTH.update({abbr.lower(): i for i, abbr in enumerate(calendar.month_abbr) if abbr})
WEEKDAY = {name.lower(): i for i, name in enumerate(calendar.day_name)}
NUMBER = dict(zip(("zero one two three four five six seven eight nine ten eleven twelve "
                   "thirteen fourteen fifteen sixteen seventeen eighteen nineteen").split(),
                  range(20)))
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
        "eighty": 80, "ninety": 90}
ORDINAL = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
           "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12,
           "thirteenth": 13, "fourteenth": 14, "fifteenth": 15, "sixteenth": 16,
           "seventeenth": 17, "eighteenth": 18, "nineteenth": 19, "twentieth": 20,
           "thirtieth": 30}
ORDINAL.update({f"{t}-{o}": TENS[t] + ORDINAL[o] for t in ("twenty", "thirty")
                for o in list(ORDINAL)[:9]})
NUMERIC = ("%Y-%m-%d", "%d/%m/%Y", "%d.%m.%Y", "%d-%m-%Y", "%Y/%m/%d", "%Y%m%d")


def number(word: str) -> int:
    if word in NUMBER:
        return NUMBER[word]
    if word in TENS:
        return TENS[word]
    tens, ones = word.split("-")
    assert 1 <= NUMBER[ones] <= 9
    return TENS[tens] + NUMBER[ones]


def year(words: list[str]) -> int:
    if len(words) == 1:
        assert re.fullmatch(r"\d{4}", words[0]), words
        return int(words[0])
    if words == ["two", "thousand"]:
        return 2000
    if words[:3] == ["two", "thousand", "and"]:
        assert len(words) == 4 and 1 <= NUMBER[words[3]] <= 9, words
        return 2000 + NUMBER[words[3]]
    if len(words) == 3 and words[1] == "oh":
        assert 1 <= NUMBER[words[2]] <= 9, words
        return number(words[0]) * 100 + NUMBER[words[2]]
    if len(words) == 2 and words[1] == "hundred":
        return number(words[0]) * 100
    assert len(words) == 2 and number(words[1]) >= 10, words
    return number(words[0]) * 100 + number(words[1])


def day(word: str) -> int:
    if word in ORDINAL:
        return ORDINAL[word]
    m = re.fullmatch(r"(\d{1,2})(st|nd|rd|th)?", word)
    assert m, word
    d = int(m.group(1))
    if m.group(2):
        expected = "th" if 10 <= d % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")
        assert m.group(2) == expected, word
    return d


def parse(source: str) -> str:
    """The ISO date a source means; AssertionError if it means none or several."""
    if not re.search("[A-Za-z]", source):
        meanings = set()
        for pattern in NUMERIC:
            try:
                meanings.add(datetime.datetime.strptime(source, pattern).date())
            except ValueError:
                pass
        assert len(meanings) == 1, (source, meanings)
        return meanings.pop().isoformat()
    words = source.lower().replace(",", "").split()
    weekday = WEEKDAY.get(words[0])
    if weekday is not None:
        words = words[1:]
    if words[0] == "the":
        words = words[1:]
    if words[0] in MONTH:
        month, d, rest = MONTH[words[0]], day(words[1]), words[2:]
    else:
        d, rest = day(words[0]), words[1:]
        if rest[0] == "of":
            rest = rest[1:]
        month, rest = MONTH[rest[0]], rest[1:]
    date = datetime.date(year(rest), month, d)
    if weekday is not None:
        assert date.weekday() == weekday, source
    return date.isoformat()


# ---- the tests -----------------------------------------------------------------------------

def test_the_config_names_the_generators_formats():
    assert tuple(FORMATS) == DATE_FORMATS


def test_every_generated_source_parses_back_to_its_target():
    sources, targets, used = make_dates(6000, seed=1)
    assert len(set(used)) == len(FORMATS)
    for source, target in zip(sources, targets):
        assert parse(source) == target, (source, target)
        assert datetime.date.fromisoformat(target).year in range(1900, 2100)


@pytest.mark.parametrize("date", [datetime.date(2000, 2, 29), datetime.date(1904, 2, 29),
                                  datetime.date(2096, 2, 29), datetime.date(1900, 2, 28),
                                  datetime.date(1900, 3, 1), datetime.date(2099, 12, 31),
                                  datetime.date(1900, 1, 1), datetime.date(2001, 1, 11),
                                  datetime.date(2010, 10, 20), datetime.date(1999, 3, 13)])
@pytest.mark.parametrize("case", CASES)
def test_edge_dates_in_every_format_and_case(date, case):
    for name, write in FORMATS.items():
        source = in_case(write(date), case)
        assert parse(source) == date.isoformat(), (name, source)


def test_leap_days_only_in_leap_years():
    sources, targets, _ = make_dates(20000, seed=2)
    leap_days = {t for t in targets if t[5:] == "02-29"}
    assert leap_days and all(calendar.isleap(int(t[:4])) for t in leap_days)
    assert "1900-02-29" not in targets
    years = Counter(int(t[:4]) for t in targets)
    assert min(years) >= 1900 and max(years) <= 2099 and len(years) > 190


def test_the_seed_decides_everything():
    a, b = make_dates(500, seed=3), make_dates(500, seed=3)
    assert a == b
    c = make_dates(500, seed=4)
    assert a[0] != c[0] and a[1] != c[1]
    spec = SimpleNamespace(samples=300, formats=None, split=SimpleNamespace(val=0.1, test=0.1))
    d1, d2 = load_dates(spec, 9, "float32"), load_dates(spec, 9, "float32")
    assert np.array_equal(d1.x, d2.x) and np.array_equal(d1.y, d2.y)
    assert d1.info["input"] == d2.info["input"]


def test_formats_and_cases_are_uniform():
    n = 18000
    sources, _, used = make_dates(n, seed=5)
    counts = Counter(used)
    k = len(FORMATS)
    sd = (n / k * (1 - 1 / k)) ** 0.5
    assert all(abs(counts[f] - n / k) < 5 * sd for f in FORMATS), counts
    wordy = [s for s in sources if re.search("[A-Za-z]", s)]
    upper = sum(s == s.upper() for s in wordy) / len(wordy)
    lower = sum(s == s.lower() for s in wordy) / len(wordy)
    assert abs(upper - 0.25) < 0.03 and abs(lower - 0.25) < 0.03, (upper, lower)


def test_only_the_formats_asked_for():
    sources, targets, used = make_dates(200, seed=0, formats=["dmy_slash", "compact"])
    assert set(used) == {"dmy_slash", "compact"}
    assert all(re.fullmatch(r"\d\d/\d\d/\d{4}|\d{8}", s) for s in sources)
    with pytest.raises(ValueError, match="unknown date formats"):
        make_dates(10, 0, formats=["mdy"])


def test_the_dataset_targets_are_iso_with_eos(tmp_path):
    spec = SimpleNamespace(samples=400, formats=None, split=SimpleNamespace(val=0.0, test=0.0))
    data = load_dates(spec, 0, "float32")
    sources, targets, _ = make_dates(400, 0)
    vocab = data.info["input"]
    assert data.info["target"] is vocab and vocab.level == "chars"
    assert all(len(t) == 10 for t in targets)
    assert data.y.shape == (400, 11) and (data.y[:, 10] == EOS).all()
    assert data.y_len.tolist() == [11] * 400
    assert [vocab.decode(row) for row in data.y] == targets
    assert [vocab.decode(row) for row in data.x] == sources
    assert data.x_len.tolist() == [len(s) for s in sources]


def test_config_and_load_splits(tmp_path):
    config = tmp_path / "dates.yaml"
    config.write_text("seed: 2\ndata: {dataset: dates, samples: 200}\nmodel:\n  layers:\n"
                      "    - embedding: {dim: 8}\n    - gru: {units: 8, return_sequences: "
                      "true}\n    - dense: {units: classes}\nloss: cross_entropy\n"
                      "optimizer: adam\ntrain: {epochs: 1}\n")
    config = load_config(config)
    assert config.spec.data.normalize == "none" and config.spec.data.formats is None
    data = load_dataset(config)
    splits = load_splits(config)
    train = training_indices(200, None, config.spec.data.split, 2, stratify=False)
    assert np.array_equal(splits.train.x, data.x[train]) and len(train) == 140
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.path.read_text().replace("samples: 200", "formats: [mdy]"))
    with pytest.raises(ConfigError, match=r"data\.formats\[0\]: unknown value 'mdy'"):
        load_config(bad)
