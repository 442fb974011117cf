"""Campaign exports of every shape: mapping, outcome types, assignment types, the truth.

The simulated campaigns (``retention_lab.data.campaign``) know each row's
expected outcome under every arm, so the true average effect is exact.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import retention_lab.uplift as up
from retention_lab.config import PROJ_ROOT, load_config, parse_config
from retention_lab.data.campaign import simulate_campaign
from retention_lab.data.sources import label_text
from retention_lab.errors import ConfigError, DataError, StatisticalWarning
from retention_lab.uplift import UpliftSettings

from .conftest import SMOKE_CONFIG, cli, validate_and_run


def _analyse(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StatisticalWarning)
        return up.analyse(None, data, UpliftSettings().fast(), random_state=0)


def _campaign_config(folder, frame, *, name="campaign.csv", **campaign):
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / name, index=False)
    section = {"path": str(folder / name), "columns": {"treatment": "arm"}, **campaign}
    return parse_config({"name": "c", "uplift": {"campaign": section}}).uplift


# ----------------------------------------------------------------------- the bugs
def test_no_randomised_case_gives_adjusted_estimates_and_says_why_no_learner():
    sim = simulate_campaign(3_000, assignment="observational", random_state=3)
    data = up.from_frame(
        sim.frame.assign(assignment="rule"), treatment_col="arm", assignment_col="assignment"
    )
    result = _analyse(data)
    assert result.available and result.n_randomised == 0
    ate = result.ate_table()
    assert set(ate["estimator"]) == {"naive", "aipw", "ipw", "standardisation"}
    assert result.chosen.empty and result.models == {}
    assert any("no case was randomised" in line for line in up.findings(result))


def test_campaign_path_is_taken_from_the_configuration_folder_and_its_base_dir(tmp_path):
    folder = tmp_path / "project" / "configs"
    folder.mkdir(parents=True)
    (tmp_path / "project" / "exports").mkdir()
    config = {"name": "c", "uplift": {"campaign": {"path": "../exports/campaign.csv"}}}
    (folder / "a.yaml").write_text(yaml.safe_dump(config))
    expected = str((tmp_path / "project" / "exports" / "campaign.csv").resolve())
    assert load_config(folder / "a.yaml").uplift.campaign.path == expected
    # the earlier flat key, and a base_dir for every relative path of the configuration
    config = {
        "name": "c",
        "data": {"base_dir": "../exports"},
        "uplift": {"campaign_file": "campaign.csv", "campaign_treatment_col": "arm"},
    }
    (folder / "b.yaml").write_text(yaml.safe_dump(config))
    campaign = load_config(folder / "b.yaml").uplift.campaign
    assert campaign.path == expected and campaign.columns == {"treatment": "arm"}


def test_validate_checks_the_campaign_export_outcome_naming_rows(tmp_path):
    frame = pd.DataFrame(
        {"customer_id": ["A", "B", "C"], "arm": ["control", "x", "x"], "outcome": [1, 2, 0]}
    )
    frame.to_csv(tmp_path / "campaign.csv", index=False)
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    config["stages"] = ["data"]  # checked whether or not the uplift stage runs
    config["uplift"] = {"campaign": {"path": "campaign.csv", "columns": {"treatment": "arm"}}}
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(config))
    result = cli("validate", "--config", str(path), tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "campaign.csv: column 'outcome': 1 row breaks a binary outcome" in result.stderr
    assert "(B)" in result.stderr and "Traceback" not in result.stderr


# ----------------------------------------------------------------------- mapping
def test_labels_are_compared_by_value():
    assert label_text(0.0) == label_text(0) == label_text("0") == "0"
    assert label_text(1.5) == "1.5" and label_text(True) == "True"


def test_a_control_coded_0_in_a_float_column_is_found_and_values_map(tmp_path):
    sim = simulate_campaign(2_000, random_state=4)
    codes = {"control": 0.0, "discount": 1.0, "call": 2.0}
    export = sim.frame.assign(
        arm=sim.frame["arm"].map(codes),
        stayed=np.where(sim.frame["outcome"] == 1, "yes", "no"),
        how=sim.frame["segment"].map({"mass": "M", "business": "B", "vip": "V"}),
    ).drop(columns=["outcome"])
    export.loc[0, "arm"] = np.nan  # a float column for sure
    export = export.iloc[1:].rename(columns={"customer_id": "client"})
    section = _campaign_config(
        tmp_path,
        export,
        columns={"treatment": "arm", "outcome": "stayed", "customer_id": "client"},
        values={"outcome": {"yes": 1, "no": 0}, "treatment": {1: "discount", 2: "call", 0: "none"}},
        control="none",
    )
    data = up.prepare(None, settings=section)
    assert data.arms == ["none", "call", "discount"]
    assert data.features == ["segment", "tenure_months", "monthly_fee", "complaints", "how"]
    # without a values mapping the control label 0 still finds the 0.0 of the float column
    section = _campaign_config(tmp_path, export, columns={"treatment": "arm", "outcome": "stayed",
                               "customer_id": "client"}, values={"outcome": {"yes": 1, "no": 0}},
                               control=0)  # fmt: skip
    data = up.prepare(None, settings=section)
    assert data.control == "0" and data.arms == ["0", "1", "2"]
    truth = sim.true_effects()
    ate = _analyse(data).ate_table().set_index("instrument")
    assert ate.loc["1", "lower"] < truth["discount"] < ate.loc["1", "upper"]


def test_mapping_errors_name_the_file_column_and_rows(tmp_path):
    frame = simulate_campaign(200, assignment="mixed", random_state=1).frame
    section = _campaign_config(
        tmp_path, frame, values={"treatment": {"control": "none", "discount": "d"}}
    )
    with pytest.raises(DataError, match=r"campaign.csv: column 'treatment': .* break one of the "):
        up.prepare(None, settings=section)
    with pytest.raises(ConfigError, match="assignment mixed needs columns"):
        parse_config(
            {"name": "c", "uplift": {"campaign": {"path": "x.csv", "assignment": "mixed"}}}
        )
    with pytest.raises(ConfigError, match="unknown canonical name 'arm'"):
        parse_config(
            {"name": "c", "uplift": {"campaign": {"path": "x.csv", "columns": {"arm": "a"}}}}
        )
    mixed = frame.assign(assignment=frame["assignment"].replace({"rule": "staff"}))
    section = _campaign_config(
        tmp_path,
        mixed,
        assignment="mixed",
        columns={"treatment": "arm", "assignment": "assignment"},
    )
    with pytest.raises(DataError, match="column 'assignment': .*random or rule"):
        up.prepare(None, settings=section)


# ------------------------------------------------------------------- continuous outcomes
def test_continuous_interval_covers_the_true_effect_at_its_nominal_rate():
    covered, n_runs = {"discount": 0, "call": 0}, 500
    for seed in range(n_runs):
        sim = simulate_campaign(1_500, outcome_type="continuous", random_state=100 + seed)
        data = up.from_frame(sim.frame, treatment_col="arm", outcome_type="continuous")
        ate = up.difference_in_means(
            data.cases, treatment_col="arm", outcome_col="outcome", control=data.control
        ).set_index("instrument")
        truth = sim.true_effects()
        for inst in covered:
            covered[inst] += ate.loc[inst, "lower"] <= truth[inst] <= ate.loc[inst, "upper"]
    for inst, hits in covered.items():
        # 95% nominal: with 500 runs the binomial band (3 standard errors) is 0.92 to 0.98
        assert 0.92 <= hits / n_runs <= 0.98, (inst, hits)


def test_continuous_campaign_through_the_configuration_reports_in_its_unit(tmp_path):
    sim = simulate_campaign(6_000, outcome_type="continuous", assignment="mixed", random_state=8)
    section = _campaign_config(
        tmp_path,
        sim.frame,
        outcome_type="continuous",
        assignment="mixed",
        columns={"treatment": "arm", "assignment": "assignment"},
    )
    data = up.prepare(None, settings=section)
    result = _analyse(data)
    truth = sim.true_effects()
    rnd = result.ate_table().query("estimator == 'difference_in_means'").set_index("instrument")
    for inst in truth.index:
        assert rnd.loc[inst, "lower"] <= truth[inst] <= rnd.loc[inst, "upper"]
    metrics = result.to_metrics()
    key = "difference_in_means_randomised_outcome_discount"
    assert metrics[f"effect.{key}"] == pytest.approx(rnd.loc["discount", "effect"])
    assert metrics[f"lower.{key}"] < metrics[f"effect.{key}"] < metrics[f"upper.{key}"]
    assert metrics[f"std_error.{key}"] > 0
    json.dumps(metrics)
    text = " ".join(up.findings(result))
    assert "change in the mean outcome" in text and " pp" not in text
    assert not result.chosen.empty  # learners evaluated on the held-out randomised rows


# ------------------------------------------------------------------- observational exports
def test_observational_naive_misses_the_truth_and_doubly_robust_covers_it():
    naive_missed = dr_covered = 0
    seeds = range(10)
    for seed in seeds:
        sim = simulate_campaign(5_000, assignment="observational", random_state=200 + seed)
        data = up.from_frame(
            sim.frame.assign(assignment="rule"), treatment_col="arm", assignment_col="assignment"
        )
        ate = _analyse(data).ate_table().query("population == 'rule'")
        ate = ate.set_index(["estimator", "instrument"])
        truth = sim.true_effects()["discount"]
        naive, dr = ate.loc[("naive", "discount")], ate.loc[("aipw", "discount")]
        naive_missed += not naive["lower"] <= truth <= naive["upper"]
        dr_covered += dr["lower"] <= truth <= dr["upper"]
    assert naive_missed == len(seeds)
    assert dr_covered >= 8  # 95% intervals: 8 or more of 10 with probability 0.99


def test_observational_diagnostics_show_overlap_weights_balance_and_sensitivity():
    sim = simulate_campaign(5_000, assignment="observational", random_state=21)
    data = up.from_frame(
        sim.frame.assign(assignment="rule"), treatment_col="arm", assignment_col="assignment"
    )
    result = _analyse(data)
    diag = result.observational.set_index("instrument")
    assert set(diag.index) == {"discount", "call"}
    assert (diag["max_smd_before"] > 0.3).all() and (diag["max_smd_after"] < 0.1).all()
    assert ((diag["ess_treated"] > 0) & (diag["ess_treated"] <= diag["n_treated"])).all()
    assert (diag["e_value"] > diag["e_value_ci"]).all() and (diag["e_value_ci"] >= 1).all()
    assert diag["trim_bounds"].eq("0.01 to 0.99").all()
    assert up.observational.e_value(2.0) == pytest.approx(2 + np.sqrt(2))
    text = " ".join(up.findings(result))
    assert "rest on the covariates given (segment, tenure_months, monthly_fee, complaints)" in text
    assert "E-value" in text
    assert "e_value.outcome_discount" in result.to_metrics()
    shown = result.observational_table()
    assert len(shown.columns) <= 8 and {"e_value", "max_smd_after"} <= set(shown.columns)


# ------------------------------------------------------------------- campaign-only runs
@pytest.mark.slow
def test_a_campaign_only_configuration_runs_end_to_end_through_the_cli(tmp_path):
    sim = simulate_campaign(3_000, outcome_type="continuous", random_state=5)
    export = sim.frame.drop(columns="segment").rename(columns={"arm": "offer"})
    export.to_csv(tmp_path / "campaign.csv", index=False)
    config = {
        "name": "campaign-only",
        "stages": ["data", "survival", "uplift", "clv", "plan", "monitoring"],
        "data": {"source": "none", "as_of": "2026-10-31"},
        "uplift": {
            "campaign": {
                "path": "campaign.csv",
                "columns": {"treatment": "offer"},
                "outcome_type": "continuous",
            }
        },
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    validated, run_dir, run = validate_and_run(path, tmp_path)
    assert "UpliftInput(source=campaign, cases=3,000, randomised=3,000" in validated
    status = {s["stage"]: s["status"] for s in run["stages"]}
    assert status == {"data": "skipped", "survival": "skipped", "uplift": "succeeded",
                      "clv": "skipped", "plan": "skipped", "monitoring": "skipped"}  # fmt: skip
    reasons = {s["stage"]: s["findings"][0] for s in run["stages"] if s["status"] == "skipped"}
    assert reasons["survival"].endswith("the survival stage needs the customers table.")
    assert reasons["plan"].endswith(
        "the plan stage needs the interventions table and the customers table."
    )
    results = json.loads((run_dir / "uplift" / "results.json").read_text())
    metrics, truth = results["metrics"], sim.true_effects()
    for inst in ("discount", "call"):
        key = f"difference_in_means_randomised_outcome_{inst}"
        assert metrics[f"lower.{key}"] <= truth[inst] <= metrics[f"upper.{key}"]
        assert metrics[f"std_error.{key}"] > 0


@pytest.mark.slow
def test_the_readme_examples_validate_and_load_as_they_say(tmp_path, monkeypatch):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Campaign exports", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(bash|yaml)\n(.*?)```", section, flags=re.S)
    monkeypatch.chdir(tmp_path)
    script = re.search(r"<<'PY'\n(.*?)\nPY\n", blocks[0][1], flags=re.S).group(1)
    exec(script, {})  # writes the simulated exports into the current folder
    shapes, configs = {}, {}
    for kind, text in blocks[1:]:
        if kind != "yaml":
            continue
        config = yaml.safe_load(text)
        path = tmp_path / f"{config['name']}.yaml"
        path.write_text(text)
        configs[config["name"]] = config
        result = cli("validate", "--config", str(path), tmp_path=tmp_path)
        assert result.returncode == 0, result.stderr
        if "campaign" in config.get("uplift", {}):
            data = up.prepare(None, settings=load_config(path).uplift)
            counts = (data.outcome_type, int(data.randomised().sum()), len(data.cases))
            shapes[config["name"]] = counts
    assert shapes == {
        "kept": ("binary", 20_000, 20_000),
        "revenue": ("continuous", 20_000, 20_000),
        "staff-chose": ("binary", 0, 20_000),
    }
    # the renewal example is configs/renewals.yaml, which test_renewals runs through the CLI
    bundled = yaml.safe_load((PROJ_ROOT / "configs" / "renewals.yaml").read_text())
    assert configs["renewals"] == {k: bundled[k] for k in configs["renewals"]}
    commands = [
        c for kind, text in blocks if kind == "bash" for c in re.findall(r"--config (\S+)", text)
    ]
    assert {Path(c).name for c in commands} >= {"kept.yaml", "renewals.yaml"}
    assert all((PROJ_ROOT / c).is_file() for c in commands if c.startswith("configs/"))
