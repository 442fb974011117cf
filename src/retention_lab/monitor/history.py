"""Reading the runs to compare: the current run from its folder, earlier runs from MLflow.

The tracking store is the source of truth for history: an earlier run's
numbers are its stage runs' logged metrics and the tables its stages saved
(artifacts ``tables/<name>.parquet``). The run in progress is read from its run
folder, which holds the same numbers (``results.json`` and the Parquet tables).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from retention_lab import tracking
from retention_lab.monitor.quantities import RANKING_TABLES, TABLES_READ, RunOutputs
from retention_lab.stage import read_results

log = logging.getLogger(__name__)

AS_OF_TAG = "data_as_of"
MONITOR_STAGE = "monitoring"


def current_outputs(
    run_dir: str | Path,
    stages: list[str],
    *,
    profile: pd.DataFrame | None = None,
    as_of: str = "",
    run_id: str | None = None,
) -> RunOutputs:
    """The run in progress: metrics and saved tables of its finished stages.

    ``profile`` is this run's input profile (the monitor computes it).
    """
    run_dir = Path(run_dir)
    outputs = RunOutputs(run_id=run_id, started=pd.Timestamp.now(), as_of=as_of)
    for stage in stages:
        results = read_results(run_dir, stage)
        if results and results.get("status") == "succeeded":
            outputs.metrics[stage] = results.get("metrics", {})
        for name in (*TABLES_READ.get(stage, ()), *RANKING_TABLES.get(stage, ())):
            path = run_dir / stage / f"{name}.parquet"
            if path.is_file():
                outputs.tables[(stage, name)] = pd.read_parquet(path)
    if profile is not None:
        outputs.tables[(MONITOR_STAGE, "input_profile")] = profile
    return outputs


def earlier_outputs(
    tracking_uri: str, stage_run_id: str | None, *, max_runs: int = 10
) -> list[RunOutputs]:
    """Finished earlier pipeline runs of the same experiment, newest first, read from MLflow.

    ``stage_run_id`` is the monitoring stage's own run; its parent is the
    current pipeline run. Without a run id (a notebook run interactively) or
    without a parent there is no history and the list is empty.
    """
    if not stage_run_id:
        return []
    pipeline_run_id = tracking.parent_of(tracking_uri, stage_run_id)
    if not pipeline_run_id:
        return []
    runs = tracking.earlier_pipeline_runs(tracking_uri, pipeline_run_id, max_runs=max_runs)
    out = []
    for run in runs:
        outputs = RunOutputs(
            run_id=run["run_id"],
            started=pd.Timestamp(run["start_time"], unit="ms"),
            as_of=run["tags"].get(AS_OF_TAG, ""),
        )
        for stage, child in tracking.stage_runs(tracking_uri, run["run_id"]).items():
            if child["status"] != "FINISHED" or child["tags"].get("skipped") == "true":
                continue
            outputs.metrics[stage] = child["metrics"]
            for name in TABLES_READ.get(stage, ()):
                table = tracking.read_table(tracking_uri, child["run_id"], name)
                if table is not None:
                    outputs.tables[(stage, name)] = table
        out.append(outputs)
    log.info("monitor: read %d earlier runs of the experiment", len(out))
    return out
