"""The stage context: tables on first use, outputs between stages, results for the report."""

import dataclasses
import json
import subprocess
import sys

import pandas as pd
import pytest

from retention_lab import contract
from retention_lab.config import dump_config
from retention_lab.data import fingerprint, load_tables
from retention_lab.errors import MissingStageOutput, OutputContractError
from retention_lab.stage import open_stage, read_artifacts, read_results, scratch_folder

from .conftest import make_config


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "config.yaml"
    dump_config(make_config(), path)
    return path


def test_tables_are_loaded_once_stored_and_read_back(tmp_path, config_file):
    stage = open_stage("data", config_file=str(config_file), run_dir=str(tmp_path / "run"))
    tables = stage.tables()
    assert (tmp_path / "run" / "tables" / "customers.parquet").is_file()
    again = stage.tables()
    pd.testing.assert_frame_equal(
        tables.customers.reset_index(drop=True), again.customers, check_dtype=False
    )
    assert again.as_of == tables.as_of
    truth = stage.truth()
    assert truth is not None and len(truth.intervention_outcomes) > 0
    stored = json.loads((tmp_path / "run" / "tables" / "tables.json").read_text())["fingerprint"]
    assert fingerprint(again) == stored == fingerprint(tables)
    fresh, _ = load_tables(stage.config.data, random_state=stage.config.seed)
    assert fingerprint(fresh) == stored
    changed = fresh.customers.copy()
    changed.loc[changed.index[0], "monthly_fee"] += 1.0
    assert fingerprint(type(fresh)(customers=changed, as_of=fresh.as_of)) != stored


def test_missing_upstream_output_names_the_stage_to_run(tmp_path, config_file):
    stage = open_stage("plan", config_file=str(config_file), run_dir=str(tmp_path / "run"))
    with pytest.raises(MissingStageOutput, match=r"run the 'survival' stage before 'plan'"):
        stage.read_output("survival", "scores")
    with pytest.raises(MissingStageOutput, match=r"churn probability within the horizon"):
        stage.read_output("survival", "scores")  # the error says what the missing table holds
    producer = open_stage("survival", config_file=str(config_file), run_dir=str(tmp_path / "run"))
    producer.save_table(SCORES, "scores")
    assert stage.read_output("survival", "scores")["p_churn_horizon"].tolist() == [0.5]


SCORES = pd.DataFrame(
    {"customer_id": ["C1"], "tenure_months": [3.0], "horizon_months": [6.0],
     "p_churn_horizon": [0.5], "expected_remaining_months": [12.0]}
)  # fmt: skip


def test_a_table_that_breaks_its_contract_is_refused_naming_stage_table_column_and_rows(
    tmp_path, config_file
):
    stage = open_stage("survival", config_file=str(config_file), run_dir=str(tmp_path / "run"))
    broken = pd.concat([SCORES, SCORES.assign(customer_id="C2", p_churn_horizon=1.4)])
    with pytest.raises(OutputContractError) as caught:
        stage.save_table(broken, "scores")
    message = str(caught.value)
    assert "stage 'survival', table 'scores'" in message
    assert "column 'p_churn_horizon'" in message and "(C2)" in message and "C1" not in message
    assert not (tmp_path / "run" / "survival" / "scores.parquet").exists()
    with pytest.raises(OutputContractError, match=r"column 'horizon_months'.*required column"):
        stage.save_table(SCORES.drop(columns="horizon_months"), "scores")
    with pytest.raises(OutputContractError, match=r"survival stage saves: scores, hazard_ratios"):
        stage.save_table(SCORES, "risk_scores")  # not a declared output
    with pytest.raises(OutputContractError, match="no such output is declared"):
        stage.read_output("survival", "risk_scores")


def test_every_declared_output_has_a_schema_and_an_empty_table_takes_its_types():
    for output in contract.OUTPUTS:
        assert output.schema().name == output.file and output.description
        empty = pd.DataFrame({c.name: pd.Series([], dtype=object) for c in output.columns})
        typed = contract.check_output(output.stage, output.name, empty)
        numbers = [c.name for c in output.columns if c.kind == "number"]
        assert all(str(typed[name].dtype) == "float64" for name in numbers), output.file


def test_finish_writes_results_for_the_report(tmp_path, config_file):
    stage = open_stage("x", config_file=str(config_file), run_dir=str(tmp_path / "run"))
    stage.finish(metrics={"a": 1, "b": float("nan")}, findings=["One."], tags={"k": "v"})
    results = read_results(tmp_path / "run", "x")
    assert results["metrics"]["a"] == 1.0 and results["findings"] == ["One."]
    assert results["status"] == "succeeded" and results["tags"] == {"k": "v"}
    assert read_results(tmp_path / "run", "other") is None
    json.loads((tmp_path / "run" / "x" / "results.json").read_text())


def test_interactive_use_works_in_a_scratch_folder(monkeypatch, tmp_path, config_file):
    monkeypatch.setattr("retention_lab.stage.DATA_DIR", tmp_path / "data")
    stage = open_stage("data", config_file=str(config_file))
    assert stage.run_dir.parent == tmp_path / "data" / "scratch"
    assert stage.run_dir.name.startswith("test-")
    assert stage.mlflow_run_id is None


def test_the_scratch_folder_changes_with_the_data_as_of_and_seed(monkeypatch, tmp_path):
    monkeypatch.setattr("retention_lab.stage.DATA_DIR", tmp_path / "data")
    csv = tmp_path / "customers.csv"
    csv.write_text("customer_id,signup_date,end_date,segment\nC1,2020-01-01,2020-06-01,a\n")
    files = {"source": "files", "as_of": "2021-01-01", "customers": {"path": str(csv)}}
    base = make_config(data=files)
    first = scratch_folder(base)
    assert scratch_folder(make_config(data=files)) == first  # same inputs, same tables
    assert scratch_folder(make_config(data=files, seed=4)) != first
    assert scratch_folder(make_config(data={**files, "as_of": "2021-02-01"})) != first
    csv.write_text(csv.read_text() + "C2,2020-02-01,,b\n")
    assert scratch_folder(base) != first  # the file changed


def test_each_stage_gets_its_own_reproducible_random_state(tmp_path, config_file):
    survival = open_stage("survival", config_file=str(config_file), run_dir=str(tmp_path))
    uplift = open_stage("uplift", config_file=str(config_file), run_dir=str(tmp_path))
    again = open_stage("survival", config_file=str(config_file), run_dir=str(tmp_path))
    assert survival.random_state == again.random_state
    assert survival.random_state != uplift.random_state
    assert survival.random_state != survival.config.seed


ACTIONS = pd.DataFrame(
    {"customer_id": ["C1"], "instrument": ["discount"], "problem_type": ["price"],
     "segment": ["vip"], "expected_saved_value": [90.0], "cost": [20.0],
     "expected_net_value": [70.0], "value": [900.0], "retention_gain": [0.1],
     "gain_lower": [0.02], "gain_upper": [0.18], "p_churn": [0.4], "reason": ["best net value"]}
)  # fmt: skip


def test_log_file_and_save_table_reach_the_stage_run_in_mlflow(tmp_path, config_file, tracking_uri):
    from mlflow.tracking import MlflowClient

    from retention_lab import tracking

    run_id = tracking.start_run(tracking_uri, "stage-test", run_name="plan")
    stage = open_stage(
        "plan", config_file=str(config_file), run_dir=str(tmp_path), mlflow_run_id=run_id
    )
    path = tmp_path / "actions.csv"
    path.write_text("customer_id\n")
    stage.log_file(path)
    stage.save_table(ACTIONS, "actions")
    # opened as the runner opens a stage, the files are listed for the runner to log
    assert read_artifacts(tmp_path, "plan") == [
        (path.resolve(), "files"),
        ((tmp_path / "plan" / "actions.parquet").resolve(), "tables"),
    ]
    client = MlflowClient(tracking_uri)
    assert client.list_artifacts(run_id) == []
    direct = dataclasses.replace(stage, logged_by_runner=False)  # a stage outside a run logs
    direct.log_file(path)
    direct.save_table(ACTIONS, "actions")
    assert [a.path for a in client.list_artifacts(run_id, "files")] == ["files/actions.csv"]
    assert [a.path for a in client.list_artifacts(run_id, "tables")] == ["tables/actions.parquet"]


KERNEL_WORK = """
import json, sys
import matplotlib.pyplot as plt
import retention_lab as rl
stage = rl.stage.open_stage("survival", config_file=sys.argv[1], run_dir=sys.argv[2],
                            mlflow_run_id="run-id-from-the-runner")
tables = stage.tables()
stage.save_table(tables.customers.head(3), "scores")
stage.log_figure(plt.subplots()[0], "f.png")
stage.finish(metrics={"n": len(tables.customers)}, findings=["Read."])
print(json.dumps(sorted(m for m in ("mlflow", "pandera", "pyspark") if m in sys.modules)))
"""


def test_a_stage_in_a_run_imports_neither_mlflow_nor_pandera(tmp_path, config_file):
    run_dir = tmp_path / "run"
    open_stage("data", config_file=str(config_file), run_dir=str(run_dir)).tables()  # validated
    done = subprocess.run(
        [sys.executable, "-c", KERNEL_WORK, str(config_file), str(run_dir)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []  # the runner logs; tables are valid
    assert [folder for _, folder in read_artifacts(run_dir, "survival")] == ["tables", "figures"]
    assert read_results(run_dir, "survival")["metrics"]["n"] > 0


STAGE_PACKAGES = ("survival", "uplift", "clv", "plan", "monitor")


@pytest.mark.parametrize("package", STAGE_PACKAGES)
def test_every_stage_entry_point_has_the_one_shape(package):
    """``analyse(tables, inputs, settings, *, truth=None, random_state=None)`` and ``findings``."""
    import importlib
    import inspect

    stage = importlib.import_module(f"retention_lab.{package}")
    positional, keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY
    shape = [
        (p.name, p.kind, p.default) for p in inspect.signature(stage.analyse).parameters.values()
    ]
    assert shape == [
        ("tables", positional, inspect.Parameter.empty),
        ("inputs", positional, inspect.Parameter.empty),
        ("settings", positional, inspect.Parameter.empty),
        ("truth", keyword, None),
        ("random_state", keyword, None),
    ]
    # findings(result, *, wording...): one result in, every other argument keyword-only
    first, *wording = inspect.signature(stage.findings).parameters.values()
    assert first.kind == positional and first.default is inspect.Parameter.empty
    assert all(p.kind == keyword and p.default is not p.empty for p in wording)


@pytest.mark.parametrize("package", STAGE_PACKAGES)
def test_every_stage_settings_section_has_a_smoke_variant_of_its_own_type(package):
    config = make_config()
    section = config.stage_settings("monitoring" if package == "monitor" else package)
    fast = config.stage_settings("monitoring" if package == "monitor" else package, fast=True)
    assert type(fast) is type(section)
    # what a smoke run shrinks is declared once, on the section (FAST), and the variant obeys it
    for key, value in type(section).FAST.items():
        assert getattr(fast, key) <= value, key
    unchanged = set(type(section).model_fields) - set(type(section).FAST) - {"transaction_models"}
    assert {k: getattr(fast, k) for k in unchanged} == {k: getattr(section, k) for k in unchanged}


def test_a_survival_smoke_run_caps_each_model_sample_and_keeps_a_smaller_cap():
    from retention_lab.survival import SurvivalSettings

    fast = SurvivalSettings(max_ph_customers=1_000, max_cox_customers=None).fast()
    assert fast.max_ph_customers == 1_000  # smaller than the smoke cap: kept
    assert fast.max_cox_customers == fast.max_aft_customers == 5_000  # None (all) is capped too
    assert fast.max_validation_customers == fast.max_problem_customers == 5_000
    assert SurvivalSettings().covariates == fast.covariates  # nothing else changes
