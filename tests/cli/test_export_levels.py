"""export-graph at the level of layers, as Mermaid, with a legend, and drawn by Graphviz."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from conftest import CONFIGS


def test_layers_view_is_one_box_per_layer_with_shapes_and_parameters(cli):
    result = cli("export-graph", CONFIGS / "chars_transformer.yaml", "--level", "layers")
    assert result.exit_code == 0, result.output
    dot = result.stdout
    boxes = re.findall(r'^  (l\d+) \[label="([^"]*)"', dot, re.M)
    assert [label.split("\\n")[0] for _, label in boxes] == [
        "input: input", "embedding_0: embedding", "positional_encoding_1: positional_encoding",
        "transformer_encoder_2: transformer_encoder",
        "transformer_encoder_3: transformer_encoder", "dense_4: dense"]
    assert "transformer_encoder_2: transformer_encoder\\n[-, 32, 64]\\n33,472 params" in dot
    assert re.findall(r"^  l(\d+) -> l(\d+);", dot, re.M) == [
        ("0", "1"), ("1", "2"), ("2", "3"), ("3", "4"), ("4", "5")]
    assert "subgraph cluster_legend" in dot
    rows = json.loads(cli("export-graph", CONFIGS / "digits_residual.yaml", "--level",
                          "layers", "-f", "json").stdout)["layers"]
    add = next(r for r in rows if r["type"] == "add")
    assert len(add["inputs"]) == 2  # the skip connection is an edge of its own


def test_mermaid_groups_ops_by_layer_and_colours_kinds(cli):
    result = cli("export-graph", CONFIGS / "spirals.yaml", "-f", "mermaid")
    assert result.exit_code == 0
    text = result.stdout
    assert text.splitlines()[1] == "flowchart TB"
    assert text.count("  subgraph c") == 3 and 'subgraph c0["dense_0"]' in text
    assert "classDef parameter fill:#ADD8E6" in text and ":::parameter" in text
    assert re.search(r"n\d+ --> out0", text)
    layers = cli("export-graph", CONFIGS / "spirals.yaml", "-f", "mermaid", "--level",
                 "layers").stdout
    assert 'l1["dense_0: dense<br/>[' in layers and "l0 --> l1" in layers


def test_the_dot_legend_lists_the_kinds_drawn(cli):
    dot = cli("export-graph", CONFIGS / "digits_mlp.yaml", "--backward").stdout
    legend = dot.split("subgraph cluster_legend", 1)[1]
    for label in ("data input", "parameter", "forward op", "gradient op", "graph output",
                  "random mask (dropout)"):
        assert f'label="{label}"' in legend


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_svg_through_graphviz(cli, tmp_path):
    out = tmp_path / "ct.svg"
    result = cli("export-graph", CONFIGS / "chars_transformer.yaml", "--level", "layers",
                 "-f", "svg", "-o", out)
    assert result.exit_code == 0, result.output
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") and "transformer_encoder_3" in svg
    width, height = (float(v) for v in re.search(r'width="([\d.]+)pt" height="([\d.]+)pt"',
                                                 svg).groups())
    assert width < 800 and height < 900  # one screen


def test_picture_and_level_mistakes_are_one_line(cli, monkeypatch):
    no_o = cli("export-graph", CONFIGS / "spirals.yaml", "-f", "png")
    assert no_o.exit_code == 2 and "give -o FILE.png" in no_o.stderr
    both = cli("export-graph", CONFIGS / "spirals.yaml", "--level", "layers", "--backward")
    assert both.exit_code == 2 and "--backward draws gradient ops; it needs --level ops" in \
        both.stderr
    monkeypatch.setattr(shutil, "which", lambda name: None)
    missing = cli("export-graph", CONFIGS / "spirals.yaml", "-f", "svg", "-o", "x.svg")
    assert missing.exit_code == 2 and "needs Graphviz's dot on the PATH" in missing.stderr
