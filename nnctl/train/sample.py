"""Sample text from a trained character-level language model's run folder.

The run's model is loaded with its weights (`load_run`) and run once per generated
character on a window of the last `seq_len` characters so far (left-padded with the boundary
character); the next character is drawn from the softmax of the last position's logits at a
temperature.

The draw stays on the device (`--device cuda`): the softmax, its cumulative sum and the
search for the drawn character are array-module calls, the window moves on on the device,
and the host reads the characters once, at the end. It is NumPy's Generator.choice written
out (the cumulative sum of the probabilities, normalised by its last entry, searched for a
uniform draw from the right), with the uniforms drawn up front from the same seeded NumPy
stream, so a seed gives the same text on either device (up to float rounding at a tie).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from nnctl.backend import get_backend
from nnctl.config import load_config
from nnctl.data import Vocabulary
from nnctl.errors import DataError, UsageError
from nnctl.train.inference import load_run


def _read_vocab(path: Path) -> Vocabulary:
    try:
        return Vocabulary.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise DataError("no such file; is this a run folder of a text model?",
                        path=str(path)) from None
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"not valid JSON ({err})", path=str(path)) from None


def sample_text(run_dir: Path, length: int = 200, prompt: str = "", temperature: float = 1.0,
                seed: int = 0, device: str = "cpu", backend=None) -> str:
    """`prompt` followed by `length` sampled characters, drawn on `device` (or `backend`)."""
    # NaN passes `<= 0` and would reach the sampler as NaN probabilities: test what is wanted
    if not (math.isfinite(temperature) and temperature > 0):
        raise UsageError(f"--temperature must be a finite number > 0, got {temperature}")
    if (run_dir / "config.yaml").is_file():
        dataset = load_config(run_dir / "config.yaml").spec.data.dataset
        if dataset != "words":
            raise UsageError(f"{run_dir} is a run of a {dataset!r} model; sampling needs a "
                             "character-level language model (dataset: words)")
    vocab = _read_vocab(run_dir / "vocab.json")
    backend = backend or get_backend(device)
    xp = backend.xp
    trainer = load_run(run_dir, backend)
    seq_len = trainer.splits.train.x.shape[1]
    ids = list(vocab.encode(prompt)) if prompt else []
    boundary = vocab.encode("\n")[0]
    window = backend.asarray(np.asarray([([boundary] * seq_len + ids)[-seq_len:]], np.int64))
    # one uniform per character, as Generator.choice would draw them one by one
    uniforms = backend.asarray(np.random.default_rng(seed).random(length))
    drawn = xp.empty((length, 1), dtype=xp.int64)
    for k in range(length):
        logits = trainer.forward_on_device([window])
        z = logits[0, -1].astype(xp.float64) / temperature
        p = xp.exp(z - z.max())
        cdf = xp.cumsum(p / p.sum())
        cdf /= cdf[-1]
        drawn[k] = xp.searchsorted(cdf, uniforms[k:k + 1], side="right")
        window = xp.concatenate([window[:, 1:], drawn[k:k + 1]], axis=1)
    ids += backend.to_host(drawn).reshape(-1).tolist()
    return vocab.decode(np.asarray(ids, dtype=np.int64))
