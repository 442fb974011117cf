"""Execute a pipeline of stage notebooks with papermill, tracked in MLflow.

A run creates ``reports/<timestamp>-<name>/`` (never reusing a folder), opens
an MLflow parent run, executes each stage notebook as a child run with the
injected parameters, writes the executed notebook and its HTML report, and
refreshes the run index and the index of all runs. The runner owns failure: it
catches papermill's execution error only here, keeps the partial notebook,
marks the MLflow runs FAILED and returns a ``RunOutcome`` naming the failed
stage. The runner knows stages only by their notebook names.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from retention_lab import provenance, report, tracking
from retention_lab.config import (
    NOTEBOOKS_DIR,
    REPORTS_DIR,
    RunConfig,
    dump_config,
    flatten,
)
from retention_lab.errors import ConfigError, RetentionLabError
from retention_lab.run_summary import headline_metrics
from retention_lab.stage import (
    RUN_CONFIG_FILE,
    TABLES_DIR,
    StageContext,
    read_results,
    store_tables,
)

log = logging.getLogger(__name__)

STAGE_PARAMETERS = ("config_file", "run_dir", "mlflow_run_id", "fast")
REPORT_TAG = "retention_lab.report"


@dataclass(frozen=True)
class StageOutcome:
    """What happened to one stage of a run."""

    stage: str
    status: str  # "succeeded", "skipped" (dataset lacks what it needs), "failed" or "not run"
    notebook: str | None = None  # relative to the run folder
    html: str | None = None
    error: str | None = None
    cell_index: int | None = None
    seconds: float | None = None
    findings: list[str] = field(default_factory=list)


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


def stage_requirements(notebook: Path) -> dict:
    """What a stage needs of the dataset, from its notebook metadata.

    ``metadata.retention_lab.requires`` lists tables (e.g. ``["interventions"]``);
    ``requires_dates: true`` asks for dated customers (not only an aggregated tenure).
    """
    metadata = json.loads(notebook.read_text()).get("metadata", {})
    return metadata.get("retention_lab", {})


def unmet_requirements(requirements: dict, tables: dict) -> list[str]:
    """Plain-language list of what the dataset lacks for a stage (empty when nothing)."""
    unmet = [
        f"the {name} table"
        for name in requirements.get("requires", [])
        if name not in tables["tables"]
    ]
    if requirements.get("requires_dates") and not tables.get("has_dates", True):
        unmet.append("customer signup and end dates (this dataset has only an aggregated tenure)")
    return unmet


def ensure_kernel(name: str) -> None:
    """Register a Jupyter kernel running this interpreter under ``name`` if none exists."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        from ipykernel.kernelspec import install

        log.info("registering Jupyter kernel %s for %s", name, sys.executable)
        install(kernel_name=name, display_name=f"Python ({name})", prefix=sys.prefix)


def new_run_dir(reports_dir: Path, name: str) -> Path:
    """Create a fresh run folder ``<timestamp>-<name>``; an existing one is never reused."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now():%Y%m%d-%H%M%S}-{name}"
    for attempt in range(1000):
        candidate = reports_dir / (stem if attempt == 0 else f"{stem}-{attempt + 1}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run folder for {stem} in {reports_dir}")


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
) -> StageOutcome:
    import papermill
    from papermill.exceptions import PapermillExecutionError

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
    error = cell_index = None
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            kernel_name=config.runner.kernel,
            cwd=str(run_dir),
            progress_bar=False,
            execution_timeout=config.runner.cell_timeout_s,
            # the kernel's own log (its transport warning, the interrupt at shutdown) is noise
            # in a scheduler's log; a failing cell or a dead kernel is reported by the runner
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
        )
    except PapermillExecutionError as exc:
        error, cell_index = f"{exc.ename}: {exc.evalue}", exc.cell_index
    except Exception as exc:  # kernel died, timeout, unreadable notebook: still a failed stage
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - started
    results = read_results(run_dir, stage)
    if error is None and results is None:
        error = "the notebook finished without writing results.json (stage.finish was not called)"
    status = "failed" if error else "succeeded"
    findings = results["findings"] if results and not error else []
    html = None
    if output.is_file():
        experiment_id = tracking.ensure_experiment(config.tracking.experiment, uri)
        html_path = report.render_stage(
            output,
            stage_dir / f"{stage}.html",
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
        html = str(html_path.relative_to(run_dir))
        tracking.set_tags(uri, child_id, {REPORT_TAG: html_path.resolve().as_uri()})
        tracking.log_artifact(uri, child_id, output, "notebook")
        tracking.log_artifact(uri, child_id, html_path, "report")
    tracking.end_run(uri, child_id, succeeded=status == "succeeded")
    if results and results.get("tags"):
        tracking.set_tags(uri, parent_run_id, results["tags"])
    if results and not error:
        tracking.log_metrics(uri, parent_run_id, headline_metrics(stage, results["metrics"]))
    return StageOutcome(
        stage=stage,
        status=status,
        seconds=seconds,
        error=error,
        cell_index=cell_index,
        notebook=str(output.relative_to(run_dir)) if output.is_file() else None,
        html=html,
        findings=findings,
    )


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


def run_pipeline(
    config: RunConfig,
    *,
    reports_dir: Path = REPORTS_DIR,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    fast: bool = False,
    progress: ProgressCallback | None = None,
    tags: dict[str, str] | None = None,
) -> RunOutcome:
    """Run every configured stage in order; stop at the first failure.

    ``progress(index, total, stage, status)`` is called when a stage starts
    (status ``"running"``) and when it ends. ``tags`` are added to (or replace)
    the MLflow parent run's own tags.
    """
    notebooks = {stage: find_notebook(stage, notebooks_dir) for stage in config.stages}
    for notebook in notebooks.values():
        check_stage_notebook(notebook)
    ensure_kernel(config.runner.kernel)

    uri = config.resolved_tracking_uri()
    # the stage kernels log where the runner logs, whatever their environment says
    config = config.model_copy(
        update={"tracking": config.tracking.model_copy(update={"tracking_uri": uri})}
    )
    run_dir = new_run_dir(Path(reports_dir), config.name)
    dump_config(config, run_dir / RUN_CONFIG_FILE)
    started_at = report.timestamp()
    origin = provenance.collect(config, fast=fast)
    parent_id = tracking.start_run(
        uri,
        config.tracking.experiment,
        run_name=run_dir.name,
        tags={
            **provenance.tags(origin),
            "config_name": config.name,
            "run_dir": str(run_dir),
            "retention_lab.kind": "pipeline",
            REPORT_TAG: (run_dir / "index.html").resolve().as_uri(),
            **(tags or {}),
        },
    )
    params = flatten(config)
    if config.data.as_of is None:  # logged with the snapshot date the data gave, below
        params.pop("data.as_of", None)
    tracking.log_params(uri, parent_id, params)

    outcomes = [StageOutcome(stage=s, status="not run") for s in config.stages]

    def save(status: str, finished_at: str | None = None, error: str | None = None) -> None:
        record = _record(config, run_dir, outcomes, status, parent_id, started_at, finished_at)
        report.write_run_record(run_dir, {**record, "error": error, "provenance": origin})
        report.render_run_index(run_dir)
        report.render_reports_index(Path(reports_dir))

    save("running")
    try:
        # bad data stops the run here, before any stage, with the loader's message
        tables = store_tables(run_dir, config)
    except RetentionLabError as error:
        tracking.end_run(uri, parent_id, succeeded=False)
        save("failed", report.timestamp(), error=f"the input data were rejected: {error}")
        raise
    if config.data.as_of is None and tables.get("as_of"):
        tracking.log_params(uri, parent_id, {"data.as_of": tables["as_of"]})
    origin = provenance.with_data(origin, tables)
    footer = provenance.footer(origin)
    tracking.set_tags(
        uri, parent_id, {**provenance.tags(origin), "data_tables": ",".join(tables["tables"])}
    )
    tracking.log_artifact(uri, parent_id, run_dir / TABLES_DIR / "tables.json", "data")
    for index, stage in enumerate(config.stages):
        if progress:
            progress(index, len(config.stages), stage, "running")
        unmet = unmet_requirements(stage_requirements(notebooks[stage]), tables)
        if unmet:
            log.info("stage %s: skipped, the dataset lacks %s", stage, unmet)
            outcomes[index] = _skip_stage(
                stage, run_dir, config, parent_run_id=parent_id, unmet=unmet, footer=footer
            )
        else:
            log.info("stage %s: running %s", stage, notebooks[stage].name)
            outcomes[index] = _execute_stage(
                stage,
                notebooks[stage],
                run_dir,
                config,
                parent_run_id=parent_id,
                fast=fast,
                footer=footer,
            )
        if progress:
            progress(index, len(config.stages), stage, outcomes[index].status)
        save("running")
        if outcomes[index].status == "failed":
            break
    status = "failed" if any(o.status == "failed" for o in outcomes) else "succeeded"
    tracking.log_artifact(uri, parent_id, run_dir / RUN_CONFIG_FILE)
    tracking.end_run(uri, parent_id, succeeded=status == "succeeded")
    save(status, report.timestamp())
    return RunOutcome(run_dir=run_dir, status=status, stages=outcomes, mlflow_run_id=parent_id)
