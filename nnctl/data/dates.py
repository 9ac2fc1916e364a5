"""The generated `dates` task: a date written the way people write it -> ISO "YYYY-MM-DD".

"the twelfth of march 1995", "12/03/1995", "Sunday, March 12, 1995" and "12TH MARCH NINETEEN
NINETY-FIVE" all mean 1995-03-12: a character-level sequence-to-sequence task small enough to
train in minutes that still needs attention (the year sits at the end of the source and the
start of the target) and copying (digits pass through). Every format writes the whole date,
so the target is a function of the source:

- numeric dates are day first (12/03/1995 is the 12th of March), with a four-digit year,
  never a two-digit one; a four-digit group first means year first (1995/03/12, 19950312);
- a weekday, when written, is the date's own weekday;
- years in words: 1900 "nineteen hundred", 1905 "nineteen oh five", 1995 "nineteen
  ninety-five", 2000 "two thousand", 2005 "two thousand and five", 2024 "twenty twenty-four".

Dates are drawn uniformly from 1900-01-01 to 2099-12-31 (datetime counts the leap days:
1900 and 2100 are not leap years, 2000 is), a format uniformly from the formats asked for,
and a letter case (natural, lower, Title, UPPER) for the formats with words. The config's
seed decides every draw.
"""

from __future__ import annotations

import datetime

import numpy as np

from nnctl.data.dataset import Dataset
from nnctl.data.kinds import register_loader
from nnctl.data.pairs import pairs_dataset

FIRST, LAST = datetime.date(1900, 1, 1), datetime.date(2099, 12, 31)
STREAM = 0xDA7E5  # the dates' own random stream of the seed, apart from the split's

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
        "eighteen", "nineteen")
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
ORDINAL_ONES = ("", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
                "ninth", "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth",
                "fifteenth", "sixteenth", "seventeenth", "eighteenth", "nineteenth")


def cardinal(n: int) -> str:
    """0..99 in words: 7 "seven", 40 "forty", 95 "ninety-five"."""
    if n < 20:
        return ONES[n]
    tens, ones = divmod(n, 10)
    return TENS[tens] + ("-" + ONES[ones] if ones else "")


def ordinal(day: int) -> str:
    """1..31 in words: "first", "twelfth", "twentieth", "thirty-first"."""
    if day < 20:
        return ORDINAL_ONES[day]
    tens, ones = divmod(day, 10)
    if not ones:
        return TENS[tens][:-1] + "ieth"  # twenty -> twentieth, thirty -> thirtieth
    return TENS[tens] + "-" + ORDINAL_ONES[ones]


def suffixed(day: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, 22nd, 23rd, 31st."""
    if 11 <= day % 100 <= 13:
        return f"{day}th"
    return f"{day}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th')}"


def year_words(year: int) -> str:
    """1900..2099 in words, one way per year (see the module docstring)."""
    century, rest = divmod(year, 100)
    if year == 2000:
        return "two thousand"
    if 2001 <= year <= 2009:
        return "two thousand and " + ONES[rest]
    head = cardinal(century)
    if rest == 0:
        return head + " hundred"
    if rest < 10:
        return head + " oh " + ONES[rest]
    return head + " " + cardinal(rest)


def _month(d: datetime.date) -> str:
    return MONTHS[d.month - 1]


def _weekday(d: datetime.date) -> str:
    return WEEKDAYS[d.weekday()]


# name -> the date written in that format, in natural case (month and weekday capitalised)
FORMATS = {
    "iso": lambda d: f"{d.year:04d}-{d.month:02d}-{d.day:02d}",
    "dmy_slash": lambda d: f"{d.day:02d}/{d.month:02d}/{d.year:04d}",
    "dmy_dot": lambda d: f"{d.day:02d}.{d.month:02d}.{d.year:04d}",
    "dmy_dash": lambda d: f"{d.day:02d}-{d.month:02d}-{d.year:04d}",
    "dmy_short": lambda d: f"{d.day}/{d.month}/{d.year:04d}",
    "ymd_slash": lambda d: f"{d.year:04d}/{d.month:02d}/{d.day:02d}",
    "compact": lambda d: f"{d.year:04d}{d.month:02d}{d.day:02d}",
    "d_month_y": lambda d: f"{d.day} {_month(d)} {d.year}",
    "d_mon_y": lambda d: f"{d.day} {_month(d)[:3]} {d.year}",
    "month_d_y": lambda d: f"{_month(d)} {d.day}, {d.year}",
    "mon_d_y": lambda d: f"{_month(d)[:3]} {d.day}, {d.year}",
    "month_dth_y": lambda d: f"{_month(d)} {suffixed(d.day)}, {d.year}",
    "weekday_d_month_y": lambda d: f"{_weekday(d)}, {d.day} {_month(d)} {d.year}",
    "weekday_month_d_y": lambda d: f"{_weekday(d)}, {_month(d)} {d.day}, {d.year}",
    "the_dth_of_month_y": lambda d: f"the {suffixed(d.day)} of {_month(d)} {d.year}",
    "the_ordinal_of_month_y": lambda d: f"the {ordinal(d.day)} of {_month(d)} {d.year}",
    "dth_month_year_words": lambda d: f"{suffixed(d.day)} {_month(d)} {year_words(d.year)}",
    "the_ordinal_of_month_year_words":
        lambda d: f"the {ordinal(d.day)} of {_month(d)} {year_words(d.year)}",
}
CASES = ("natural", "lower", "title", "upper")


def in_case(text: str, case: str) -> str:
    """Title capitalises each word's first character (a digit stays: "12th", not "12Th")."""
    if case == "lower":
        return text.lower()
    if case == "upper":
        return text.upper()
    if case == "title":
        return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))
    return text


def make_dates(samples: int, seed: int, formats: list[str] | tuple[str, ...] | None = None
               ) -> tuple[list[str], list[str], list[str]]:
    """(sources, ISO targets, the format of each), `samples` of each, decided by `seed`."""
    names = list(FORMATS) if not formats else list(formats)
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise ValueError(f"unknown date formats {unknown}; expected some of {list(FORMATS)}")
    rng = np.random.default_rng([seed, STREAM])
    days = rng.integers(FIRST.toordinal(), LAST.toordinal() + 1, size=samples)
    which = rng.integers(len(names), size=samples)
    cases = rng.integers(len(CASES), size=samples)
    sources, targets, used = [], [], []
    for day, f, case in zip(days.tolist(), which.tolist(), cases.tolist()):
        d = datetime.date.fromordinal(day)
        text = FORMATS[names[f]](d)
        # a case only for formats with letters, so each numeric source is written one way
        sources.append(in_case(text, CASES[case]) if any(c.isalpha() for c in text) else text)
        targets.append(d.isoformat())
        used.append(names[f])
    return sources, targets, used


@register_loader("dates")
def load_dates(spec, seed: int, dtype: str) -> Dataset:
    """`dataset: dates`: the generated pairs as characters, through the text_pairs path."""
    sources, targets, _ = make_dates(spec.samples, seed, spec.formats)
    wheres = [f"dates sample {i}" for i in range(len(sources))]
    return pairs_dataset(sources, targets, wheres, split_spec=spec.split, seed=seed,
                         name="dates", level="chars")
