"""The dependency-free runner (nnctl/runner.py): every shipped config's exported inference
graph gives nnctl's own forward (float32 to rounding, float64 to 1e-10) at batches 7 and 1;
each op of its table gives the nnctl op's forward on the op's own samples; a trained run gives
what `nnctl predict` writes; the file runs alone, copied away from nnctl; safetensors weights
give what the NPZ gives; and every refusal is one line on stderr with exit 2."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nnctl import runner
from nnctl.backend import get_backend
from nnctl.cli.app import app
from nnctl.config import load_config
from nnctl.export.graph_view import plain
from nnctl.export.inference import (inference_graph, reference_output, sample_inputs,
                                    to_inference_json)
from nnctl.export.onnx_export import CONVERTERS
from nnctl.gradcheck import sample_inputs as op_sample_inputs
from nnctl.ops.registry import REGISTRY
from nnctl.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
RUNNER = ROOT / "nnctl" / "runner.py"

# float32: the runner sums in nnctl's order (a [B, T, K] @ [K, N] product as one GEMM, as
# nnctl's plan), so most configs agree bit for bit; the normalised ones differ by the input
# normalisation, done in float64 by nnctl's predict and in float32 inside the graph (at most
# 7.2e-7, digits_residual), and dates_rnn by 2.1e-7.
RTOL32, ATOL32 = 1e-5, 1e-6
RTOL64 = 1e-10
FAST64 = {"digits_cnn", "chars_transformer", "seq_lstm", "graphs_gin"}  # the rest: slow


def exported(folder: Path, config: Path, overrides=(), labels=None):
    """(trainer, inference graph, model.json, weights.npz) of the config's initial model."""
    trainer = Trainer(load_config(config, list(overrides)), get_backend("cpu"), out=None)
    graph = inference_graph(trainer)
    graph_path, weights_path = folder / "model.json", folder / "weights.npz"
    graph_path.write_text(to_inference_json(graph, config.stem, labels))
    np.savez(weights_path, **trainer.weights())
    return trainer, graph, graph_path, weights_path


def assert_close(got, want, rtol, atol):
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape,
                                                                 got.dtype, want.dtype)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# ---- every config against nnctl's forward -----------------------------------------------------

@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_config_gives_nnctls_forward_float32(tmp_path, config):
    trainer, graph, graph_path, weights_path = exported(tmp_path, config)
    model = runner.Model.load(graph_path, weights_path)
    for batch in (7, 1):
        arrays = sample_inputs(trainer, graph, batch)
        want = reference_output(trainer, graph, arrays)
        got = model.run(*arrays)
        assert got.dtype == np.float32 and len(got) == batch
        assert_close(got, want, RTOL32, ATOL32)


@pytest.mark.parametrize("config", [
    pytest.param(c, marks=() if c.stem in FAST64 else pytest.mark.slow) for c in CONFIGS],
    ids=lambda p: p.stem)
def test_every_config_gives_nnctls_forward_float64(tmp_path, config):
    trainer, graph, graph_path, weights_path = exported(tmp_path, config,
                                                        ["train.dtype=float64"])
    model = runner.Model.load(graph_path, weights_path)
    for batch in (7, 1):
        arrays = sample_inputs(trainer, graph, batch)
        got, want = model.run(*arrays), reference_output(trainer, graph, arrays)
        assert got.dtype == np.float64
        assert_close(got, want, RTOL64, 0.0)


# ---- the op table -----------------------------------------------------------------------------

def test_the_op_table_is_the_set_of_ops_an_inference_graph_holds():
    # the ONNX export maps exactly the ops that can reach an inference graph
    assert set(runner.OPS) == set(CONVERTERS)


OP_CASES = [pytest.param(name, k, id=f"{name}-{k}") for name in sorted(runner.OPS)
            for k, _ in enumerate(REGISTRY[name].samples())]


def one_op_graph(name: str, arrays, attrs) -> dict:
    """An inference graph of one op on inputs x0, x1, ..., its attrs written as the export
    writes them (through JSON)."""
    nodes = [{"id": i, "op": "input", "name": f"x{i}", "shape": list(a.shape),
              "dtype": str(a.dtype), "inputs": [], "attrs": {}} for i, a in enumerate(arrays)]
    nodes.append({"id": len(arrays), "op": name, "name": name, "shape": [], "dtype": "",
                  "inputs": list(range(len(arrays))), "attrs": plain(attrs)})
    doc = {"format": runner.FORMAT, "version": runner.VERSION, "classification": False,
           "inputs": [{"name": f"x{i}", "id": i} for i in range(len(arrays))],
           "output": len(arrays), "nodes": nodes}
    return json.loads(json.dumps(doc))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,k", OP_CASES)
def test_each_op_gives_the_nnctl_ops_forward(name, k, dtype):
    op = REGISTRY[name]
    sample = list(op.samples())[k]
    arrays = op_sample_inputs(sample, np.random.default_rng(k))
    if name == "equal":  # random floats never tie: rounded, many elements are equal
        arrays = [np.round(a) for a in arrays]
    arrays = [a if i in sample.int_inputs else a.astype(dtype) for i, a in enumerate(arrays)]
    want = np.asarray(op.forward(np, *arrays, **sample.attrs))
    got = runner.Model(one_op_graph(name, arrays, sample.attrs), {}).run(*arrays)
    rtol = 1e-12 if dtype == "float64" else 1e-6
    assert_close(got, want, rtol, 0.0 if dtype == "float64" else 1e-7)


# ---- a trained run, against nnctl predict -----------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A 2-epoch digits_mlp run, its exported graph and 25 raw test rows as CSV."""
    folder = tmp_path_factory.mktemp("trained")
    cli = CliRunner()
    result = cli.invoke(app, ["train", str(ROOT / "configs/digits_mlp.yaml"), "--set",
                              "train.epochs=2", "--out", str(folder / "runs")])
    assert result.exit_code == 0, result.output
    (run,) = (folder / "runs").iterdir()
    graph_path = folder / "model.json"
    result = cli.invoke(app, ["export-graph", str(run), "-f", "json", "-o", str(graph_path)])
    assert result.exit_code == 0, result.output
    from nnctl.train.inference import load_run
    trainer = load_run(run, get_backend("cpu"))
    (x,) = sample_inputs(trainer, inference_graph(trainer), 25)
    rows = folder / "inputs.csv"
    np.savetxt(rows, x, delimiter=",", fmt="%.9g")
    return run, graph_path, rows


def test_a_trained_run_predicts_what_nnctl_predict_writes(trained_run, tmp_path, capsys):
    run, graph_path, rows = trained_run
    result = CliRunner().invoke(app, ["predict", str(run), str(rows), "-o",
                                      str(tmp_path / "nnctl.npz")])
    assert result.exit_code == 0, result.output
    code = runner.main([str(graph_path), str(run / "weights.npz"), str(rows), "-o",
                        str(tmp_path / "runner.npz")])
    assert code == 0
    assert capsys.readouterr().out == f"wrote 25 predictions to {tmp_path / 'runner.npz'}\n"
    with np.load(tmp_path / "nnctl.npz") as want, np.load(tmp_path / "runner.npz") as got:
        assert sorted(got.files) == sorted(want.files) == ["class", "probabilities"]
        np.testing.assert_array_equal(got["class"], want["class"])
        np.testing.assert_allclose(got["probabilities"], want["probabilities"], rtol=0,
                                   atol=1e-6)
        assert got["probabilities"].shape == (25, 10)


@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
def test_export_weights_with_nnctl_names_feeds_the_runner(trained_run, tmp_path, fmt):
    if fmt == "safetensors":
        pytest.importorskip("safetensors")  # export-weights writes it with the package
    run, graph_path, rows = trained_run
    path = tmp_path / f"weights.{fmt}"
    result = CliRunner().invoke(app, ["export-weights", str(run), "--names", "nnctl",
                                      "--format", fmt, "-o", str(path)])
    assert result.exit_code == 0, result.output
    x = np.loadtxt(rows, delimiter=",", dtype=np.float32)
    np.testing.assert_array_equal(runner.Model.load(graph_path, path).run(x),
                                  runner.Model.load(graph_path, run / "weights.npz").run(x))


def test_the_csv_has_nnctl_predicts_columns(trained_run, tmp_path, capsys):
    run, graph_path, rows = trained_run
    result = CliRunner().invoke(app, ["predict", str(run), str(rows)])
    assert result.exit_code == 0, result.output
    want = [line.split(",") for line in result.stdout.splitlines()]
    assert runner.main([str(graph_path), str(run / "weights.npz"), str(rows)]) == 0
    got = [line.split(",") for line in capsys.readouterr().out.splitlines()]
    assert got[0] == want[0] == ["class"] + [f"p{k}" for k in range(10)]
    assert [r[0] for r in got] == [r[0] for r in want] and len(got) == 26
    np.testing.assert_allclose(np.array(got[1:], float), np.array(want[1:], float), atol=2e-6)


# ---- the file alone ---------------------------------------------------------------------------

def test_importing_the_runner_imports_no_other_nnctl_module():
    code = ("import sys, nnctl.runner; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] == 'nnctl'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.strip() == "['nnctl', 'nnctl.runner']"


@pytest.fixture(scope="module")
def spirals(tmp_path_factory):
    """spirals' initial model exported, with 9 raw inputs and what Model.predict makes of them."""
    folder = tmp_path_factory.mktemp("spirals")
    trainer, graph, graph_path, weights_path = exported(folder, ROOT / "configs/spirals.yaml")
    (x,) = sample_inputs(trainer, graph, 9)
    np.savez(folder / "inputs.npz", x=x)
    want = runner.Model.load(graph_path, weights_path).predict(x)
    return folder, want


def test_a_copy_of_the_file_runs_where_nnctl_cannot_be_imported(spirals):
    folder, want = spirals
    shutil.copy(RUNNER, folder / "runner.py")
    # isolated mode (no PYTHONPATH, no user site; NumPy still imports) and nnctl blocked
    script = ("import runpy, sys; sys.modules['nnctl'] = None; sys.argv[0] = 'runner.py'; "
              "runpy.run_path('runner.py', run_name='__main__')")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-I", "-c", script, "model.json", "weights.npz",
                           "inputs.npz", "-o", "out.npz"], cwd=folder, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with np.load(folder / "out.npz") as got:
        np.testing.assert_array_equal(got["class"], want["class"])
        np.testing.assert_array_equal(got["probabilities"], want["probabilities"])


def test_python_runner_py_prints_the_csv(spirals):
    folder, want = spirals
    shutil.copy(RUNNER, folder / "runner.py")
    done = subprocess.run([sys.executable, "-I", "runner.py", "model.json", "weights.npz",
                           "inputs.npz"], cwd=folder, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "class,p0,p1" and len(lines) == 10
    assert [int(line.split(",")[0]) for line in lines[1:]] == want["class"].tolist()


def test_python_dash_m_nnctl_runner_works(spirals):
    folder, want = spirals
    done = subprocess.run([sys.executable, "-m", "nnctl.runner", "model.json", "weights.npz",
                           "inputs.npz"], cwd=folder, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    probabilities = np.array([line.split(",")[1:] for line in done.stdout.splitlines()[1:]],
                             float)
    np.testing.assert_allclose(probabilities, want["probabilities"], rtol=1e-5)


# ---- safetensors ------------------------------------------------------------------------------

def safetensors_bytes(arrays: dict[str, np.ndarray], metadata=None) -> bytes:
    """A safetensors file built by hand: header length (u64, little-endian), the JSON header
    (padded with spaces to 8 bytes, as the format allows), then the raw bytes."""
    codes = {"float32": "F32", "float64": "F64", "int64": "I64"}
    header, body = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, array in arrays.items():
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": codes[str(array.dtype)], "shape": list(array.shape),
                        "data_offsets": [len(body), len(body) + len(data)]}
        body += data
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def test_hand_built_safetensors_give_the_npz_output(tmp_path):
    trainer, graph, graph_path, weights_path = exported(tmp_path, ROOT / "configs/digits_cnn.yaml")
    weights = trainer.weights()
    path = tmp_path / "weights.safetensors"
    path.write_bytes(safetensors_bytes(weights, metadata={"format": "np"}))
    read = runner.read_weights(path)
    assert sorted(read) == sorted(weights)
    for name in weights:
        np.testing.assert_array_equal(read[name], weights[name])
    (x,) = sample_inputs(trainer, graph, 5)
    np.testing.assert_array_equal(runner.Model.load(graph_path, path).run(x),
                                  runner.Model.load(graph_path, weights_path).run(x))


def test_safetensors_written_by_the_safetensors_package_give_the_npz_output(tmp_path):
    numpy_io = pytest.importorskip("safetensors.numpy")
    trainer, graph, graph_path, weights_path = exported(tmp_path, ROOT / "configs/seq_gru.yaml")
    path = tmp_path / "weights.safetensors"
    numpy_io.save_file({k: np.ascontiguousarray(v) for k, v in trainer.weights().items()},
                       str(path))
    (x,) = sample_inputs(trainer, graph, 4)
    got = runner.Model.load(graph_path, path).run(x)
    np.testing.assert_array_equal(got, runner.Model.load(graph_path, weights_path).run(x))
    np.testing.assert_allclose(got, reference_output(trainer, graph, [x]), rtol=1e-5, atol=1e-6)


def test_float64_safetensors_weights_are_cast_to_the_graphs_dtype(tmp_path):
    trainer, graph, graph_path, _ = exported(tmp_path, ROOT / "configs/spirals.yaml")
    path = tmp_path / "w.safetensors"
    path.write_bytes(safetensors_bytes({k: np.asarray(v, np.float64)
                                        for k, v in trainer.weights().items()}))
    (x,) = sample_inputs(trainer, graph, 3)
    got = runner.Model.load(graph_path, path).run(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, reference_output(trainer, graph, [x]), rtol=1e-5, atol=1e-6)


# ---- the API: inputs by name, shapes, predict -------------------------------------------------

def test_inputs_by_name_and_the_batch_checked_across_inputs(tmp_path):
    trainer, graph, graph_path, weights_path = exported(tmp_path,
                                                        ROOT / "configs/digits_siamese.yaml")
    model = runner.Model.load(graph_path, weights_path)
    assert model.input_names == ["x", "right"]
    x, right = sample_inputs(trainer, graph, 4)
    np.testing.assert_array_equal(model.run(right=right, x=x), model.run(x, right))
    with pytest.raises(ValueError, match=r"^input 'right': expected shape \[B, 64\] \(B: any "
                                         r"batch size; here 4, as in 'x'\), got \[3, 64\]$"):
        model.run(x, right[:3])
    with pytest.raises(ValueError, match="input 'right' is missing"):
        model.run(x)
    with pytest.raises(ValueError, match="the model has no input 'left'"):
        model.run(x, left=right)
    assert set(model.predict(x, right)) == {"prediction"}  # not a classifier


def test_predict_names_the_class_where_the_run_has_labels(tmp_path):
    names = [f"digit {k}" for k in range(10)]
    trainer, graph, graph_path, weights_path = exported(
        tmp_path, ROOT / "configs/digits_mlp.yaml", labels=names)
    (x,) = sample_inputs(trainer, graph, 6)
    columns = runner.Model.load(graph_path, weights_path).predict(x)
    scores = reference_output(trainer, graph, [x])
    np.testing.assert_array_equal(columns["class"], scores.argmax(axis=1))
    assert columns["label"].tolist() == [names[c] for c in scores.argmax(axis=1)]
    np.testing.assert_allclose(columns["probabilities"].sum(axis=1), 1.0, rtol=1e-6)


def test_token_ids_from_a_float_array_are_accepted_when_whole(tmp_path):
    trainer, graph, graph_path, weights_path = exported(tmp_path,
                                                        ROOT / "configs/chars_transformer.yaml")
    model = runner.Model.load(graph_path, weights_path)
    (ids,) = sample_inputs(trainer, graph, 2)
    np.testing.assert_array_equal(model.run(ids.astype(float)), model.run(ids))
    with pytest.raises(ValueError, match="input 'x' holds token ids"):
        model.run(ids + 0.5)


# ---- refusals: one line on stderr, exit 2 -----------------------------------------------------

def refusal(capsys, *args) -> str:
    assert runner.main([str(a) for a in args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    return captured.err


def test_an_unknown_op_is_named_with_its_node(spirals, tmp_path, capsys):
    folder, _ = spirals
    doc = json.loads((folder / "model.json").read_text())
    node = next(n for n in doc["nodes"] if n["op"] == "tanh")
    node["op"] = "frobnicate"
    (tmp_path / "model.json").write_text(json.dumps(doc))
    err = refusal(capsys, tmp_path / "model.json", folder / "weights.npz", folder / "inputs.npz")
    assert err == (f"error: unknown op 'frobnicate' at node {node['id']} ({node['scope']}); "
                   f"this runner knows {len(runner.OPS)} ops (docs/runner.md)\n")


def test_a_missing_weight_is_named(spirals, tmp_path, capsys):
    folder, _ = spirals
    with np.load(folder / "weights.npz") as npz:
        weights = {k: npz[k] for k in npz.files}
    del weights["dense_0.weight"]
    np.savez(tmp_path / "w.npz", **weights)
    err = refusal(capsys, folder / "model.json", tmp_path / "w.npz", folder / "inputs.npz")
    assert err.startswith("error: the weights have no 'dense_0.weight' (node ")


def test_a_weight_of_the_wrong_shape_is_named(spirals, tmp_path, capsys):
    folder, _ = spirals
    with np.load(folder / "weights.npz") as npz:
        weights = {k: npz[k] for k in npz.files}
    shape = list(weights["dense_0.bias"].shape)
    weights["dense_0.bias"] = np.zeros(shape[0] + 1, np.float32)
    np.savez(tmp_path / "w.npz", **weights)
    err = refusal(capsys, folder / "model.json", tmp_path / "w.npz", folder / "inputs.npz")
    assert err == (f"error: weight 'dense_0.bias' has shape [{shape[0] + 1}], the graph "
                   f"expects [{shape[0]}]\n")


def test_inputs_of_the_wrong_shape_are_refused(spirals, tmp_path, capsys):
    folder, _ = spirals
    np.savez(tmp_path / "x.npz", x=np.zeros((4, 3), np.float32))
    err = refusal(capsys, folder / "model.json", folder / "weights.npz", tmp_path / "x.npz")
    assert err == "error: input 'x': expected shape [B, 2] (B: any batch size), got [4, 3]\n"
    (tmp_path / "x.csv").write_text("a,b,c\n1,2,3\n")
    err = refusal(capsys, folder / "model.json", folder / "weights.npz", tmp_path / "x.csv")
    assert err == "error: input 'x': each row has 3 values, the model takes [2] per row\n"


@pytest.mark.parametrize("change,message", [
    ({"format": "onnx"}, "error: not an nnctl inference graph (format 'onnx', expected "
                         "'nnctl-inference'"),
    ({"version": 2}, "error: inference graph version 2; this runner reads version 1\n"),
])
def test_another_format_or_version_is_refused(spirals, tmp_path, capsys, change, message):
    folder, _ = spirals
    doc = json.loads((folder / "model.json").read_text()) | change
    (tmp_path / "model.json").write_text(json.dumps(doc))
    err = refusal(capsys, tmp_path / "model.json", folder / "weights.npz", folder / "inputs.npz")
    assert err.startswith(message)


def test_missing_files_and_unreadable_ones_are_refused(spirals, tmp_path, capsys):
    folder, _ = spirals
    args = [folder / "model.json", folder / "weights.npz", folder / "inputs.npz"]
    for k in range(3):
        missing = list(args)
        missing[k] = tmp_path / "nope.npz"
        assert refusal(capsys, *missing) == f"error: {tmp_path / 'nope.npz'}: no such file\n"
    (tmp_path / "w.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    err = refusal(capsys, folder / "model.json", tmp_path / "w.safetensors", args[2])
    assert err == f"error: {tmp_path / 'w.safetensors'}: not a safetensors file (unreadable " \
                  "header)\n"
    (tmp_path / "model.json").write_text("[1, 2")
    assert refusal(capsys, tmp_path / "model.json", *args[1:]).startswith(
        f"error: {tmp_path / 'model.json'}: not JSON (")
    (tmp_path / "x.csv").write_bytes(b"1,2\n\xff\xfe\n")
    assert refusal(capsys, args[0], args[1], tmp_path / "x.csv") == \
        f"error: {tmp_path / 'x.csv'}: not UTF-8 text\n"
    err = refusal(capsys, *args, "-o", tmp_path / "out.txt")
    assert err == "error: -o: expected a .csv or .npz file, got out.txt\n"
