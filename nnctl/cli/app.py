"""The typer app and its error boundary: the only place errors become exit codes.

Exit codes: 0 success, 1 runtime error or gradcheck failure, 2 config/usage/data error,
3 training diverged (NaN/Inf), 130 interrupted. Heavy modules (numpy, the engine) are
imported inside the commands, so `nnctl --help` answers at once.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from nnctl import __version__
from nnctl.cli.help_style import plain_parameter_help

plain_parameter_help()  # flags bare (no <bool>), arguments as CONFIG, RUN_DIR
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


def silence(stream) -> None:
    """Point a stream whose reader is gone (a closed pipe, a lost terminal) at /dev/null, so
    that no later write, nor Python's flush at exit, fails again: losing the log never ends
    the work. Streams without a file descriptor (tests) are left as they are."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def say(text: str, stream=None) -> None:
    """print(), except that a stream nobody reads any more is silenced, not fatal."""
    stream = stream or sys.stdout
    try:
        print(text, file=stream, flush=True)
    except OSError:
        silence(stream)


def fail(err: BaseException) -> "typer.Exit":
    """Print an nnctl error as one line per problem on stderr; the exit code it carries."""
    from rich.console import Console
    from rich.markup import escape
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    for e in [err, *getattr(err, "others", [])]:
        try:  # the message is text, not markup: a value like "[red]" is shown as typed
            console.print(f"[bold red]error:[/] {escape(str(e))}", markup=True, emoji=False) \
                if console.is_terminal else say(f"error: {e}", sys.stderr)
        except OSError:
            silence(sys.stderr)
    return typer.Exit(getattr(err, "exit_code", 1))


def os_failure(err: OSError):
    """An OSError no command anticipated, as one line: the path (shortened) and the cause;
    exit 2 when the path itself is unusable (no such folder, read-only, too long), else 1."""
    from nnctl.errors import NnctlError
    from nnctl.train.run_dir import PATH_ERRNOS, os_cause, short_path
    where = f"{short_path(err.filename)}: " if err.filename is not None else ""
    failure = NnctlError(f"{where}{os_cause(err)}")
    failure.exit_code = 2 if err.errno in PATH_ERRNOS else 1
    return failure


def guarded(fn):
    """Run a command body; NnctlError, OSError and Ctrl-C become one message and an exit
    code."""
    from nnctl.errors import NnctlError
    try:
        return fn()
    except NnctlError as err:
        if state["debug"]:
            raise
        raise fail(err) from None
    except BrokenPipeError:  # the reader of our output left (`| head`): nothing to tell it
        if state["debug"]:
            raise
        silence(sys.stdout)
        silence(sys.stderr)
        raise typer.Exit(1) from None
    except OSError as err:
        if state["debug"]:
            raise
        raise fail(os_failure(err)) from None
    except KeyboardInterrupt:
        if state["debug"]:
            raise
        say("interrupted", sys.stderr)
        raise typer.Exit(130) from None


def _register() -> None:
    from nnctl.cli import (datasets, doctor, evaluate, export_graph,  # noqa: F401
                           export_weights, explain, gradcheck, init,
                           plot, runs, sample, summary, train, translate, tune,
                           validate)  # (commands register)


_register()


def main() -> None:
    try:
        app()
    finally:
        try:  # what is still buffered, while a closed pipe can still be silenced
            sys.stdout.flush()
        except OSError:
            silence(sys.stdout)
