"""`export-graph --optimizer`: the optimizer's update of every parameter drawn after its
gradient, in its own colour and legend entry, flagged in JSON and classed in Mermaid; one
"new ..." output per parameter and per state; --level layers refuses it."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.config import load_config
from nnctl.export import export_graph
from nnctl.export.dot import STYLE

SPIRALS = Path(__file__).resolve().parents[2] / "configs" / "spirals.yaml"
PARAMS = ["dense_0.weight", "dense_0.bias", "dense_1.weight", "dense_1.bias", "dense_2.weight",
          "dense_2.bias"]
UPDATE_FILL = 'fillcolor="#D9D2E9"'


def spirals(fmt: str, *overrides: str, **options) -> str:
    return export_graph(load_config(SPIRALS, list(overrides)), fmt, batch=2, **options)


@pytest.fixture(scope="module")
def adam_json() -> dict:
    return json.loads(spirals("json", optimizer=True))  # spirals.yaml: adam, lr 0.01


def reachable(doc: dict, start: int) -> set[int]:
    """Ids reachable from node `start` along the edges."""
    users: dict[int, list[int]] = {}
    for a, b in doc["edges"]:
        users.setdefault(a, []).append(b)
    seen, todo = set(), [start]
    while todo:
        for b in users.get(todo.pop(), []):
            if b not in seen:
                seen.add(b)
                todo.append(b)
    return seen


@pytest.mark.parametrize("spec, slots", [
    ("{name: sgd, lr: 0.1}", []),
    ("{name: sgd, lr: 0.1, momentum: 0.9}", ["velocity"]),
    ("{name: adam, lr: 0.01}", ["m", "v"]),
    ("{name: rmsprop, lr: 0.01, momentum: 0.5}", ["square_avg", "momentum_buffer"]),
    ("{name: adagrad, lr: 0.1}", ["sum"]),
])
def test_one_new_output_per_parameter_and_state(spec, slots):
    doc = json.loads(spirals("json", f"optimizer={spec}", optimizer=True))
    opt = re.search(r"name: (\w+)", spec).group(1)
    names = [o["name"] for o in doc["outputs"]]
    assert names[:7] == ["loss"] + [f"grad {p}" for p in PARAMS]  # --optimizer implies them
    assert names[7:] == [n for p in PARAMS
                         for n in [f"new {p}"] + [f"new {opt}.{s}[{p}]" for s in slots]]
    states = sorted(n["name"] for n in doc["nodes"] if n["kind"] == "input" and n["update"])
    assert states == sorted(f"{opt}.{s}[{p}]" for p in PARAMS for s in slots)


def test_update_nodes_are_flagged_and_fed_by_the_gradients(adam_json):
    doc = adam_json
    nodes, ids = doc["nodes"], {o["name"]: o["id"] for o in doc["outputs"]}
    assert doc["backward_included"] is True and doc["optimizer_included"] is True
    update = {n["id"] for n in nodes if n["update"]}
    assert not any(n["update"] and n["backward"] for n in nodes)
    # what the loss and gradients need is not the update's; everything else is
    before = set()
    for k in [ids["loss"]] + [ids[f"grad {p}"] for p in PARAMS]:
        todo = [k]
        while todo:
            n = todo.pop()
            if n not in before:
                before.add(n)
                todo.extend(nodes[n]["inputs"])
    assert update == {n["id"] for n in nodes} - before
    for p in PARAMS:
        new = ids[f"new {p}"]
        assert new in update and nodes[new]["op"] == "sub"  # p - step size * m / denominator
        assert nodes[new]["scope"] == f"adam/{p}"
        assert new in reachable(doc, ids[f"grad {p}"])     # fed by its own gradient ...
        param = next(n["id"] for n in nodes if n["kind"] == "parameter" and n["name"] == p)
        assert new in reachable(doc, param)
        for other in PARAMS:                                # ... and no other
            if other != p:
                assert new not in reachable(doc, ids[f"grad {other}"])
    ops = {n["op"] for n in nodes if n["update"] and n["kind"] == "op"}
    assert ops == {"mul", "add", "sqrt", "div", "sub"}


def test_adams_constants_are_the_first_steps(adam_json):
    # lr 0.01, betas 0.9 / 0.999, eps 1e-8: the folded bias corrections of step 1
    values = [n["value"] for n in adam_json["nodes"]
              if n["update"] and n["kind"] == "constant" and n["scope"] == "adam/dense_0.weight"]
    step_size = 0.01 * math.sqrt(1 - 0.999) / (1 - 0.9)
    assert any(v == pytest.approx(step_size, rel=1e-6) for v in values)
    assert any(v == pytest.approx(1e-8 * math.sqrt(1 - 0.999), rel=1e-6) for v in values)
    for beta in (0.9, 0.1, 0.999, 0.001):  # b1, 1 - b1, b2, 1 - b2
        assert any(v == pytest.approx(beta, rel=1e-6) for v in values), beta


def test_dot_colours_the_update_and_shows_it_in_the_legend():
    dot = spirals("dot", optimizer=True)
    body, legend = dot.split("subgraph cluster_legend", 1)
    assert STYLE["update"] not in (STYLE["op"], STYLE["backward"], STYLE["output"])
    assert re.search(r'label="sub\\n\[2, 64\]", ' + re.escape(STYLE["update"]), body)
    assert re.search(r'label="adam.m\[dense_0.weight\]\\n\[2, 64\]", ' +
                     re.escape(STYLE["state"]), body)
    assert 'label="adam/dense_0.weight"' in body  # one cluster per parameter's update
    assert len(re.findall(r'^\s*out\d+ \[label="new ', body, re.M)) == 18
    assert f'label="optimizer update op", {STYLE["update"]}' in legend
    assert f'label="optimizer state (before the step)", {STYLE["state"]}' in legend
    plain = spirals("dot", backward=True)
    assert UPDATE_FILL not in plain and "optimizer update op" not in plain


def test_mermaid_classes_the_update():
    text = spirals("mermaid", optimizer=True)
    assert "classDef update fill:#D9D2E9" in text
    assert len(re.findall(r":::update$", text, re.M)) > 6
    assert re.search(r'\["adam.v\[dense_2.bias\]<br/>\[2\]"\]:::state', text)


def test_cli_optimizer_option_and_its_usage_error(tmp_path):
    runner = CliRunner()
    out = tmp_path / "g.json"
    done = runner.invoke(app, ["export-graph", str(SPIRALS), "--optimizer", "-f", "json",
                               "--batch", "2", "-o", str(out)])
    assert done.exit_code == 0, done.output
    names = [o["name"] for o in json.loads(out.read_text())["outputs"]]
    assert names.count("new dense_0.weight") == 1 and len(names) == 1 + 6 + 18
    refused = runner.invoke(app, ["export-graph", str(SPIRALS), "--optimizer", "--level",
                                  "layers"])
    assert refused.exit_code == 2
    assert "--optimizer draws the optimizer's update ops; it needs --level ops" in \
        refused.stderr
    helped = runner.invoke(app, ["export-graph", "--help"])
    assert "--optimizer" in helped.stdout
