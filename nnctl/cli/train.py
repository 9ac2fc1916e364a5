"""`nnctl train CONFIG`: train with live progress; the run folder keeps the record."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from nnctl.cli.app import app, guarded
from nnctl.cli.threads_option import ThreadsOption, describe


@app.command()
def train(
    config: Annotated[Optional[Path], typer.Argument(
        help="The run config (YAML); with --resume, the run folder's own config.yaml by "
             "default.", show_default=False)] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Override train.epochs.")] = None,
    seed: Annotated[Optional[int], typer.Option(min=0, help="Override the config's seed.")] = None,
    out: Annotated[Path, typer.Option(help="Parent folder of the run folder.")] = Path("runs"),
    progress: Annotated[bool, typer.Option(
        "--progress/--no-progress", help="Live progress bar (only on a terminal).")] = True,
    resume: Annotated[Optional[Path], typer.Option(
        help="Continue this run folder from its checkpoint (only train.epochs may change); "
             "runs/<config>-latest or latest names the newest.")
    ] = None,
    overrides: Annotated[Optional[List[str]], typer.Option(
        "--set", help="Override a config value: --set optimizer.lr=0.01 (repeatable).")] = None,
    threads: ThreadsOption = None,
) -> None:
    """Train the model a config describes, and report test metrics.

    Example: [bold]nnctl train configs/digits_mlp.yaml --set optimizer.lr=0.01 --epochs 5[/];
    [bold]nnctl train --resume runs/digits_mlp-latest --epochs 10[/] trains a run on.
    """
    def run():
        from nnctl.backend import get_backend
        from nnctl.cli.progress import make_reporter
        from nnctl.config import load_config
        from nnctl.threads import parse_threads, use_threads
        from nnctl.train import Trainer
        from nnctl.train.tensorboard_log import with_tensorboard

        requested = parse_threads(threads)
        run_dir, config_path = resume_paths(config, resume)
        cfg = load_config(config_path, overrides or ())
        source = "--threads" if requested is not None else config_threads_source(cfg)
        if requested is None:
            requested = cfg.spec.train.threads
        with use_threads(requested) as count:
            # the resolved config.yaml records the count that ran (auto resolved to a number)
            cfg = with_threads(cfg, count)
            backend = get_backend(device)
            reporter = make_reporter(progress, cfg.spec.train.log_every)
            reporter.threads = describe(count, requested, source)
            # a missing tensorboardX is reported here, before the data are read
            events = with_tensorboard(cfg, reporter)
            trainer = Trainer(cfg, backend, events, out=out, epochs=epochs, seed=seed,
                              resume=run_dir)
            trainer.resume_command = " ".join(
                ["nnctl train"] + ([str(config)] if config is not None else [])
                + [f"--set {shlex.quote(o)}" for o in overrides or ()]
                + ([f"--seed {seed}"] if seed is not None else [])
                + ([f"--epochs {epochs}"] if epochs is not None else [])
                + ([f"--threads {threads}"] if threads is not None else []))
            try:
                summary = trainer.fit()
            finally:
                reporter.close()
        reporter.final(summary)
    guarded(run)


def resume_paths(config: Path | None, resume: Path | None) -> tuple[Path | None, Path]:
    """(the run folder to resume, resolved from a name such as runs/<config>-latest; the
    config to load): CONFIG where given, else the run folder's own resolved config.yaml."""
    from nnctl.errors import UsageError
    from nnctl.train.run_dir import resolve_run_dir
    run_dir = resolve_run_dir(resume) if resume is not None else None
    if config is not None:
        return run_dir, config
    if run_dir is None:
        raise UsageError("missing CONFIG: nnctl train CONFIG, or nnctl train --resume RUN_DIR "
                         "to continue a run")
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        why = "no such folder" if not run_dir.exists() else "it has no config.yaml"
        raise UsageError(f"--resume {run_dir}: {why}; give the run's config too: nnctl train "
                         f"CONFIG --resume {run_dir}")
    return run_dir, saved


def config_threads_source(cfg) -> str:
    """'train.threads' when the config (or a --set) names it, else 'default'."""
    return "train.threads" if "threads" in (cfg.source.data.get("train") or {}) else "default"


def with_threads(cfg, count: int):
    """The config with train.threads set to the count in use."""
    import dataclasses
    train = dataclasses.replace(cfg.spec.train, threads=count)
    return dataclasses.replace(cfg, spec=dataclasses.replace(cfg.spec, train=train))
