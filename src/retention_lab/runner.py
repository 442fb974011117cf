"""Execute a pipeline of stage notebooks with papermill, tracked in MLflow.

A run creates ``reports/<timestamp>-<name>/`` (never reusing a folder), opens
an MLflow parent run, executes each stage notebook as a child run with the
injected parameters (a stage once the stages it reads have finished, those
that do not read each other side by side; see ``_Scheduler``), writes the
executed notebook and its HTML report, and refreshes the run index and the
index of all runs. The runner owns failure: it catches papermill's execution
error only here, keeps the partial notebook, marks the MLflow runs FAILED and
returns a ``RunOutcome`` naming the failed stage. The runner knows stages only
by their notebook names.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path

from retention_lab import contract, lifecycle, provenance, report, tracking
from retention_lab.config import (
    KERNEL_NAME,
    NOTEBOOKS_DIR,
    REPORTS_DIR,
    RunConfig,
    dump_config,
    flatten,
)
from retention_lab.errors import ConfigError, OutputContractError, OutputError, RetentionLabError
from retention_lab.kernels import KERNEL_ARGUMENTS, WarmKernels, shut_down
from retention_lab.lifecycle import describe
from retention_lab.progress import LOGGER as PROGRESS_LOGGER
from retention_lab.progress import ProgressTail
from retention_lab.run_summary import headline_metrics
from retention_lab.stage import (
    RUN_CONFIG_FILE,
    TABLES_DIR,
    StageContext,
    log_listed,
    read_artifacts,
    read_results,
    store_tables,
)

log = logging.getLogger(__name__)
progress_log = logging.getLogger(PROGRESS_LOGGER)

STAGE_PARAMETERS = ("config_file", "run_dir", "mlflow_run_id", "fast")
KERNEL_START_RETRIES = 1  # a kernel that could not start (a port taken meanwhile) gets one more try
REPORT_TAG = "retention_lab.report"
DEFAULT_MAX_CONCURRENCY = 2
FINISHED = ("succeeded", "skipped")  # a stage whose dependants may start
STOP_POLL_SECONDS = 1.0
PROGRESS_POLL_SECONDS = 1.0  # how often the stages' progress files are read
REPORT_WAIT_SECONDS = 60  # how long a run that stops waits for a stage writing its report


@dataclass(frozen=True)
class StageOutcome:
    """What happened to one stage of a run."""

    stage: str
    status: str  # "succeeded", "skipped" (dataset lacks what it needs), "failed" or "not run"
    notebook: str | None = None  # relative to the run folder
    html: str | None = None
    error: str | None = None
    cell_index: int | None = None
    seconds: float | None = None  # the notebook's execution
    findings: list[str] = field(default_factory=list)
    started_at: str | None = None  # local time, to the millisecond (the stage's whole work)
    checked_at: str | None = None  # its tables checked: the stages that read them may start
    finished_at: str | None = None


@dataclass(frozen=True)
class RunOutcome:
    """What happened to a whole run."""

    run_dir: Path
    status: str  # "succeeded" or "failed"
    stages: list[StageOutcome]
    mlflow_run_id: str

    @property
    def succeeded(self) -> bool:
        """Whether every stage succeeded."""
        return self.status == "succeeded"

    @property
    def failed_stage(self) -> StageOutcome | None:
        """The stage that failed, if any."""
        return next((s for s in self.stages if s.status == "failed"), None)


ProgressCallback = Callable[[int, int, str, str], None]


def find_notebook(stage: str, notebooks_dir: Path = NOTEBOOKS_DIR) -> Path:
    """The notebook ``NN_<stage>.ipynb`` of a stage."""
    matches = sorted(notebooks_dir.glob(f"[0-9][0-9]_{stage}.ipynb"))
    if len(matches) != 1:
        known = sorted(p.stem.split("_", 1)[1] for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
        problem = "no notebook" if not matches else "several notebooks"
        raise ConfigError(
            file="configuration",
            problems=[
                (
                    "stages",
                    f"{problem} for stage '{stage}' in {notebooks_dir} (known stages: {known})",
                )
            ],
        )
    return matches[0]


def check_stage_notebook(notebook: Path) -> None:
    """A stage notebook must declare exactly the runner's parameters in a tagged cell."""
    import papermill

    declared = set(papermill.inspect_notebook(str(notebook)))
    missing = [p for p in STAGE_PARAMETERS if p not in declared]
    if missing:
        raise ConfigError(
            file=str(notebook),
            problems=[("parameters", f"the cell tagged 'parameters' must define {missing}")],
        )


def find_stage_notebooks(config: RunConfig, notebooks_dir: Path = NOTEBOOKS_DIR) -> dict[str, Path]:
    """Every configured stage's notebook, checked; unknown stages raise ``ConfigError``."""
    notebooks = {stage: find_notebook(stage, notebooks_dir) for stage in config.stages}
    for notebook in notebooks.values():
        check_stage_notebook(notebook)
    return notebooks


def stage_requirements(notebook: Path) -> dict:
    """What a stage needs of the dataset, from its notebook metadata.

    ``metadata.retention_lab.requires`` lists tables (e.g. ``["interventions"]``);
    ``requires_dates: true`` asks for dated customers (not only an aggregated tenure);
    ``or_export`` names a table the stage reads itself (``clv.renewals``) that
    stands in for the required tables when configured.
    """
    metadata = json.loads(notebook.read_text()).get("metadata", {})
    return metadata.get("retention_lab", {})


def unmet_requirements(
    requirements: dict, tables: dict, exports: tuple[str, ...] = ()
) -> list[str]:
    """Plain-language list of what the dataset lacks for a stage (empty when nothing).

    ``exports`` are the configured tables stages read themselves
    (:meth:`~retention_lab.config.RunConfig.exports`).
    """
    if requirements.get("or_export") in exports:
        return []
    unmet = [
        f"the {name} table"
        for name in requirements.get("requires", [])
        if name not in tables["tables"]
    ]
    if requirements.get("requires_dates") and not tables.get("has_dates", True):
        has_customers = "customers" in tables["tables"]  # without customers, that is what lacks
        unmet.append(
            "customer signup and end dates (this dataset has only an aggregated tenure)"
            if has_customers
            else "the customers table"
        )
    if unmet and requirements.get("or_export"):
        unmet[-1] += f" (or {requirements['or_export']} in the configuration)"
    return unmet


def stage_order(stages: list[str], requirements: dict[str, dict]) -> dict[str, list[str]]:
    """Each stage's predecessors in a run: the stages it reads, from its notebook metadata.

    ``metadata.retention_lab.inputs`` names the stages whose outputs a stage
    reads (``plan`` reads ``survival``, ``uplift`` and ``clv``). Only inputs
    configured earlier in ``stages`` count: a stage listed before its input
    runs without it, as when the input is not configured at all.
    """
    order = {}
    for index, stage in enumerate(stages):
        declared = requirements[stage]
        inputs = declared.get("inputs", []) if isinstance(declared, dict) else []
        order[stage] = [s for s in inputs if s in stages[:index]]
    return order


def waiting_on(order: dict[str, list[str]]) -> dict[str, int]:
    """How many stages wait, directly or through others, on each stage of ``order``.

    When more stages are ready than may run, those most others wait on start
    first: the survival stage (clv, plan and monitoring wait on it) before the
    data stage (only monitoring does), so the longest chain starts earliest.
    """
    readers = {stage: {s for s, reads in order.items() if stage in reads} for stage in order}

    def downstream(stage: str) -> set[str]:
        found = set(readers[stage])
        for reader in readers[stage]:
            found |= downstream(reader)
        return found

    return {stage: len(downstream(stage)) for stage in order}


def start_order(order: dict[str, list[str]]) -> list[str]:
    """The order the stages of ``order`` are expected to start in, as the scheduler starts them.

    Of the stages whose inputs' stages have started, the one most others wait
    on (:func:`waiting_on`) first, then in configured order. The warm kernels
    are started in this order.
    """
    waiting, started = waiting_on(order), []
    while len(started) < len(order):
        ready = [s for s in order if s not in started and set(order[s]) <= set(started)]
        started.append(max(ready, key=lambda stage: waiting[stage]))  # the first of equals
    return started


def concurrency(config: RunConfig) -> int:
    """How many stages run at once: the configured number, else the cores (at most 2).

    The default stops at two because every running stage holds its own kernel
    and its data (several GB each on a million customers).
    """
    if config.runner.concurrency:
        return config.runner.concurrency
    return max(1, min(len(os.sched_getaffinity(0)), DEFAULT_MAX_CONCURRENCY))


def ensure_kernel(name: str) -> None:
    """Check that the Jupyter kernel ``name`` exists; register the project's own if missing.

    Any other name must be installed already: a mistyped name is an error, not
    a new kernel.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    try:
        manager.get_kernel_spec(name)
        return
    except NoSuchKernel:
        if name != KERNEL_NAME:
            installed = sorted(manager.find_kernel_specs())
            problem = f"no Jupyter kernel {name!r} (installed: {installed})"
            raise ConfigError(file="configuration", problems=[("runner.kernel", problem)]) from None
    from ipykernel.kernelspec import install

    log.info("registering Jupyter kernel %s for %s", name, sys.executable)
    install(kernel_name=name, display_name=f"Python ({name})", prefix=sys.prefix)


def new_run_dir(reports_dir: Path, name: str) -> Path:
    """Create a fresh run folder ``<timestamp>-<name>``; an existing one is never reused."""
    stem = f"{datetime.now():%Y%m%d-%H%M%S}-{name}"
    try:
        reports_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1000):
            candidate = reports_dir / (stem if attempt == 0 else f"{stem}-{attempt + 1}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
    except OSError as error:
        raise OutputError(path=str(reports_dir), reason=error.strerror or str(error)) from None
    raise RuntimeError(f"could not create a run folder for {stem} in {reports_dir}")


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def _record(
    config: RunConfig,
    run_dir: Path,
    stages: list[StageOutcome],
    status: str,
    mlflow_run_id: str,
    started_at: str,
    finished_at: str | None,
) -> dict:
    return {
        "name": config.name,
        "description": config.description,
        "status": status,
        "started_at": started_at,
        "finished_at": finished_at,
        "folder": run_dir.name,
        "experiment": config.tracking.experiment,
        "experiment_id": tracking.ensure_experiment(
            config.tracking.experiment, config.resolved_tracking_uri()
        ),
        "mlflow_run_id": mlflow_run_id,
        "stages": [asdict(s) for s in stages],
    }


def _execute_stage(
    stage: str,
    notebook: Path,
    run_dir: Path,
    config: RunConfig,
    *,
    parent_run_id: str,
    fast: bool,
    footer: str = "",
    stopped: Callable[[], str | None] = lambda: None,
    kernels: WarmKernels | None = None,
    outputs_checked: Callable[[str], None] = lambda status: None,
) -> StageOutcome:
    """Run one stage: its notebook in a kernel, its tables' contract, its report and MLflow run.

    The kernel is a warm one from ``kernels`` if there is one ready, else its own.
    ``outputs_checked(status)`` is called once the stage's tables are checked,
    before its report: the stages that read them may start meanwhile.
    """
    uri = config.resolved_tracking_uri()
    stage_dir = run_dir / stage
    stage_dir.mkdir(exist_ok=True)
    output = stage_dir / notebook.name
    child_id = tracking.start_run(
        uri,
        config.tracking.experiment,
        run_name=stage,
        parent_run_id=parent_run_id,
        tags={"stage": stage},
    )
    parameters = {
        "config_file": str(run_dir / RUN_CONFIG_FILE),
        "run_dir": str(run_dir),
        "mlflow_run_id": child_id,
        "fast": fast,
    }
    started = time.perf_counter()
    error, cell_index = _run_notebook(
        stage, notebook, output, run_dir, config, parameters, stopped, kernels
    )
    seconds = time.perf_counter() - started
    notebook_path = str(output.relative_to(run_dir)) if output.is_file() else None
    if stopped():  # its kernel was stopped: the run records the stage, MLflow closes its tree
        return StageOutcome(
            stage=stage, status="killed", seconds=seconds, error=stopped(), notebook=notebook_path
        )
    results = read_results(run_dir, stage)
    error = error or _check_results(run_dir, stage, results)
    status = "failed" if error else "succeeded"
    outputs_checked(status)
    findings = results["findings"] if results and not error else []
    html = None
    if output.is_file():
        html_path = _render_report(
            output, config, stage, uri=uri, status=status, findings=findings, error=error,
            footer=footer, child_id=child_id,
        )  # fmt: skip
        html = str(html_path.relative_to(run_dir))
    _log_stage_run(uri, run_dir, stage, child_id, parent_run_id, results, error)
    return StageOutcome(
        stage=stage,
        status=status,
        seconds=seconds,
        error=error,
        cell_index=cell_index,
        notebook=notebook_path,
        html=html,
        findings=findings,
    )


def _run_notebook(
    stage: str,
    notebook: Path,
    output: Path,
    run_dir: Path,
    config: RunConfig,
    parameters: dict,
    stopped: Callable[[], str | None],
    kernels: WarmKernels | None,
) -> tuple[str | None, int | None]:
    """Execute the stage notebook with papermill; the error (one line) and failing cell, if any.

    The first try takes a warm kernel if ``kernels`` has one. A kernel that
    never started (no cell began) is tried once more, a kernel of its own.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    error = cell_index = None
    for attempt in range(1 + KERNEL_START_RETRIES):
        warm = kernels.take(stage) if kernels and attempt == 0 and not stopped() else None
        try:
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters=parameters,
                kernel_name=config.runner.kernel,
                cwd=str(run_dir),
                progress_bar=False,
                execution_timeout=config.runner.cell_timeout_s,
                extra_arguments=KERNEL_ARGUMENTS,
                km=warm,
            )
            error = None
        except PapermillExecutionError as exc:
            error, cell_index = f"{exc.ename}: {' '.join(exc.evalue.split())}", exc.cell_index
        except Exception as exc:  # kernel died, timeout, unreadable notebook: a failed stage
            error = describe(exc)
            if attempt < KERNEL_START_RETRIES and not stopped() and not _any_cell_started(output):
                log.warning("stage %s: the kernel did not start (%s); retrying", stage, error)
                continue
        finally:
            if warm is not None:  # papermill leaves a kernel it did not start running
                shut_down(warm)
        break
    return error, cell_index


def _check_results(run_dir: Path, stage: str, results: dict | None) -> str | None:
    """Why a notebook that ran through did not succeed: no results.json, or a broken contract.

    Its tables are checked here, before a later stage reads them.
    """
    if results is None:
        return "the notebook finished without writing results.json (stage.finish was not called)"
    try:
        saved = sorted(path.stem for path in (run_dir / stage).glob("*.parquet"))
        contract.check_saved(run_dir, stage, saved)
    except OutputContractError as exc:
        return str(exc)
    return None


def _render_report(
    output: Path,
    config: RunConfig,
    stage: str,
    *,
    uri: str,
    status: str,
    findings: list[str],
    error: str | None,
    footer: str,
    child_id: str,
) -> Path:
    """The stage's HTML report from its executed notebook, linked from and logged to its run."""
    experiment_id = tracking.ensure_experiment(config.tracking.experiment, uri)
    html_path = report.render_stage(
        output,
        output.parent / f"{stage}.html",
        title=stage,
        run_name=config.name,
        status=status,
        findings=findings,
        error=error,
        footer=footer,
        mlflow_url=report.run_url(config.report.mlflow_ui_url, experiment_id, child_id),
        max_table_rows=config.report.max_table_rows,
        max_table_columns=config.report.max_table_columns,
    )
    tracking.set_tags(uri, child_id, {REPORT_TAG: html_path.resolve().as_uri()})
    tracking.log_artifact(uri, child_id, output, "notebook")
    tracking.log_artifact(uri, child_id, html_path, "report")
    return html_path


def _log_stage_run(
    uri: str,
    run_dir: Path,
    stage: str,
    child_id: str,
    parent_run_id: str,
    results: dict | None,
    error: str | None,
) -> None:
    """What the stage's kernel left to the runner, its metrics and tags; then end its run."""
    for path, folder in read_artifacts(run_dir, stage):  # see StageContext.logged_by_runner
        log_listed(uri, child_id, path, folder)
    if results:
        tracking.log_metrics(uri, child_id, results["metrics"])
        tracking.set_tags(uri, child_id, results.get("tags") or {})
    tracking.end_run(uri, child_id, succeeded=error is None)
    if results and results.get("tags"):
        tracking.set_tags(uri, parent_run_id, results["tags"])
    if results and not error:
        tracking.log_metrics(uri, parent_run_id, headline_metrics(stage, results["metrics"]))


def _any_cell_started(output: Path) -> bool:
    """Whether papermill began any cell of ``output`` (if not, the kernel never started)."""
    import nbformat

    try:
        cells = nbformat.read(str(output), as_version=4).cells
    except (OSError, ValueError):
        return False
    return any(cell.metadata.get("papermill", {}).get("start_time") for cell in cells)


def _skip_stage(
    stage: str,
    run_dir: Path,
    config: RunConfig,
    *,
    parent_run_id: str,
    unmet: list[str],
    footer: str = "",
) -> StageOutcome:
    uri = config.resolved_tracking_uri()
    finding = f"Not available for this dataset: the {stage} stage needs {' and '.join(unmet)}."
    child_id = tracking.start_run(
        uri,
        config.tracking.experiment,
        run_name=stage,
        parent_run_id=parent_run_id,
        tags={"stage": stage, "skipped": "true"},
    )
    context = StageContext(name=stage, config=config, run_dir=run_dir, mlflow_run_id=child_id)
    context.finish(metrics={}, findings=[finding], status="skipped")
    html = report.render_skipped(
        context.stage_dir / f"{stage}.html",
        title=stage,
        run_name=config.name,
        reason=finding,
        footer=footer,
    )
    tracking.end_run(uri, child_id, succeeded=True)
    return StageOutcome(
        stage=stage, status="skipped", html=str(html.relative_to(run_dir)), findings=[finding]
    )


@dataclass
class _Run:
    """The state of a run in progress, saved to ``run.json`` after every change."""

    config: RunConfig
    run_dir: Path
    reports_dir: Path
    uri: str
    started_at: str
    outcomes: list[StageOutcome]
    parent_id: str = ""
    provenance: dict = field(default_factory=dict)
    ended: bool = False
    stopping: str | None = None  # why the running stages' kernels are being stopped
    kernels: WarmKernels | None = None  # warming while the tables are built and stages run

    def save(self, status: str, finished_at: str | None = None, error: str | None = None) -> None:
        """Write ``run.json`` (first, atomically), then the run's index and the index of runs."""
        record = _record(
            self.config, self.run_dir, self.outcomes, status, self.parent_id,
            self.started_at, finished_at,
        )  # fmt: skip
        report.write_run_record(
            self.run_dir, {**record, "error": error, "provenance": self.provenance}
        )
        report.render_run_index(self.run_dir)
        report.render_reports_index(self.reports_dir)

    def abort(self, status: str, error: str) -> None:
        """End the run ``failed`` or ``killed``: the stage in progress, MLflow, ``run.json``.

        Only the first call counts (the most specific cause is recorded first).
        """
        if self.ended:
            return
        self.ended = True
        for index, outcome in enumerate(self.outcomes):
            if outcome.status == "running":
                partial = sorted((self.run_dir / outcome.stage).glob("*.ipynb"))
                notebook = str(partial[0].relative_to(self.run_dir)) if partial else None
                self.outcomes[index] = replace(
                    outcome, status=status, error=error, notebook=notebook
                )
        if self.parent_id:
            mlflow_status = "KILLED" if status == "killed" else "FAILED"
            lifecycle.best_effort(
                lambda: tracking.close_run_tree(self.uri, self.parent_id, status=mlflow_status),
                f"mark the MLflow runs {mlflow_status}",
            )
        lifecycle.best_effort(
            lambda: self.save(status, report.timestamp(), error=error), "record the run's end"
        )


def run_pipeline(
    config: RunConfig,
    *,
    reports_dir: Path = REPORTS_DIR,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    fast: bool = False,
    progress: ProgressCallback | None = None,
    tags: dict[str, str] | None = None,
) -> RunOutcome:
    """Run every configured stage, each after the stages it reads; stop at the first failure.

    ``progress(index, total, stage, status)`` is called when a stage starts
    (status ``"running"``) and when it ends. ``tags`` are added to (or replace)
    the MLflow parent run's own tags. Once the run folder exists the run
    always ends recorded (see ``lifecycle``): a ``RetentionLabError`` is
    re-raised after the run is marked failed, SIGINT/SIGTERM as
    ``RunInterrupted`` (killed), a bug as ``RunCrashed``.
    """
    # absolute: papermill changes the whole process's working directory to a stage's
    # folder while the stage runs, and other stages' threads go on meanwhile; two stages
    # ending out of order can leave it in one of their folders, so it is restored at the end
    working_directory = os.getcwd()
    reports_dir, notebooks_dir = Path(reports_dir).resolve(), Path(notebooks_dir).resolve()
    notebooks = find_stage_notebooks(config, notebooks_dir)
    ensure_kernel(config.runner.kernel)

    uri = config.resolved_tracking_uri()
    tracking.open_store(uri)
    # the stage kernels log where the runner logs, whatever their environment says
    config = config.model_copy(
        update={"tracking": config.tracking.model_copy(update={"tracking_uri": uri})}
    )
    with lifecycle.interruptible():
        lifecycle.close_dead_runs(reports_dir)
        run_dir = new_run_dir(reports_dir, config.name)
        run = _Run(
            config=config,
            run_dir=run_dir,
            reports_dir=reports_dir,
            uri=uri,
            started_at=report.timestamp(),
            outcomes=[StageOutcome(stage=s, status="not run") for s in config.stages],
        )
        with lifecycle.guarded(run_dir, run.abort):
            try:
                return _run_stages(run, notebooks, fast=fast, progress=progress, tags=tags)
            finally:
                if run.kernels:
                    run.kernels.close()
                os.chdir(working_directory)


def _run_stages(
    run: _Run,
    notebooks: dict[str, Path],
    *,
    fast: bool,
    progress: ProgressCallback | None,
    tags: dict[str, str] | None,
) -> RunOutcome:
    config, run_dir, uri, outcomes = run.config, run.run_dir, run.uri, run.outcomes
    order = stage_order(config.stages, {s: stage_requirements(n) for s, n in notebooks.items()})
    run.kernels = WarmKernels(
        config.runner.kernel, run_dir, stages=start_order(order), ahead=concurrency(config)
    )
    _open_parent_run(run, fast=fast, tags=tags)
    try:
        # bad data stops the run here, before any stage, with the loader's message
        tables = store_tables(run_dir, config)
    except RetentionLabError as error:
        run.abort("failed", f"the input data were rejected: {error}")
        raise
    _return_freed_memory()
    if config.data.as_of is None and tables.get("as_of"):
        tracking.log_params(uri, run.parent_id, {"data.as_of": tables["as_of"]})
    run.provenance = provenance.with_data(run.provenance, tables)
    footer = provenance.footer(run.provenance)
    tracking.set_tags(
        uri,
        run.parent_id,
        {**provenance.tags(run.provenance), "data_tables": ",".join(tables["tables"])},
    )
    tracking.log_artifact(uri, run.parent_id, run_dir / TABLES_DIR / "tables.json", "data")

    def work(stage: str, outputs_checked: Callable[[str], None]) -> StageOutcome:
        requirements = stage_requirements(notebooks[stage])
        unmet = unmet_requirements(requirements, tables, tuple(config.exports()))
        if unmet:
            log.info("stage %s: skipped, the dataset lacks %s", stage, unmet)
            return _skip_stage(
                stage, run_dir, config, parent_run_id=run.parent_id, unmet=unmet, footer=footer
            )
        log.info("stage %s: running %s", stage, notebooks[stage].name)
        return _execute_stage(
            stage,
            notebooks[stage],
            run_dir,
            config,
            parent_run_id=run.parent_id,
            fast=fast,
            footer=footer,
            stopped=lambda: run.stopping,
            kernels=run.kernels,
            outputs_checked=outputs_checked,
        )

    _Scheduler(run, order, work, workers=concurrency(config), progress=progress).run_all()
    status = "failed" if any(o.status == "failed" for o in outcomes) else "succeeded"
    tracking.log_artifact(uri, run.parent_id, run_dir / RUN_CONFIG_FILE)
    if status == "failed":  # with the stages stopped when another failed
        tracking.close_run_tree(uri, run.parent_id, status="FAILED")
    else:
        tracking.end_run(uri, run.parent_id, succeeded=True)
    run.save(status, report.timestamp())
    return RunOutcome(run_dir=run_dir, status=status, stages=outcomes, mlflow_run_id=run.parent_id)


def _open_parent_run(run: _Run, *, fast: bool, tags: dict[str, str] | None) -> None:
    """Open the run: its configuration written, its MLflow parent run, ``run.json`` running.

    The parent run carries the provenance as tags and the configuration as parameters.
    """
    config, run_dir, uri = run.config, run.run_dir, run.uri
    dump_config(config, run_dir / RUN_CONFIG_FILE)
    run.provenance = provenance.collect(config, fast=fast)
    run.parent_id = tracking.start_run(
        uri,
        config.tracking.experiment,
        run_name=run_dir.name,
        tags={
            **provenance.tags(run.provenance),
            "config_name": config.name,
            "run_dir": str(run_dir),
            "retention_lab.kind": "pipeline",
            REPORT_TAG: (run_dir / "index.html").resolve().as_uri(),
            **(tags or {}),
        },
    )
    params = flatten(config)
    if config.data.as_of is None:  # logged with the snapshot date the data gave, later
        params.pop("data.as_of", None)
    tracking.log_params(uri, run.parent_id, params)
    run.save("running")


def _return_freed_memory() -> None:
    """Free what building the tables left behind and hand the memory back to the system.

    The stages read the tables from disk, but the frames the runner built stay
    alive in reference cycles until a collection, and glibc keeps freed memory:
    on 300,000 customers the runner held 1.41 GB through the whole run, 0.31 GB
    after this, memory the stage kernels need.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing more to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _forward_progress(run_dir: Path, stage: str, lines: list[str]) -> None:
    """Pass a stage's new progress lines on to the terminal (logger) and the run's ``run.log``."""
    if not lines:
        return
    with open(run_dir / lifecycle.LOG_FILE, "a", encoding="utf-8") as handle:
        for line in lines:
            progress_log.info("%s: %s", stage, line)
            handle.write(f"{report.timestamp()} {stage}: {line}\n")


class _Scheduler:
    """Runs each stage once its predecessors' tables are checked, at most ``workers`` at once.

    The stages run in threads (each drives its own kernel); only the thread
    that calls ``run_all`` changes the outcomes and writes ``run.json``. A
    stage calls back when its tables are checked (``work(stage,
    outputs_checked)``): from then on it only renders its report and logs to
    MLflow, so it no longer counts against ``workers`` and the stages that read
    it may start. When a stage fails no stage starts, and the kernels of those
    still running are stopped (they end ``killed``). On a signal or an error
    the stages still running are flagged so that they record nothing (but a
    stage already writing its report ends recorded), and the exception goes on
    to the lifecycle, which stops their kernels and ends the run.
    """

    def __init__(
        self,
        run: _Run,
        order: dict[str, list[str]],
        work: Callable[[str, Callable[[str], None]], StageOutcome],
        *,
        workers: int,
        progress: ProgressCallback | None,
    ) -> None:
        self.run, self.order, self.work = run, order, work
        self.workers, self.progress = workers, progress
        self.stages = list(order)
        self.waiting_on = waiting_on(order)
        self.position = {stage: index for index, stage in enumerate(self.stages)}
        self.pending, self.running = list(self.stages), {}
        # a stage's (status, time) once its tables are checked
        self.checked: dict[str, Future] = {stage: Future() for stage in self.stages}
        # a thread per stage: ``workers`` limits the notebooks running, not the reports
        self.pool = ThreadPoolExecutor(max(1, len(self.stages)), thread_name_prefix="stage")
        self.tail = ProgressTail(run.run_dir)

    def run_all(self) -> None:
        try:
            while self.pending or self.running:
                self._start_ready()
                if not self.running:
                    break
                self._wait_and_record()
        except BaseException:
            self._stop_on_error()
            raise
        finally:
            self.pool.shutdown(wait=False, cancel_futures=True)

    def _checked_status(self, stage: str) -> str | None:
        return self.checked[stage].result()[0] if self.checked[stage].done() else None

    def _start_ready(self) -> None:
        if self.run.stopping:
            return
        ready = [
            stage
            for stage in self.pending
            if all(self._checked_status(read) in FINISHED for read in self.order[stage])
        ]
        ready.sort(key=lambda stage: -self.waiting_on[stage])  # stable: then configured order
        busy = sum(self._checked_status(stage) is None for stage in self.running.values())
        for stage in ready[: self.workers - busy]:
            self.pending.remove(stage)
            self._record(stage, StageOutcome(stage=stage, status="running", started_at=_now()))
            checked = self.checked[stage]
            future = self.pool.submit(
                self.work, stage, lambda status, c=checked: c.set_result((status, _now()))
            )
            future.add_done_callback(partial(_settle, checked))
            self.running[future] = stage

    def _wait_and_record(self) -> None:
        run = self.run
        timeout = STOP_POLL_SECONDS if run.stopping else PROGRESS_POLL_SECONDS
        unchecked = [self.checked[s] for s in self.running.values() if not self.checked[s].done()]
        done, _ = wait([*self.running, *unchecked], timeout=timeout, return_when=FIRST_COMPLETED)
        for stage in self.running.values():
            _forward_progress(run.run_dir, stage, self.tail.new_lines(stage))
        if run.stopping and not done:  # kernels that were still starting are stopped as they appear
            lifecycle.stop_children()
        for stage in self.running.values():
            if self._checked_status(stage) == "failed":
                self._stop_after_failure(stage)
        for future in sorted(set(done) & set(self.running), key=self._position_of):
            stage = self.running.pop(future)
            if self._finish(stage, future).status == "failed":
                self._stop_after_failure(stage)

    def _position_of(self, future: Future) -> int:
        return self.position[self.running[future]]

    def _record(self, stage: str, outcome: StageOutcome) -> None:
        self.run.outcomes[self.position[stage]] = outcome
        if self.progress:
            self.progress(self.position[stage], len(self.stages), stage, outcome.status)
        self.run.save("running")

    def _finish(self, stage: str, future: Future) -> StageOutcome:
        _, checked_at = self.checked[stage].result()
        outcome = replace(
            future.result(),
            started_at=self.run.outcomes[self.position[stage]].started_at,
            checked_at=checked_at,
            finished_at=_now(),
        )
        self._record(stage, outcome)
        return outcome

    def _stop_after_failure(self, stage: str) -> None:
        if not self.run.stopping:
            self.run.stopping = f"stopped because the {stage} stage failed"
            if any(self._checked_status(other) is None for other in self.running.values()):
                lifecycle.stop_children()

    def _stop_on_error(self) -> None:
        self.run.stopping = self.run.stopping or "stopped with the run"
        if self.running:
            lifecycle.best_effort(lifecycle.stop_children, "stop the stage kernels")
        # a stage whose notebook had finished is only writing its report: it ends recorded
        for future, stage in self.running.items():
            writing = self.checked[stage].done() and wait([future], REPORT_WAIT_SECONDS).done
            if writing and not future.exception():
                lifecycle.best_effort(partial(self._finish, stage, future), f"record {stage}")


def _settle(checked: Future, finished: Future) -> None:
    """A stage that ended without calling back (skipped, killed, crashed) settles its check."""
    if not checked.done():
        outcome = None if finished.exception() else finished.result()
        checked.set_result((outcome.status if outcome else "failed", None))
