"""End to end: the smoke configuration through the CLI, every stage notebook, MLflow, and
the reports as a reviewer opens them in headless Chromium.

The pipeline runs once for this module (``--fast``); the tests read what it left.
"""

import json
import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from retention_lab.run_summary import headline_metrics
from retention_lab.runner import find_notebook, stage_order, stage_requirements
from retention_lab.tracking import name_for_mlflow

pytestmark = pytest.mark.slow


def test_every_notebook_runs_in_the_smoke_pipeline(smoke_run):
    result = smoke_run["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    # a scheduler's log gets the progress lines, not the kernels' or MLflow's chatter
    assert "[IPKernelApp]" not in result.stderr and "INFO mlflow" not in result.stderr
    assert "[6/6] monitoring succeeded" in result.stderr
    index = Path(result.stdout.strip().splitlines()[-1])
    assert index == (smoke_run["reports_dir"] / "index.html").resolve()
    (run_dir,) = [p for p in smoke_run["reports_dir"].iterdir() if p.is_dir()]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    for stage in record["stages"]:
        assert stage["status"] == "succeeded", stage
        results = json.loads((run_dir / stage["stage"] / "results.json").read_text())
        assert results["findings"], f"{stage['stage']} has no findings for the report"
        assert (run_dir / stage["html"]).is_file()


def test_data_stage_stores_tables_truth_and_fingerprint_in_mlflow(smoke_run):
    assert smoke_run["result"].returncode == 0, smoke_run["result"].stderr[-3000:]
    (run_dir,) = [p for p in smoke_run["reports_dir"].iterdir() if p.is_dir()]
    customers = pd.read_parquet(run_dir / "tables" / "customers.parquet")
    assert {"tenure_months", "churned"} <= set(customers.columns)
    assert (run_dir / "tables" / "truth" / "parameters.json").is_file()
    results = json.loads((run_dir / "data" / "results.json").read_text())
    assert results["metrics"]["n_customers"] == len(customers)
    assert results["metrics"]["n_churned"] == int(customers["churned"].sum())
    record = json.loads((run_dir / "run.json").read_text())
    client = MlflowClient(smoke_run["tracking_uri"])
    parent = client.get_run(record["mlflow_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["data_fingerprint"] == results["tags"]["data_fingerprint"]
    html = (run_dir / "data" / "data.html").read_text()
    assert f"{len(customers):,} customers signed up" in html


def at(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


def test_stages_wait_for_their_inputs_and_the_runner_logs_their_results(smoke_run):
    assert smoke_run["result"].returncode == 0, smoke_run["result"].stderr[-3000:]
    (run_dir,) = [p for p in smoke_run["reports_dir"].iterdir() if p.is_dir()]
    record = json.loads((run_dir / "run.json").read_text())
    stages = [s["stage"] for s in record["stages"]]
    order = stage_order(stages, {s: stage_requirements(find_notebook(s)) for s in stages})
    assert order["plan"] == ["survival", "uplift", "clv"] and order["survival"] == []
    when = {s["stage"]: (at(s["started_at"]), at(s["checked_at"])) for s in record["stages"]}
    for stage, inputs in order.items():
        for read in inputs:  # a stage starts once the tables of every stage it reads are checked
            assert when[stage][0] >= when[read][1], (stage, read)
    # two at once, those most others wait on first: survival and uplift before data
    assert when["data"][0] >= min(when["survival"][1], when["uplift"][1])
    client = MlflowClient(smoke_run["tracking_uri"])
    parent = client.get_run(record["mlflow_run_id"])
    children = {
        r.data.tags["stage"]: r
        for r in client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        )
    }
    assert sorted(children) == sorted(stages)
    headlines = {}
    for stage in stages:  # the kernels wrote results.json; the runner logged it to MLflow
        results = json.loads((run_dir / stage / "results.json").read_text())
        finite = {k: v for k, v in results["metrics"].items() if math.isfinite(v)}
        assert children[stage].info.status == "FINISHED"
        assert children[stage].data.metrics == pytest.approx(finite), stage
        for key, value in (results.get("tags") or {}).items():
            assert children[stage].data.tags[name_for_mlflow(key)] == str(value)
        headlines.update(headline_metrics(stage, finite))
    assert len(headlines) >= 10  # the executive summary's figures, on the pipeline run
    assert {k: parent.data.metrics[k] for k in headlines} == pytest.approx(headlines)
    tables = {a.path for a in client.list_artifacts(children["survival"].info.run_id, "tables")}
    assert "tables/scores.parquet" in tables  # listed by the kernel, logged by the runner


def test_long_stages_report_their_steps_in_order_on_the_terminal_and_in_the_run_log(smoke_run):
    result = smoke_run["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p for p in smoke_run["reports_dir"].iterdir() if p.is_dir()]
    lines = (run_dir / "run.log").read_text().splitlines()
    steps = {
        stage: [line.split(f" {stage}: ", 1)[1] for line in lines if f" {stage}: " in line]
        for stage in ("survival", "uplift", "clv", "plan")
    }
    uplift = steps["uplift"]
    assert uplift[0].startswith("propensity scores of ")
    fits = [(i, line) for i, line in enumerate(uplift) if line.startswith("fitting the ")]
    n = int(fits[0][1].rsplit("/", 1)[1].rstrip(")"))
    assert n >= 2 and [line.rsplit(" ", 1)[1] for _, line in fits] == [
        f"({k}/{n})" for k in range(1, n + 1)
    ]
    evaluating = next(i for i, line in enumerate(uplift) if line.startswith("evaluating"))
    assert fits[0][0] > 0 and evaluating > fits[-1][0]  # in the order the stage runs them
    assert any(line.startswith("cox on ") for line in steps["survival"])
    assert steps["clv"][0].startswith("contractual value")
    assert steps["plan"][0].startswith("allocating the budget over ")
    assert steps["plan"][1].startswith("off-policy evaluation on ")
    for stage, said in steps.items():  # and the same lines on the terminal
        for line in said:
            assert f"{stage}: {line}" in result.stderr


def test_each_stage_logs_its_fitted_models_as_mlflow_models_that_reproduce_its_scores(smoke_run):
    import mlflow.pyfunc
    from mlflow.models import get_model_info

    import retention_lab as rl
    from retention_lab.uplift.cases import active_customers

    assert smoke_run["result"].returncode == 0, smoke_run["result"].stderr[-3000:]
    (run_dir,) = [p for p in smoke_run["reports_dir"].iterdir() if p.is_dir()]
    record = json.loads((run_dir / "run.json").read_text())
    client = MlflowClient(smoke_run["tracking_uri"])
    mlflow.set_tracking_uri(smoke_run["tracking_uri"])
    children = {
        r.data.tags["stage"]: r.info.run_id
        for r in client.search_runs(
            [client.get_run(record["mlflow_run_id"]).info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{record['mlflow_run_id']}'",
        )
    }
    tables = rl.open(run_dir).tables
    active = tables.customers[~tables.customers["churned"]].reset_index(drop=True)

    def load(stage: str, name: str):
        uri = f"runs:/{children[stage]}/models/{name}"
        signature = get_model_info(uri).signature
        assert signature is not None and signature.outputs is not None, uri
        model = mlflow.pyfunc.load_model(uri)
        return model, signature.inputs.input_names()

    def predict(model, inputs, customers):
        return model.predict(customers[inputs]).assign(customer_id=customers["customer_id"])

    logged = {
        stage: sorted(a.path.split("/")[-1] for a in client.list_artifacts(run_id, "models"))
        for stage, run_id in children.items()
    }
    assert logged["survival"] == ["churn_risk"] and logged["clv"] == ["residual_value"]
    chosen = pd.read_parquet(run_dir / "uplift" / "effects.parquet")
    assert logged["uplift"] == sorted(f"uplift_{name}" for name in chosen["learner"].unique())

    model, inputs = load("survival", "churn_risk")
    saved = pd.read_parquet(run_dir / "survival" / "scores.parquet")
    got = saved[["customer_id"]].merge(predict(model, inputs, active), on="customer_id")
    assert len(got) == len(saved) > 100 and saved["p_churn_horizon"].std() > 0
    np.testing.assert_allclose(got["p_churn_horizon"], saved["p_churn_horizon"], rtol=1e-9)

    model, inputs = load("clv", "residual_value")
    saved = pd.read_parquet(run_dir / "clv" / "values.parquet").query("active")
    got = saved[["customer_id"]].merge(predict(model, inputs, active), on="customer_id")
    assert len(got) == len(saved) > 100
    np.testing.assert_allclose(got["residual_value"], saved["residual_value"], rtol=1e-9)

    customers = active_customers(tables).reset_index(drop=True)
    for learner, rows in chosen.groupby("learner"):
        model, inputs = load("uplift", f"uplift_{learner}")
        wide = predict(model, inputs, customers)
        for instrument, saved in rows.groupby("instrument"):
            got = saved[["customer_id"]].merge(wide, on="customer_id")
            assert len(got) == len(saved) > 100, (learner, instrument)
            np.testing.assert_allclose(got[f"effect_{instrument}"], saved["effect"], rtol=1e-9)


def open_page(browser, url):
    page = browser.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    response = page.goto(url, wait_until="load")
    assert response is None or response.ok
    return page, errors


def broken_images(page) -> int:
    return page.evaluate(
        "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length"
    )


@pytest.mark.browser
def test_reports_index_run_index_and_stage_report_render(browser, smoke_run):
    assert smoke_run["result"].returncode == 0, smoke_run["result"].stderr[-3000:]
    index = smoke_run["reports_dir"] / "index.html"

    page, errors = open_page(browser, index.as_uri())
    assert "retention_lab reports" in page.title()
    assert page.locator("td.status", has_text="succeeded").count() == 1
    page.locator("td a", has_text="-smoke").first.click()
    page.wait_for_load_state("load")
    assert page.locator("h1").first.inner_text().startswith("Run smoke")

    page.locator("td a", has_text="data").first.click()
    page.wait_for_load_state("load")
    assert page.locator(".rl-findings li").count() >= 3
    assert "customers signed up" in page.locator(".rl-findings").inner_text()
    images = page.locator("img").count()
    assert images >= 3
    assert broken_images(page) == 0
    assert page.locator(".jp-CodeCell .jp-InputArea").count() == 0  # code is hidden
    assert "open_stage" not in page.content()
    assert errors == []
