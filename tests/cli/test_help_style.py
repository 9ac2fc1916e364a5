"""`--help` reads as people expect: flags without a type, arguments by upper-case name."""

import re

import pytest


@pytest.mark.parametrize("command, usage", [
    ("train", "[OPTIONS] [CONFIG]"), ("predict", "[OPTIONS] RUN_DIR INPUTS"),
    ("evaluate", "[OPTIONS] RUN_DIR"), ("export-graph", "[OPTIONS] CONFIG"),
])
def test_usage_names_arguments_in_capitals(cli, command, usage):
    result = cli(command, "--help")
    assert result.exit_code == 0
    text = re.sub(r"\s+", " ", result.stdout)
    assert usage in text, text[:300]
    assert "{" not in text.split("Usage:")[1].split("\n")[0]


def test_flags_have_no_type(cli):
    text = cli("train", "--help").stdout
    assert "<bool>" not in text
    assert re.search(r"--help\s+-h\s+Show this message", text)
    assert "<int range>" in text  # options that take a value keep their type


def test_a_missing_argument_is_named_in_capitals(cli):
    result = cli("export-graph")
    assert result.exit_code == 2
    assert "Missing argument 'CONFIG'" in result.stderr
