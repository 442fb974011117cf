"""The ``retention-lab`` command: run, rerun, simulate, validate, report.

The CLI is thin: it parses options, sets up logging, calls the library and
maps outcomes to exit codes (0 success, 1 a stage failed, 2 a user error such
as bad data or a bad configuration, printed without a traceback, 3 a rerun
whose headline results differ from the original's).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer
from rich.console import Console

from retention_lab.config import (
    DEFAULT_CONFIG,
    NOTEBOOKS_DIR,
    REPORTS_DIR,
    load_config,
    with_as_of,
)
from retention_lab.errors import RetentionLabError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
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


def _progress_printer():
    """A ``run_pipeline`` progress callback printing one line per stage start and end."""
    import time

    started: dict[str, float] = {}

    def progress(index: int, total: int, stage: str, status: str) -> None:
        if status == "running":
            started[stage] = time.perf_counter()
            console.print(f"[{index + 1}/{total}] {stage} ...", highlight=False)
        else:
            colour = "green" if status == "succeeded" else "red"
            seconds = time.perf_counter() - started.get(stage, time.perf_counter())
            console.print(
                f"[{index + 1}/{total}] {stage} [{colour}]{status}[/] ({seconds:.1f} s)",
                highlight=False,
            )

    return progress


def _fail(error: RetentionLabError) -> None:
    console.print(f"[bold red]error:[/] {error}", highlight=False, markup=True, soft_wrap=True)
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
    try:
        run_config = _load(config, as_of)
        with console.status(f"running {run_config.name}", spinner="dots"):
            outcome = run_pipeline(
                run_config,
                reports_dir=reports_dir,
                notebooks_dir=notebooks_dir,
                fast=fast,
                progress=_progress_printer(),
            )
    except RetentionLabError as error:
        _fail(error)
    _exit_if_failed(outcome)
    console.print(f"[green]run {outcome.run_dir.name} succeeded[/]", highlight=False)
    typer.echo(str((reports_dir / "index.html").resolve()))


def _exit_if_failed(outcome) -> None:
    """Name the failed stage and its partial notebook, and exit 1, if a stage failed."""
    if not outcome.succeeded:
        failed = outcome.failed_stage
        cell = f" in cell {failed.cell_index}" if failed.cell_index is not None else ""
        console.print(
            f"[bold red]stage '{failed.stage}' failed{cell}:[/] {failed.error}", highlight=False
        )
        console.print(
            f"partial notebook kept at {outcome.run_dir / (failed.notebook or '')}", highlight=False
        )
        console.print(f"run report: {outcome.run_dir / 'index.html'}", highlight=False)
        raise typer.Exit(EXIT_STAGE_FAILED)


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
    try:
        with console.status(f"re-running {run_folder.name}", spinner="dots"):
            result = run_again(
                run_folder,
                reports_dir=reports_dir,
                notebooks_dir=notebooks_dir,
                progress=_progress_printer(),
            )
    except RetentionLabError as error:
        _fail(error)
    for line in result.differences:
        console.print(f"[yellow]warning:[/] {line}", highlight=False, markup=True)
    _exit_if_failed(result.run)
    new = result.run.run_dir
    if not result.results_match:
        console.print(
            f"[bold red]headline results differ[/] from {run_folder.name} "
            f"in {len(result.mismatches)} places:",
            highlight=False,
        )
        for line in result.mismatches[:MAX_MISMATCHES_SHOWN]:
            console.print(f"  {line}", highlight=False)
        if len(result.mismatches) > MAX_MISMATCHES_SHOWN:
            console.print(f"  ... and {len(result.mismatches) - MAX_MISMATCHES_SHOWN} more")
        typer.echo(str(new.resolve()))
        raise typer.Exit(EXIT_RESULTS_DIFFER)
    console.print(
        f"[green]headline results match[/] {run_folder.name}: {result.compared} metrics "
        f"and every stage's findings are equal (new run {new.name})",
        highlight=False,
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
        console.print(f"[bold red]error:[/] {error}", highlight=False)
        raise typer.Exit(EXIT_USER_ERROR) from None
    if out.exists() and any(out.iterdir()):
        console.print(
            f"[bold red]error:[/] {out} exists and is not empty; choose a new folder",
            highlight=False,
        )
        raise typer.Exit(EXIT_USER_ERROR)
    data = run_simulation(settings, random_state=seed)
    write_simulation(data, out)
    console.print(f"{len(data.customers):,} customers, as_of {data.as_of}", highlight=False)
    typer.echo(str(out.resolve()))


@app.command()
def validate(
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="Run configuration (YAML)"),
    as_of: str | None = AS_OF_OPTION,
) -> None:
    """Load and validate a configuration's data without running any stage."""
    from retention_lab.data import load_tables

    try:
        run_config = _load(config, as_of)
        tables, _ = load_tables(run_config.data, random_state=run_config.seed)
    except RetentionLabError as error:
        _fail(error)
    typer.echo(f"{config}: valid; {tables!r}")


@app.command()
def report(
    reports_dir: Path = typer.Option(REPORTS_DIR, help="Folder that holds one folder per run"),
) -> None:
    """Re-render the index of all runs (reports/index.html)."""
    from retention_lab.report import render_reports_index

    typer.echo(str(render_reports_index(reports_dir).resolve()))


if __name__ == "__main__":
    app()
