"""`nnctl export-graph`: DOT that Graphviz accepts, JSON that matches its schema."""

import json
import re
import shutil
import subprocess

import pytest

from conftest import CONFIGS


def test_dot_is_accepted_by_graphviz(cli, tmp_path):
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed")
    out = tmp_path / "g.dot"
    result = cli("export-graph", CONFIGS / "digits_mlp.yaml", "--backward", "-o", out)
    assert result.exit_code == 0, result.stderr
    svg = subprocess.run(["dot", "-Tsvg", str(out)], capture_output=True, text=True, check=True)
    assert svg.stdout.lstrip().startswith("<?xml") and "<svg" in svg.stdout
    assert svg.stderr == ""


def test_dot_declares_every_edge_endpoint_and_styles_kinds(cli):
    result = cli("export-graph", CONFIGS / "spirals.yaml", "--batch", "4")
    assert result.exit_code == 0, result.stderr
    dot = result.stdout
    declared = set(re.findall(r"^\s*(n\d+|out\d+) \[", dot, re.M))
    edges = re.findall(r"^\s*(n\d+|out\d+) -> (n\d+|out\d+);", dot, re.M)
    assert edges and all(a in declared and b in declared for a, b in edges)
    assert re.search(r'label="x\\n\[4, 2\]", shape=ellipse', dot)             # the input
    assert re.search(r'label="dense_0.weight\\n\[2, 64\]", shape=box, style="filled,rounded"',
                     dot)                                                    # a parameter
    assert re.search(r'label="matmul\\n\[4, 64\]"', dot)                      # an op
    assert 'subgraph cluster_0 {' in dot and 'label="dense_0"' in dot         # layer groups
    assert "#FCE5CD" not in dot                                              # no backward ops


def test_dot_output_is_deterministic(cli):
    a = cli("export-graph", CONFIGS / "spirals.yaml").stdout
    b = cli("export-graph", CONFIGS / "spirals.yaml").stdout
    assert a == b


def test_json_schema(cli, tmp_path):
    out = tmp_path / "g.json"
    result = cli("export-graph", CONFIGS / "spirals.yaml", "--format", "json", "--backward",
                 "--batch", "8", "-o", out)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(out.read_text())
    assert doc["format"] == "nnctl-graph" and doc["version"] == 1 and doc["batch"] == 8
    nodes = doc["nodes"]
    assert [n["id"] for n in nodes] == list(range(len(nodes)))
    for n in nodes:
        assert set(n) >= {"id", "kind", "op", "name", "scope", "shape", "dtype", "attrs",
                          "inputs", "backward"}
        assert all(i < n["id"] for i in n["inputs"])  # topological order
    assert sorted(doc["edges"]) == sorted([i, n["id"]] for n in nodes for i in n["inputs"])
    params = {n["name"]: n for n in nodes if n["kind"] == "parameter"}
    assert params["dense_0.weight"]["shape"] == [2, 64]
    assert params["dense_0.weight"]["dtype"] == "float32"
    names = [o["name"] for o in doc["outputs"]]
    assert names[0] == "loss" and "grad dense_2.bias" in names and len(names) == 7
    assert any(n["backward"] and n["op"] == "matmul" for n in nodes)
    assert nodes[doc["outputs"][0]["id"]]["op"] == "cross_entropy"
    transposes = [n for n in nodes if n["op"] == "transpose"]
    assert transposes and transposes[0]["attrs"]["axes"] == [1, 0]


def test_unknown_format_is_a_usage_error(cli):
    result = cli("export-graph", CONFIGS / "spirals.yaml", "--format", "png")
    assert result.exit_code == 2
    assert "--format: expected one of dot, json, got 'png'" in result.stderr
