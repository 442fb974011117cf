"""The ``retention-lab`` command: run, rerun, simulate, validate, report.

The CLI is thin: it parses options, sets up logging, calls the library and
maps outcomes to exit codes (0 success, 1 a stage failed or an internal error,
2 a user error such as bad data or a bad configuration, 3 a rerun whose
headline results differ from the original's, 128 + the signal's number when
SIGINT or SIGTERM stopped a run). Every message is one line (a list of data
problems excepted), printed as plain text, never as markup and never with a
traceback: an internal error's traceback goes to the run's ``run.log`` (or,
before a run folder exists, to a log file named in the line).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from retention_lab.config import (
    DEFAULT_CONFIG,
    NOTEBOOKS_DIR,
    REPORTS_DIR,
    load_config,
    with_as_of,
)
from retention_lab.errors import RetentionLabError, user_error_names
from retention_lab.progress import LOGGER as PROGRESS_LOGGER

# jsonschema (under nbformat and papermill) checks the "iri" formats only where
# rfc3987_syntax is installed, which JupyterLab's dependencies bring; its import builds
# 39 Lark grammars, 1.3 s of every command. Nothing the workbench validates is an IRI,
# so its commands do without that check.
sys.modules.setdefault("rfc3987_syntax", None)


class _App(typer.Typer):
    """The command group; any error no command handles is one line and exit 1.

    Its traceback goes to a log file named in that line, never to the terminal.
    """

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except Exception as error:
            from retention_lab.lifecycle import describe

            with tempfile.NamedTemporaryFile(
                "w", prefix="retention-lab-error-", suffix=".log", delete=False
            ) as handle:
                traceback.print_exc(file=handle)
            say(f"{describe(error)} (traceback in {handle.name})", label="internal error:")
            raise SystemExit(EXIT_STAGE_FAILED) from None


app = _App(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="retention_lab: survival, uplift, lifetime value and retention planning.",
)
console = Console(stderr=True)

EXIT_STAGE_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_RESULTS_DIFFER = 3
MAX_MISMATCHES_SHOWN = 10


def _print_version(value: bool) -> None:
    if value:
        from retention_lab import __version__

        typer.echo(f"retention-lab {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit",
    ),
) -> None:
    """retention_lab: survival, uplift, lifetime value and retention planning."""


def _setup_logging(verbose: bool) -> None:
    # MLflow sets its own log level when imported (later, in the runner and the kernels)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("mlflow", "alembic", "traitlets", "papermill"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose else logging.ERROR)
    # the steps of long stages, which the runner forwards from the stage kernels
    steps = logging.getLogger(PROGRESS_LOGGER)
    steps.setLevel(logging.INFO)
    steps.propagate = False
    if not any(isinstance(h, _ConsoleHandler) for h in steps.handlers):
        steps.addHandler(_ConsoleHandler())


class _ConsoleHandler(logging.Handler):
    """Log records printed as indented lines on the console (above its spinner)."""

    def emit(self, record: logging.LogRecord) -> None:
        console.print(Text(f"      {record.getMessage()}"), highlight=False, soft_wrap=True)


AS_OF_OPTION = typer.Option(
    None,
    "--as-of",
    help="Snapshot date YYYY-MM-DD instead of the configuration's data.as_of "
    "(a scheduler's run date; an earlier date for a backfill)",
)


def _load(config: Path, as_of: str | None):
    """The configuration, observing its data at ``as_of`` when given."""
    run_config = load_config(config)
    return run_config if as_of is None else with_as_of(run_config, as_of, file=str(config))


def say(message: object, *, label: str = "", style: str = "bold red") -> None:
    """Print a line to stderr; ``message`` is plain text (``[/red]`` in a path stays text)."""
    line = Text.assemble((label, style), " " if label else "", str(message))
    console.print(line, highlight=False, soft_wrap=True)


def _progress_printer():
    """A ``run_pipeline`` progress callback printing one line per stage start and end."""
    import time

    started: dict[str, float] = {}

    def progress(index: int, total: int, stage: str, status: str) -> None:
        if status == "running":
            started[stage] = time.perf_counter()
            console.print(Text(f"[{index + 1}/{total}] {stage} ..."), highlight=False)
        else:
            colour = "green" if status == "succeeded" else "red"
            seconds = time.perf_counter() - started.get(stage, time.perf_counter())
            line = Text.assemble(
                f"[{index + 1}/{total}] {stage} ", (status, colour), f" ({seconds:.1f} s)"
            )
            console.print(line, highlight=False)

    return progress


def _fail(error: RetentionLabError) -> None:
    say(error, label="error:")
    raise typer.Exit(EXIT_USER_ERROR)


@app.command()
def run(
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="Run configuration (YAML)"),
    reports_dir: Path = typer.Option(REPORTS_DIR, help="Folder that holds one folder per run"),
    fast: bool = typer.Option(False, help="Shrink the work in every stage (for smoke tests)"),
    notebooks_dir: Path = typer.Option(NOTEBOOKS_DIR, help="Folder of the stage notebooks"),
    as_of: str | None = AS_OF_OPTION,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details"),
) -> None:
    """Run the pipeline of a configuration and render its reports."""
    from retention_lab.runner import run_pipeline

    _setup_logging(verbose)
    with _run_errors():
        run_config = _load(config, as_of)
        with console.status(Text(f"running {run_config.name}"), spinner="dots"):
            outcome = run_pipeline(
                run_config,
                reports_dir=reports_dir,
                notebooks_dir=notebooks_dir,
                fast=fast,
                progress=_progress_printer(),
            )
    _exit_if_failed(outcome)
    say(f"run {outcome.run_dir.name} succeeded", label="", style="green")
    typer.echo(str((reports_dir / "index.html").resolve()))


@contextmanager
def _run_errors() -> Iterator[None]:
    """Turn a user error, a signal or a crash during a run into its one line and exit code."""
    from retention_lab.lifecycle import RunCrashed, RunInterrupted

    try:
        yield
    except RetentionLabError as error:
        _fail(error)
    except RunInterrupted as interrupt:
        say(f"the run was {interrupt}; it is recorded as killed", label="stopped:")
        raise typer.Exit(interrupt.exit_code) from None
    except RunCrashed as crash:
        say(crash, label="internal error:")
        raise typer.Exit(EXIT_STAGE_FAILED) from None


def _exit_if_failed(outcome) -> None:
    """Name the failed stage and its partial notebook, and exit 1 (2 for a user error)."""
    if not outcome.succeeded:
        failed = outcome.failed_stage
        cell = f" in cell {failed.cell_index}" if failed.cell_index is not None else ""
        say(failed.error, label=f"stage '{failed.stage}' failed{cell}:")
        say(f"partial notebook kept at {outcome.run_dir / (failed.notebook or '')}")
        say(f"run report: {outcome.run_dir / 'index.html'}")
        user_error = (failed.error or "").split(":")[0] in user_error_names()
        raise typer.Exit(EXIT_USER_ERROR if user_error else EXIT_STAGE_FAILED)


@app.command()
def rerun(
    run_folder: Path = typer.Argument(..., help="Folder of the earlier run (reports/<run>)"),
    reports_dir: Path | None = typer.Option(
        None, help="Folder for the new run (default: beside the earlier one)"
    ),
    notebooks_dir: Path = typer.Option(NOTEBOOKS_DIR, help="Folder of the stage notebooks"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details"),
) -> None:
    """Run an earlier run's configuration and as_of again; say what differs from it.

    One warning line per difference in provenance (commit, packages, data
    fingerprint); exit 3 if the headline results differ.
    """
    from retention_lab.rerun import rerun as run_again

    _setup_logging(verbose)
    with _run_errors():
        with console.status(Text(f"re-running {run_folder.name}"), spinner="dots"):
            result = run_again(
                run_folder,
                reports_dir=reports_dir,
                notebooks_dir=notebooks_dir,
                progress=_progress_printer(),
            )
    for line in result.differences:
        say(line, label="warning:", style="yellow")
    _exit_if_failed(result.run)
    new = result.run.run_dir
    if not result.results_match:
        say(
            f"from {run_folder.name} in {len(result.mismatches)} places:",
            label="headline results differ",
        )
        for line in result.mismatches[:MAX_MISMATCHES_SHOWN]:
            say(f"  {line}")
        if len(result.mismatches) > MAX_MISMATCHES_SHOWN:
            say(f"  ... and {len(result.mismatches) - MAX_MISMATCHES_SHOWN} more")
        typer.echo(str(new.resolve()))
        raise typer.Exit(EXIT_RESULTS_DIFFER)
    say(
        f"{run_folder.name}: {result.compared} metrics and every stage's findings are equal "
        f"(new run {new.name})",
        label="headline results match",
        style="green",
    )
    typer.echo(str(new.resolve()))


@app.command()
def simulate(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the tables and ground truth"),
    customers: int = typer.Option(50_000, help="Number of customers"),
    seed: int = typer.Option(0, help="Random seed"),
    months: int = typer.Option(72, help="Length of the simulated window in months"),
    randomised_share: float = typer.Option(0.3, help="Share of randomised retention cases"),
    shock_month: int | None = typer.Option(
        None, help="Month a competitor enters (no shock if unset)"
    ),
    transactions: bool = typer.Option(True, help="Also write monthly bills as transactions"),
) -> None:
    """Simulate a telecom-like customer base with ground truth and write it as Parquet."""
    from retention_lab.data.simulate import MarketShock, SimulatorSettings, write_simulation
    from retention_lab.data.simulate import simulate as run_simulation

    try:
        settings = SimulatorSettings(
            n_customers=customers,
            months=months,
            randomised_share=randomised_share,
            shock=MarketShock(month=shock_month) if shock_month is not None else None,
            transactions=transactions,
        )
    except ValueError as error:
        say(error, label="error:")
        raise typer.Exit(EXIT_USER_ERROR) from None
    if out.exists() and any(out.iterdir()):
        say(f"{out} exists and is not empty; choose a new folder", label="error:")
        raise typer.Exit(EXIT_USER_ERROR)
    data = run_simulation(settings, random_state=seed)
    write_simulation(data, out)
    say(f"{len(data.customers):,} customers, as_of {data.as_of}")
    typer.echo(str(out.resolve()))


@app.command()
def validate(
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="Run configuration (YAML)"),
    as_of: str | None = AS_OF_OPTION,
    notebooks_dir: Path = typer.Option(NOTEBOOKS_DIR, help="Folder of the stage notebooks"),
) -> None:
    """Check a configuration, its stages, its data, campaign export and renewal table."""
    from retention_lab.data import load_tables
    from retention_lab.runner import find_stage_notebooks

    try:
        run_config = _load(config, as_of)
        find_stage_notebooks(run_config, notebooks_dir)
        tables, _ = load_tables(run_config.data, random_state=run_config.seed)
        campaign = ""
        if run_config.uplift.campaign is not None:
            from retention_lab.uplift.cases import read_campaign

            campaign = f"; {read_campaign(run_config.uplift.campaign)!r}"
        if run_config.clv.renewals is not None:
            from retention_lab.clv.renewals import read_renewals

            renewals = read_renewals(run_config.clv.renewals)
            campaign += (
                f"; renewals: {renewals['cohort'].nunique()} cohorts, "
                f"{int(renewals['period'].max()) + 1} periods"
            )
    except RetentionLabError as error:
        _fail(error)
    typer.echo(f"{config}: valid; {tables!r}{campaign}")


@app.command()
def report(
    reports_dir: Path = typer.Option(REPORTS_DIR, help="Folder that holds one folder per run"),
) -> None:
    """Close runs that died without a word and re-render the index of all runs."""
    from retention_lab.lifecycle import close_dead_runs
    from retention_lab.report import render_reports_index

    try:
        close_dead_runs(reports_dir)
        typer.echo(str(render_reports_index(reports_dir).resolve()))
    except RetentionLabError as error:
        _fail(error)


if __name__ == "__main__":
    app()
