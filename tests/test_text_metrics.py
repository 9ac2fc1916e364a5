"""Sequence metrics against hand-computed values, a brute-force edit distance, and sacrebleu."""

import builtins
import functools
import itertools
import math

import pytest

from nnctl.errors import UsageError
from nnctl.text_metrics import bleu, char_error_rate, edit_distance, exact_match, token_accuracy


def brute_distance(a, b):
    """Levenshtein by the defining recursion (exponential without the cache)."""
    @functools.lru_cache(maxsize=None)
    def d(i, j):
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))
    return d(len(a), len(b))


def test_edit_distance_by_hand():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "") == 3
    assert edit_distance("abc", "abc") == 0
    assert edit_distance("ab", "ba") == 2  # no transpositions: two substitutions
    assert edit_distance([5, 6, 7], [5, 7]) == 1


def test_edit_distance_against_the_recursion_on_every_short_pair():
    words = ["".join(w) for n in range(5) for w in itertools.product("ab", repeat=n)]
    words += ["abc", "cab", "bca", "aabbc"]
    for a, b in itertools.product(words, repeat=2):
        assert edit_distance(a, b) == brute_distance(a, b), (a, b)


def test_exact_match():
    assert exact_match(["1999-01-02", "2000-01-01", "x"], ["1999-01-02", "2000-01-02", "x"]) \
        == pytest.approx(2 / 3)
    assert exact_match([[1, 2], [3]], [[1, 2], [3, 4]]) == 0.5
    assert exact_match([], []) == 0.0


def test_token_accuracy_counts_reference_positions():
    # "abc" vs "abd": 2 of 3; "ab" vs "abcd": 2 of 4 (missing ones are wrong);
    # "abcde" vs "ab": 2 of 2 (extra tokens past the reference are not counted)
    assert token_accuracy(["abd"], ["abc"]) == pytest.approx(2 / 3)
    assert token_accuracy(["ab"], ["abcd"]) == pytest.approx(0.5)
    assert token_accuracy(["abcde"], ["ab"]) == 1.0
    # with the end mark appended, the overlong prediction loses the EOS position
    assert token_accuracy([[1, 2, 3, 9]], [[1, 2, 9]]) == pytest.approx(2 / 3)
    # corpus-level: summed correct positions / summed reference lengths
    assert token_accuracy(["abd", "ab"], ["abc", "abcd"]) == pytest.approx(4 / 7)


def test_char_error_rate_is_summed_over_the_corpus():
    # distances 3 and 1, reference lengths 7 and 4: (3 + 1) / (7 + 4), not mean(3/7, 1/4)
    cer = char_error_rate(["kitten", "abc"], ["sitting", "abcd"])
    assert cer == pytest.approx(4 / 11)
    assert char_error_rate(["a"], ["a"]) == 0.0
    assert char_error_rate(["abcdef"], ["a"]) == pytest.approx(5.0)  # above 1: insertions
    assert char_error_rate([""], [""]) == 0.0
    assert math.isinf(char_error_rate(["x"], [""]))
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        char_error_rate(["a", "b"], ["a"])


def test_bleu_by_hand_with_characters_as_tokens():
    pytest.importorskip("sacrebleu")
    # a perfect corpus scores 100, a corpus with no shared character 0
    assert bleu(["2001-02-03"], ["2001-02-03"]) == pytest.approx(100.0)
    assert bleu(["xyz"], ["abc"]) == pytest.approx(0.0)
    # "abcd" vs "abce", no brevity penalty: 1-gram 3/4, 2-gram 2/3, 3-gram 1/2, 4-gram 0/1
    # -> 0 without smoothing; sacrebleu's default "exp" smoothing turns the zero count at
    # order 4 into 1 / (2 * 1): precisions 3/4, 2/3, 1/2, 1/2
    expected = 100 * math.exp((math.log(3 / 4) + math.log(2 / 3) + 2 * math.log(1 / 2)) / 4)
    assert bleu(["abcd"], ["abce"]) == pytest.approx(expected, rel=1e-9)


def test_bleu_is_sacrebleu_corpus_bleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    hyps = ["the cat sat on the mat", "a dog barked", "2001-02-03", "hello there world"]
    refs = ["the cat is on the mat", "the dog barked", "2001-02-30", "hello world"]
    for tokenize in ("char", "13a"):
        want = sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score
        assert bleu(hyps, refs, tokenize) == pytest.approx(want, rel=1e-12)
    assert bleu(hyps, refs, "char") != pytest.approx(bleu(hyps, refs, "13a"))


def test_bleu_without_sacrebleu_says_how_to_install(monkeypatch):
    real = builtins.__import__

    def no_sacrebleu(name, *args, **kwargs):
        if name == "sacrebleu":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sacrebleu)
    with pytest.raises(UsageError, match="pip install sacrebleu"):
        bleu(["a"], ["a"])
