"""A trained sequence-to-sequence run, decoding: texts in, texts out (`nnctl translate`,
`nnctl predict` of texts), and the metrics of decoded sequences over a split of the run's data
(exact match, character error rate, BLEU), which teacher-forced scores cannot give.

The search (nnctl.decode) asks for the next token's log-probabilities after a batch of
prefixes. The model answers through Trainer.forward_arrays on [x, x_mask, decoder_input,
y_mask]: the prefix (BOS first) goes in as the decoder's input and the output at the prefix's
last position is the next token's scores. That reading is right because the decoder is
causal (a recurrent decoder, or a transformer decoder's masked self-attention): the output at
position t depends on the decoder's input up to t only, so whatever follows the prefix (PAD)
changes nothing. The decoder's input is always padded to the same length (the longest output
rounded up to a multiple of 8) and the sources to the run's pad_multiple, so a handful of
compiled plans serve every step; sources go in length order, many sources x beams per call.

Each step re-runs the encoder and the whole prefix: simple and exact, at a cost of
O(output length) model runs per sequence, fine for the short outputs this is for.
"""

from __future__ import annotations

import math

import numpy as np

from nnctl.data.batching import BOS, EOS, PAD, padded_length, steps_mask
from nnctl.decode import Decoded, beam_search, greedy
from nnctl.errors import DataError, UsageError, excerpt
from nnctl.text_metrics import bleu, char_error_rate, exact_match, token_accuracy

DECODER_MULTIPLE = 8  # the decoder's input is padded to a multiple of this (one plan)
LENGTH_PENALTY = 1.0  # alpha of beam search's log P / length ** alpha (fairseq's, HF's)
# never predicted: PAD and BOS are not targets (padding is masked out of the loss)
FORBIDDEN = (PAD, BOS)
DECODED = ("exact_match", "char_error_rate", "bleu", "decoded_token_accuracy")


def vocabularies(trainer):
    """(source vocabulary, target vocabulary) of a sequence-to-sequence run."""
    splits = trainer.splits
    info = splits.info
    if not splits.pairs or "input" not in info or "target" not in info:
        raise UsageError(f"this run's data ({trainer.spec.data.dataset}) are not sequence "
                         "pairs; translating needs a sequence-to-sequence run (e.g. dataset: "
                         "dates or text_pairs)")
    return info["input"], info["target"]


def encode_texts(trainer, texts: list[str], wheres: list[str] | None = None
                 ) -> list[np.ndarray]:
    """Source ids of each text with the run's vocabulary; a text that is empty, longer than
    the run's longest source, or (with data.unknown: error) holds an unknown token is a
    DataError naming the text: by wheres[i] (e.g. a file:line), else by its number (1 = the
    first)."""
    vocab, _ = vocabularies(trainer)
    limit = trainer.splits.train.x.shape[1]
    out = []
    for i, text in enumerate(texts, 1):
        where = f"{wheres[i - 1] if wheres else f'text {i}'} ({excerpt(text)})"
        ids = vocab.encode(text, where=where)
        if not len(ids):
            raise DataError("empty: nothing to translate", path=where)
        if len(ids) > limit:
            raise DataError(f"{len(ids)} tokens, more than the {limit} of the longest source "
                            "this run was trained on", path=where)
        out.append(ids)
    return out


def _check_options(beam: int, max_len: int | None, length_penalty: float) -> None:
    if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
        raise UsageError(f"--beam must be an integer >= 1, got {beam!r}")
    if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int)
                                or max_len < 1):
        raise UsageError(f"--max-len must be an integer >= 1, got {max_len!r}")
    if not math.isfinite(length_penalty):
        raise UsageError(f"--length-penalty must be a finite number, got {length_penalty}")


def default_max_len(trainer) -> int:
    """The longest target of the run's data, in tokens (EOS not counted)."""
    return max(int(trainer.splits.train.y.shape[1]) - 1, 1)


def decode_sources(trainer, sources: list[np.ndarray], beam: int = 1,
                   max_len: int | None = None,
                   length_penalty: float = LENGTH_PENALTY) -> list[Decoded]:
    """The search's answer for each source (int64 ids, no padding): greedy for beam 1, else
    beam search; at most max_len tokens besides EOS (default: the run's longest target)."""
    _check_options(beam, max_len, length_penalty)
    vocabularies(trainer)
    max_len = default_max_len(trainer) if max_len is None else max_len
    order = sorted(range(len(sources)), key=lambda i: (len(sources[i]), i))
    group = max(1, trainer.spec.train.eval_batch_size // beam)  # sources per search
    results: list[Decoded | None] = [None] * len(sources)
    for start in range(0, len(order), group):
        chosen = order[start:start + group]
        found = _search(trainer, [sources[i] for i in chosen], beam, max_len, length_penalty)
        for i, d in zip(chosen, found):
            results[i] = d
    return results


def _search(trainer, sources: list[np.ndarray], beam: int, max_len: int,
            length_penalty: float) -> list[Decoded]:
    """One search over a group of sources of similar lengths."""
    t = trainer.spec.train
    lengths = np.array([len(s) for s in sources])
    width = padded_length(lengths.max(), t.pad_multiple, trainer.splits.train.x.shape[1])
    x = np.full((len(sources), width), PAD, dtype=np.int64)
    for row, s in enumerate(sources):
        x[row, :len(s)] = s
    x_mask = steps_mask(lengths, width, t.dtype)
    # the longest prefix: BOS + max_len tokens (whose next token is the forced EOS)
    decoder_steps = -(-(max_len + 1) // DECODER_MULTIPLE) * DECODER_MULTIPLE

    def step(prefixes: np.ndarray, rows: np.ndarray) -> np.ndarray:
        m, filled = prefixes.shape
        decoder_input = np.full((m, decoder_steps), PAD, dtype=np.int64)
        decoder_input[:, :filled] = prefixes
        y_mask = steps_mask(np.full(m, filled), decoder_steps, t.dtype)
        parts = []
        for s in range(0, m, t.eval_batch_size):
            part = slice(s, s + t.eval_batch_size)
            scores = trainer.forward_arrays([x[rows[part]], x_mask[rows[part]],
                                             decoder_input[part], y_mask[part]])
            # the scores at the prefix's last position, copied: the output may be a view of
            # the plan's buffers, which the next call overwrites
            parts.append(np.array(scores[:, filled - 1, :], dtype=np.float64))
        out = np.concatenate(parts)
        out[:, list(FORBIDDEN)] = -np.inf  # the others' probabilities sum to 1
        logp = out - out.max(axis=1, keepdims=True)
        return logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))

    if beam == 1:
        return greedy(step, len(sources), max_len, BOS, EOS)
    return beam_search(step, len(sources), beam, max_len, BOS, EOS, length_penalty)


def translate_scored(trainer, texts: list[str], beam: int = 1, max_len: int | None = None,
                     length_penalty: float = LENGTH_PENALTY, wheres: list[str] | None = None
                     ) -> list[tuple[str, Decoded]]:
    """(translation, the search's answer with its log-probability and score) per text;
    `wheres` names each text in messages (default: text 1, text 2, ...)."""
    _check_options(beam, max_len, length_penalty)
    _, target = vocabularies(trainer)
    found = decode_sources(trainer, encode_texts(trainer, texts, wheres), beam, max_len,
                           length_penalty)
    return [(target.decode(np.asarray(d.tokens, dtype=np.int64)), d) for d in found]


def translate(trainer, texts: list[str], beam: int = 1, max_len: int | None = None,
              length_penalty: float = LENGTH_PENALTY, wheres: list[str] | None = None
              ) -> list[str]:
    """The translation of each text by the run's model (see the module docstring); `wheres`
    names each text in messages (e.g. file:line; default: text 1, text 2, ...)."""
    return [text for text, _ in translate_scored(trainer, texts, beam, max_len,
                                                 length_penalty, wheres)]


def decoded_metrics(trainer, split: str, metrics, beam: int = 1,
                    length_penalty: float = LENGTH_PENALTY) -> dict:
    """{split}_{metric} for each asked metric of DECODED, over the split's pairs, decoded by
    search: exact_match, char_error_rate and bleu (sacrebleu, characters as tokens) compare
    the decoded texts with the reference texts; decoded_token_accuracy compares token ids
    position by position with EOS appended to both sides (an output that runs on or stops
    early loses that position)."""
    unknown = [m for m in metrics if m not in DECODED]
    if unknown:
        raise ValueError(f"not metrics of decoded sequences: {unknown}; expected {DECODED}")
    _, target = vocabularies(trainer)
    data = getattr(trainer.splits, split)
    if not len(data) or not metrics:
        return {}
    sources = [data.x[i, :data.x_len[i]] for i in range(len(data))]
    references = []
    for i in range(len(data)):
        ref = data.y[i, :data.y_len[i]]
        references.append(ref[:-1] if len(ref) and ref[-1] == EOS else ref)
    max_len = max(default_max_len(trainer), max(len(r) for r in references))
    found = decode_sources(trainer, sources, beam, max_len, length_penalty)
    hyps = [target.decode(np.asarray(d.tokens, dtype=np.int64)) for d in found]
    refs = [target.decode(r) for r in references]
    result = {}
    for m in metrics:
        if m == "exact_match":
            value = exact_match(hyps, refs)
        elif m == "char_error_rate":
            value = char_error_rate(hyps, refs)
        elif m == "bleu":
            value = bleu(hyps, refs, tokenize="char")
        else:
            value = token_accuracy([list(d.tokens) + [EOS] for d in found],
                                   [r.tolist() + [EOS] for r in references])
        result[f"{split}_{m}"] = float(value)
    return result
