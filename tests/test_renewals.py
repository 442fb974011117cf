"""Renewal cohorts: the sBG model, its intervals, DERL, and renewal tables in a configuration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.special import betaln

from retention_lab import clv
from retention_lab.clv import plots as clv_plots
from retention_lab.clv import renewals as rn
from retention_lab.config import load_config, parse_config
from retention_lab.errors import ConfigError, DataError
from retention_lab.runner import unmet_requirements

from .conftest import cli, validate_and_run

RENEWALS_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "renewals.yaml"
# Fader and Hardie (2007), Table 1: customers alive at the start of years 0-7, and their estimates
PUBLISHED_COUNTS = {
    "regular": [1000, 631, 468, 382, 326, 289, 262, 241],
    "high end": [1000, 869, 743, 653, 593, 551, 517, 491],
}
PUBLISHED_ESTIMATES = {"regular": (0.704, 1.182), "high end": (0.668, 3.806)}


def _survival(a, b, t):
    return np.exp(betaln(a, b + t) - betaln(a, b))


def _direct_derl(a: float, b: float, renewals: int, d: float) -> float:
    """DERL as the discounted sum of future survival (Fader and Hardie 2010, eq. 2)."""
    n = renewals + 1
    t = np.arange(1, 4000)
    return float(np.sum(_survival(a, b, n - 1 + t) / _survival(a, b, n - 1) / (1 + d) ** (t - 1)))


def _log_likelihood(log_a: float, log_b: float, counts: list[int]) -> float:
    """The sBG log-likelihood of one cohort's counts, written out from Fader and Hardie (2007)."""
    a, b, n = np.exp(log_a), np.exp(log_b), np.asarray(counts)
    t = np.arange(1, len(n))
    lost = n[:-1] - n[1:]
    p_churn = np.exp(betaln(a + 1, b + t - 1) - betaln(a, b))
    return float(np.sum(lost * np.log(p_churn)) + n[-1] * np.log(_survival(a, b, len(n) - 1)))


def _information(a: float, b: float, counts: list[int], h: float = 1e-4) -> np.ndarray:
    """Observed information in (log alpha, log beta) by central differences."""
    x = np.log([a, b])
    hessian = np.empty((2, 2))
    for i in range(2):
        for j in range(2):
            ei, ej = np.eye(2)[i] * h, np.eye(2)[j] * h
            f = [_log_likelihood(*(x + si * ei + sj * ej), counts) for si, sj in
                 ((1, 1), (1, -1), (-1, 1), (-1, -1))]  # fmt: skip
            hessian[i, j] = (f[0] - f[1] - f[2] + f[3]) / (4 * h * h)
    return -hessian


# ------------------------------------------------------------------ library
def test_derl_is_the_discounted_sum_of_future_survival():
    a, b, n_renewals, d = 0.704, 1.182, 4, 0.10
    assert clv.derl(a, b, n_renewals, d) == pytest.approx(
        _direct_derl(a, b, n_renewals, d), rel=1e-6
    )


def test_the_bundled_table_is_fader_and_hardies_table_1():
    table = clv.fader_hardie_renewals()
    counts = {c: g.sort_values("period")["customers"].tolist() for c, g in table.groupby("cohort")}
    assert counts == PUBLISHED_COUNTS
    assert rn.FADER_HARDIE_2007 == PUBLISHED_ESTIMATES


def test_a_period_discount_rate_compounds_the_annual_rate():
    assert rn.period_discount_rate(0.10, 12) == pytest.approx(0.10)
    assert (1 + rn.period_discount_rate(0.10, 1)) ** 12 == pytest.approx(1.10)


@pytest.mark.slow
def test_sbg_reproduces_fader_hardie_2007_with_intervals_from_the_observed_information():
    fit = clv.fit_renewals(clv.fader_hardie_renewals(), discount_rate=0.10, random_state=3)
    params = fit.params.set_index("cohort")
    estimates = fit.estimates.set_index(["cohort", "quantity"])
    for cohort, (alpha, beta) in PUBLISHED_ESTIMATES.items():
        assert params.loc[cohort, ["alpha", "beta"]].round(3).tolist() == [alpha, beta]
        a, b = params.loc[cohort, ["alpha", "beta"]]
        # standard errors: the lognormal of the inverse information computed here by hand
        cov = np.linalg.inv(_information(a, b, PUBLISHED_COUNTS[cohort]))
        for k, (name, value) in enumerate((("alpha", a), ("beta", b))):
            var = cov[k, k]
            lognormal_sd = value * np.sqrt((np.exp(var) - 1) * np.exp(var))
            row = estimates.loc[(cohort, name)]
            assert row["std_error"] == pytest.approx(lognormal_sd, rel=0.05)
            assert row["lower"] == pytest.approx(value * np.exp(-1.96 * np.sqrt(var)), rel=0.03)
            assert row["upper"] == pytest.approx(value * np.exp(1.96 * np.sqrt(var)), rel=0.03)
        derl = estimates.loc[(cohort, "derl")]
        assert derl["estimate"] == pytest.approx(_direct_derl(a, b, 7, 0.10), rel=1e-6)
        assert derl["lower"] < derl["estimate"] < derl["upper"] and derl["std_error"] > 0
    curves = fit.projection(12)
    regular = curves[curves["cohort"] == "regular"].set_index("period")
    assert regular.loc[7, "observed"] == pytest.approx(0.241)
    assert np.isnan(regular.loc[8, "observed"])
    a, b = params.loc["regular", ["alpha", "beta"]]
    assert regular.loc[12, "survival"] == pytest.approx(_survival(a, b, 12))
    assert (regular["lower"] <= regular["survival"]).all()
    assert (regular["survival"] <= regular["upper"]).all()
    assert regular["retention"].dropna().is_monotonic_increasing  # the sBG's rising renewal rate


def test_the_renewal_figure_titles_each_cohorts_projected_share():
    curves = pd.DataFrame(
        {
            "cohort": ["a", "a", "b", "b"],
            "period": [0, 1, 0, 1],
            "survival": [1.0, 0.6, 1.0, 0.8],
            "lower": [1.0, 0.5, 1.0, 0.7],
            "upper": [1.0, 0.7, 1.0, 0.9],
            "observed": [1.0, 0.62, 1.0, np.nan],
        }
    )
    ax = clv_plots.plot_renewal_curves(curves, unit="quarters")
    assert ax.get_title() == "Projected share still active after 1 quarters: a 60%, b 80%"
    assert ax.get_xlabel() == "Renewal period (quarters since the start)" and ax.get_ylabel()
    assert "Not available" in clv_plots.plot_renewal_curves(curves.iloc[:0]).texts[0].get_text()


def test_renewal_counts_must_not_increase():
    bad = pd.DataFrame({"cohort": ["x"] * 3, "period": [0, 1, 2], "customers": [10, 8, 9]})
    with pytest.raises(DataError, match="never increase"):
        clv.expand_renewals(bad)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (
            pd.DataFrame({"cohort": ["a", "a"], "year": [0, 1], "customers": [10, 8]}),
            "renewals.csv: column 'period'",
        ),
        (
            pd.DataFrame({"cohort": ["a", "a"], "period": [0, 1], "customers": [10, 8.5]}),
            r"renewals.csv: column 'customers': 1 row breaks .*whole number.*\(row 2\)",
        ),
        (
            pd.DataFrame({"cohort": ["a", "a", "b"], "period": [0, 2, 0], "customers": [5, 4, 3]}),
            r"column 'customers': 2 rows break .*at least 0 and 1.*\(cohort a, cohort b\)",
        ),
    ],
)
def test_a_bad_renewal_table_names_the_file_column_and_rows(frame, message):
    with pytest.raises(DataError, match=message):
        rn.check_renewals(frame, file="renewals.csv")


# ------------------------------------------------------------- configuration
def test_a_renewal_table_is_read_from_the_configurations_folder_with_its_mapping(tmp_path):
    table = clv.fader_hardie_renewals().rename(
        columns={"cohort": "Segment", "period": "Year", "customers": "Active"}
    )
    table["Segment"] = table["Segment"].map({"regular": "R", "high end": "H"})
    (tmp_path / "data").mkdir()
    table.to_csv(tmp_path / "data" / "alive.csv", index=False)
    config = {
        "name": "r",
        "data": {"source": "none", "as_of": "2020-01-01"},
        "clv": {
            "renewals": {
                "path": "data/alive.csv",
                "columns": {"cohort": "Segment", "period": "Year", "customers": "Active"},
                "values": {"cohort": {"R": "regular", "H": "high end"}},
            }
        },
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(config))
    source = load_config(path).clv.renewals
    assert source.path == str(tmp_path / "data" / "alive.csv")
    read = clv.read_renewals(source)
    assert read.equals(clv.fader_hardie_renewals())


def test_source_none_needs_a_campaign_export_or_a_renewal_table():
    with pytest.raises(ConfigError, match="uplift.campaign\\) or a renewal table"):
        parse_config({"name": "x", "data": {"source": "none", "as_of": "2020-01-01"}})
    with pytest.raises(ConfigError, match="clv.renewals: columns: unknown canonical name 'alive'"):
        parse_config(
            {
                "name": "x",
                "data": {"source": "none", "as_of": "2020-01-01"},
                "clv": {"renewals": {"path": "r.csv", "columns": {"alive": "n"}}},
            }
        )


def test_a_configured_renewal_table_stands_in_for_the_customers_table():
    clv_needs = {"requires": ["customers"], "or_export": "clv.renewals"}
    no_tables = {"tables": [], "has_dates": False}
    assert unmet_requirements(clv_needs, no_tables, ("clv.renewals",)) == []
    assert unmet_requirements(clv_needs, no_tables, ("uplift.campaign",)) == [
        "the customers table (or clv.renewals in the configuration)"
    ]
    assert unmet_requirements({"requires": ["customers"]}, no_tables, ("clv.renewals",)) == [
        "the customers table"
    ]


# ----------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_the_renewals_configuration_reproduces_fader_and_hardie_through_the_cli(tmp_path):
    validated, run_dir, run = validate_and_run(RENEWALS_CONFIG, tmp_path)
    assert "renewals: 2 cohorts, 8 periods" in validated
    status = {s["stage"]: s["status"] for s in run["stages"]}
    assert status == {"data": "skipped", "survival": "skipped", "clv": "succeeded"}
    reasons = {s["stage"]: s["findings"][0] for s in run["stages"] if s["status"] == "skipped"}
    assert reasons["survival"].endswith("the survival stage needs the customers table.")
    results = json.loads((run_dir / "clv" / "results.json").read_text())
    metrics = results["metrics"]
    for cohort, (alpha, beta) in PUBLISHED_ESTIMATES.items():
        assert round(metrics[f"renewal_alpha.{cohort}"], 2) == round(alpha, 2)
        assert round(metrics[f"renewal_beta.{cohort}"], 2) == round(beta, 2)
        # DERL after seven renewals at 10 % a year, summed directly from the published estimates
        derl = metrics[f"renewal_derl.{cohort}"]
        assert derl == pytest.approx(_direct_derl(alpha, beta, 7, 0.10), abs=0.01)
        assert (
            metrics[f"lower.renewal_derl.{cohort}"] < derl < metrics[f"upper.renewal_derl.{cohort}"]
        )
        assert metrics[f"std_error.renewal_alpha.{cohort}"] > 0
        s7 = metrics[f"renewal_survival.{cohort}.7"]
        assert s7 == pytest.approx(PUBLISHED_COUNTS[cohort][7] / 1000, abs=0.02)
    assert metrics["renewal_cohorts"] == 2 and "total_value" not in metrics
    text = " ".join(results["findings"])
    assert "Cohort 'regular' (7 renewals observed, 241 customers still active)" in text
    assert f"{metrics['renewal_derl.regular']:.2f}" in text
    page = (run_dir / "clv" / "clv.html").read_text()
    assert "Renewal cohorts (shifted-beta-geometric model)" in page and "Traceback" not in page
    assert (run_dir / "clv" / "figures" / "renewal_curves.png").is_file()


def test_validate_refuses_a_bad_renewal_table_in_one_line(tmp_path):
    bad = pd.DataFrame({"cohort": ["x"] * 3, "year": [0, 1, 2], "alive": [100, 80, 90]})
    bad.to_csv(tmp_path / "alive.csv", index=False)
    config = {
        "name": "bad-renewals",
        "data": {"source": "none", "as_of": "2020-01-01"},
        "clv": {
            "renewals": {"path": "alive.csv", "columns": {"period": "year", "customers": "alive"}}
        },
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    result = cli("validate", "--config", str(path), tmp_path=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "alive.csv: column 'customers': 1 row breaks" in result.stderr
    assert "never increase" in result.stderr and "(cohort x)" in result.stderr
