"""The app itself: help, version, and a start-up that imports nothing heavy."""

import subprocess
import sys

from nnctl import __version__


def test_help_lists_the_commands(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("train", "gradcheck", "export-graph"):
        assert command in result.stdout


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"nnctl {__version__}"


def test_help_does_not_import_the_engine():
    # --help must answer at once: the CLI imports numpy and the engine only inside commands
    code = ("import sys; from nnctl.cli.app import app; "
            "print(sorted(m for m in ('numpy', 'yaml', 'nnctl.ops', 'nnctl.train') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_error_shown_on_a_terminal_prints_brackets_as_typed(monkeypatch, capsys):
    """rich reads "[red]" as markup: a value quoted in a message must come out as written."""
    from nnctl.cli.app import fail
    from nnctl.errors import ConfigError
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats stderr as a terminal
    monkeypatch.setenv("TERM", "xterm")
    fail(ConfigError("unknown key '[red]x[/red]' in model"))
    err = capsys.readouterr().err
    assert "[red]x[/red]" in err and "error:" in err
