"""Search for the most likely output sequence of a sequence-to-sequence model: greedy and beam.

Both algorithms see the model only through `step(prefixes, rows) -> log_probs`: the prefixes
[m, t] (int64, each starting with BOS) whose next token is wanted, `rows` [m] saying which
source each prefix belongs to, and the answer [m, V], the log-probabilities of every next
token. Nothing here knows about graphs, trainers or vocabularies, so the searches are tested
on fixed tables of log-probabilities.

Beam search follows fairseq's and Hugging Face generate's: per source, the `beam` best live
hypotheses by total log-probability are extended by every token; of the 2 x beam best
extensions, one that ends with EOS among the first `beam` is finished, the others (up to
`beam`) stay live. Finished hypotheses compete by

    score = log P(y) / |y| ** alpha        (|y|: generated tokens, EOS included; alpha =
                                            length_penalty, 0 = no normalisation)

the formula of fairseq and Hugging Face (GNMT's ((5 + |y|) / 6) ** alpha is not used). The
search of a source stops when `beam` hypotheses are finished and no live one can still beat
the worst of them. The bound is exact (Hugging Face's early_stopping="never"):
log-probabilities only fall as a hypothesis grows, so a live one whose total is L can at best
reach L / n ** alpha with n = max_len + 1 for alpha > 0 (a longer divisor shrinks a negative
score's size), n = its next length for alpha <= 0.

`max_len` is the most tokens an answer may have besides EOS: after max_len tokens, EOS is
forced (fairseq's rule), so every answer is scored with its end, the cut-off ones too.

Ties are broken the same way every time: the better-ranked hypothesis first, then the lower
token id (what numpy's argmax does), so beam search with width 1 and alpha = 0 gives exactly
greedy's sequence.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

Step = Callable[[np.ndarray, np.ndarray], np.ndarray]


class Decoded(NamedTuple):
    """A search's answer for one source: the tokens (without BOS and EOS), the total
    log-probability, and the score it was ranked by (log_prob / length ** alpha)."""

    tokens: tuple[int, ...]
    log_prob: float
    score: float


def _check(sources: int, max_len: int, beam: int = 1) -> None:
    if sources < 0:
        raise ValueError(f"sources must be >= 0, got {sources}")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")


def _log_probs(step: Step, prefixes: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = np.asarray(step(prefixes, rows), dtype=np.float64)
    if out.ndim != 2 or out.shape[0] != len(prefixes):
        raise ValueError(f"step returned shape {list(out.shape)}; expected "
                         f"[{len(prefixes)}, vocabulary]")
    return out


def greedy(step: Step, sources: int, max_len: int, bos: int, eos: int) -> list[Decoded]:
    """The most likely next token at every step, until EOS; EOS forced after max_len tokens."""
    _check(sources, max_len)
    prefixes = np.full((sources, 1), bos, dtype=np.int64)
    totals = np.zeros(sources)
    ended = np.zeros(sources, dtype=bool)
    lengths = np.full(sources, max_len)  # tokens kept, EOS excluded
    for t in range(max_len + 1):
        rows = np.flatnonzero(~ended)
        if not len(rows):
            break
        logp = _log_probs(step, prefixes[rows], rows)
        # the lowest token id among equals; after max_len tokens, the end
        best = logp.argmax(axis=1) if t < max_len else np.full(len(rows), eos)
        totals[rows] += logp[np.arange(len(rows)), best]
        column = np.full(sources, eos, dtype=np.int64)  # finished rows are padded with EOS
        column[rows] = best
        prefixes = np.concatenate([prefixes, column[:, None]], axis=1)
        stop = rows[best == eos]
        lengths[stop] = t
        ended[stop] = True
    return [Decoded(tuple(int(v) for v in prefixes[i, 1:1 + lengths[i]]), float(totals[i]),
                    float(totals[i])) for i in range(sources)]


def normalised(log_prob: float, length: int, alpha: float) -> float:
    """The score finished hypotheses compete by: log_prob / length ** alpha."""
    return log_prob / max(length, 1) ** alpha if alpha else log_prob


class _Source:
    """One source's beam: live prefixes (without BOS) with their totals, best first, and the
    finished hypotheses kept best first (at most `beam`)."""

    def __init__(self, beam: int):
        self.beam = beam
        self.live: list[tuple[tuple[int, ...], float]] = [((), 0.0)]
        self.finished: list[Decoded] = []
        self.done = False

    def finish(self, tokens: tuple[int, ...], log_prob: float, length: int,
               alpha: float) -> None:
        """Add a finished hypothesis; a later one never displaces an equal earlier one."""
        hyp = Decoded(tokens, log_prob, normalised(log_prob, length, alpha))
        at = len(self.finished)
        while at and self.finished[at - 1].score < hyp.score:
            at -= 1
        self.finished.insert(at, hyp)
        del self.finished[self.beam:]

    def can_improve(self, length: int, max_len: int, alpha: float) -> bool:
        """Whether a live hypothesis (now `length` tokens long) may still beat the worst
        finished one, by the exact bound of the module docstring."""
        if len(self.finished) < self.beam:
            return True
        best = self.live[0][1]
        reach = max_len + 1 if alpha > 0 else length + 1
        return normalised(best, reach, alpha) > self.finished[-1].score


def beam_search(step: Step, sources: int, beam: int, max_len: int, bos: int, eos: int,
                length_penalty: float = 0.0) -> list[Decoded]:
    """The best finished hypothesis per source (see the module docstring)."""
    _check(sources, max_len, beam)
    alpha = float(length_penalty)
    states = [_Source(beam) for _ in range(sources)]
    for t in range(max_len + 1):
        active = [i for i, s in enumerate(states) if not s.done]
        if not active:
            break
        rows = np.array([i for i in active for _ in states[i].live], dtype=np.int64)
        prefixes = np.array([(bos,) + tokens for i in active for tokens, _ in states[i].live],
                            dtype=np.int64).reshape(len(rows), t + 1)
        logp = _log_probs(step, prefixes, rows)
        vocab = logp.shape[1]
        at = 0
        for i in active:
            s = states[i]
            n = len(s.live)
            totals = np.array([total for _, total in s.live])[:, None] + logp[at:at + n]
            at += n
            if t == max_len:  # EOS forced: every live hypothesis finishes
                for (tokens, _), total in zip(s.live, totals[:, eos]):
                    s.finish(tokens, float(total), t + 1, alpha)
                s.done = True
                continue
            flat = totals.ravel()
            # stable: equal totals keep (hypothesis rank, token id) order
            order = np.argsort(-flat, kind="stable")[:2 * beam]
            live = []
            for rank, k in enumerate(order):
                h, v = divmod(int(k), vocab)
                tokens, total = s.live[h][0], float(flat[k])
                if v == eos:
                    if rank < beam:  # an EOS ranked below the beam is not a finished candidate
                        s.finish(tokens, total, t + 1, alpha)
                elif len(live) < beam:
                    live.append((tokens + (v,), total))
            s.live = live
            if not live or not s.can_improve(t + 1, max_len, alpha):
                s.done = True
    return [s.finished[0] if s.finished else Decoded((), 0.0, 0.0) for s in states]
