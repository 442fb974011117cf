"""The runner end to end on fixture notebooks: success, failure, tracking, reports, folders."""

import json
from datetime import datetime
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from retention_lab.errors import ConfigError
from retention_lab.runner import new_run_dir, run_pipeline, stage_order, start_order, waiting_on

from .conftest import FIXTURES, kernel_processes, make_config

NOTEBOOKS = FIXTURES / "notebooks"


def run(stages, reports_dir, *, concurrency=1, **kwargs):
    """A run of fixture stages, one at a time unless ``concurrency`` says otherwise."""
    config = make_config(stages=stages, name="fixture", runner={"concurrency": concurrency})
    return run_pipeline(config, reports_dir=reports_dir, notebooks_dir=NOTEBOOKS, **kwargs)


def interval(stage) -> tuple[datetime, datetime]:
    """From the stage's start to its tables checked (its notebook's work; the report follows)."""
    return datetime.fromisoformat(stage.started_at), datetime.fromisoformat(stage.checked_at)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_successful_run_writes_reports_results_and_tracks_in_mlflow(reports_dir, tracking_uri):
    outcome = run(["answer"], reports_dir)
    assert outcome.succeeded and outcome.failed_stage is None
    run_dir = outcome.run_dir
    assert run_dir.parent == reports_dir and run_dir.name.endswith("-fixture")

    results = json.loads((run_dir / "answer" / "results.json").read_text())
    assert results["metrics"] == {"answer": 42.0}
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert [s["status"] for s in record["stages"]] == ["succeeded"]

    html = (run_dir / "answer" / "answer.html").read_text()
    assert html.index("The answer is 42.") < html.index("Fixture stage 00_answer")
    assert "stage.finish" not in html  # code is hidden
    assert "config_file" not in html  # parameter cells are removed
    assert "data:image/png;base64" in html  # figures are embedded
    assert (run_dir / "answer" / "figures" / "line.png").is_file()
    assert "answer.html" in (run_dir / "index.html").read_text()
    assert run_dir.name in (reports_dir / "index.html").read_text()

    client = MlflowClient(tracking_uri)
    parent = client.get_run(outcome.mlflow_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["data.simulator.n_customers"] == "1500"
    assert parent.data.tags["answer_tag"] == "abc"  # stage tags reach the parent run
    tables = json.loads((run_dir / "tables" / "tables.json").read_text())
    assert parent.data.tags["data_fingerprint"] == tables["fingerprint"]
    assert len(tables["fingerprint"]) == 16
    assert parent.data.tags["git_commit"]
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{outcome.mlflow_run_id}'",
    )
    assert len(children) == 1
    child = children[0]
    assert child.info.status == "FINISHED" and child.data.metrics["answer"] == 42.0
    artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"figures", "notebook", "report"} <= artifacts
    # the stage's kernel listed its figure; the runner logged it (the kernel never loads MLflow)
    assert json.loads((run_dir / "answer" / "artifacts.json").read_text()) == [
        [str(run_dir.resolve() / "answer" / "figures" / "line.png"), "figures"]
    ]
    assert [a.path for a in client.list_artifacts(child.info.run_id, "figures")] == [
        "figures/line.png"
    ]
    assert child.data.tags["answer_tag"] == "abc"
    assert mlflow.get_tracking_uri() == tracking_uri


def test_failing_stage_fails_the_run_keeps_partial_notebook_and_spares_earlier_runs(
    reports_dir, tracking_uri
):
    earlier = run(["answer"], reports_dir)
    before = snapshot(earlier.run_dir)

    outcome = run(["answer", "broken", "silent"], reports_dir)
    assert outcome.status == "failed"
    failed = outcome.failed_stage
    assert failed.stage == "broken"
    assert "deliberate failure" in failed.error and failed.cell_index is not None
    assert [s.status for s in outcome.stages] == ["succeeded", "failed", "not run"]
    partial = outcome.run_dir / failed.notebook
    assert "deliberate failure" in partial.read_text()
    assert "failed" in (outcome.run_dir / "broken" / "broken.html").read_text()

    client = MlflowClient(tracking_uri)
    assert client.get_run(outcome.mlflow_run_id).info.status == "FAILED"
    statuses = {
        r.data.tags["stage"]: r.info.status
        for r in client.search_runs(
            [client.get_run(outcome.mlflow_run_id).info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{outcome.mlflow_run_id}'",
        )
    }
    assert statuses == {"answer": "FINISHED", "broken": "FAILED"}

    assert snapshot(earlier.run_dir) == before
    index = (reports_dir / "index.html").read_text()
    assert earlier.run_dir.name in index and outcome.run_dir.name in index


def test_stage_that_never_writes_results_is_a_failure(reports_dir, tracking_uri):
    outcome = run(["silent"], reports_dir)
    assert outcome.status == "failed"
    assert "results.json" in outcome.failed_stage.error


def test_a_stage_whose_table_breaks_its_contract_fails_before_a_later_stage_reads_it(
    reports_dir, tracking_uri
):
    outcome = run(["survival", "answer"], reports_dir)
    assert outcome.status == "failed" and outcome.failed_stage.stage == "survival"
    error = outcome.failed_stage.error
    assert "stage 'survival', table 'scores' breaks its declared contract" in error
    assert "column 'p_churn_horizon'" in error and "(C2, C3)" in error
    record = json.loads((outcome.run_dir / "run.json").read_text())
    assert [s["status"] for s in record["stages"]] == ["failed", "not run"]
    assert MlflowClient(tracking_uri).get_run(outcome.mlflow_run_id).info.status == "FAILED"


def test_unknown_stage_is_rejected_before_any_folder_is_made(reports_dir, tracking_uri):
    with pytest.raises(ConfigError, match=r"no notebook for stage 'nope'.*known stages"):
        run(["answer", "nope"], reports_dir)
    assert list(reports_dir.iterdir()) == []


def test_run_folders_are_never_reused(tmp_path):
    first = new_run_dir(tmp_path, "x")
    second = new_run_dir(tmp_path, "x")
    third = new_run_dir(tmp_path, "x")
    assert len({first, second, third}) == 3


def test_stage_whose_table_is_missing_is_skipped_with_a_reason(tmp_path, reports_dir, tracking_uri):
    pd.DataFrame(
        {"id": [1, 2, 3], "tenure": [3, 5, 8], "churned": [1, 0, 1], "segment": "a"}
    ).to_csv(tmp_path / "agg.csv", index=False)
    config = make_config(
        name="aggregated",
        stages=["answer", "needy"],
        data={
            "source": "files",
            "as_of": "2020-01-01",
            "customers": {"path": str(tmp_path / "agg.csv"), "columns": {"customer_id": "id"}},
        },
    )
    outcome = run_pipeline(config, reports_dir=reports_dir, notebooks_dir=NOTEBOOKS)
    assert outcome.succeeded
    skipped = outcome.stages[1]
    assert skipped.status == "skipped" and skipped.notebook is None
    reason = skipped.findings[0]
    assert "needs the interventions table and customer signup and end dates" in reason
    assert reason in (outcome.run_dir / skipped.html).read_text()
    assert (
        json.loads((outcome.run_dir / "needy" / "results.json").read_text())["status"] == "skipped"
    )


def test_stage_order_follows_declared_inputs_configured_earlier():
    requirements = {
        "survival": {}, "clv": {"inputs": ["survival"]},
        "plan": {"inputs": ["survival", "uplift", "clv"]}, "odd": "not a mapping",
    }  # fmt: skip
    order = stage_order(["survival", "clv", "plan", "odd"], requirements)
    assert order == {"survival": [], "clv": ["survival"], "plan": ["survival", "clv"], "odd": []}
    # an input listed after its reader is not waited for (it ran without it before, too)
    assert stage_order(["clv", "survival"], requirements) == {"clv": [], "survival": []}


def test_stages_most_others_wait_on_start_first():
    order = {
        "data": [], "survival": [], "uplift": [], "clv": ["survival"],
        "plan": ["survival", "uplift", "clv"],
        "monitoring": ["data", "survival", "uplift", "clv", "plan"],
    }  # fmt: skip
    assert waiting_on(order) == {
        "data": 1, "survival": 3, "uplift": 2, "clv": 2, "plan": 1, "monitoring": 0
    }  # fmt: skip
    # the warm kernels' order: the smoke run's stages start in this one (test_pipeline)
    assert start_order(order) == ["survival", "uplift", "clv", "data", "plan", "monitoring"]


def test_independent_stages_overlap_and_a_dependant_waits(tmp_path, monkeypatch):
    # relative folder and store: papermill moves the process into each running stage's folder
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlruns/mlflow.db")
    outcome = run(["answer", "nap", "later"], Path("reports"), concurrency=2)
    assert outcome.succeeded, outcome.stages
    assert outcome.run_dir.parent == tmp_path / "reports" and (tmp_path / "mlruns").is_dir()
    assert Path.cwd() == tmp_path  # where the run started, whichever stage ended last
    answer, nap, later = (interval(s) for s in outcome.stages)
    assert answer[0] < nap[1] and nap[0] < answer[1]  # answer and nap ran at the same time
    assert later[0] >= nap[1]  # later reads nap's outputs: it started once they were checked
    record = json.loads((outcome.run_dir / "run.json").read_text())
    for stage in record["stages"]:  # each ended after its tables were checked, with its report
        assert stage["started_at"] < stage["checked_at"] <= stage["finished_at"]


def test_stages_run_one_at_a_time_with_concurrency_one(reports_dir, tracking_uri):
    outcome = run(["answer", "nap"], reports_dir, concurrency=1)
    answer, nap = (interval(s) for s in outcome.stages)
    assert answer[1] <= nap[0]


def test_a_failing_stage_stops_the_running_ones_and_leaves_nothing_running(
    reports_dir, tracking_uri
):
    outcome = run(["sleepy", "broken", "answer"], reports_dir, concurrency=2)
    assert outcome.status == "failed" and outcome.failed_stage.stage == "broken"
    statuses = {s.stage: (s.status, s.error) for s in outcome.stages}
    assert statuses["sleepy"] == ("killed", "stopped because the broken stage failed")
    assert statuses["answer"] == ("not run", None)  # nothing starts after a failure
    assert not kernel_processes()  # the sleepy kernel was stopped
    record = json.loads((outcome.run_dir / "run.json").read_text())
    assert record["status"] == "failed"
    assert [s["status"] for s in record["stages"]] == ["killed", "failed", "not run"]
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_run(outcome.mlflow_run_id).info.experiment_id])
    assert {r.info.run_name: r.info.status for r in runs} == {
        outcome.run_dir.name: "FAILED", "sleepy": "FAILED", "broken": "FAILED",
    }  # fmt: skip
