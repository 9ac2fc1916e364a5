"""The linear-chain CRF output layer (Lafferty et al. 2001): a tagger's loss and decoder.

The layer before it gives per-token scores (emissions) E [batch, time, K]; the CRF adds
transition scores A [K, K] (A[i, j]: tag i followed by tag j), start scores s [K] and end
scores e [K]. A tag path y_1..y_n of a sequence of n real steps scores

    score(y) = s[y_1] + sum_t E[t, y_t] + sum_{t=2..n} A[y_(t-1), y_t] + e[y_n]

and p(y | x) = exp(score(y)) / Z with Z = sum over all K^n paths of exp(score). The loss is
the negative log-likelihood log Z - score(gold), averaged over the sequences of the batch
(torchcrf's reduction='mean'; the sum over a sequence's steps is not divided by its length,
unlike the masked cross-entropy, which is a mean over tokens).

log Z comes from the forward algorithm in log space, one step at a time, built only from
elementary ops so that reverse-mode AD gives its gradient (the expected tag and transition
counts); the layer writes no derivative:

    alpha_1[j] = s[j] + E[1, j]
    alpha_t[j] = logsumexp_i(alpha_(t-1)[i] + A[i, j]) + E[t, j]       (t = 2..n)
    log Z      = logsumexp_j(alpha_n[j] + e[j])

A padded step (mask 0; padding is at the end) keeps alpha unchanged:
alpha_t = m_t * new + (1 - m_t) * alpha_(t-1), so alpha stops at each sequence's last real step.

Decoding is Viterbi (max instead of logsumexp, then back-pointers), in NumPy on the trained
weights: the trainer calls `decode` instead of taking the argmax of the emissions.

Constraints: with `constraints: bio` the transitions BIO forbids (I-X after O, I-X after B-Y
or I-Y with Y != X, and I-X first) get FORBIDDEN added, a fixed constant that is not trained,
in the loss and in decoding alike, so no decoded path breaks BIO. The tag names come from the
data (the build hint "tags").
"""

from __future__ import annotations

import numpy as np

from nnctl.errors import ShapeError
from nnctl.graph import Tensor
from nnctl.layers.base import Layer, register_layer, require_sequence

# Added to a forbidden transition's score: exp(-1e4) is 0 in float32 and float64 alike, yet the
# number stays finite, so logsumexp and its gradient never meet inf - inf.
FORBIDDEN = -1e4
CONSTRAINTS = ("none", "bio")
INIT_RANGE = 0.1  # parameters start uniform in (-0.1, 0.1), as torchcrf's


def bio_forbidden(tags: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(transitions [K, K], start [K]) as bool: True where BIO forbids tag i -> tag j, and
    where a tag may not begin a sequence. Every tag must be O, B-X or I-X (ValueError else)."""
    kinds, types = [], []
    for tag in tags:
        if tag == "O":
            kinds.append("O")
            types.append(None)
        elif len(tag) > 2 and tag[:2] in ("B-", "I-"):
            kinds.append(tag[0])
            types.append(tag[2:])
        else:
            raise ValueError(f"tag {tag!r} is not BIO (expected O, B-<type> or I-<type>)")
    k = len(tags)
    trans = np.zeros((k, k), dtype=bool)
    for j in range(k):
        if kinds[j] != "I":
            continue
        for i in range(k):  # I-X continues only B-X or I-X
            trans[i, j] = kinds[i] == "O" or types[i] != types[j]
    start = np.array([kind == "I" for kind in kinds])
    return trans, start


@register_layer
class CRF(Layer):
    """Linear-chain CRF over emissions [batch, time, tags]: forward returns them unchanged;
    `nll` is the loss (mean over sequences of log Z - score(gold path)); `decode` is Viterbi.

    score(y) = start[y_1] + sum_t E[t, y_t] + sum_t transitions[y_(t-1), y_t] + end[y_n];
    log Z by the forward algorithm alpha_t[j] = logsumexp_i(alpha_(t-1)[i] + A[i, j]) + E[t, j].
    Parameters transitions [K, K] (from i to j), start [K], end [K], initialised uniform in
    (-0.1, 0.1). constraints: bio adds -1e4 (fixed) to the transitions BIO forbids."""

    kind = "crf"
    takes_mask = True

    def __init__(self, name: str, constraints: str = "none", tags: list[str] | None = None):
        super().__init__(name)
        if constraints not in CONSTRAINTS:
            raise ShapeError(f"unknown constraints {constraints!r}; expected one of "
                             f"{', '.join(CONSTRAINTS)}", scope=name)
        self.constraints, self.tags = constraints, list(tags) if tags is not None else None
        self.forbidden_transitions = self.forbidden_start = None
        if constraints == "bio":
            if self.tags is None:
                raise ShapeError("constraints: bio needs the data's tag names (a tagging data "
                                 "set such as conll or chunks)", scope=name)
            try:
                self.forbidden_transitions, self.forbidden_start = bio_forbidden(self.tags)
            except ValueError as err:
                raise ShapeError(f"constraints: bio: {err}", scope=name) from None

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.constraints, hints.get("tags"))

    def build(self, x: Tensor, rng) -> None:
        require_sequence(self, x)
        k = x.shape[-1]
        if self.tags is not None and len(self.tags) != k:
            raise ShapeError(f"the emissions have {k} scores per step but the data has "
                             f"{len(self.tags)} tags; the layer before the crf needs "
                             "units: classes", scope=self.name)
        rng = rng if rng is not None else np.random.default_rng(0)
        self.transitions = self._uniform("transitions", (k, k), rng, x.dtype)
        self.start = self._uniform("start", (k,), rng, x.dtype)
        self.end = self._uniform("end", (k,), rng, x.dtype)

    def _uniform(self, local: str, shape: tuple[int, ...], rng, dtype: str) -> Tensor:
        param = self.add_param(local, shape, "zeros", rng, dtype)
        self.initial[param.node.name] = rng.uniform(-INIT_RANGE, INIT_RANGE, shape).astype(dtype)
        return param

    def forward(self, x: Tensor, training: bool, mask=None) -> Tensor:
        return x

    # ---- the constrained scores (shared by the loss and Viterbi) ----------------------------
    def _penalties(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The constant added to the transitions and to the start scores (None: nothing)."""
        if self.forbidden_transitions is None:
            return None, None
        return (np.where(self.forbidden_transitions, FORBIDDEN, 0.0),
                np.where(self.forbidden_start, FORBIDDEN, 0.0))

    def _scores(self, dtype: str) -> tuple[Tensor, Tensor, Tensor]:
        trans_pen, start_pen = self._penalties()
        if trans_pen is None:
            return self.transitions, self.start, self.end
        return (self.transitions + Tensor(trans_pen.astype(dtype)),
                self.start + Tensor(start_pen.astype(dtype)), self.end)

    # ---- the loss ---------------------------------------------------------------------------
    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None) -> Tensor:
        """Mean over the batch's sequences of log Z - score(gold tags). emissions [B, T, K]
        float, tags [B, T] int (any value at padded steps), mask [B, T] (1 real, 0 padding,
        padding at the end, every sequence at least one real step) or None (all real)."""
        if emissions.ndim != 3 or tuple(tags.shape) != tuple(emissions.shape[:2]):
            raise ShapeError(f"crf nll needs emissions [batch, time, tags] and tags [batch, "
                             f"time], got {list(emissions.shape)} and {list(tags.shape)}",
                             scope=self.name)
        return (self.log_partition(emissions, mask) - self.path_score(emissions, tags, mask)
                ).mean()

    def log_partition(self, emissions: Tensor, mask: Tensor | None = None) -> Tensor:
        """log Z per sequence [B], by the forward algorithm (see the module docstring)."""
        trans, start, end = self._scores(emissions.dtype)
        steps = emissions.shape[1]
        alpha = start + emissions[:, 0]  # [B, K]
        for t in range(1, steps):
            # [B, K, 1] + [K, K]: from every tag i (axis 1) to every tag j (axis 2)
            new = (alpha[:, :, None] + trans).logsumexp(axis=1) + emissions[:, t]
            if mask is None:
                alpha = new
            else:
                m = mask[:, t:t + 1]  # [B, 1]: a padded step keeps alpha as it was
                alpha = m * new + (1.0 - m) * alpha
        return (alpha + end).logsumexp(axis=1)

    def path_score(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None) -> Tensor:
        """score(tags) per sequence [B]: gathers as one-hot products, so AD sends the
        gradient to exactly the emissions and transitions the path uses."""
        trans, start, end = self._scores(emissions.dtype)
        onehot = tags.one_hot(emissions.shape[-1], emissions.dtype)  # [B, T, K]
        emit = (emissions * onehot).sum(-1)  # [B, T]
        first = (onehot[:, 0] * start).sum(-1)  # [B]
        # end[y_t] at every step [B, T]; only each sequence's last real step counts
        ends = (onehot * end).sum(-1)
        if emissions.shape[1] > 1:
            # [B, T-1, K] @ [K, K] gives A[y_(t-1), :]; the one-hot of y_t picks the column
            moves = ((onehot[:, :-1] @ trans) * onehot[:, 1:]).sum(-1)  # [B, T-1]
        if mask is None:
            total = first + emit.sum(-1) + ends[:, -1]
            return total + moves.sum(-1) if emissions.shape[1] > 1 else total
        total = first + (emit * mask).sum(-1) + ends[:, -1] * mask[:, -1]
        if emissions.shape[1] > 1:
            # m_t - m_(t+1) is 1 exactly at a sequence's last real step (padding at the end)
            last = mask[:, :-1] - mask[:, 1:]
            total = total + (moves * mask[:, 1:]).sum(-1) + (ends[:, :-1] * last).sum(-1)
        return total

    # ---- decoding ---------------------------------------------------------------------------
    def decode(self, scores: np.ndarray, mask: np.ndarray | None,
               weights: dict[str, np.ndarray]) -> np.ndarray:
        """Viterbi: the highest-scoring tag path of each sequence, int64 [B, T], 0 at padded
        steps. `weights` holds the layer's parameters by full name (e.g. "crf_3.transitions")."""
        trans = np.asarray(weights[f"{self.name}.transitions"], dtype=np.float64)
        start = np.asarray(weights[f"{self.name}.start"], dtype=np.float64)
        end = np.asarray(weights[f"{self.name}.end"], dtype=np.float64)
        trans_pen, start_pen = self._penalties()
        if trans_pen is not None:
            trans, start = trans + trans_pen, start + start_pen
        return viterbi(np.asarray(scores, dtype=np.float64), mask, trans, start, end)


def viterbi(emissions: np.ndarray, mask: np.ndarray | None, trans: np.ndarray,
            start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Best paths int64 [B, T] for emissions [B, T, K] (padding at the end; 0 at padded
    steps); ties go to the lowest tag id (argmax's first)."""
    batch, steps, _ = emissions.shape
    lengths = (np.full(batch, steps) if mask is None
               else np.asarray(mask).sum(axis=1).round().astype(np.int64))
    rows = np.arange(batch)
    score = start + emissions[:, 0]  # [B, K]: the best path ending in each tag
    back = []  # back[t - 1][b, j]: the best previous tag of tag j at step t
    for t in range(1, steps):
        cand = score[:, :, None] + trans  # [B, from, to]
        best = cand.argmax(axis=1)
        new = cand[rows[:, None], best, np.arange(cand.shape[2])] + emissions[:, t]
        live = (t < lengths)[:, None]
        score = np.where(live, new, score)
        back.append(best)
    cur = (score + end).argmax(axis=1)  # each sequence's last tag
    path = np.zeros((batch, steps), dtype=np.int64)
    for t in range(steps - 1, -1, -1):
        live = t < lengths
        path[live, t] = cur[live]
        if t:
            cur = np.where(live, back[t - 1][rows, cur], cur)
    return path
