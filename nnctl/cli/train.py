"""`nnctl train CONFIG`: train with live progress; the run folder keeps the record."""

from __future__ import annotations

import shlex
import sys
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
    ranks: Annotated[Optional[int], typer.Option(
        "--ranks", min=1, help="Data-parallel training on N processes of this machine, "
                               "launched through the installed mpiexec (docs/distributed.md); "
                               "under mpiexec -n N the launcher's ranks are used.")] = None,
) -> None:
    """Train the model a config describes, and report test metrics.

    Example: [bold]nnctl train configs/digits_mlp.yaml --set optimizer.lr=0.01 --epochs 5[/];
    [bold]nnctl train --resume runs/digits_mlp-latest --epochs 10[/] trains a run on;
    [bold]mpiexec -n 2 nnctl train configs/digits_cnn.yaml[/] (or --ranks 2) trains on 2
    processes.
    """
    from nnctl.distributed import launched_size
    if ranks is not None and ranks > 1 and launched_size() <= 1:
        guarded(lambda: _launch(ranks))
        return

    def run():
        from nnctl.backend import get_backend
        from nnctl.cli.progress import make_reporter
        from nnctl.config import load_config
        from nnctl.threads import parse_threads, use_threads
        from nnctl.train import Trainer
        from nnctl.train.tensorboard_log import with_tensorboard

        requested = parse_threads(threads)
        run_dir, config_path, text = resume_paths_across_ranks(config, resume)
        if text is None:
            cfg = load_config(config_path, overrides or ())
        else:  # a resumed run's own config, as rank 0 read it
            from nnctl.config import config_from
            from nnctl.config.loader import load_yaml_text
            cfg = config_from(load_yaml_text(text, str(config_path)), config_path,
                              overrides or ())
        source = "--threads" if requested is not None else config_threads_source(cfg)
        if requested is None:
            requested = cfg.spec.train.threads
        comm = connect_ranks(cfg)
        with use_threads(requested) as count:
            # the resolved config.yaml records the count that ran (auto resolved to a number)
            cfg = with_threads(cfg, count)
            backend = get_backend(device)
            reporter = make_reporter(progress, cfg.spec.train.log_every)
            reporter.threads = describe(count, requested, source)
            if comm.size > 1:
                reporter.threads += f"; {comm.describe()}"
            # a missing tensorboardX is reported here, before the data are read
            events = with_tensorboard(cfg, reporter) if comm.is_root else None
            if not comm.is_root:  # only rank 0 reports; the others train in silence
                reporter = _Silent()
            trainer = Trainer(cfg, backend, events, out=out, epochs=epochs, seed=seed,
                              resume=run_dir, comm=comm)
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
    from nnctl.distributed import launched_size as size
    if size() > 1:
        _guarded_rank(run)
    else:
        guarded(run)


class _Silent:
    """The reporter of a rank other than 0: says nothing."""

    def close(self) -> None:
        pass

    def final(self, summary) -> None:
        pass


def connect_ranks(cfg):
    """The communicator of a run started by an MPI launcher (SINGLE otherwise), with the
    config's distributed.backend."""
    from nnctl.distributed import connect
    spec = getattr(cfg.spec, "distributed", None)
    return connect(getattr(spec, "backend", None))


def _guarded_rank(run) -> None:
    """One rank of a data-parallel run: errors that every rank meets at the same step (a
    failing step anywhere, an interrupt) end each rank with the same exit code, and only the
    rank that failed (or rank 0) says why. Any other error ends the whole job: this rank says
    why and aborts every rank (no rank is left waiting for it)."""
    import time

    from nnctl.cli.app import fail
    from nnctl.distributed import launched_rank
    from nnctl.errors import NnctlError
    from nnctl.train.trainer import Interrupted, PeerFailure
    from nnctl.distributed import MPICommunicator
    rank = launched_rank()
    try:
        run()
    except PeerFailure as err:  # the failing rank says why
        MPICommunicator().barrier()  # (a rank that exits first makes the launcher kill all)
        raise typer.Exit(err.exit_code) from None
    except Interrupted as err:
        MPICommunicator().barrier()  # rank 0 has written the checkpoint: all may leave
        if rank == 0:
            raise fail(err) from None
        raise typer.Exit(err.exit_code) from None
    except typer.Exit:
        raise
    except BaseException as err:
        code = err.exit_code if isinstance(err, NnctlError) else 1
        message = str(err) if isinstance(err, NnctlError) else f"{type(err).__name__}: {err}"
        where = getattr(err, "nnctl_step", None)
        if where is not None:  # every rank stopped at this step: no abort needed
            sys.stderr.write(f"error: rank {where[0]} failed at epoch {where[1]}, step "
                             f"{where[2]}, and every rank stopped there: {message}\n")
            MPICommunicator().barrier()
            raise typer.Exit(code) from None
        if rank != 0:
            time.sleep(2.0)  # an error every rank meets: rank 0 says it and ends the job
        prefix = f"rank {rank}: " if rank else ""
        sys.stderr.write(f"error: {prefix}{message}\n")
        try:
            MPICommunicator().abort(code)
        finally:
            raise typer.Exit(code) from None


def _launch(ranks: int) -> None:
    """`nnctl train ... --ranks N` started directly: run the same command on N processes
    through mpiexec and end with its exit code. Ctrl-C stops the ranks after their current
    step: they checkpoint and exit 130."""
    import signal
    import subprocess

    from nnctl.distributed import launch_command
    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg == "--ranks":
            skip = True
            continue
        if arg.startswith("--ranks="):
            continue
        argv.append(arg)
    command, env = launch_command(ranks, argv)
    # its own session: a terminal's Ctrl-C reaches this process only, not the launcher (Open
    # MPI's kills the ranks a moment after it forwards SIGINT or SIGTERM)
    process = subprocess.Popen(command, env=env, start_new_session=True,
                               stderr=subprocess.PIPE, text=True, bufsize=1)
    import threading
    relay = threading.Thread(target=_relay_without_launcher_notices,
                             args=(process.stderr, sys.stderr), daemon=True)
    relay.start()
    asked = []

    def stop(signum, frame):
        # the first: SIGUSR1, which the launcher forwards and the ranks take as "stop after
        # this step, checkpoint"; a second: SIGINT, the launcher's stop at once
        process.send_signal(signal.SIGUSR1 if not asked else signal.SIGINT)
        asked.append(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = process.wait()
        relay.join(timeout=5)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    raise typer.Exit(code if code >= 0 else 128 - code)


def _relay_without_launcher_notices(source, target) -> None:
    """Copy the ranks' stderr through, without Open MPI's own notices about ranks that
    exited non-zero (boxed between lines of dashes) or PMIx errors: nnctl's one error line
    already says what happened."""
    block: list[str] | None = None
    for line in source:
        if line.startswith("-" * 20):
            if block is None:
                block = []
                continue
            text = "".join(block)
            block = None
            if not any(word in text for word in ("prterun", "mpiexec", "MPI_ABORT", "PMIx")):
                target.write("-" * 74 + "\n" + text + "-" * 74 + "\n")
            continue
        if block is not None:
            block.append(line)
        elif " PMIX ERROR: " not in line:
            target.write(line)
            target.flush()
    if block:
        target.write("".join(block))


def resume_paths_across_ranks(config: Path | None, resume: Path | None
                              ) -> tuple[Path | None, Path, str | None]:
    """resume_paths, decided by rank 0 in a data-parallel run and broadcast: the other ranks
    need no access to the run folder (a `runs/<config>-latest` name is resolved once, and the
    run's own config.yaml is read once). The text of that config when it was read, else None.
    """
    from nnctl.distributed import MPICommunicator, launched_size
    if resume is None or launched_size() <= 1:
        return (*resume_paths(config, resume), None)
    comm = MPICommunicator()
    payload = None
    if comm.is_root:
        try:
            run_dir, config_path = resume_paths(config, resume)
            text = config_path.read_text(encoding="utf-8") if config is None else None
            payload = (run_dir, config_path, text)
        except Exception as err:  # every rank raises it (rank 0 says it)
            payload = err
    payload = comm.bcast(payload)
    if isinstance(payload, Exception):
        raise payload
    return payload


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
