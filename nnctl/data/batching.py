"""Batches of padded sequences: length buckets, trimmed padding, masks, decoder inputs.

A data set of variable-length sequences is stored padded at the end to its longest sample
(token id PAD = 0), with each sample's real length beside it (Dataset.x_len / y_len). A
batch is cut back to its own longest sample, rounded up to a multiple of `multiple` steps,
so that a handful of padded lengths (and so of compiled plans) serve every batch. Training
batches are drawn length-bucketed, as torchtext's BucketIterator and fairseq do: a seeded
permutation is cut into pools of many batches, each pool sorted by length and cut into
batches, and the batches shuffled; padding stays small while the order stays random.
"""

from __future__ import annotations

import numpy as np

from nnctl.data.dataset import Dataset

PAD, UNK, BOS, EOS = 0, 1, 2, 3  # the special token ids of every token vocabulary
POOL = 50  # batches per sorting pool


def padded_length(longest: int, multiple: int, limit: int) -> int:
    """`longest` rounded up to a multiple of `multiple`, at most `limit`, at least 1."""
    return max(1, min(limit, -(-int(longest) // multiple) * multiple))


def bucket_batches(lengths: np.ndarray, batch_size: int, shuffle: bool,
                   rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Index arrays covering 0..n-1 once, each batch of similar lengths. Without shuffle
    (evaluation) the samples go in order of length, longest last, ties by index."""
    n = len(lengths)
    if not shuffle:
        order = np.argsort(lengths, kind="stable")
        return [order[s:s + batch_size] for s in range(0, n, batch_size)]
    order = rng.permutation(n)
    batches = []
    pool = batch_size * POOL
    for s in range(0, n, pool):
        chunk = order[s:s + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def steps_mask(lengths: np.ndarray, steps: int, dtype: str) -> np.ndarray:
    """[len(lengths), steps]: 1 where t < length, else 0."""
    return (np.arange(steps)[None, :] < np.asarray(lengths)[:, None]).astype(dtype)


def shift_right(y: np.ndarray, start: int = BOS) -> np.ndarray:
    """The decoder's input under teacher forcing: `start`, then y without its last step."""
    out = np.empty_like(y)
    out[:, 0] = start
    out[:, 1:] = y[:, :-1]
    return out


def batch_steps(data: Dataset, idx, multiple: int) -> tuple[int, ...]:
    """The padded lengths of a batch: () for fixed-size data, (x steps,) or (x steps, y
    steps) for padded sequences. Compiled plans are keyed by this."""
    if data.x_len is None:
        return ()
    tx = padded_length(data.x_len[idx].max(initial=1), multiple, data.x.shape[1])
    if data.y_len is None:
        return (tx,)
    return tx, padded_length(data.y_len[idx].max(initial=1), multiple, data.y.shape[1])


def batch_arrays(data: Dataset, idx, multiple: int, dtype: str,
                 extra: tuple[str, ...] = ()) -> list[np.ndarray]:
    """The host arrays of one batch in feed order: x, y, then for padded sequences x_mask,
    then for sequence pairs decoder_input and y_mask, then the named `extra` inputs in the
    order given (see StepBuilder.feeds)."""
    steps = batch_steps(data, idx, multiple)
    x, y = data.x[idx], data.y[idx]
    extras = [trim_extra(data, name, data.extra[name][idx], steps) for name in extra]
    if not steps:
        return [x, y, *extras]
    tx = steps[0]
    x = x[:, :tx]
    x_mask = steps_mask(data.x_len[idx], tx, dtype)
    if data.y_len is None:
        if y.ndim >= 2 and y.shape[1] == data.x.shape[1]:  # a label per step (tagging)
            y = y[:, :tx]
        return [x, y, x_mask, *extras]
    ty = steps[1]
    y = y[:, :ty]
    return [x, y, x_mask, shift_right(y), steps_mask(data.y_len[idx], ty, dtype), *extras]


def trim_extra(data: Dataset, name: str, array: np.ndarray, steps: tuple) -> np.ndarray:
    """An extra input of a batch cut, on the axes info["trim"][name] names, to the batch's
    padded length of x (a graph's adjacency [B, nodes, nodes] with its nodes)."""
    axes = data.info.get("trim", {}).get(name, ())
    if not steps or not axes:
        return array
    cut = tuple(slice(0, steps[0]) if a in axes else slice(None) for a in range(array.ndim))
    return array[cut]
