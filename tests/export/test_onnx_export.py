"""ONNX export: every shipped config's inference graph, run in ONNX Runtime, matches nnctl's
forward (float32, rtol 1e-4 / atol 1e-5) at batches 1 and 7; an unmapped op or a wrong
mapping is refused before anything is written."""

import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from nnctl.backend import get_backend  # noqa: E402
from nnctl.config import load_config  # noqa: E402
from nnctl.errors import UsageError  # noqa: E402
from nnctl.export import onnx_export  # noqa: E402
from nnctl.export.inference import inference_graph, reference_output, sample_inputs  # noqa: E402
from nnctl.export.onnx_export import ExportError, ExportMismatch, compare, to_onnx  # noqa: E402
from nnctl.train.trainer import Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def _trainer(path: Path, *overrides: str) -> Trainer:
    return Trainer(load_config(path, list(overrides)), get_backend("cpu"), out=None)


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_matches_nnctl_in_onnx_runtime(path):
    """As `nnctl export-graph RUN -f onnx` builds it: recurrent layers as ONNX nodes."""
    from nnctl.export.inference import LAYERWISE_PASSES
    trainer = _trainer(path)
    graph = inference_graph(trainer, LAYERWISE_PASSES)
    model = to_onnx(graph)
    recurrent = [name for name, layer in graph.layers.items()
                 if getattr(layer, "kind", None) in ("rnn", "lstm", "gru")]
    fused = [n for n in model.graph.node if n.op_type in ("RNN", "LSTM", "GRU")]
    assert len(fused) == sum(graph.layers[name].num_layers for name in recurrent)
    onnx.checker.check_model(model, full_check=True)
    session = _session(model)
    names = [i.name for i in session.get_inputs()]
    assert names == [n.name for n in graph.inputs]
    assert session.get_inputs()[0].shape[0] == "batch"  # one file for every batch size
    for batch in (1, 7):
        arrays = sample_inputs(trainer, graph, batch)
        want = reference_output(trainer, graph, arrays)
        (got,) = session.run(None, dict(zip(names, arrays)))
        assert got.shape == want.shape == (batch,) + want.shape[1:]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        assert np.abs(want).max() > 1e-3  # the comparison is not of zeros


def test_other_opsets_run_the_same(tmp_path):
    trainer = _trainer(ROOT / "configs" / "chars_transformer.yaml")
    graph = inference_graph(trainer)
    arrays = sample_inputs(trainer, graph, 3)
    want = reference_output(trainer, graph, arrays)
    for opset in (14, 18, 21):  # ReduceMean's axes: an attribute before 18, an input from it
        model = to_onnx(graph, opset)
        assert model.opset_import[0].version == opset
        onnx.checker.check_model(model, full_check=True)
        (got,) = _session(model).run(None, {"x": arrays[0]})
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ExportError, match="opsets 14 to 21"):
        to_onnx(graph, 13)


def test_float64_run_exports_as_float32():
    trainer = _trainer(ROOT / "configs" / "spirals.yaml", "train.dtype=float64")
    graph = inference_graph(trainer)
    model = to_onnx(graph)
    assert all(i.data_type == onnx.TensorProto.FLOAT for i in model.graph.initializer
               if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE))
    arrays = sample_inputs(trainer, graph, 7)
    (got,) = _session(model).run(None, {"x": arrays[0].astype(np.float32)})
    np.testing.assert_allclose(got, reference_output(trainer, graph, arrays), rtol=1e-4,
                               atol=1e-5)


def test_normaliser_is_inside_the_model():
    """The model takes raw rows: its output on raw x equals nnctl's on the normalised x."""
    trainer = _trainer(ROOT / "configs" / "digits_mlp.yaml")
    graph = inference_graph(trainer)
    assert graph.normalised and graph.inputs[0].name == "x"
    raw = sample_inputs(trainer, graph, 5)[0]
    assert raw.max() > 10  # digits pixels are 0..16 before normalisation
    norm = trainer.splits.normalizer.apply(raw).astype(np.float32)
    (got,) = _session(to_onnx(graph)).run(None, {"x": raw})
    np.testing.assert_allclose(got, trainer.forward_arrays([norm]), rtol=1e-4, atol=1e-5)


def test_unmapped_op_is_named_with_its_layer(monkeypatch):
    trainer = _trainer(ROOT / "configs" / "digits_mlp.yaml")
    graph = inference_graph(trainer)
    monkeypatch.delitem(onnx_export.CONVERTERS, "relu")
    with pytest.raises(ExportError, match=r"no ONNX mapping for relu \(layer dense_0\)"):
        to_onnx(graph)
    assert issubclass(ExportError, UsageError)


def test_wrong_mapping_is_caught_by_the_runtime_check(monkeypatch):
    trainer = _trainer(ROOT / "configs" / "digits_mlp.yaml")
    graph = inference_graph(trainer)
    monkeypatch.setitem(onnx_export._DIRECT, "relu", "Sigmoid")
    model = to_onnx(graph)
    with pytest.raises(ExportMismatch, match="batch 1: max abs error"):
        onnx_export.verify(model, graph, lambda b: sample_inputs(trainer, graph, b),
                           lambda a: reference_output(trainer, graph, a))


def test_compare_rule():
    want = np.array([1.0, 0.0, -2.0])
    assert compare(want + [1e-5, 9e-6, 0], want)[2]
    assert not compare(want + [2e-4, 0, 0], want)[2]
    assert not compare(want[:2], want)[2]


# ---- the command -----------------------------------------------------------------------------

@pytest.fixture
def cli():
    from typer.testing import CliRunner

    from nnctl.cli.app import app
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from typer.testing import CliRunner

    from nnctl.cli.app import app
    out = tmp_path_factory.mktemp("runs")
    result = CliRunner().invoke(app, ["train", str(ROOT / "configs" / "digits_mlp.yaml"),
                                      "--out", str(out), "--set", "train.epochs=2"])
    assert result.exit_code == 0, result.output
    return next(out.iterdir())


def test_cli_onnx_of_a_run_predicts_as_nnctl_predict(cli, trained_run, tmp_path):
    path = tmp_path / "mlp.onnx"
    result = cli("export-graph", trained_run, "-f", "onnx", "-o", path)
    assert result.exit_code == 0, result.output
    assert "onnx.checker.check_model(full_check=True): passed" in result.output
    assert "batch 1: max abs error" in result.output and "batch 7:" in result.output
    # raw rows from the shipped CSV, through the ONNX file and through nnctl predict
    with np.load(ROOT / "datasets" / "digits.npz") as data:
        rows = data["x"][:40].reshape(40, 64).astype(np.float64)
    np.savetxt(tmp_path / "rows.csv", rows, delimiter=",", fmt="%g")
    result = cli("predict", trained_run, tmp_path / "rows.csv", "-o", tmp_path / "p.npz")
    assert result.exit_code == 0, result.output
    want = np.load(tmp_path / "p.npz")["probabilities"]
    (logits,) = ort.InferenceSession(str(path)).run(None, {"x": rows.astype(np.float32)})
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    np.testing.assert_allclose(prob, want, rtol=1e-4, atol=1e-6)
    assert (prob.argmax(1) == want.argmax(1)).all()


def test_cli_config_with_weights_and_errors(cli, trained_run, tmp_path):
    path = tmp_path / "a.onnx"
    result = cli("export-graph", ROOT / "configs" / "digits_mlp.yaml", "--weights", trained_run,
                 "-f", "onnx", "-o", path)
    assert result.exit_code == 0, result.output
    assert path.stat().st_size > 1000
    result = cli("export-graph", ROOT / "configs" / "digits_cnn.yaml", "--weights", trained_run,
                 "-f", "onnx", "-o", tmp_path / "b.onnx")
    assert result.exit_code == 2 and "another model" in result.output
    assert not (tmp_path / "b.onnx").exists()
    result = cli("export-graph", trained_run, "-f", "onnx")
    assert result.exit_code == 2 and "give -o FILE.onnx" in result.output
    result = cli("export-graph", trained_run, "-f", "onnx", "--opset", "9", "-o", path)
    assert result.exit_code == 2 and "opsets 14 to 21" in result.output


def test_cli_mismatch_writes_nothing(cli, trained_run, tmp_path, monkeypatch):
    monkeypatch.setitem(onnx_export._DIRECT, "relu", "Sigmoid")
    path = tmp_path / "bad.onnx"
    result = cli("export-graph", trained_run, "-f", "onnx", "-o", path)
    assert result.exit_code == 1
    assert "does not match nnctl's forward" in result.output and "Traceback" not in result.output
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_cli_untrained_config_says_so(cli, tmp_path):
    result = cli("export-graph", ROOT / "configs" / "spirals.yaml", "-f", "onnx", "-o",
                 tmp_path / "s.onnx")
    assert result.exit_code == 0, result.output
    assert "untrained" in result.output and (tmp_path / "s.onnx").is_file()


# ---- recurrent layers as ONNX's own nodes ------------------------------------------------------

LSTM_STATE_2H = """seed: 0
data: {dataset: dates, samples: 300}
model:
  layers:
    - embedding: {name: source, dim: 8, inputs: [input]}
    - lstm: {name: encoder, units: 6, return_sequences: true}
    - sequence_pool: {name: summary, mode: last, inputs: [encoder]}
    - dense: {name: to_state, units: 12, inputs: [summary]}
    - embedding: {name: target, dim: 8, inputs: [decoder_input]}
    - lstm: {name: decoder, units: 6, return_sequences: true, layers: 2,
             inputs: [target, to_state]}
    - dense: {units: classes}
loss: cross_entropy
optimizer: {name: adam, lr: 0.01}
train: {epochs: 1, batch_size: 16}
"""

RNN = """seed: 0
data: {dataset: adding, samples: 200, length: 9, normalize: none}
model:
  layers:
    - rnn: {units: 5, layers: 3, return_sequences: true}
    - gru: {units: 4, bias: false}
    - dense: {units: 1}
loss: mse
optimizer: {name: adam, lr: 0.01}
train: {epochs: 1}
"""


def _recurrent_cases(tmp_path):
    state = tmp_path / "lstm_state.yaml"
    state.write_text(LSTM_STATE_2H)
    rnn = tmp_path / "rnn.yaml"
    rnn.write_text(RNN)
    return {
        "lstm, stacked, no bias": (ROOT / "configs" / "seq_lstm.yaml",
                                   ["model.layers.0.lstm.layers=2",
                                    "model.layers.0.lstm.bias=false"], {"LSTM": 2}),
        "gru": (ROOT / "configs" / "seq_gru.yaml", [], {"GRU": 1}),
        "masked lstm, sequences out, stacked": (ROOT / "configs" / "chunks_softmax.yaml",
                                                ["model.layers.1.lstm.layers=2"], {"LSTM": 2}),
        "gru encoder-decoder: masks, initial state": (ROOT / "configs" / "dates_rnn.yaml",
                                                      ["data.samples=300"], {"GRU": 2}),
        "lstm with an initial h and c": (state, [], {"LSTM": 3}),
        "rnn stacked into a gru without bias": (rnn, [], {"RNN": 3, "GRU": 1}),
    }


def test_recurrent_layers_become_onnx_nodes_and_match(tmp_path):
    from nnctl.export.inference import LAYERWISE_PASSES
    for case, (path, overrides, counts) in _recurrent_cases(tmp_path).items():
        trainer = _trainer(path, *overrides)
        graph = inference_graph(trainer, LAYERWISE_PASSES)
        fused, unrolled = to_onnx(graph), to_onnx(graph, recurrent_nodes=False)
        ops = [n.op_type for n in fused.graph.node]
        assert {op: ops.count(op) for op in counts} == counts, case
        assert not {"LSTM", "GRU", "RNN"} & {n.op_type for n in unrolled.graph.node}
        assert len(fused.graph.node) < len(unrolled.graph.node) / 3, case
        onnx.checker.check_model(fused, full_check=True)
        names = [n.name for n in graph.inputs]
        for batch in (1, 7):
            arrays = sample_inputs(trainer, graph, batch)
            if graph.inputs[-1].name == "x_mask" or "y_mask" in names:
                assert any(a.min() == 0 for a, n in zip(arrays, names) if "mask" in n), \
                    f"{case}: the sample has no padding to test"
            want = reference_output(trainer, graph, arrays)
            for model in (fused, unrolled):
                (got,) = _session(model).run(None, dict(zip(names, arrays)))
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=case)


def test_recurrent_weights_in_onnx_layout():
    """The gate blocks land in ONNX's order (lstm i, o, f, c from nnctl's i, f, g, o; gru z, r,
    h from r, z, n), transposed, with gru's b_hn in Rb's h block."""
    from nnctl.export.onnx_recurrent import onnx_weights
    units, features = 2, 3
    wx = np.arange(features * 4 * units, dtype=float).reshape(features, 4 * units)
    weights = {"l.weight_x": wx, "l.weight_h": np.zeros((units, 4 * units)),
               "l.bias": np.arange(4 * units, dtype=float)}
    w, r, b = onnx_weights("lstm", weights, "l", units, True)
    assert w.shape == (1, 4 * units, features) and b.shape == (1, 8 * units)
    i, f, g, o = (wx[:, k * units:(k + 1) * units].T for k in range(4))
    np.testing.assert_array_equal(w[0], np.concatenate([i, o, f, g]))
    np.testing.assert_array_equal(b[0], [0, 1, 6, 7, 2, 3, 4, 5] + [0] * 8)
    gru = {"l.weight_x": wx[:, :3 * units], "l.weight_h": np.zeros((units, 3 * units)),
           "l.bias": np.arange(6.0), "l.bias_h": np.array([10.0, 11.0])}
    w, r, b = onnx_weights("gru", gru, "l", units, True)
    rr, z, n = (wx[:, k * units:(k + 1) * units].T for k in range(3))
    np.testing.assert_array_equal(w[0], np.concatenate([z, rr, n]))
    np.testing.assert_array_equal(b[0], [2, 3, 0, 1, 4, 5, 0, 0, 0, 0, 10, 11])


def test_cli_recurrent_option(cli, tmp_path):
    path = tmp_path / "s.onnx"
    result = cli("export-graph", ROOT / "configs" / "seq_gru.yaml", "-f", "onnx", "-o", path)
    assert result.exit_code == 0, result.output
    assert "(recurrent layers as ONNX GRU nodes)" in result.output
    result = cli("export-graph", ROOT / "configs" / "seq_gru.yaml", "-f", "onnx", "-o", path,
                 "--recurrent", "unrolled")
    assert result.exit_code == 0 and "recurrent layers as" not in result.output
    assert len(onnx.load(str(path)).graph.node) > 100
    result = cli("export-graph", ROOT / "configs" / "seq_gru.yaml", "-f", "onnx", "-o", path,
                 "--recurrent", "fused")
    assert result.exit_code == 2 and "expected nodes or unrolled" in result.output


def test_without_onnx_runtime_the_reference_evaluator_checks(monkeypatch):
    trainer = _trainer(ROOT / "configs" / "digits_cnn.yaml")
    graph = inference_graph(trainer)
    model = to_onnx(graph)
    arrays = sample_inputs(trainer, graph, 3)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime fails
    got, runtime = onnx_export.run_model(model, arrays, [n.name for n in graph.inputs])
    assert runtime == "ONNX's reference evaluator"
    np.testing.assert_allclose(got, reference_output(trainer, graph, arrays), rtol=1e-4,
                               atol=1e-5)
