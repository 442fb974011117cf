"""Re-run an earlier run as it was recorded, and say what differs.

A run folder keeps the fully resolved configuration it ran (``config.yaml``,
``as_of`` included: a file source requires it, a simulated market derives it
from the simulator's settings, an ``--as-of`` is written into it) and its
provenance (``run.json``). ``rerun`` runs that configuration again as a new run
beside the old one, with the same ``fast`` setting, and compares the two: one
line per difference in provenance (commit, uncommitted changes, Python and
package versions, configuration hash, data fingerprint) and whether every
stage's headline results (metrics and findings in ``results.json``) are equal.
The new run is tagged as a rerun in MLflow: its monitoring stage sees the
history the original saw, and it is no part of any later run's history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from retention_lab import tracking
from retention_lab.config import NOTEBOOKS_DIR, load_config
from retention_lab.errors import NotARun
from retention_lab.provenance import differences
from retention_lab.report import RUN_FILE, read_run_record
from retention_lab.runner import RUN_CONFIG_FILE, ProgressCallback, RunOutcome, run_pipeline
from retention_lab.stage import read_results


@dataclass(frozen=True)
class RerunOutcome:
    """A rerun: the new run, how its provenance differs and which headline results differ."""

    original: Path
    run: RunOutcome
    differences: list[str]
    mismatches: list[str]
    compared: int  # headline numbers compared

    @property
    def results_match(self) -> bool:
        """Whether every stage's headline metrics and findings are equal to the original's."""
        return not self.mismatches


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare_results(original: Path, new: Path, stages: list[str]) -> tuple[list[str], int]:
    """Differences in the stages' headline results between two run folders.

    Returns one line per differing metric (``stage: metric <then> then, <now>
    now``) or findings text or status, and the number of metrics compared.
    """
    lines, compared = [], 0
    for stage in stages:
        before, after = read_results(original, stage), read_results(new, stage)
        if before is None or after is None:
            if (before is None) != (after is None):
                then, now = ("missing" if r is None else "written" for r in (before, after))
                lines.append(f"{stage}: results {then} then, {now} now")
            continue
        if before["status"] != after["status"]:
            lines.append(f"{stage}: status {before['status']} then, {after['status']} now")
        metrics_before, metrics_after = before["metrics"], after["metrics"]
        for name in sorted(metrics_before.keys() | metrics_after.keys()):
            compared += 1
            then, now = metrics_before.get(name, "absent"), metrics_after.get(name, "absent")
            if not _same(then, now):
                lines.append(f"{stage}: {name} {then} then, {now} now")
        if before["findings"] != after["findings"]:
            lines.append(f"{stage}: the findings' text differs")
    return lines, compared


def rerun(
    run_dir: str | Path,
    *,
    reports_dir: str | Path | None = None,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    progress: ProgressCallback | None = None,
) -> RerunOutcome:
    """Run the configuration recorded in ``run_dir`` again and compare the two runs.

    The new run goes to ``reports_dir`` (default: beside the original).
    """
    run_dir = Path(run_dir)
    record = read_run_record(run_dir)
    if record is None:
        raise NotARun(folder=str(run_dir), missing=RUN_FILE)
    if not (run_dir / RUN_CONFIG_FILE).is_file():
        raise NotARun(folder=str(run_dir), missing=RUN_CONFIG_FILE)
    recorded = record.get("provenance") or {}
    config = load_config(run_dir / RUN_CONFIG_FILE)
    outcome = run_pipeline(
        config,
        reports_dir=Path(reports_dir) if reports_dir else run_dir.parent,
        notebooks_dir=notebooks_dir,
        fast=bool(recorded.get("fast", False)),
        progress=progress,
        tags={tracking.PIPELINE_KIND_TAG: "rerun", tracking.RERUN_OF_TAG: record["mlflow_run_id"]},
    )
    current = (read_run_record(outcome.run_dir) or {}).get("provenance") or {}
    changed = (
        differences(recorded, current)
        if recorded
        else [f"{run_dir / RUN_FILE} records no provenance (a run made before it was recorded)"]
    )
    mismatches, compared = compare_results(run_dir, outcome.run_dir, config.stages)
    return RerunOutcome(
        original=run_dir,
        run=outcome,
        differences=changed,
        mismatches=mismatches,
        compared=compared,
    )
