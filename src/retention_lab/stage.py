"""The stage context a stage notebook works through.

A notebook opens its stage with ``open_stage`` using the parameters the
runner injects (configuration file, run folder, MLflow run id, ``fast``). The
context hands out the validated tables, the ground truth when the data are
simulated, and the outputs of earlier stages; it stores tables and figures in
the stage's folder, logs them to the stage's MLflow run, and ``finish`` writes
``results.json`` (headline metrics and plain-language findings) that the
report puts first. Run interactively (empty ``run_dir``), a notebook works in
a scratch folder ``data/scratch/<config name>-<key>`` and logs nothing to MLflow;
the key changes whenever what the tables are built from changes (see
``scratch_folder``), so a changed file, ``as_of`` or seed gets fresh tables.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from retention_lab import contract, tracking
from retention_lab.config import DATA_DIR, RunConfig, dump_config, load_config, resolve_path
from retention_lab.data.loaders import Tables, load_tables, read_tables, write_tables
from retention_lab.errors import MissingStageOutput

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
ARTIFACTS_FILE = "artifacts.json"  # what the runner logs for a stage: [path, artifact folder]
RUN_CONFIG_FILE = "config.yaml"
TABLES_DIR = "tables"
MODELS_DIR = "models"  # fitted models, logged as MLflow pyfunc models
TRUTH_DIR = "truth"
AS_OF_TAG = "data_as_of"  # the pipeline run's tag of its data's snapshot date (provenance)


@dataclass
class RunOutputs:
    """What one pipeline run left behind: metrics and tables per stage.

    ``tables`` maps ``(stage, name)`` to a DataFrame; ``started`` is the run's
    start (or the current time for the run in progress); ``as_of`` the data's
    snapshot date when known.
    """

    run_id: str | None
    started: pd.Timestamp
    as_of: str = ""
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    tables: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How a reviewer recognises the run: its snapshot date, else its start."""
        return self.as_of or f"{self.started:%Y-%m-%d %H:%M}"

    def table(self, stage: str, name: str) -> pd.DataFrame | None:
        """A saved table, or ``None``.

        Returns
        -------
        pandas.DataFrame or None
            The table as its stage saved it (its columns: ``retention_lab.contract``).
        """
        return self.tables.get((stage, name))


@dataclass
class StageContext:
    """Where a stage reads its inputs and writes its outputs."""

    name: str
    config: RunConfig
    run_dir: Path
    mlflow_run_id: str | None = None
    fast: bool = False
    # in a pipeline run the runner logs the stage's files and results to MLflow once the
    # stage ends, so that no stage kernel pays for importing MLflow and opening its store
    logged_by_runner: bool = False

    @property
    def settings(self):
        """The stage's section of the configuration, as a smoke run shrinks it when ``fast``."""
        return self.config.stage_settings(self.name, fast=self.fast)

    @property
    def stage_dir(self) -> Path:
        """The folder of this stage inside the run folder."""
        path = self.run_dir / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def random_state(self) -> int:
        """Seed for this stage's random choices, derived from the run's seed and the stage name.

        Each stage gets its own stream: reusing ``config.seed`` itself would replay
        the simulator's draws (a "random" sample would not be random with respect
        to the simulated data).
        """
        entropy = [self.config.seed, zlib.crc32(self.name.encode())]
        return int(np.random.SeedSequence(entropy).generate_state(1)[0])

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI of the run."""
        return self.config.resolved_tracking_uri()

    def tables(self) -> Tables:
        """The validated canonical tables; loaded from the source and stored on first use."""
        store_tables(self.run_dir, self.config)
        return read_tables(self.run_dir / TABLES_DIR)

    def truth(self):
        """The simulator's ground truth, or ``None`` for real data."""
        return read_truth(self.run_dir)

    def save_table(self, frame: pd.DataFrame, name: str) -> None:
        """Store a declared output as ``<stage>/<name>.parquet`` and log it to MLflow.

        ``name`` must be one of this stage's outputs in ``retention_lab.contract``;
        the table is checked against its schema now when the notebook runs on
        its own, and by the runner as soon as the stage ends in a pipeline run.
        The MLflow copy (artifact ``tables/<name>.parquet``) is what the
        monitoring stage compares across runs.
        """
        contract.declared(self.name, name)
        if not self.logged_by_runner:
            frame = contract.check_output(self.name, name, frame)
        path = self.stage_dir / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        self._log_artifact(path, "tables")

    def log_file(self, path: str | Path) -> None:
        """Log a file the stage wrote (e.g. a CSV for another team) as an MLflow artifact."""
        self._log_artifact(Path(path), "files")

    def _log_artifact(self, path: Path, artifact_path: str) -> None:
        """Log a file now, or list it in ``artifacts.json`` for the runner to log."""
        if not self.mlflow_run_id:
            return
        if not self.logged_by_runner:
            log_listed(self.tracking_uri, self.mlflow_run_id, path, artifact_path)
            return
        manifest = self.stage_dir / ARTIFACTS_FILE
        listed = json.loads(manifest.read_text()) if manifest.is_file() else []
        listed.append([str(Path(path).resolve()), artifact_path])
        manifest.write_text(json.dumps(listed, indent=1))

    def read_output(self, stage: str, name: str) -> pd.DataFrame:
        """A table an earlier stage saved; a clear error names the stage to run if missing.

        The table may also be a folder of Parquet partitions (scores written by
        Spark, ``retention_lab.scoring.score_in_spark``); the partition column is left out.
        """
        return read_output(self.run_dir, stage, name, reader=self.name)

    def this_run(
        self, *, as_of: str = "", more: dict[tuple[str, str], pd.DataFrame] | None = None
    ) -> RunOutputs:
        """The run in progress: its finished stages' metrics and the outputs the monitor reads.

        ``more`` adds tables this stage computed and has not saved yet (the
        monitor's input profile), keyed ``(stage, name)``.
        """
        outputs = RunOutputs(run_id=self.mlflow_run_id, started=pd.Timestamp.now(), as_of=as_of)
        read = contract.monitored_tables("history", "current")
        for stage in self.config.stages:
            results = read_results(self.run_dir, stage)
            if results and results.get("status") == "succeeded":
                outputs.metrics[stage] = results.get("metrics", {})
            for name in read.get(stage, ()):
                path = self.run_dir / stage / f"{name}.parquet"
                if path.is_file():
                    outputs.tables[(stage, name)] = pd.read_parquet(path)
        outputs.tables.update(more or {})
        return outputs

    def earlier_runs(self, max_runs: int) -> list[RunOutputs]:
        """Finished earlier pipeline runs of this experiment, newest first, read from MLflow.

        Each holds its stage runs' metrics and the outputs the contract marks as
        compared across runs. Run interactively (no MLflow run, so no parent
        pipeline run) there is no history and the list is empty.
        """
        if not self.mlflow_run_id:
            return []
        uri = self.tracking_uri
        pipeline_run_id = tracking.parent_of(uri, self.mlflow_run_id)
        if not pipeline_run_id:
            return []
        compared = contract.monitored_tables("history")
        out = []
        for run in tracking.earlier_pipeline_runs(uri, pipeline_run_id, max_runs=max_runs):
            outputs = RunOutputs(
                run_id=run["run_id"],
                started=pd.Timestamp(run["start_time"], unit="ms"),
                as_of=run["tags"].get(AS_OF_TAG, ""),
            )
            for stage, child in tracking.stage_runs(uri, run["run_id"]).items():
                if child["status"] != "FINISHED" or child["tags"].get("skipped") == "true":
                    continue
                outputs.metrics[stage] = child["metrics"]
                for name in compared.get(stage, ()):
                    table = tracking.read_table(uri, child["run_id"], name)
                    if table is not None:
                        outputs.tables[(stage, name)] = table
            out.append(outputs)
        log.info("read %d earlier runs of the experiment", len(out))
        return out

    def log_figure(self, figure, name: str) -> None:
        """Save a figure as PNG in ``<stage>/figures``, log it to MLflow and show it.

        The figure is drawn once, at its own resolution: the same PNG goes to the
        file and, in a notebook, to the cell's output (the report adds alt text), and
        the figure is closed so that the inline backend does not draw it again.
        Returns nothing, so a cell ending in ``stage.log_figure(...)`` shows no path.
        """
        directory = self.stage_dir / "figures"
        directory.mkdir(exist_ok=True)
        path = directory / name
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi="figure", bbox_inches="tight")
        path.write_bytes(buffer.getvalue())
        self._log_artifact(path, "figures")
        _show_png(figure, buffer.getvalue())

    def log_models(self, scorers: Mapping[str, object], example: pd.DataFrame) -> None:
        """Log fitted models to MLflow as pyfunc models ``models/<name>`` with signatures.

        ``scorers`` (from ``retention_lab.scoring``: ``survival_scorers`` ...) are
        saved in ``<stage>/models/<name>``; ``example`` (customers with the
        scorers' input columns) gives the signature. ``mlflow.pyfunc.load_model``
        loads each and ``predict(customers)`` returns the scores.
        """
        if not self.mlflow_run_id:
            return
        from retention_lab import scoring

        for name, scorer in scorers.items():
            directory = scoring.save_scorer(scorer, example, self.stage_dir / MODELS_DIR / name)
            self._log_artifact(directory, MODELS_DIR)

    def record_progress(self) -> Path:
        """Write the progress lines of long steps (``retention_lab.progress``) to a file.

        The lines go to ``<stage>/progress.log``, which the runner forwards to
        the terminal and the run's log while the stage runs. Called again (a
        re-run cell) it replaces the earlier file handler; returns the file.
        """
        from retention_lab.progress import LOGGER, PROGRESS_FILE

        path = self.stage_dir / PROGRESS_FILE
        logger = logging.getLogger(LOGGER)
        for handler in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
            logger.removeHandler(handler)
            handler.close()
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # no log boxes in the notebook (the report)
        return path

    def finish(
        self,
        *,
        metrics: dict[str, float],
        findings: list[str],
        tags: dict[str, str] | None = None,
        status: str = "succeeded",
    ) -> Path:
        """Write ``results.json``, log metrics and tags; return the results file.

        In a pipeline run the runner logs the metrics and tags from ``results.json``.
        """
        results = {
            "stage": self.name,
            "status": status,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            # keyed as in MLflow, so the monitor reads this run and earlier ones alike
            "metrics": {tracking.name_for_mlflow(k): float(v) for k, v in metrics.items()},
            "findings": list(findings),
            "tags": dict(tags or {}),
        }
        path = self.stage_dir / RESULTS_FILE
        path.write_text(json.dumps(results, indent=2, allow_nan=True))
        if self.mlflow_run_id and not self.logged_by_runner:
            tracking.log_metrics(self.tracking_uri, self.mlflow_run_id, results["metrics"])
            if tags:
                tracking.set_tags(self.tracking_uri, self.mlflow_run_id, tags)
        return path


def store_tables(run_dir: Path, config: RunConfig) -> dict:
    """Load, validate and store the run's tables once; return their description (``tables.json``).

    The description lists the tables present and whether customers carry dates,
    which the runner reads to skip stages a dataset cannot support.
    """
    directory = Path(run_dir) / TABLES_DIR
    meta_file = directory / "tables.json"
    if not meta_file.is_file():
        tables, truth = load_tables(config.data, random_state=config.seed)
        write_tables(tables, directory)
        if truth is not None:
            from retention_lab.data.simulate import write_ground_truth

            write_ground_truth(truth, directory)
    return json.loads(meta_file.read_text())


def read_truth(run_dir: Path):
    """The simulator's ground truth stored in a run folder, or ``None`` for real data."""
    directory = Path(run_dir) / TABLES_DIR
    if not (directory / TRUTH_DIR).is_dir():
        return None
    from retention_lab.data.simulate import read_ground_truth

    return read_ground_truth(directory)


def read_output(run_dir: Path, stage: str, name: str, *, reader: str) -> pd.DataFrame:
    """The declared output ``name`` that ``stage`` saved in a run folder.

    A name the contract does not list is refused; a missing table's error says
    what it holds and names the stage to run.
    """
    output = contract.declared(stage, name)
    path = Path(run_dir) / output.file
    if not path.exists():
        raise MissingStageOutput(
            stage=reader, needs=stage, path=str(path), holds=output.description
        )
    return pd.read_parquet(path, partitioning=None) if path.is_dir() else pd.read_parquet(path)


def stage_outputs(run_dir: Path) -> dict[str, list[str]]:
    """The tables each stage saved in a run folder, by stage."""
    folders = sorted(p for p in Path(run_dir).iterdir() if p.is_dir() and p.name != TABLES_DIR)
    found = {folder.name: sorted(f.stem for f in folder.glob("*.parquet")) for folder in folders}
    return {stage: names for stage, names in found.items() if names}


def _reviewer_warning(message, category, filename, lineno, line=None) -> str:
    return f"{category.__name__}: {message}\n"


def scratch_folder(config: RunConfig) -> Path:
    """The interactive scratch folder of a configuration, keyed by what its tables come from.

    The key hashes the data section (source, ``as_of``, paths, queries, mappings),
    the seed and, for every file it names, the file's size and modification time.
    """
    data = config.data
    files = [t.path for t in data.tables().values() if t.path] + [data.database or ""]
    stamps = []
    for name in files:
        path = Path(name)
        stat = path.stat() if name and path.is_file() else None
        stamps.append([name, stat.st_size, stat.st_mtime_ns] if stat else [name])
    content = json.dumps([data.model_dump(mode="json"), config.seed, stamps], sort_keys=True)
    key = hashlib.sha256(content.encode()).hexdigest()[:12]
    return DATA_DIR / "scratch" / f"{config.name}-{key}"


def figure_description(figure) -> str:
    """Alt text of a matplotlib figure: its title and its panels' titles, else their axis labels."""
    parts = []
    suptitle = getattr(figure, "_suptitle", None)
    if suptitle is not None and suptitle.get_text():
        parts.append(suptitle.get_text())
    for ax in figure.get_axes():
        text = ax.get_title() or " against ".join(
            label for label in (ax.get_ylabel(), ax.get_xlabel()) if label
        )
        if text and text not in parts:
            parts.append(text)
    return "; ".join(parts)[:300] or "Figure"


def _show_png(figure, png: bytes) -> None:
    """Show a figure's PNG as the notebook cell's output and close the figure (in IPython only)."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython comes with the notebooks
        return
    if get_ipython() is None:
        return
    display({"image/png": base64.b64encode(png).decode("ascii")}, raw=True)
    import matplotlib.pyplot as plt

    plt.close(figure)


def _describe_figures_in_notebook() -> None:
    """Give inline matplotlib figures alt text (PNG metadata ``alt``), read by the report."""
    try:
        from IPython import get_ipython
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - IPython and matplotlib come with the notebooks
        return
    shell = get_ipython()
    if shell is None:
        return
    formatter = shell.display_formatter.formatters["image/png"]
    draw = formatter.lookup_by_type(Figure) if Figure in formatter.type_printers else None
    if draw is None or getattr(draw, "_with_alt", False):
        return

    def with_alt(figure):
        data = draw(figure)
        return (data, {"alt": figure_description(figure)}) if data is not None else None

    with_alt._with_alt = True
    formatter.for_type(Figure, with_alt)


def open_stage(
    name: str,
    *,
    config_file: str,
    run_dir: str = "",
    mlflow_run_id: str = "",
    fast: bool = False,
) -> StageContext:
    """Open a stage from the notebook parameters.

    Relative paths are taken from the working directory when they exist there,
    else from the project root, so a notebook runs the same from JupyterLab and
    from the runner. Without ``run_dir`` the stage works in the scratch folder
    ``data/scratch/<config name>-<key>`` (see ``scratch_folder``), which holds
    the configuration like a run folder (``rl.open`` reads it). Warnings in the
    notebook are shown as ``Category: message``, without the kernel's temporary file paths, since
    reviewers read them in the report.
    """
    warnings.formatwarning = _reviewer_warning
    _describe_figures_in_notebook()
    config_path = resolve_path(config_file)
    config = load_config(config_path)
    folder = resolve_path(run_dir) if run_dir else scratch_folder(config)
    folder.mkdir(parents=True, exist_ok=True)
    if not run_dir:  # the scratch folder holds its configuration, as a run folder does
        dump_config(config, folder / RUN_CONFIG_FILE)
    context = StageContext(
        name=name,
        config=config,
        run_dir=folder,
        mlflow_run_id=mlflow_run_id or None,
        fast=fast,
        logged_by_runner=bool(run_dir and mlflow_run_id),
    )
    if context.logged_by_runner:
        context.record_progress()
    return context


def read_artifacts(run_dir: str | Path, stage: str) -> list[tuple[Path, str]]:
    """The files a stage listed for the runner to log: ``(path, artifact folder)``."""
    path = Path(run_dir) / stage / ARTIFACTS_FILE
    listed = json.loads(path.read_text()) if path.is_file() else []
    return [(Path(file), folder) for file, folder in listed]


def log_listed(tracking_uri: str, run_id: str, path: Path, artifact_path: str) -> None:
    """Log a file a stage listed: a saved model as a pyfunc model, anything else as it is."""
    if artifact_path == MODELS_DIR:
        from retention_lab import scoring

        scoring.log_saved_scorer(tracking_uri, run_id, path)
    else:
        tracking.log_artifact(tracking_uri, run_id, path, artifact_path)


def read_results(run_dir: str | Path, stage: str) -> dict | None:
    """The ``results.json`` of a stage, or ``None`` if the stage did not finish."""
    path = Path(run_dir) / stage / RESULTS_FILE
    return json.loads(path.read_text()) if path.is_file() else None
