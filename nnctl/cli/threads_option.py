"""`--threads N|auto` for the commands that run a model (train, evaluate, predict, sample,
gradcheck): the BLAS and numba thread count (nnctl/threads.py; docs/config.md, train.threads)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

THREADS_HELP = ("Threads of BLAS and numba's pool: N, or auto (the idle cores). Default: "
                "train.threads, else 1.")

# a string, so that 'auto' is accepted and a bad value is nnctl's one-line error (exit 2)
# rather than click's usage box
ThreadsOption = Annotated[Optional[str], typer.Option(
    "--threads", metavar="N|auto", help=THREADS_HELP, show_default=False)]


def describe(count: int, requested, source: str) -> str:
    """How the log names the choice: '1 thread (default)', '2 threads (auto)',
    '4 threads (--threads)'."""
    how = "auto" if requested == "auto" else source
    return f"{count} thread{'s' if count != 1 else ''} ({how})"
