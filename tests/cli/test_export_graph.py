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
    result = cli("export-graph", CONFIGS / "spirals.yaml", "--format", "gif")
    assert result.exit_code == 2
    assert "--format: expected one of dot, json, mermaid, svg or png, got 'gif'" in \
        result.stderr


def test_passes_writes_every_stage_and_prints_the_table(cli, tmp_path):
    folder = tmp_path / "stages"
    result = cli("export-graph", CONFIGS / "digits_mlp.yaml", "--passes", "--batch", "4",
                 "-o", folder)
    assert result.exit_code == 0, result.stderr
    from nnctl.compile.passes import PASSES
    stages = ["00-input"] + [f"{k:02d}-{p.__name__}" for k, p in enumerate(PASSES, start=1)]
    expected = {f"{s}.{ext}" for s in stages for ext in ("dot", "json")} | {"passes.json"}
    assert {p.name for p in folder.iterdir()} >= expected
    docs = {s.split("-", 1)[1]: json.loads((folder / f"{s}.json").read_text()) for s in stages}
    counts = {s: len(d["nodes"]) for s, d in docs.items()}
    # digits_mlp, batch 4: 37 nodes as built; the CE seed 1 * (1/4) folds, two bias gradients'
    # sum+reshape become one sum, (softmax - one_hot(labels)) * (1/4) becomes softmax_xent_grad,
    # CSE merges the folded scalar with the equal constant, and DCE drops what those bypassed
    assert [counts[s] for s in ("input", "fold_constants", "simplify_algebra",
                                "stabilize_numerics", "eliminate_common_subexpressions",
                                "eliminate_dead_code")] == [37, 37, 37, 37, 36, 30]
    assert docs["input"]["stage"] == "input" and docs["input"]["batch"] == 4
    ops = lambda s: [n["op"] for n in docs[s]["nodes"]]  # noqa: E731
    assert ops("input").count("reshape") == 2 and ops("eliminate_dead_code").count(
        "reshape") == 0
    sums = [n for n in docs["eliminate_dead_code"]["nodes"] if n["op"] == "sum"]
    assert [s["attrs"] for s in sums] == [{"axis": [0], "keepdims": False}] * 2
    names = [o["name"] for o in docs["eliminate_dead_code"]["outputs"]]
    assert names == ["loss", "output", "grad dense_0.weight", "grad dense_0.bias",
                     "grad dense_2.weight", "grad dense_2.bias"]
    dot = next(folder.glob("*-eliminate_dead_code.dot")).read_text()
    assert dot.startswith('digraph "digits_mlp eliminate_dead_code" {')
    assert len(re.findall(r"^\s*n\d+ \[label=", dot, re.M)) == 30
    summary = json.loads((folder / "passes.json").read_text())
    rows = {p["name"]: p for p in summary["passes"]}
    assert rows["simplify_algebra"]["rewrites"] == [
        {"pattern": "x - one_hot(labels) -> sub_one_hot(x, labels)",
         "scope": "grad(cross_entropy)"},
        {"pattern": "reshape(sum(x, keepdims)) -> sum(x)", "scope": "grad(dense_0)"},
        {"pattern": "reshape(sum(x, keepdims)) -> sum(x)", "scope": "grad(dense_2)"},
        {"pattern": "sub_one_hot(softmax(x), labels) * s -> softmax_xent_grad(x, labels, s)",
         "scope": "grad(cross_entropy)"}]
    assert rows["eliminate_dead_code"]["nodes_before"] == 36
    assert rows["eliminate_dead_code"]["bytes_after"] < rows["eliminate_dead_code"][
        "bytes_before"]
    out = result.stdout
    assert re.search(r"eliminate_dead_code\s+│\s+30\s+│\s+-6\s+│", out)
    assert re.search(r"input\s+│\s+37\s+│", out)
    assert "2  reshape(sum(x, keepdims)) -> sum(x)" in out
    assert "numerics rewrites: none" in out
    assert f"wrote {len(stages)} stages (DOT and JSON) and passes.json to {folder}" in out


def test_passes_dot_files_are_accepted_by_graphviz(cli, tmp_path):
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed")
    result = cli("export-graph", CONFIGS / "digits_cnn.yaml", "--passes", "--batch", "2",
                 "-o", tmp_path)
    assert result.exit_code == 0, result.stderr
    for path in sorted(tmp_path.glob("*.dot")):
        subprocess.run(["dot", "-Tsvg", str(path)], capture_output=True, check=True)


def test_export_graph_memory_prints_and_writes_the_plan(cli, tmp_path):
    out = tmp_path / "memory.json"
    result = cli("export-graph", CONFIGS / "digits_mlp.yaml", "--memory", "-o", out)
    assert result.exit_code == 0, result.stderr
    plan = json.loads(out.read_text())
    assert plan["step"] == "training" and plan["batch"] == 32
    rows = plan["buffers_table"]
    # the buffers tile the arena without overlap in time where they share bytes
    assert plan["arena_bytes"] == max(r["offset"] + r["bytes"] for r in rows)
    for a in rows:
        for b in rows:
            if a is b or a["offset"] + a["bytes"] <= b["offset"] or \
                    b["offset"] + b["bytes"] <= a["offset"]:
                continue
            assert a["last_step"] < b["first_step"] or b["last_step"] < a["first_step"]
    assert plan["live_peak_bytes"] <= plan["arena_bytes"] <= plan["unplanned_peak_bytes"]
    assert any(r["op"] == "matmul" and r["shape"] == ["32", "256"] for r in rows)
    assert f"arena: {plan['arena_bytes']:,} B" in result.stdout
