"""The typer app and its error boundary: the only place errors become exit codes.

Exit codes: 0 success, 1 runtime error or gradcheck failure, 2 config/usage/data error,
3 training diverged (NaN/Inf), 130 interrupted. Heavy modules (numpy, the engine) are
imported inside the commands, so `nnctl --help` answers at once.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from nnctl import __version__

app = typer.Typer(
    name="nnctl",
    help="Train neural networks described in YAML, on a from-scratch autodiff engine.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    epilog="Exit codes: 0 ok, 1 runtime error or gradcheck failure, 2 config/data/usage "
           "error, 3 training diverged, 130 interrupted.",
)

state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        print(f"nnctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
    debug: Annotated[bool, typer.Option(
        "--debug", help="Show the full traceback when something fails.")] = False,
) -> None:
    state["debug"] = debug


def fail(err: BaseException) -> "typer.Exit":
    """Print an nnctl error as one line per problem on stderr; the exit code it carries."""
    from rich.console import Console
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    for e in [err, *getattr(err, "others", [])]:
        console.print(f"[bold red]error:[/] {e}", markup=True, emoji=False) \
            if console.is_terminal else print(f"error: {e}", file=sys.stderr)
    return typer.Exit(getattr(err, "exit_code", 1))


def guarded(fn):
    """Run a command body; NnctlError and Ctrl-C become one message and an exit code."""
    from nnctl.errors import NnctlError
    try:
        return fn()
    except NnctlError as err:
        if state["debug"]:
            raise
        raise fail(err) from None
    except KeyboardInterrupt:
        if state["debug"]:
            raise
        print("interrupted", file=sys.stderr)
        raise typer.Exit(130) from None


def _register() -> None:
    from nnctl.cli import (datasets, evaluate, export_graph, gradcheck, plot,  # noqa: F401
                           sample,
                           summary, train, validate)  # (commands register)


_register()


def main() -> None:
    app()
