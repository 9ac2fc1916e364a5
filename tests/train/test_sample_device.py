"""Sampling on the device (nnctl/train/sample.py): the draw is NumPy's Generator.choice
written out in array-module calls, so the CPU's text is what choice gives, and on a backend
whose reads wait for the device (the strict backend stands in for CuPy) the text is the same
and the host reads the characters once, however many there are."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from nnctl.backend import get_backend
from nnctl.backend.strict import StrictArray, StrictBackend
from nnctl.config import load_config
from nnctl.data import Vocabulary
from nnctl.train.inference import load_run
from nnctl.train.sample import sample_text
from nnctl.train.trainer import Trainer


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chars")
    (folder / "words.txt").write_text("\n".join(["cat", "car", "cart", "dog", "door", "dot"]
                                                * 30) + "\n")
    (folder / "chars.yaml").write_text(yaml.safe_dump({
        "data": {"dataset": "words", "path": "words.txt", "seq_len": 6},
        "model": {"layers": [{"embedding": {"dim": 8}},
                             {"gru": {"units": 16, "return_sequences": True}},
                             {"dense": {"units": "classes"}}]},
        "loss": "cross_entropy", "metrics": ["accuracy"],
        "optimizer": {"name": "adam", "lr": 0.01}, "train": {"epochs": 3, "batch_size": 16}}))
    Trainer(load_config(folder / "chars.yaml"), get_backend("cpu"), out=folder / "runs").fit()
    (path,) = list((folder / "runs").iterdir())
    return path


def _with_choice(run_dir, length, prompt, temperature, seed) -> str:
    """The sampler as it was written before the device path: Generator.choice per step."""
    import json
    vocab = Vocabulary.from_dict(json.loads((run_dir / "vocab.json").read_text()))
    trainer = load_run(run_dir, get_backend("cpu"))
    seq_len = trainer.splits.train.x.shape[1]
    ids = list(vocab.encode(prompt))
    rng = np.random.default_rng(seed)
    boundary = vocab.encode("\n")[0]
    for _ in range(length):
        window = ([boundary] * seq_len + ids)[-seq_len:]
        logits = trainer.forward(np.asarray([window], dtype=np.int64))
        z = logits[0, -1].astype(np.float64) / temperature
        p = np.exp(z - z.max())
        ids.append(int(rng.choice(len(p), p=p / p.sum())))
    return vocab.decode(np.asarray(ids, dtype=np.int64))


@pytest.mark.parametrize("temperature, seed", [(1.0, 0), (0.7, 3), (2.0, 11)])
def test_the_cpu_draws_what_generator_choice_draws(run, temperature, seed):
    assert sample_text(run, 40, "ca", temperature, seed) == \
        _with_choice(run, 40, "ca", temperature, seed)


def test_the_device_draws_the_same_text_and_reads_it_once(run):
    reads = {}
    texts = {}
    for length in (5, 40):
        before = StrictArray.host_reads
        texts[length] = sample_text(run, length, "do", 1.0, 7, backend=StrictBackend())
        reads[length] = StrictArray.host_reads - before
    assert texts[40] == sample_text(run, 40, "do", 1.0, 7)
    assert texts[5] == texts[40][:7]
    assert reads[5] == reads[40] == 1  # the characters, at the end
