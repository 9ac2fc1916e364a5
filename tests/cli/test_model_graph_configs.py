"""Models that are graphs: named inputs, merges, and the config errors they can have."""

import json

import numpy as np
import yaml

from conftest import CONFIGS

HEAD = {"data": {"dataset": "spirals", "samples": 200}, "loss": "cross_entropy",
        "optimizer": {"name": "adam", "lr": 0.01}, "train": {"epochs": 2, "batch_size": 32}}


def write(tmp_path, layers):
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump({**HEAD, "model": {"layers": layers}}, sort_keys=False))
    return path


def error_line(result):
    assert result.exit_code == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    return lines[0]


def test_residual_and_concat_model_trains(cli, tmp_path):
    path = write(tmp_path, [
        {"dense": {"units": 16, "activation": "tanh", "name": "a"}},
        {"dense": {"units": 16, "activation": "tanh", "name": "b"}},
        {"add": {"inputs": ["a", "b"], "name": "sum"}},
        {"concat": {"inputs": ["sum", "input"], "name": "joined"}},
        {"dense": {"units": 2}},
    ])
    result = cli("train", path, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    weights = np.load(run / "weights.npz")
    assert weights["dense_4.weight"].shape == (18, 2)  # 16 from the sum + 2 input features


def test_unknown_input_name(cli, tmp_path):
    path = write(tmp_path, [{"dense": {"units": 16, "name": "stem"}},
                            {"add": {"inputs": ["stem", "stme"]}},
                            {"dense": {"units": 2}}])
    line = error_line(cli("train", path))
    assert ": model.layers[1].add.inputs[1]: unknown layer 'stme' (did you mean 'stem'?)" in line


def test_a_cycle_is_refused_with_its_path(cli, tmp_path):
    path = write(tmp_path, [{"dense": {"units": 16, "name": "a", "inputs": ["c"]}},
                            {"dense": {"units": 16, "name": "b"}},
                            {"dense": {"units": 16, "name": "c"}},
                            {"dense": {"units": 2, "inputs": ["c"]}}])
    line = error_line(cli("train", path))
    assert "layers form a cycle: " in line
    assert {"a", "b", "c"} <= set(line.split("cycle: ")[1].replace(" <- ", " ").split())


def test_a_merge_needs_two_inputs(cli, tmp_path):
    path = write(tmp_path, [{"dense": {"units": 16}}, {"add": {}}, {"dense": {"units": 2}}])
    line = error_line(cli("train", path))
    assert ": model.layers[1].add: add merges two or more layers; name them in 'inputs'" in line


def test_merging_different_shapes_names_the_layer(cli, tmp_path):
    path = write(tmp_path, [{"dense": {"units": 16, "name": "a"}},
                            {"dense": {"units": 8, "name": "b"}},
                            {"add": {"inputs": ["a", "b"]}},
                            {"dense": {"units": 2}}])
    line = error_line(cli("train", path))
    assert ": model.layers[2].add: layer add_2: add needs inputs of one shape, got [32, 16], " \
           "[32, 8]" in line


def test_export_draws_the_merge(cli):
    result = cli("export-graph", CONFIGS / "digits_residual.yaml", "--format", "json")
    doc = json.loads(result.stdout)
    merge = [n for n in doc["nodes"] if n["scope"] == "residual" and n["op"] == "add"]
    assert len(merge) == 1
    sources = {doc["nodes"][i]["scope"] for i in merge[0]["inputs"]}
    assert sources == {"stem", "branch_out"}


def test_batch_norm_running_statistics_are_trained_and_saved(cli, tmp_path):
    path = write(tmp_path, [{"dense": {"units": 16}}, {"batch_norm": {}},
                            {"activation": "relu"}, {"dense": {"units": 2}}])
    assert cli("train", path, "--out", tmp_path / "runs").exit_code == 0
    (run,) = (tmp_path / "runs").iterdir()
    weights = np.load(run / "weights.npz")
    assert not np.allclose(weights["batch_norm_1.running_mean"], 0)
    assert not np.allclose(weights["batch_norm_1.running_var"], 1)
    assert np.all(weights["batch_norm_1.running_var"] > 0)


def test_a_layer_that_does_not_lead_to_the_output(cli, tmp_path):
    path = write(tmp_path, [{"dense": {"units": 16, "name": "a"}},
                            {"dense": {"units": 16, "name": "dangling"}},
                            {"dense": {"units": 2, "inputs": ["a"]}}])
    line = error_line(cli("train", path))
    assert ": model.layers[1].dense: layer 'dangling' does not lead to the output" in line


def test_concat_along_the_batch_axis_is_refused(cli, tmp_path):
    path = write(tmp_path, [{"dense": {"units": 16, "name": "a"}},
                            {"concat": {"inputs": ["a", "input"], "axis": 0}},
                            {"dense": {"units": 2}}])
    line = error_line(cli("train", path))
    assert ": model.layers[1].concat.axis: concat cannot join along the batch axis" in line


def test_dense_on_token_ids_asks_for_an_embedding(cli, tmp_path):
    config = tmp_path / "ids.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"dataset": "parity", "samples": 100, "length": 6},
        "model": {"layers": [{"dense": {"units": 2}}]}, "loss": "cross_entropy",
        "optimizer": "adam", "train": {"epochs": 1}}))
    line = error_line(cli("train", config))
    assert "dense needs float input, got int64 (token ids need an embedding layer first)" in line
