"""The retention-lab command: exit codes, messages without tracebacks, the data stage's outputs."""

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from retention_lab.data.simulate import SimulatorSettings, read_ground_truth, simulate

from .conftest import FIXTURES, cli, validate_and_run


def test_bad_configuration_exits_2_with_the_key_and_no_traceback(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("name: bad\nstages: [data]\nsimulatr: {}\n")
    result = cli(
        "run", "--config", str(config), "--reports-dir", str(tmp_path / "r"), tmp_path=tmp_path
    )
    assert result.returncode == 2
    assert "bad.yaml: simulatr: unknown key" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()


def test_failing_stage_exits_1_and_names_the_stage(tmp_path):
    config = tmp_path / "failing.yaml"
    config.write_text("name: failing\nstages: [answer, broken]\n")
    result = cli(
        "run",
        "--config",
        str(config),
        "--reports-dir",
        str(tmp_path / "r"),
        "--notebooks-dir",
        str(FIXTURES / "notebooks"),
        tmp_path=tmp_path,
    )
    assert result.returncode == 1
    assert "stage 'broken' failed" in result.stderr
    assert "deliberate failure" in result.stderr
    assert "partial notebook kept at" in result.stderr
    (run_dir,) = [p for p in (tmp_path / "r").iterdir() if p.is_dir()]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"


def test_simulate_writes_tables_and_truth_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "sim"
    result = cli(
        "simulate", "--out", str(out), "--customers", "500", "--seed", "4", tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == out.resolve()
    customers = pd.read_parquet(out / "customers.parquet")
    assert len(customers) == 500
    assert {"problems", "interventions", "transactions"} <= {p.stem for p in out.glob("*.parquet")}
    truth = read_ground_truth(out)
    assert set(truth.intervention_outcomes["arm"]) >= {"none", "discount"}
    again = cli("simulate", "--out", str(out), "--customers", "500", tmp_path=tmp_path)
    assert again.returncode == 2 and "not empty" in again.stderr


def test_validate_reports_the_tables(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("name: c\ndata:\n  simulator:\n    n_customers: 300\n    months: 24\n")
    result = cli("validate", "--config", str(config), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "valid; Tables(as_of=" in result.stdout and "customers=300" in result.stdout
    earlier = cli("validate", "--config", str(config), "--as-of", "2021-01-01", tmp_path=tmp_path)
    assert earlier.returncode == 0, earlier.stderr
    assert "Tables(as_of=2021-01-01" in earlier.stdout  # the market as it was then


def test_as_of_outside_the_data_or_not_a_date_exits_2_before_any_run(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("name: c\nstages: [data]\ndata:\n  simulator:\n    months: 24\n")
    reports = tmp_path / "r"
    late = cli("run", "--config", str(config), "--as-of", "2030-01-01", "--reports-dir",
               str(reports), tmp_path=tmp_path)  # fmt: skip
    assert late.returncode == 2
    assert "c.yaml (--as-of): data: " in late.stderr
    assert "as_of 2030-01-01 is outside the simulated window (2020-01-01 to 2022-01-01)" in (
        late.stderr
    )
    bad = cli("run", "--config", str(config), "--as-of", "2021-13-01", "--reports-dir",
              str(reports), tmp_path=tmp_path)  # fmt: skip
    assert bad.returncode == 2 and "data.as_of" in bad.stderr and "Traceback" not in bad.stderr
    assert not reports.exists()


def test_version_is_printed(tmp_path):
    from retention_lab import __version__

    result = cli("--version", tmp_path=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"retention-lab {__version__}"


def test_make_lab_allows_root_only_as_root():
    make = subprocess.run(
        ["make", "--no-print-directory", "-n", "lab"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    command = make.stdout.strip().splitlines()[-1]
    assert "jupyter lab" in command
    assert ("--allow-root" in command) == (os.getuid() == 0)


@pytest.mark.slow
def test_a_customers_table_without_segment_validates_and_runs(tmp_path):
    market = simulate(SimulatorSettings(n_customers=2_000, months=36), random_state=4)
    market.customers.drop(columns="segment").to_csv(tmp_path / "customers.csv", index=False)
    config = {
        "name": "no-segment",
        "stages": ["data", "survival", "clv"],
        "data": {
            "source": "files",
            "as_of": str(market.as_of),
            "customers": {"path": "customers.csv"},
        },
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    validated, run_dir, run = validate_and_run(path, tmp_path)
    assert "customers=2,000" in validated
    assert {s["stage"]: s["status"] for s in run["stages"]} == dict.fromkeys(
        ["data", "survival", "clv"], "succeeded"
    )
    survival = json.loads((run_dir / "survival" / "results.json").read_text())["metrics"]
    assert 0.5 < survival["concordance_held_out"] < 1
    notebook = (run_dir / "survival" / "01_survival.ipynb").read_text()
    assert "this dataset has no column segment (covariates)" in notebook  # the stated reason
    clv = json.loads((run_dir / "clv" / "results.json").read_text())
    assert clv["metrics"]["total_residual_value"] > 0
    values = pd.read_parquet(run_dir / "clv" / "values.parquet")
    assert set(values["segment"]) == {"all"} and len(values) == 2_000
