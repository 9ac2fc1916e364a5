"""The glue between a trained run and the search, on a stand-in trainer whose
forward_arrays is a hand-written causal "model": it knows each source's answer and scores the
answer's next token high after a prefix that follows the answer, every token alike otherwise."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from nnctl.data.batching import BOS, EOS, PAD, UNK
from nnctl.data.dataset import Dataset
from nnctl.data.tokens import TokenVocab, pad_ids
from nnctl.errors import DataError, UsageError
from nnctl.text_metrics import bleu
from nnctl.train.translate import decode_sources, decoded_metrics, translate, translate_scored

SOURCES = ["abc", "hello", "qab", "xy", "qq"]
REFERENCES = [s[::-1] for s in SOURCES]
ANSWERS = ["cba", "olleh", "baz", "yx", "qz"]  # what the model says: wrong on two
SURE = 5.0  # the logit of the answer's next token


class StandIn:
    """What translate needs of a Trainer: splits (train/val/test, info, pairs), spec.train,
    spec.data and forward_arrays."""

    def __init__(self, eval_batch_size=3, unknown="unk"):
        self.vocab = TokenVocab(sorted(set("".join(SOURCES + ANSWERS))), unknown=unknown)
        x, x_len = pad_ids([self.vocab.encode(s) for s in SOURCES])
        y, y_len = pad_ids([self.vocab.encode(s) for s in REFERENCES], end=EOS)
        data = Dataset(x, y, "toy", x_len=x_len, y_len=y_len,
                       info={"input": self.vocab, "target": self.vocab})
        self.splits = SimpleNamespace(train=data, val=data, test=data, info=data.info,
                                      pairs=True, padded=True)
        self.spec = SimpleNamespace(
            train=SimpleNamespace(eval_batch_size=eval_batch_size, pad_multiple=4,
                                  dtype="float64"),
            data=SimpleNamespace(dataset="toy"))
        self.answers = {tuple(self.vocab.encode(s)): self.vocab.encode(a).tolist() + [EOS]
                        for s, a in zip(SOURCES, ANSWERS)}
        self.shapes = set()
        self.arena = None  # like a compiled plan, the output lives in one reused buffer

    def forward_arrays(self, arrays):
        x, x_mask, decoder_input, y_mask = arrays
        assert x.dtype == np.int64 and decoder_input.dtype == np.int64
        assert x_mask.dtype == y_mask.dtype == np.float64
        assert len(x) <= self.spec.train.eval_batch_size
        n, steps = decoder_input.shape
        self.shapes.add((x.shape[1], steps))
        v = len(self.vocab)
        out = np.full((n, steps, v), np.nan)  # read where y_mask is 0: NaN gets through
        for i in range(n):
            source = tuple(x[i, :int(x_mask[i].sum())].tolist())
            assert (x[i, len(source):] == PAD).all()
            answer = self.answers.get(source, [EOS])
            for p in range(int(y_mask[i].sum())):
                out[i, p] = 0.0
                prefix = decoder_input[i, 1:p + 1].tolist()
                if decoder_input[i, 0] == BOS and prefix == answer[:p] and p < len(answer):
                    out[i, p, answer[p]] = SURE
        if self.arena is None or self.arena.shape[1:] != out.shape[1:]:
            self.arena = np.empty((self.spec.train.eval_batch_size,) + out.shape[1:])
        self.arena[:n] = out
        return self.arena[:n]


def test_greedy_and_beam_give_the_answers_with_their_log_probabilities():
    trainer = StandIn()
    # the answer's token against the V - 3 others that may be predicted (PAD, BOS never)
    step_logp = SURE - math.log(math.exp(SURE) + len(trainer.vocab) - 3)
    for beam in (1, 4):
        scored = translate_scored(trainer, SOURCES, beam=beam, length_penalty=0.0)
        assert [t for t, _ in scored] == ANSWERS
        for (_, d), answer in zip(scored, ANSWERS):
            assert d.log_prob == pytest.approx((len(answer) + 1) * step_logp, rel=1e-12)
    assert translate(trainer, ["qq", "abc"], beam=3) == ["qz", "cba"]


def test_one_decoder_length_and_few_source_lengths():
    trainer = StandIn()
    translate(trainer, SOURCES, beam=2)
    # targets of at most 5 tokens + EOS: the decoder's input is padded to 8 every time;
    # sources padded to a multiple of 4, capped at the run's longest (5)
    assert {t for _, t in trainer.shapes} == {8}
    assert {s for s, _ in trainer.shapes} <= {4, 5}


def test_max_len_cuts_the_output():
    trainer = StandIn()
    assert translate(trainer, ["hello", "xy"], max_len=2) == ["ol", "yx"]
    assert translate(trainer, ["hello"], beam=3, max_len=3) == ["oll"]


def test_decoded_metrics_by_hand():
    trainer = StandIn()
    metrics = ["exact_match", "char_error_rate", "decoded_token_accuracy"]
    got = decoded_metrics(trainer, "test", metrics)
    assert got["test_exact_match"] == pytest.approx(3 / 5)
    # one substitution in "baq" and one in "qq", over 3 + 5 + 3 + 2 + 2 reference characters
    assert got["test_char_error_rate"] == pytest.approx(2 / 15)
    # with EOS: 4 + 6 + 3 (b a . EOS) + 3 + 2 (q . EOS) right of 4 + 6 + 4 + 3 + 3
    assert got["test_decoded_token_accuracy"] == pytest.approx(18 / 20)
    assert set(got) == {f"test_{m}" for m in metrics}
    assert decoded_metrics(trainer, "val", ["exact_match"], beam=3) == {"val_exact_match": 0.6}


def test_decoded_bleu_is_sacrebleu_on_the_texts():
    sacrebleu = pytest.importorskip("sacrebleu")
    got = decoded_metrics(StandIn(), "test", ["bleu"])["test_bleu"]
    want = sacrebleu.corpus_bleu(ANSWERS, [REFERENCES], tokenize="char").score
    assert got == pytest.approx(want, rel=1e-12) and got == pytest.approx(bleu(ANSWERS,
                                                                           REFERENCES))


def test_bad_texts_are_one_line_naming_the_text():
    trainer = StandIn()
    with pytest.raises(DataError, match=r"^text 2 \('abcdef'\): 6 tokens, more than the 5"):
        translate(trainer, ["abc", "abcdef"])
    with pytest.raises(DataError, match=r"^text 1 \(''\): empty"):
        translate(trainer, [""])
    with pytest.raises(DataError, match=r"^in.txt:7 \(''\): empty"):
        translate(trainer, ["abc", ""], wheres=["in.txt:6", "in.txt:7"])
    strict = StandIn(unknown="error")
    with pytest.raises(DataError, match=r"^text 3 \('ab!'\): the char '!' is not in"):
        translate(strict, ["abc", "xy", "ab!"])
    # with unknown: unk the character reads as UNK and decoding goes on
    assert decode_sources(trainer, [np.array([UNK], dtype=np.int64)], max_len=2)[0].tokens \
        is not None


def test_bad_options_and_runs_that_are_not_pairs():
    trainer = StandIn()
    for kwargs, match in (({"beam": 0}, "--beam"), ({"max_len": 0}, "--max-len"),
                          ({"length_penalty": float("nan")}, "--length-penalty")):
        with pytest.raises(UsageError, match=match):
            translate(trainer, ["abc"], **kwargs)
    trainer.splits.pairs = False
    with pytest.raises(UsageError, match="not sequence pairs"):
        translate(trainer, ["abc"])
    with pytest.raises(ValueError, match="not metrics of decoded"):
        decoded_metrics(StandIn(), "test", ["accuracy"])
