"""End-to-end training on padded sequences (the test-only kinds of tests/train/padded_kind.py).

The trainer cuts each length-bucketed batch to its longest sample rounded up to
train.pad_multiple and compiles one plan per padded length; the loss and metrics count the
real steps only. Checked here: the plans compiled, the metrics and a falling loss, that
widening the padding changes no number (float64), masked accuracy against the outputs by
hand, a mid-epoch interrupt and resume equal to a straight run byte for byte, the gradient of
the PAD embedding row, `check_model` (gradcheck) and export-graph on the same configs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.config import load_config
from nnctl.data.batching import batch_arrays, batch_steps
from nnctl.export import export_graph
from nnctl.gradcheck import check_model
from nnctl.train.events import TrainerEvents
from nnctl.train.trainer import Interrupted, Trainer

try:  # registers the test data kinds; `pytest` puts tests/train itself on sys.path
    import padded_kind
except ImportError:
    from tests.train import padded_kind

CPU = get_backend("cpu")


@pytest.fixture(autouse=True, scope="module")
def test_kinds():
    padded_kind.register()
    yield
    padded_kind.unregister()

COUNTS = """\
seed: 3
data: {{dataset: test_padded_toy, samples: 120, min_len: 2, max_len: 14,
        extra_padding: {extra}}}
model:
  layers:
    - embedding: {{dim: 8}}
{middle}    - lstm: {{units: 12}}
    - dense: {{units: classes}}
loss: cross_entropy
optimizer: {{name: adam, lr: 0.03}}
train: {{epochs: {epochs}, batch_size: 16, eval_batch_size: 4, pad_multiple: 4,
        dtype: {dtype}}}
"""

TAGS = """\
seed: 5
data: {{dataset: test_padded_tags, samples: 100, min_len: 1, max_len: 11,
        extra_padding: {extra}}}
model:
  layers:
    - embedding: {{dim: 6}}
    - gru: {{units: 10, return_sequences: true}}
    - dense: {{units: classes}}
loss: cross_entropy
optimizer: {{name: adam, lr: 0.03}}
train: {{epochs: {epochs}, batch_size: 16, pad_multiple: 4, dtype: {dtype}}}
"""


def config(tmp_path, template, name="c", extra=0, epochs=3, dtype="float64", middle=""):
    path = tmp_path / f"{name}.yaml"
    path.write_text(template.format(extra=extra, epochs=epochs, dtype=dtype, middle=middle))
    return load_config(path)


class Records(TrainerEvents):
    """Keeps every epoch's record, without the timings."""

    def __init__(self):
        self.records = []

    def on_epoch_end(self, record):
        self.records.append({k: v for k, v in record.items()
                             if k not in ("seconds", "samples_per_s")})


def train(cfg, out=None, epochs=None):
    events = Records()
    trainer = Trainer(cfg, CPU, events=events, out=out, epochs=epochs)
    summary = trainer.fit()
    return trainer, events.records, summary


def assert_close_numbers(a: dict, b: dict, rtol: float) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        if isinstance(a[key], float):
            assert b[key] == pytest.approx(a[key], rel=rtol, abs=1e-300), key
        elif isinstance(a[key], (int, str)):
            assert a[key] == b[key], key


# ---- training: plans, metrics, loss ----------------------------------------------------------

@pytest.fixture(scope="module")
def counts_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("counts")
    return train(config(tmp, COUNTS, epochs=6))


def test_one_plan_per_padded_length(counts_run):
    trainer, records, summary = counts_run
    # lengths 2..14 rounded up to multiples of 4, the widest capped at the data's 14 steps;
    # (14,) is also the full length the run starts from
    assert set(trainer._train_plans) == {(4,), (8,), (12,), (14,)}
    # evaluation goes through val and test in order of length, 4 at a time
    expected = set()
    for part in (trainer.splits.val, trainer.splits.test):
        ordered = np.sort(part.x_len)
        expected |= {(min(14, -(-int(ordered[s:s + 4].max()) // 4) * 4),)
                     for s in range(0, len(ordered), 4)}
    assert set(trainer._eval_plans) == expected and len(expected) >= 3
    plans = list(trainer._train_plans.values())
    assert len({id(p) for p in plans}) == len(plans)


def test_metrics_exist_and_the_loss_falls(counts_run):
    trainer, records, summary = counts_run
    assert [r["epoch"] for r in records] == list(range(1, 7))
    for r in records:
        assert {"train_loss", "val_loss", "val_accuracy", "val_f1_macro", "lr"} <= set(r)
        assert all(math.isfinite(v) for v in r.values() if isinstance(v, float))
    assert summary["status"] == "completed"
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and math.isfinite(summary["test_loss"])
    losses = [r["train_loss"] for r in records]
    assert losses[-1] < 0.8 * losses[0], losses
    assert records[-1]["val_loss"] < records[0]["val_loss"]


# ---- padding changes nothing ------------------------------------------------------------------

@pytest.mark.parametrize("template", [COUNTS, TAGS], ids=["counts_lstm", "tags_gru"])
def test_wider_padding_gives_the_same_numbers(tmp_path, template):
    # the same samples with 9 more PAD steps each: other padded lengths (16 where 14 was
    # the cap, a full width of 23), so other plans, but the real steps are the same.
    # Measured: metrics within 2.3e-16 relative, weights within 3.6e-16 of their largest
    # element, after 3 epochs of Adam
    a_trainer, a_records, a_summary = train(config(tmp_path, template, "a", extra=0))
    b_trainer, b_records, b_summary = train(config(tmp_path, template, "b", extra=9))
    assert set(a_trainer._train_plans) != set(b_trainer._train_plans)
    for ra, rb in zip(a_records, b_records, strict=True):
        assert_close_numbers(ra, rb, rtol=1e-12)
    skip = ("train_seconds", "config")  # the config files' names differ
    assert_close_numbers({k: v for k, v in a_summary.items() if k not in skip},
                         {k: v for k, v in b_summary.items() if k not in skip}, 1e-12)
    wa, wb = a_trainer.weights(), b_trainer.weights()
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], rtol=1e-11, atol=1e-13, err_msg=name)


def test_tagging_accuracy_counts_the_real_steps_only(tmp_path):
    trainer, records, summary = train(config(tmp_path, TAGS, epochs=4))
    losses = [r["train_loss"] for r in records]
    assert losses[-1] < 0.8 * losses[0], losses
    val = trainer.splits.val
    # by hand: each sample alone, its real steps: argmax of the scores, and cross-entropy
    # summed over every real step of the split, divided by their number
    hits = steps = 0
    nll = 0.0
    for i in range(len(val)):
        x, _, mask = batch_arrays(val, np.array([i]), 1, "float64")
        n = int(val.x_len[i])
        assert x.shape == (1, n)
        scores = trainer.forward_arrays([x, mask])[0]
        hits += int((scores.argmax(-1) == val.y[i, :n]).sum())
        z = scores - scores.max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        nll -= float(logp[np.arange(n), val.y[i, :n]].sum())
        steps += n
    assert steps == int(val.x_len.sum()) < val.x.size
    measured = trainer.evaluate("val")  # in batches of 4 padded to their longest
    assert measured["val_accuracy"] == pytest.approx(hits / steps, abs=1e-12)
    assert measured["val_loss"] == pytest.approx(nll / steps, rel=1e-12)
    assert measured["val_accuracy"] == pytest.approx(records[-1]["val_accuracy"], abs=1e-12)


# ---- resume -----------------------------------------------------------------------------------

class StopAt(Records):
    """Asks the trainer to stop after a given step, as a first Ctrl-C would."""

    def __init__(self, epoch, step):
        super().__init__()
        self.at, self.trainer = (epoch, step), None

    def on_step(self, epoch, step, steps, loss, metric, samples_per_s):
        if (epoch, step) == self.at:
            self.trainer._stop_requested = True


def only(folder: Path) -> Path:
    (run,) = list(folder.iterdir())
    return run


def test_a_mid_epoch_interrupt_resumes_byte_identical(tmp_path):
    # dropout and Adam: every random and optimizer state has to come back, and the bucketed
    # order of the interrupted epoch has to be replayed with its first steps skipped
    cfg = config(tmp_path, COUNTS, epochs=3, dtype="float32",
                 middle="    - dropout: 0.2\n")
    train(cfg, out=tmp_path / "straight")
    stop = StopAt(2, 3)
    cut = Trainer(cfg, CPU, events=stop, out=tmp_path / "cut")
    stop.trainer = cut
    with pytest.raises(Interrupted, match="interrupted after epoch 2, step 3"):
        cut.fit()
    run = only(tmp_path / "cut")
    from nnctl.train.checkpoint import load_checkpoint
    _, meta = load_checkpoint(run / "checkpoint.npz")
    assert (meta["epoch"], meta["step_in_epoch"]) == (2, 3)
    resumed = Trainer(cfg, CPU, resume=run)
    resumed.fit()
    straight = only(tmp_path / "straight")
    assert (run / "metrics.jsonl").read_bytes() == (straight / "metrics.jsonl").read_bytes()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    wa, wb = np.load(straight / "weights.npz"), np.load(run / "weights.npz")
    assert sorted(wa.files) == sorted(wb.files) and wa.files
    for k in wa.files:
        assert np.array_equal(wa[k], wb[k]), k


# ---- gradients, gradcheck, export -------------------------------------------------------------

def test_no_gradient_reaches_the_pad_embedding_row(tmp_path):
    # PAD appears only at padded steps, which the lstm's mask skips: the training step's
    # gradient of its embedding row is exactly 0, while the real tokens' rows get one
    from nnctl.step import prepare
    splits, builder = prepare(config(tmp_path, COUNTS))
    idx = np.argsort(splits.train.x_len)[::7][:8]  # short and long samples together
    steps = batch_steps(splits.train, idx, 4)
    outputs, feeds = builder.training_step(len(idx), steps)
    params = list(builder.params)
    values = [builder.model.initial[k] for k in params]
    outs = compile_graph(outputs, feeds, CPU)(
        [*batch_arrays(splits.train, idx, 4, "float64"), *values])
    (table,) = [g for k, g in zip(params, outs[2:]) if k.startswith("embedding")]
    assert table.shape == (10, 8)
    assert np.all(table[0] == 0.0)          # PAD
    assert np.all(table[1:4] == 0.0)        # UNK, BOS, EOS never occur
    assert np.all(np.abs(table[4:]).sum(1) > 0)


@pytest.mark.parametrize("template", [COUNTS, TAGS], ids=["counts_lstm", "tags_gru"])
def test_gradcheck_passes_on_a_padded_batch(tmp_path, template):
    cfg = config(tmp_path, template, dtype="float32")  # check_model runs in float64 anyway
    rows = check_model(cfg, batch=4, directions=3)
    names = {r.name for r in rows}
    assert any(n.startswith("embedding") for n in names) and len(names) >= 4
    assert all(r.passed for r in rows), [(r.name, r.detail) for r in rows if not r.passed]
    assert max(r.max_rel for r in rows) < 1e-5


def test_the_cli_gradchecks_and_exports_a_padded_config(tmp_path):
    from typer.testing import CliRunner

    from nnctl.cli.app import app
    path = tmp_path / "tags.yaml"
    path.write_text(TAGS.format(extra=3, epochs=1, dtype="float32", middle=""))
    result = CliRunner().invoke(app, ["gradcheck", str(path), "--batch", "5"])
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("7 passed, 0 failed")  # 7 parameters
    result = CliRunner().invoke(app, ["export-graph", str(path), "-f", "json", "--backward",
                                      "-o", str(tmp_path / "g.json")])
    assert result.exit_code == 0, result.output
    assert "x_mask" in (tmp_path / "g.json").read_text()


def test_export_graph_of_a_padded_model(tmp_path):
    cfg = config(tmp_path, COUNTS, dtype="float32")
    doc = json.loads(export_graph(cfg, "json", backward=True))
    text = json.dumps(doc)
    assert "x_mask" in text and "lstm" in text
    dot = export_graph(cfg, "dot")
    assert dot.lstrip().startswith("digraph") and "x_mask" in dot
