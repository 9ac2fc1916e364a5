"""`nnctl translate RUN_DIR TEXT...`: texts through a trained sequence-to-sequence run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nnctl.cli.app import app, guarded, say
from nnctl.cli.threads_option import ThreadsOption


@app.command()
def translate(
    run_dir: Annotated[Path, typer.Argument(
        help="A run folder of a sequence-to-sequence model (e.g. configs/dates_rnn.yaml); "
             "runs/<config>-latest: the newest.")],
    texts: Annotated[Optional[list[str]], typer.Argument(
        help="Texts to translate (or --file).", show_default=False)] = None,
    file: Annotated[Optional[Path], typer.Option(
        "--file", "-f", help="A UTF-8 file of texts, one per line.")
    ] = None,
    beam: Annotated[int, typer.Option(min=1, help="Beam width; 1 = greedy.")] = 1,
    max_len: Annotated[Optional[int], typer.Option(
        min=1, help="Most output tokens (the end not counted); default: the longest target "
                    "in the run's data.")] = None,
    length_penalty: Annotated[float, typer.Option(
        help="Beam search ranks finished outputs by log P / length ** this; 0 = no "
             "normalisation.")] = 1.0,
    weights: Annotated[str, typer.Option(help="final (weights.npz) or best (best.npz).")
                       ] = "final",
    show_score: Annotated[bool, typer.Option(
        "--show-score", help="Add each output's log-probability.")] = False,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    threads: ThreadsOption = None,
) -> None:
    """Translate texts with a trained sequence-to-sequence run: one line per text, in order.

    On a terminal each line reads [bold]text -> translation[/]; piped or redirected, only the
    translation (with --show-score: a tab, then the log-probability), so the output lines up
    with the input file.

    Example: [bold]nnctl translate runs/dates_rnn-20261127-101500 "the 5th of may 1987" --beam 4[/]
    """
    def run():
        nonlocal run_dir
        from nnctl.train.run_dir import resolve_run_dir
        run_dir = resolve_run_dir(run_dir)  # runs/<config>-latest, latest: the newest run
        import sys

        from nnctl.backend import get_backend
        from nnctl.errors import UsageError
        from nnctl.threads import parse_threads, use_threads
        from nnctl.train.inference import load_run
        from nnctl.train.translate import translate_scored

        inputs = list(texts or [])
        wheres = [f"text {i}" for i in range(1, len(inputs) + 1)]
        if file is not None:
            lines = read_lines(file)
            inputs += lines
            wheres += [f"{file}:{line}" for line in range(1, len(lines) + 1)]
        if not inputs:
            raise UsageError("nothing to translate: give texts, or --file FILE")
        with use_threads(parse_threads(threads)):
            trainer = load_run(run_dir, get_backend(device), weights)
            found = translate_scored(trainer, inputs, beam, max_len, length_penalty, wheres)
        terminal = sys.stdout.isatty()
        for source, (text, decoded) in zip(inputs, found):
            say(output_line(source, text, decoded.log_prob if show_score else None, terminal))
    guarded(run)


def output_line(source: str, translation: str, log_prob: float | None, terminal: bool) -> str:
    """`source -> translation` for a reader, the translation alone for a program; with a
    log-probability, a tab and it (4 decimals)."""
    score = "" if log_prob is None else f"\t{log_prob:.4f}"
    return f"{source} -> {translation}{score}" if terminal else f"{translation}{score}"


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 file, line ends stripped (a blank one is refused later, by its
    file:line, so that output line n always answers input line n)."""
    from nnctl.errors import DataError
    if not path.is_file():
        raise DataError("no such file", path=str(path))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"not UTF-8 text ({err.reason} at byte {err.start})",
                        path=str(path)) from None
    return lines
