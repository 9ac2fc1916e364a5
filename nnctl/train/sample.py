"""Sample text from a trained character-level language model's run folder.

The run's model is loaded with its weights (`load_run`) and run once per generated
character on a window of the last `seq_len` characters so far (left-padded with the boundary
character); the next character is drawn from the softmax of the last position's logits at a
temperature.
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
                seed: int = 0) -> str:
    """`prompt` followed by `length` sampled characters."""
    # NaN passes `<= 0` and would reach the sampler as NaN probabilities: test what is wanted
    if not (math.isfinite(temperature) and temperature > 0):
        raise UsageError(f"--temperature must be a finite number > 0, got {temperature}")
    if (run_dir / "config.yaml").is_file():
        dataset = load_config(run_dir / "config.yaml").spec.data.dataset
        if dataset != "words":
            raise UsageError(f"{run_dir} is a run of a {dataset!r} model; sampling needs a "
                             "character-level language model (dataset: words)")
    vocab = _read_vocab(run_dir / "vocab.json")
    backend = get_backend("cpu")
    trainer = load_run(run_dir, backend)
    seq_len = trainer.splits.train.x.shape[1]
    ids = list(vocab.encode(prompt)) if prompt else []
    rng = np.random.default_rng(seed)
    boundary = vocab.encode("\n")[0]
    for _ in range(length):
        window = ([boundary] * seq_len + ids)[-seq_len:]
        logits = backend.to_host(trainer.forward(np.asarray([window], dtype=np.int64)))
        z = logits[0, -1].astype(np.float64) / temperature
        p = np.exp(z - z.max())
        ids.append(int(rng.choice(len(p), p=p / p.sum())))
    return vocab.decode(np.asarray(ids, dtype=np.int64))
