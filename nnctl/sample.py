"""Sample text from a trained character-level language model's run folder.

The model is rebuilt from the run's resolved config and weights, compiled once for a batch
of one window of `seq_len` characters, and run once per generated character: the window is
the last `seq_len` characters so far (left-padded with the boundary character), and the next
character is drawn from the softmax of the last position's logits at a temperature.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.config import load_config
from nnctl.data import Vocabulary
from nnctl.errors import DataError, UsageError
from nnctl.step import prepare


def _read_json(path: Path):
    import json
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError("no such file; is this a run folder of a text model?",
                        path=str(path)) from None
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"not valid JSON ({err})", path=str(path)) from None


def load_run_weights(path: Path) -> dict:
    """Arrays of a run's weights.npz; never unpickles."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise DataError("no such file; the run folder has no weights", path=str(path)) from None
    except (OSError, ValueError) as err:
        raise DataError(f"unreadable weights ({err})", path=str(path)) from None


def sample_text(run_dir: Path, length: int = 200, prompt: str = "", temperature: float = 1.0,
                seed: int = 0) -> str:
    """`prompt` followed by `length` sampled characters."""
    if temperature <= 0:
        raise UsageError(f"--temperature must be > 0, got {temperature}")
    config = load_config(run_dir / "config.yaml")
    if config.spec.data.dataset != "words":
        raise UsageError(f"{run_dir} is a run of a {config.spec.data.dataset!r} model; "
                         "sampling needs a character-level language model (dataset: words)")
    vocab = Vocabulary.from_dict(_read_json(run_dir / "vocab.json"))
    weights = load_run_weights(run_dir / "weights.npz")
    splits, builder = prepare(config)
    missing = [k for k in [*builder.params, *builder.states] if k not in weights]
    if missing:
        raise DataError(f"weights.npz lacks {', '.join(missing)}; it does not belong to this "
                        "config", path=str(run_dir / "weights.npz"))
    seq_len = splits.train.x.shape[1]
    backend = get_backend("cpu")
    x, _, out = builder.build_forward(1, training=False)
    feeds = [x, *builder.params.values(), *builder.states.values()]
    plan = compile_graph([out], feeds, backend)
    arrays = [weights[k] for k in [*builder.params, *builder.states]]

    ids = list(vocab.encode(prompt)) if prompt else []
    rng = np.random.default_rng(seed)
    boundary = vocab.encode("\n")[0]
    for _ in range(length):
        window = ([boundary] * seq_len + ids)[-seq_len:]
        (logits,) = plan([np.asarray([window], dtype=np.int64), *arrays])
        z = logits[0, -1].astype(np.float64) / temperature
        p = np.exp(z - z.max())
        ids.append(int(rng.choice(len(p), p=p / p.sum())))
    return vocab.decode(np.asarray(ids, dtype=np.int64))
