"""Greedy and beam search on fixed tables of log-probabilities, against hand-worked answers
and against brute-force enumeration of every sequence."""

import itertools
import math

import numpy as np
import pytest

from nnctl.decode import Decoded, beam_search, greedy, normalised

BOS, EOS, A, B = 0, 1, 2, 3
V = 4
FLOOR = 1e-6  # probability of every token a table does not name (BOS among them)


def table_step(tables, calls=None):
    """A `step` reading {prefix (without BOS): {token: probability}} per source (one table
    shared by every source when `tables` is a dict)."""
    def step(prefixes, rows):
        assert prefixes.dtype == np.int64 and rows.dtype == np.int64
        assert (prefixes[:, 0] == BOS).all()
        if calls is not None:
            calls.append(prefixes.shape)
        out = np.empty((len(prefixes), V))
        for k, (prefix, row) in enumerate(zip(prefixes, rows)):
            table = tables if isinstance(tables, dict) else tables[row]
            probs = table.get(tuple(int(v) for v in prefix[1:]), {EOS: 1.0})
            p = np.array([probs.get(v, FLOOR) for v in range(V)])
            out[k] = np.log(p / p.sum())
        return out
    return step


def random_step(seed):
    """Log-probabilities drawn from a seeded generator keyed by (source, prefix): every
    prefix has its own distribution, and the same one on every call."""
    def step(prefixes, rows):
        out = np.empty((len(prefixes), V))
        for k, (prefix, row) in enumerate(zip(prefixes, rows)):
            key = [seed, int(row), *[int(v) for v in prefix]]
            z = np.random.default_rng(key).normal(scale=1.5, size=V)
            out[k] = z - np.log(np.exp(z).sum())
        return out
    return step


def enumerate_best(step, row, max_len, alpha):
    """The best (tokens, score) over every sequence of up to max_len tokens, then EOS."""
    def logp(prefix):
        return step(np.array([(BOS,) + prefix], dtype=np.int64),
                    np.array([row], dtype=np.int64))[0]

    best = None
    words = [v for v in range(V) if v != EOS]
    for n in range(max_len + 1):
        for tokens in itertools.product(words, repeat=n):
            total = sum(logp(tokens[:i])[tokens[i]] for i in range(n))
            total += logp(tokens)[EOS]
            score = normalised(total, n + 1, alpha)
            if best is None or score > best[1]:
                best = (tokens, score)
    return best


# greedy takes A (0.6) then EOS: 0.6 * 0.5 = 0.30; B then EOS is 0.4 * 0.9 = 0.36
GREEDY_TRAP = {(): {A: 0.6, B: 0.4}, (A,): {EOS: 0.5, A: 0.25, B: 0.25},
               (B,): {EOS: 0.9, A: 0.1}}


def test_greedy_follows_the_most_likely_token():
    (out,) = greedy(table_step(GREEDY_TRAP), 1, max_len=5, bos=BOS, eos=EOS)
    assert out.tokens == (A,)
    assert out.log_prob == pytest.approx(math.log(0.6 * 0.5), rel=1e-5)
    assert out.score == out.log_prob


def test_beam_finds_what_greedy_misses():
    (out,) = beam_search(table_step(GREEDY_TRAP), 1, beam=2, max_len=5, bos=BOS, eos=EOS)
    assert out.tokens == (B,)
    assert out.log_prob == pytest.approx(math.log(0.4 * 0.9), rel=1e-5)


# unnormalised, "A" wins (0.5 * 0.6 = 0.30); per token, "B B B" wins (0.45 * 0.8^2 * 0.7 =
# 0.2016 over 4 tokens: log 0.2016 / 4 = -0.400 against log 0.30 / 2 = -0.602)
LENGTH_TRAP = {(): {A: 0.5, B: 0.45, EOS: 0.05},
               (A,): {EOS: 0.6, A: 0.2, B: 0.2},
               (B,): {B: 0.8, EOS: 0.1, A: 0.1},
               (B, B): {B: 0.8, EOS: 0.1, A: 0.1},
               (B, B, B): {EOS: 0.7, A: 0.15, B: 0.15}}


def test_length_normalisation_changes_the_winner():
    step = table_step(LENGTH_TRAP)
    plain = beam_search(step, 1, beam=3, max_len=6, bos=BOS, eos=EOS, length_penalty=0.0)[0]
    per_token = beam_search(step, 1, beam=3, max_len=6, bos=BOS, eos=EOS,
                            length_penalty=1.0)[0]
    assert plain.tokens == (A,)
    assert per_token.tokens == (B, B, B)
    assert per_token.log_prob == pytest.approx(math.log(0.45 * 0.8 * 0.8 * 0.7), rel=1e-5)
    assert per_token.score == pytest.approx(per_token.log_prob / 4, rel=1e-12)
    for alpha, got in ((0.0, plain), (1.0, per_token)):
        tokens, score = enumerate_best(step, 0, 6, alpha)
        assert got.tokens == tokens and got.score == pytest.approx(score, rel=1e-12)


def test_a_live_hypothesis_that_may_still_win_keeps_the_search_going():
    # width 1, alpha 1: "A" + EOS finishes at step 2 (0.6 * 0.5 = 0.30, score -0.602); the
    # live "A A" (0.15) cannot beat it at its next length (log 0.15 / 3 = -0.632), which is
    # where a bound on the current length would stop; but it may at max_len, and does:
    # A x 7 + EOS scores (log 0.15 + 6 log 0.99) / 8 = -0.245
    table = {(): {A: 0.6, B: 0.4}, (A,): {EOS: 0.5, A: 0.25, B: 0.25}}
    table.update({(A,) * n: {A: 0.99, EOS: 0.01} for n in range(2, 7)})
    table[(A,) * 7] = {EOS: 0.99, A: 0.01}
    step = table_step(table)
    out = beam_search(step, 1, 1, 10, BOS, EOS, length_penalty=1.0)[0]
    assert out.tokens == (A,) * 7
    assert out.score == pytest.approx(math.log(0.15 * 0.99 ** 6) / 8, rel=1e-4)
    assert beam_search(step, 1, 1, 10, BOS, EOS, length_penalty=0.0)[0].tokens == (A,)


def test_eos_at_the_first_step():
    step = table_step({(): {EOS: 0.9, A: 0.05, B: 0.05}})
    for out in (greedy(step, 1, 5, BOS, EOS)[0], beam_search(step, 1, 3, 5, BOS, EOS, 1.0)[0]):
        assert out.tokens == ()
        assert out.log_prob == pytest.approx(math.log(0.9), rel=1e-5)
    # length 1 (EOS): the normalised score is the log-probability itself
    assert beam_search(step, 1, 3, 5, BOS, EOS, 1.0)[0].score == pytest.approx(math.log(0.9),
                                                                              rel=1e-5)


def test_eos_is_forced_after_max_len_tokens():
    forever = {prefix: {A: 0.7, B: 0.3} for n in range(4)
               for prefix in itertools.product((A, B), repeat=n)}
    step = table_step(forever)
    calls = []
    out = greedy(table_step(forever, calls), 1, 3, BOS, EOS)[0]
    assert out.tokens == (A, A, A) and len(calls) == 4
    # the answer is scored with its (forced) end
    want = 3 * math.log(0.7 / (1 + 2 * FLOOR)) + math.log(FLOOR / (1 + 2 * FLOOR))
    assert out.log_prob == pytest.approx(want, rel=1e-9)
    got = beam_search(step, 1, 2, 3, BOS, EOS, 1.0)[0]
    assert got.tokens == (A, A, A)
    assert got.log_prob == pytest.approx(want, rel=1e-9)
    assert got.score == pytest.approx(got.log_prob / 4, rel=1e-12)


def test_ties_go_to_the_lower_token_id_and_repeat():
    tie = {(): {A: 0.4, B: 0.4, EOS: 0.2}, (A,): {EOS: 1.0}, (B,): {EOS: 1.0}}
    step = table_step(tie)
    assert greedy(step, 1, 4, BOS, EOS)[0].tokens == (A,)
    runs = [beam_search(step, 1, 2, 4, BOS, EOS)[0] for _ in range(3)]
    assert all(r == runs[0] for r in runs) and runs[0].tokens == (A,)


@pytest.mark.parametrize("seed", range(4))
def test_width_one_is_greedy_exactly(seed):
    step = random_step(seed)
    g = greedy(step, 6, 7, BOS, EOS)
    b = beam_search(step, 6, 1, 7, BOS, EOS, 0.0)
    assert [x.tokens for x in g] == [x.tokens for x in b]
    assert [x.log_prob for x in g] == pytest.approx([x.log_prob for x in b], rel=1e-12)


@pytest.mark.parametrize("seed,alpha", [(0, 0.0), (1, 0.6), (2, 1.0), (3, -0.5)])
def test_a_wide_beam_finds_the_best_of_all_sequences(seed, alpha):
    step = random_step(seed)
    found = beam_search(step, 3, 200, 4, BOS, EOS, alpha)
    for row, got in enumerate(found):
        tokens, score = enumerate_best(step, row, 4, alpha)
        assert got.tokens == tokens
        assert got.score == pytest.approx(score, rel=1e-12)


def test_sources_are_searched_independently_in_one_call_per_step():
    step = random_step(7)
    calls = []

    def counting(prefixes, rows):
        calls.append(sorted(set(rows.tolist())))
        return step(prefixes, rows)

    together = beam_search(counting, 4, 3, 6, BOS, EOS, 0.5)
    assert len(calls) <= 7 and calls[0] == [0, 1, 2, 3]  # max_len tokens, then EOS
    alone = [beam_search(lambda p, r, i=i: step(p, np.full_like(r, i)), 1, 3, 6, BOS, EOS,
                         0.5)[0] for i in range(4)]
    assert together == alone
    assert greedy(step, 4, 6, BOS, EOS) == [
        greedy(lambda p, r, i=i: step(p, np.full_like(r, i)), 1, 6, BOS, EOS)[0]
        for i in range(4)]


def test_no_sources_and_bad_arguments():
    step = random_step(0)
    assert greedy(step, 0, 5, BOS, EOS) == [] and beam_search(step, 0, 2, 5, BOS, EOS) == []
    with pytest.raises(ValueError, match="beam"):
        beam_search(step, 1, 0, 5, BOS, EOS)
    with pytest.raises(ValueError, match="max_len"):
        greedy(step, 1, 0, BOS, EOS)
    with pytest.raises(ValueError, match="shape"):
        greedy(lambda p, r: np.zeros((1, 2, 3)), 1, 3, BOS, EOS)
    assert isinstance(greedy(step, 1, 3, BOS, EOS)[0], Decoded)
