"""Reproducible runs: the smoke configuration run twice and re-run once gives identical
results, provenance reaches run.json, MLflow and every report, and a changed data row is
named by ``rerun``."""

import json
import subprocess
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from retention_lab import tracking
from retention_lab.cli import EXIT_RESULTS_DIFFER, EXIT_USER_ERROR
from retention_lab.config import PROJ_ROOT
from retention_lab.rerun import compare_results

from .conftest import cli

VOLATILE = ("finished_at",)  # the only timestamp in results.json; durations are in run.json


def results(run_dir: Path, stage: str) -> dict:
    data = json.loads((run_dir / stage / "results.json").read_text())
    return {k: v for k, v in data.items() if k not in VOLATILE}


def same_results(*run_dirs: Path, stage: str) -> bool:
    """Equal results.json apart from the timestamp (as JSON text: a NaN equals a NaN)."""
    texts = {json.dumps(results(r, stage), sort_keys=True) for r in run_dirs}
    return len(texts) == 1


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def new_run_of(result: subprocess.CompletedProcess) -> Path:
    return Path(result.stdout.strip().splitlines()[-1])


def warnings_of(result: subprocess.CompletedProcess) -> list[str]:
    """The rerun's provenance warnings, but for the working tree's uncommitted changes
    (tests running beside this one may write files into the checkout meanwhile)."""
    return [
        line
        for line in result.stderr.splitlines()
        if line.startswith("warning:") and not line.startswith("warning: uncommitted changes")
    ]


# ---------------------------------------------------------------- fast: errors and history
def test_rerun_of_a_folder_that_is_no_run_is_a_user_error(tmp_path):
    result = cli("rerun", str(tmp_path), tmp_path=tmp_path)
    assert result.returncode == EXIT_USER_ERROR
    assert f"{tmp_path}: not a run folder (run.json is missing)" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_rerun_sees_the_history_of_the_run_it_repeats_and_is_no_later_runs_history(
    tracking_uri,
):
    def pipeline_run(name: str, **tags) -> str:
        run_id = tracking.start_run(
            tracking_uri, "history", run_name=name, tags={"retention_lab.kind": "pipeline", **tags}
        )
        tracking.end_run(tracking_uri, run_id, succeeded=True)
        time.sleep(0.02)  # distinct start times (milliseconds)
        return run_id

    first = pipeline_run("first")
    second = pipeline_run("second")
    again = pipeline_run(
        "second again", **{"retention_lab.kind": "rerun", tracking.RERUN_OF_TAG: second}
    )
    later = pipeline_run("later")

    def earlier(run_id: str) -> list[str]:
        return [r["run_id"] for r in tracking.earlier_pipeline_runs(tracking_uri, run_id)]

    assert earlier(again) == [first] == earlier(second)
    assert earlier(later) == [second, first]


def write_results(run_dir: Path, stage: str, metrics: dict, findings: list[str]) -> None:
    (run_dir / stage).mkdir(parents=True)
    (run_dir / stage / "results.json").write_text(
        json.dumps({"stage": stage, "status": "succeeded", "finished_at": "t",
                    "metrics": metrics, "findings": findings, "tags": {}})
    )  # fmt: skip


def test_compare_results_names_each_differing_metric_and_counts_nan_as_equal(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    write_results(old, "survival", {"median": 30.5, "ici": float("nan"), "n": 3.0}, ["a"])
    write_results(new, "survival", {"median": 31.0, "ici": float("nan"), "n": 3.0}, ["a"])
    write_results(old, "plan", {"treated": 2.0}, ["b"])
    write_results(new, "plan", {"treated": 2.0}, ["c"])
    lines, compared = compare_results(old, new, ["survival", "plan", "clv"])
    assert compared == 4
    assert lines == ["survival: median 30.5 then, 31.0 now", "plan: the findings' text differs"]
    assert compare_results(old, old, ["survival", "plan"]) == ([], 4)


# ---------------------------------------------------------------- slow: the smoke configuration
@pytest.fixture(scope="module")
def smoke_runs(smoke_run, tmp_path_factory):
    """The session's smoke run and its rerun, which logs to the same MLflow store but
    goes to a reports folder of its own.
    """
    assert smoke_run["result"].returncode == 0, smoke_run["result"].stderr[-3000:]
    (first,) = [p for p in smoke_run["reports_dir"].iterdir() if p.is_dir()]
    again = cli("rerun", str(first), "--reports-dir", str(tmp_path_factory.mktemp("rerun")),
                tmp_path=smoke_run["root"], timeout=1800)  # fmt: skip
    return {"first": first, "rerun": again, "tracking_uri": smoke_run["tracking_uri"]}


@pytest.mark.slow
def test_a_rerun_gives_identical_results(smoke_runs):
    again = smoke_runs["rerun"]
    assert again.returncode == 0, again.stderr[-3000:]
    assert "headline results match" in again.stderr
    assert warnings_of(again) == []  # same commit, packages and data
    first = smoke_runs["first"]
    second = new_run_of(again)
    assert second.parent != first.parent  # the rerun went to the reports folder it was given
    stages = [s["stage"] for s in record(first)["stages"]]
    assert stages == ["data", "survival", "uplift", "clv", "plan", "monitoring"]
    for stage in stages:
        assert results(first, stage)["status"] == "succeeded"
        assert same_results(first, second, stage=stage), stage
    assert record(second)["provenance"]["config_hash"] == record(first)["provenance"]["config_hash"]


@pytest.mark.slow
def test_provenance_is_in_run_json_mlflow_tags_and_every_report(smoke_runs):
    first = smoke_runs["first"]
    provenance = record(first)["provenance"]
    head = subprocess.run(
        ["git", "-C", str(PROJ_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    tables = json.loads((first / "tables" / "tables.json").read_text())
    assert provenance["commit"] == head
    assert provenance["packages"]["pandas"] == version("pandas")
    assert provenance["packages"]["lifelines"] == version("lifelines")
    assert provenance["kernel"] == "retention-lab" and provenance["fast"] is True
    assert provenance["seed"] == 7
    assert provenance["data_fingerprint"] == tables["fingerprint"]
    assert provenance["as_of"] == tables["as_of"]

    client = MlflowClient(smoke_runs["tracking_uri"])
    tags = client.get_run(record(first)["mlflow_run_id"]).data.tags
    assert tags["git_commit"].startswith(head)
    assert tags["package.pandas"] == version("pandas")
    assert tags["config_hash"] == provenance["config_hash"]
    assert tags["data_fingerprint"] == tables["fingerprint"]
    rerun_tags = client.get_run(record(new_run_of(smoke_runs["rerun"]))["mlflow_run_id"]).data.tags
    assert rerun_tags[tracking.PIPELINE_KIND_TAG] == "rerun"
    assert rerun_tags[tracking.RERUN_OF_TAG] == record(first)["mlflow_run_id"]

    pages = [first / "index.html", *(first / s["html"] for s in record(first)["stages"])]
    for page in pages:
        html = page.read_text()
        footer = html[html.index('<footer class="rl-provenance"') :]
        assert f"commit {head[:12]}" in footer, page
        assert f"data {tables['fingerprint']} as of {tables['as_of']}" in footer, page
        assert "seed 7, fast" in footer, page


# ---------------------------------------------------------------- slow: a changed data row
@pytest.fixture
def csv_config(tmp_path) -> Path:
    rng = np.random.default_rng(11)
    n = 300
    signup = pd.Series(pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 700, n), "D"))
    end = signup + pd.to_timedelta(rng.integers(30, 900, n), unit="D")
    end = end.where(end <= pd.Timestamp("2023-06-30"))
    pd.DataFrame(
        {
            "customer_id": [f"C{i:04d}" for i in range(n)],
            "signup_date": signup.dt.strftime("%Y-%m-%d"),
            "end_date": end.dt.strftime("%Y-%m-%d"),
            "segment": rng.choice(["mass", "business"], n),
        }
    ).to_csv(tmp_path / "customers.csv", index=False)
    config = {
        "name": "csv",
        "seed": 5,
        "stages": ["data"],
        "data": {"source": "files", "as_of": "2023-06-30", "customers": {"path": "customers.csv"}},
        "tracking": {"experiment": "retention-lab-csv"},
    }
    path = tmp_path / "csv.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_rerun_names_the_changed_data_fingerprint(tmp_path, csv_config):
    result = cli(
        "run", "--config", str(csv_config), "--reports-dir", str(tmp_path / "reports"),
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (original,) = [p for p in (tmp_path / "reports").iterdir() if p.is_dir()]
    churned = results(original, "data")["metrics"]["n_churned"]

    customers = pd.read_csv(tmp_path / "customers.csv", dtype=str)
    active = customers.index[customers["end_date"].isna()][0]
    customers.loc[active, "end_date"] = "2023-06-01"  # one active customer has left
    customers.to_csv(tmp_path / "customers.csv", index=False)

    again = cli("rerun", str(original), tmp_path=tmp_path)
    assert again.returncode == EXIT_RESULTS_DIFFER, again.stderr[-3000:]
    before = record(original)["provenance"]["data_fingerprint"]
    after = record(new_run_of(again))["provenance"]["data_fingerprint"]
    assert before != after
    assert warnings_of(again) == [f"warning: data fingerprint: {before} then, {after} now"]
    assert f"data: n_churned {churned} then, {churned + 1} now" in again.stderr
