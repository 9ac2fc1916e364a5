"""`nnctl sample RUN_DIR`: text from a trained character-level language model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nnctl.cli.app import app, guarded
from nnctl.cli.threads_option import ThreadsOption


@app.command()
def sample(
    run_dir: Annotated[Path, typer.Argument(
        help="A run folder of a text model (dataset: words); runs/<config>-latest: the newest.")],
    length: Annotated[int, typer.Option(min=1, help="Characters to generate.")] = 200,
    prompt: Annotated[str, typer.Option(help="Text to start from.")] = "",
    temperature: Annotated[float, typer.Option(
        help="Below 1: safer, more common characters; above 1: more surprising.")] = 1.0,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the sampling.")] = 0,
    device: Annotated[str, typer.Option(
        help="cpu or cuda: where the model runs and the characters are drawn.")] = "cpu",
    threads: ThreadsOption = None,
) -> None:
    """Generate text from a trained character model, one character at a time.

    Example: [bold]nnctl sample runs/chars_lstm-20261127-101500 --length 300 --prompt "th"[/]
    """
    def run():
        nonlocal run_dir
        from nnctl.train.run_dir import resolve_run_dir
        run_dir = resolve_run_dir(run_dir)  # runs/<config>-latest, latest: the newest run
        from nnctl.threads import parse_threads, use_threads
        from nnctl.train.sample import sample_text
        with use_threads(parse_threads(threads)):
            text = sample_text(run_dir, length, prompt, temperature, seed, device)
        print(text)
    guarded(run)
