"""Tagging data (a tag per token): CoNLL-style files and generated BIO chunks.

Both kinds give x int64 [N, T] word ids padded at the end with PAD = 0, y int64 [N, T] tag
ids (0 at padded steps, which the mask leaves out anyway), x_len (N,) the sentences' lengths,
info["input"] the word vocabulary (a word-level nnctl.data.tokens.TokenVocab: PAD 0, UNK 1, BOS 2,
EOS 3, then the words by frequency) and info["tags"] the tag names in id order.

The word vocabulary is built from the training split only, so that validation and test words
never seen in training are UNK, as they would be for new text. The trainer splits the samples
later (nnctl.step.load_splits); nnctl.data.tokens.training_indices repeats that seeded split
(unstratified: the labels are 2-D) to know which samples it puts in train.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from nnctl.data.batching import PAD
from nnctl.data.dataset import Dataset
from nnctl.data.kinds import register_loader
from nnctl.data.tokens import TokenVocab, training_indices
from nnctl.data.text import read_utf8
from nnctl.errors import DataError

DOCSTART = "-DOCSTART-"  # CoNLL-2003's document separator line, skipped


def word_vocabulary(sentences: list[list[str]], min_count: int = 1,
                    lowercase: bool = False) -> TokenVocab:
    """The words of `sentences` (lists of words without whitespace) as a word-level TokenVocab,
    so that `predict` reads new text the same way (a line split at whitespace)."""
    return TokenVocab.build((" ".join(s) for s in sentences), "words", lowercase, min_count)


def order_tags(tags) -> list[str]:
    """Tag names in id order: "O" first (so the padding id 0 is a real tag, O), then by chunk
    type, B- before I-; tags without a BIO prefix sort by name."""
    def key(tag: str):
        if tag[:2] in ("B-", "I-"):
            return (tag[2:], tag[0])
        return (tag, "")
    names = set(tags)
    return (["O"] if "O" in names else []) + sorted(names - {"O"}, key=key)


def encode_tagged(sentences: list[list[str]], tag_seqs: list[list[str]], vocab: TokenVocab,
                  tags: list[str], name: str) -> Dataset:
    """Padded arrays of tagged sentences (see the module docstring)."""
    n, longest = len(sentences), max((len(s) for s in sentences), default=1)
    x = np.full((n, longest), PAD, dtype=np.int64)
    y = np.zeros((n, longest), dtype=np.int64)
    tag_id = {t: i for i, t in enumerate(tags)}
    for i, (words, seq) in enumerate(zip(sentences, tag_seqs)):
        x[i, :len(words)] = vocab.encode(" ".join(words))
        y[i, :len(seq)] = [tag_id[t] for t in seq]
    x_len = np.array([len(s) for s in sentences], dtype=np.int64)
    return Dataset(x, y, name, x_len=x_len, info={"input": vocab, "tags": list(tags)})


# ---- CoNLL files ------------------------------------------------------------------------------

def read_conll(path, max_len: int | None = None,
               truncate: bool = False) -> tuple[list[list[str]], list[list[str]]]:
    """(sentences, tag sequences) of a CoNLL-style file: one token per line, the token in the
    first column and its tag in the last (whitespace or tabs between), a blank line between
    sentences; -DOCSTART- lines are skipped. A sentence longer than `max_len` is a DataError
    naming the line it starts on, or is cut to max_len with truncate."""
    p = Path(path)
    text = read_utf8(p)  # missing, unreadable or not UTF-8: one DataError naming the line
    sentences, tag_seqs, words, tags, first = [], [], [], [], 0

    def close() -> None:
        if not words:
            return
        if max_len is not None and len(words) > max_len:
            if not truncate:
                raise DataError(f"sentence of {len(words)} tokens is longer than max_len "
                                f"{max_len} (raise max_len, or set truncate: true)",
                                path=f"{p}:{first}")
            del words[max_len:], tags[max_len:]
        sentences.append(list(words))
        tag_seqs.append(list(tags))
        words.clear()
        tags.clear()

    for number, line in enumerate(text.splitlines(), start=1):
        columns = line.split()
        if not columns:
            close()
            continue
        if columns[0] == DOCSTART:
            close()
            continue
        if len(columns) < 2:
            raise DataError(f"expected a token and its tag (at least two columns), got "
                            f"{line.strip()!r}", path=f"{p}:{number}")
        if not words:
            first = number
        words.append(columns[0])
        tags.append(columns[-1])
    close()
    if not sentences:
        raise DataError("no sentences; expected lines of 'token ... tag', sentences separated "
                        "by blank lines", path=str(p))
    return sentences, tag_seqs


@register_loader("conll")
def load_conll(spec, seed: int, dtype: str) -> Dataset:
    """`dataset: conll`: the file's sentences; words from the training split only (those
    seen fewer than min_count times there are UNK); tags from the whole file."""
    sentences, tag_seqs = read_conll(spec.path, spec.max_len, spec.truncate)
    train = training_indices(len(sentences), None, spec.split, seed, stratify=False)
    vocab = word_vocabulary([sentences[i] for i in train], spec.min_count, spec.lowercase)
    tags = order_tags(t for seq in tag_seqs for t in seq)
    return encode_tagged(sentences, tag_seqs, vocab, tags, Path(spec.path).stem)


# ---- generated chunks -------------------------------------------------------------------------

# A toy chunking grammar in which the type of a chunk is often decided only by its last word.
# A noun chunk is [determiner] modifier* noun, a verb chunk [auxiliary] modifier* verb, with
# the same modifiers in both ("fast", "still", ...). Chunks follow each other in random order,
# so when a chunk begins with a modifier nothing to its left tells NP from VP: a left-to-right
# encoder must guess the tags of the modifiers, and a per-token softmax writes B-NP I-VP and
# such; a CRF lets the confident head word's tag decide its modifiers' tags through the
# transitions (I-NP cannot follow B-VP).
DETERMINERS = ("the", "a", "this", "that", "every", "some", "no", "each")
AUXILIARIES = ("will", "can", "must", "did", "may", "should")
MODIFIERS = ("fast", "well", "still", "right", "hard", "early", "late", "high", "low", "free",
             "clean", "open", "close", "quick", "slow", "light", "fair", "deep", "loud",
             "clear", "short", "long", "sharp", "flat")
NOUNS = ("dog", "cat", "house", "river", "tree", "car", "book", "table", "city", "road",
         "child", "bird", "stone", "ship", "garden", "window", "door", "horse", "letter",
         "song", "field", "hill", "lamp", "chair", "storm", "cloud", "bridge", "wall",
         "market", "train", "island", "forest", "village", "tower", "engine", "coat", "friend",
         "teacher", "farmer", "king")
VERBS = ("runs", "sleeps", "eats", "sings", "falls", "grows", "waits", "jumps", "reads",
         "writes", "swims", "flies", "walks", "talks", "breaks", "burns", "shines", "turns",
         "moves", "stops", "starts", "works", "plays", "rests", "calls", "opens", "closes",
         "climbs", "drives", "sails", "builds", "paints", "cooks", "laughs", "cries", "hides",
         "wins", "loses", "learns", "dances")
PREPOSITIONS = ("in", "on", "under", "near", "over", "with", "behind", "across")
JOINERS = (",", "and", "or", "but", ";")
DEFAULT_SPLIT = SimpleNamespace(val=0.15, test=0.15)  # the config's default data.split


KINDS = ("NP", "VP", "PP", "O")
KIND_ODDS = np.cumsum([0.35, 0.35, 0.15, 0.15])  # how often each kind of chunk comes next
MODIFIER_ODDS = np.cumsum([0.2, 0.35, 0.3, 0.15])  # of 0, 1, 2, 3 modifiers before a head


def _draw(odds: np.ndarray, rng: np.random.Generator) -> int:
    """An index drawn with the probabilities whose running sums are `odds`."""
    return min(int(np.searchsorted(odds, rng.random(), side="right")), len(odds) - 1)


def _pick(words: tuple[str, ...], rng: np.random.Generator) -> str:
    return words[int(rng.integers(len(words)))]  # (rng.choice converts the tuple each call)


def _chunk(kind: str, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """One chunk's words and tags: NP, VP, PP (a preposition, then a noun chunk) or O."""
    if kind == "O":
        return [_pick(JOINERS, rng)], ["O"]
    if kind == "PP":
        words, tags = _chunk("NP", rng)
        return [_pick(PREPOSITIONS, rng)] + words, ["B-PP"] + tags
    opener, head = (DETERMINERS, NOUNS) if kind == "NP" else (AUXILIARIES, VERBS)
    words = [_pick(opener, rng)] if rng.random() < 0.35 else []
    modifiers = _draw(MODIFIER_ODDS, rng)
    words += [_pick(MODIFIERS, rng) for _ in range(modifiers)]
    words.append(_pick(head, rng))
    return words, [f"B-{kind}"] + [f"I-{kind}"] * (len(words) - 1)


def chunk_sentence(rng: np.random.Generator, min_len: int,
                   max_len: int) -> tuple[list[str], list[str]]:
    """Chunks in random order until the sentence has at least `min_len` words, then ".";
    drawn again if it came out longer than `max_len`."""
    while True:
        words, tags = [], []
        while len(words) + 1 < min_len:
            kind = KINDS[_draw(KIND_ODDS, rng)]
            w, t = _chunk(kind, rng)
            words += w
            tags += t
        words.append(".")
        tags.append("O")
        if len(words) <= max_len:
            return words, tags


def make_chunks(samples: int, min_len: int = 5, max_len: int = 25, seed: int = 0,
                split=None) -> Dataset:
    """`samples` generated sentences of min_len..max_len words with BIO chunk tags (NP, VP,
    PP, O); the target length of each is uniform in [min_len, max_len]. The word vocabulary
    comes from the training split of the seeded split the trainer makes with `split` (an
    object with .val and .test fractions; default 0.15 and 0.15, the config's default)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 9]))  # the data's own stream
    sentences, tag_seqs = [], []
    for _ in range(samples):
        words, tags = chunk_sentence(rng, int(rng.integers(min_len, max_len + 1)), max_len)
        sentences.append(words)
        tag_seqs.append(tags)
    train = training_indices(samples, None, split or DEFAULT_SPLIT, seed, stratify=False)
    vocab = word_vocabulary([sentences[i] for i in train])
    tags = order_tags(t for seq in tag_seqs for t in seq)
    return encode_tagged(sentences, tag_seqs, vocab, tags, "chunks")


@register_loader("chunks")
def load_chunks(spec, seed: int, dtype: str) -> Dataset:
    """`dataset: chunks`: generated BIO chunks, seeded by the config's seed."""
    return make_chunks(spec.samples, spec.min_len, spec.max_len, seed, spec.split)
