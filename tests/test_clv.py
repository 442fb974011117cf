"""Lifetime value: RFM summary, non-contractual models (CDNOW), contractual value vs the truth."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from retention_lab import clv, viz
from retention_lab.clv import ClvSettings
from retention_lab.clv import contractual as ct
from retention_lab.clv import plots as clv_plots
from retention_lab.config import parse_config
from retention_lab.data.loaders import Tables, derive_tenure
from retention_lab.data.simulate import SimulatorSettings, simulate
from retention_lab.errors import ConfigError, DataError

lifetimes_utils = pytest.importorskip("lifetimes.utils")


# ----------------------------------------------------------------- fixtures
def _random_log(rng: np.random.Generator, n: int = 30_000, customers: int = 3_000, width=6):
    ids = np.char.add("C", rng.integers(0, customers, n).astype(f"U{width}"))
    return pd.DataFrame(
        {
            "customer_id": pd.array(ids, dtype="string[pyarrow]"),
            "date": pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 500, n), unit="D"),
            "amount": rng.gamma(2.0, 20.0, n).round(2) + 0.01,
        }
    )


@pytest.fixture(scope="module")
def log_frame():
    return _random_log(np.random.default_rng(20261123))


@pytest.fixture(scope="module")
def small_market():
    """A simulated market with a one-week problem window, so the true curve has no problems."""
    settings = SimulatorSettings(
        n_customers=30_000, months=72, problem_window_weeks=1, transactions=False
    )
    sim = simulate(settings, random_state=11)
    customers = derive_tenure(sim.customers, sim.as_of)
    return sim, customers


@pytest.fixture(scope="module")
def smoke_tables():
    settings = SimulatorSettings(n_customers=2_500, months=48)
    sim = simulate(settings, random_state=5)
    customers = derive_tenure(sim.customers, sim.as_of)
    tables = Tables(customers=customers, as_of=sim.as_of, transactions=sim.transactions)
    return tables, sim.truth


@dataclass(frozen=True)
class ConstantHazard:
    """Toy tenure model: survival exp(-rate * months)."""

    rate: float

    def survival(self, customers, months):
        return np.exp(-self.rate * np.asarray(months, float))


def _lifetimes_summary(frame, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = lifetimes_utils.summary_data_from_transaction_data(
            frame, "customer_id", "date", "amount", **kw
        )
    return out.reset_index()


# ----------------------------------------------------------- rfm summary
@pytest.mark.parametrize(
    "freq, multiplier", [("D", 1), ("D", 7), ("W", 1)], ids=["days", "weeks-by-day", "weeks"]
)
def test_rfm_summary_equals_lifetimes(log_frame, freq, multiplier):
    end = "2022-03-31"
    ours = clv.rfm_summary(log_frame, observation_end=end, freq=freq, freq_multiplier=multiplier)
    theirs = _lifetimes_summary(
        log_frame, observation_period_end=end, freq=freq, freq_multiplier=multiplier
    )
    assert ours["customer_id"].astype(str).tolist() == theirs["customer_id"].astype(str).tolist()
    for col in ("frequency", "recency", "T", "monetary_value"):
        np.testing.assert_allclose(ours[col], theirs[col], rtol=1e-12, atol=1e-9, err_msg=col)


def test_rfm_summary_long_and_short_ids_give_the_same_numbers(rng):
    short = _random_log(rng, n=5_000, customers=400)
    long = short.assign(customer_id=short["customer_id"].astype(str) + "-customer-of-the-shop")
    a = clv.rfm_summary(short)
    b = clv.rfm_summary(long)
    assert (b["customer_id"] == a["customer_id"] + "-customer-of-the-shop").all()
    pd.testing.assert_frame_equal(a.drop(columns="customer_id"), b.drop(columns="customer_id"))


def test_rfm_summary_counts_purchases_on_one_day_once_and_leaves_out_the_first_spend():
    tx = pd.DataFrame(
        {
            "customer_id": ["A", "A", "A", "A", "B"],
            "date": pd.to_datetime(
                ["2024-01-01", "2024-01-01", "2024-01-08", "2024-01-08", "2024-01-03"]
            ),
            "amount": [10.0, 5.0, 20.0, 2.0, 7.0],
        }
    )
    out = clv.rfm_summary(tx, observation_end="2024-01-15").set_index("customer_id")
    assert out.loc["A"].tolist() == [1.0, 7.0, 14.0, 22.0]
    # a customer with one purchase only: frequency 0 and no repeat spend
    assert out.loc["B"].tolist() == [0.0, 0.0, 12.0, 0.0]


def test_rfm_summary_takes_the_signup_as_first_purchase():
    tx = pd.DataFrame(
        {
            "customer_id": ["A", "A"],
            "date": pd.to_datetime(["2024-01-05", "2024-01-09"]),
            "amount": [10.0, 30.0],
        }
    )
    signup = pd.Series(pd.to_datetime(["2024-01-01", "2024-01-02"]), index=["A", "Z"])
    out = clv.rfm_summary(tx, observation_end="2024-01-11", first_purchase=signup)
    out = out.set_index("customer_id")
    # A's (free) first purchase was on signup: both logged purchases are repeats
    assert out.loc["A"].tolist() == [2.0, 8.0, 10.0, 20.0]
    # Z signed up without a logged purchase
    assert out.loc["Z"].tolist() == [0.0, 0.0, 9.0, 0.0]


def test_calibration_holdout_equals_lifetimes(log_frame):
    kw = dict(freq="D", freq_multiplier=7)
    ours = clv.calibration_holdout(
        log_frame, calibration_end="2021-12-31", observation_end="2022-05-15", **kw
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = lifetimes_utils.calibration_and_holdout_data(
            log_frame,
            "customer_id",
            "date",
            calibration_period_end="2021-12-31",
            observation_period_end="2022-05-15",
            **kw,
        ).reset_index()
    np.testing.assert_array_equal(ours["frequency_holdout"], theirs["frequency_holdout"])
    np.testing.assert_allclose(ours["T"], theirs["T_cal"])
    np.testing.assert_allclose(ours["duration_holdout"], theirs["duration_holdout"])


# ------------------------------------------------------------- bad inputs
def test_zero_and_negative_amounts_are_rejected_with_the_customers():
    tx = pd.DataFrame(
        {
            "customer_id": ["A", "B", "C"],
            "date": pd.to_datetime(["2024-01-01"] * 3),
            "amount": [10.0, 0.0, -5.0],
        }
    )
    with pytest.raises(DataError, match=r"column 'amount': 2 rows break amount > 0.*\(B, C\)"):
        clv.validate_transactions(tx)


def test_purchases_before_signup_are_rejected():
    tx = pd.DataFrame(
        {
            "customer_id": ["A", "B"],
            "date": pd.to_datetime(["2024-01-01", "2024-03-01"]),
            "amount": [1.0, 2.0],
        }
    )
    customers = pd.DataFrame(
        {"customer_id": ["A", "B"], "signup_date": pd.to_datetime(["2024-02-01", "2024-02-01"])}
    )
    with pytest.raises(
        DataError, match=r"column 'date': 1 row breaks date >= the customer's signup"
    ):
        clv.validate_transactions(tx, customers=customers, file="sales.csv")


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_discount_rate_outside_zero_one_is_rejected(rate):
    with pytest.raises(DataError, match="discount rate in \\[0, 1\\)"):
        clv.check_discount_rate(rate)
    customers = pd.DataFrame({"customer_id": ["A"], "tenure_months": [3.0]})
    with pytest.raises(DataError, match="clv.discount_rate"):
        clv.residual_values(customers, ConstantHazard(0.02), margin=[10.0], discount_rate=rate)


def test_configuration_rejects_a_discount_rate_of_one():
    with pytest.raises(ConfigError, match="clv.discount_rate"):
        parse_config({"name": "x", "clv": {"discount_rate": 1.0}}, file="run.yaml")


def test_spend_model_needs_repeat_buyers():
    summary = pd.DataFrame(
        {
            "customer_id": ["A", "B"],
            "frequency": [0.0, 0.0],
            "recency": [0.0, 0.0],
            "T": [10.0, 12.0],
            "monetary_value": [0.0, 0.0],
        }
    )
    with pytest.raises(DataError, match="one purchase only.*Gamma-Gamma"):
        clv.fit_spend_model(summary)


def test_non_contractual_part_is_unavailable_without_transactions():
    result = clv.analyse_transactions(None)
    assert not result.available and "no transactions" in result.reason


# ------------------------------------------------------ contractual value
def test_residual_value_of_a_constant_hazard_has_the_closed_form():
    rate, margin, disc, tenure = 0.03, 12.0, 0.08, 5.4
    customers = pd.DataFrame({"customer_id": ["A"], "tenure_months": [tenure]})
    out = clv.residual_values(
        customers,
        ConstantHazard(rate),
        margin=[margin],
        discount_rate=disc,
        horizon_months=24,
        risk_horizon_months=12,
    )
    ahead = np.arange(6, 30) - tenure
    expected = margin * np.sum(np.exp(-rate * ahead) * (1 + disc) ** (-ahead / 12))
    assert out["residual_value"].iloc[0] == pytest.approx(expected, rel=1e-12)
    assert out["p_churn_risk"].iloc[0] == pytest.approx(1 - np.exp(-rate * 12))


def test_payback_month_is_the_first_month_covering_acquisition_cost():
    customers = pd.DataFrame(
        {
            "customer_id": ["A", "B"],
            "segment": ["mass", "mass"],
            "channel": ["online", "online"],
            "acquisition_cost": [35.0, 35.0],
        }
    )
    result = clv.new_customer_values(
        customers, ConstantHazard(0.0), margin=[10.0, 10.0], discount_rate=0.0, horizon_months=12
    )
    row = result.by_group.iloc[0]
    # payments of 10 at months 0, 1, 2, 3: the fourth (month 3) brings 40 >= 35
    assert row["payback_month"] == 3 and row["value"] == pytest.approx(120.0)
    curve = result.payback_curves
    assert curve.loc[curve["month"] == 3, "net"].iloc[0] == pytest.approx(5.0)


def test_value_at_risk_takes_the_survival_stage_scores_where_present():
    values = pd.DataFrame(
        {"customer_id": ["A", "B"], "residual_value": [100.0, 200.0], "p_churn_risk": [0.1, 0.2]}
    )
    scores = pd.DataFrame({"customer_id": ["B"], "p_churn_horizon": [0.5]})
    out = clv.value_at_risk(values, scores=scores)
    assert out["value_at_risk"].tolist() == pytest.approx([10.0, 100.0])
    assert out["churn_source"].tolist() == ["clv model", "survival stage"]


@pytest.mark.slow
def test_fitted_contractual_value_agrees_with_the_true_parameters(small_market):
    """Stated tolerance: total and every segment/contract within 3 % at a 24-month horizon,
    within 7 % at 60 months (past the longest tenure the fitted model extrapolates)."""
    sim, customers = small_market
    model = clv.fit_tenure_model(customers, random_state=0)
    truth = clv.true_tenure_model(sim.truth)
    active = customers[~customers["churned"]]
    margin = clv.monthly_margin(active, margin=0.6)
    for horizon, tolerance in ((24, 0.03), (60, 0.07)):
        kw = dict(margin=margin, discount_rate=0.1, horizon_months=horizon)
        fitted = clv.residual_values(active, model, **kw)
        true = clv.residual_values(active, truth, **kw)
        check = clv.compare_values(fitted, true, active)
        assert (check["ratio"] - 1).abs().max() < tolerance, check
        corr = np.corrcoef(fitted["residual_value"], true["residual_value"])[0, 1]
        assert corr > 0.98


@pytest.mark.slow
def test_true_tenure_model_reproduces_the_simulated_churn(small_market):
    sim, customers = small_market
    truth = clv.true_tenure_model(sim.truth)
    # customers signed up in the first year, followed for at least 60 months
    early = customers[customers["signup_date"] < pd.Timestamp("2021-01-01")]
    survived = (early["tenure_months"] >= 24).mean()
    predicted = truth.survival(early, np.full((len(early), 1), 24.0)).mean()
    # sampling error, plus the little hazard one-week problem windows add to the real churn
    se = np.sqrt(predicted * (1 - predicted) / len(early))
    assert predicted - 3 * se - 0.01 < survived < predicted + 3 * se


# ------------------------------------------------------------ the stage
@pytest.mark.slow
def test_analyse_values_every_customer_and_checks_the_truth(smoke_tables):
    tables, truth = smoke_tables
    summary = clv.analyse(tables, None, ClvSettings().fast(), truth=truth, random_state=1)
    values = summary.values
    assert len(values) == len(tables.customers)
    assert list(values.columns) == clv.summary.VALUE_COLUMNS
    assert (values.loc[~values["active"], "value"] == 0).all()
    assert (values.loc[values["active"], "residual_value"] > 0).all()
    metrics = summary.to_metrics()
    assert 0 < metrics["share_value_at_risk"] < 1
    assert 0.75 < metrics["truth_value_ratio"] < 1.25
    assert not summary.transactional.available
    assert "subscription bills" in summary.transactional.reason
    text = clv.findings(summary)
    assert any(f"{len(summary.contractual.values):,} active customers" in s for s in text)
    assert any("not available for this dataset" in s for s in text)
    status = clv.availability(summary)
    assert status["status"].tolist() == ["computed", "not available for this dataset", "computed"]
    # one-year contracts by signup year: the sBG model on the customers' own renewals
    renewals = summary.renewals
    assert renewals.source.startswith("one-year contracts") and renewals.period_months == 12
    assert renewals.table["cohort"].nunique() == len(renewals.params) >= 2
    assert any(s.startswith("Renewal cohorts (one-year contracts") for s in text)
    # this market's churn probability is one per contract: no heterogeneity to estimate
    one_renewal = renewals.params["periods"] < 2
    assert one_renewal.sum() == 1 and renewals.estimates["lower"].isna().all()
    assert sum("alpha, beta and DERL are not identified" in s for s in text) == 1
    assert sum("one churn probability fits every customer" in s for s in text) == 2


# ------------------------------------------------------- published values
@pytest.fixture(scope="module")
def cdnow():
    return clv.fit_cdnow()


def test_cdnow_calibration_is_the_published_39_week_summary():
    cal = clv.cdnow_calibration()
    assert len(cal) == 2357 and (cal["frequency"] > 0).sum() == 946
    first = cal.iloc[0]
    assert (first["frequency"], round(first["recency"], 2), round(first["T"], 2)) == (
        2,
        30.43,
        38.86,
    )
    assert cal["frequency"].sum() == 2457
    assert cal["duration_holdout"].iloc[0] == 39


@pytest.mark.slow
def test_cdnow_bg_nbd_reproduces_fader_hardie_lee(cdnow):
    fitted = {k: round(v, 3) for k, v in cdnow.purchases.params.items()}
    assert fitted == {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


@pytest.mark.slow
def test_cdnow_gamma_gamma_reproduces_fader_hardie(cdnow):
    fitted = {k: round(v, 2) for k, v in cdnow.spend.params.items()}
    assert fitted == {"p": 6.25, "q": 3.74, "v": 15.44}
    assert cdnow.spend.n_customers == 946  # repeat buyers only


@pytest.mark.slow
def test_cdnow_holdout_check_is_close_for_the_bg_nbd(cdnow):
    table = clv.holdout_check(cdnow.calibration, cdnow.purchases)
    total = table[table["frequency"] == "all"].iloc[0]
    assert total["customers"] == 2357
    assert total["predicted"] == pytest.approx(total["actual"], rel=0.15)
    assert table.loc[table["frequency"] != "all", "predicted"].is_monotonic_increasing


@pytest.mark.slow
def test_cdnow_pareto_nbd_reproduces_the_published_estimates():
    model = clv.fit_purchase_model(clv.cdnow_calibration(), kind="pareto_nbd")
    fitted = {k: round(v, 2) for k, v in model.params.items()}
    assert fitted == {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67}


# ------------------------------------------------------------------ plots
def test_plots_have_titles_and_labelled_axes():
    values = pd.DataFrame({"residual_value": [10.0, 50.0, 90.0], "segment": ["a", "a", "b"]})
    by_segment = pd.DataFrame({"segment": ["a"], "total_value": [60.0], "value_at_risk": [6.0]})
    curves = pd.DataFrame({"month": [0, 1], "net": [-5.0, 5.0], "channel": ["web", "web"]})
    holdout = pd.DataFrame(
        {
            "frequency": ["0", "1", "all"],
            "actual": [0.1, 0.5, 0.3],
            "predicted": [0.1, 0.4, 0.25],
            "model": "bg_nbd",
        }
    )
    check = pd.DataFrame({"group": ["all"], "fitted": [1.0], "true": [1.1]})
    axes = [
        clv_plots.plot_value_distribution(values),
        clv_plots.plot_value_at_risk(by_segment),
        clv_plots.plot_payback(curves),
        clv_plots.plot_holdout(holdout),
        clv_plots.plot_truth_check(check),
    ]
    for ax in axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    empty = clv_plots.plot_truth_check(pd.DataFrame())
    assert "Not available" in empty.texts[0].get_text()


def test_contractual_part_explains_why_it_is_unavailable():
    customers = pd.DataFrame(
        {"customer_id": ["A"], "tenure_months": [3.0], "churned": [False], "segment": ["all"]}
    )
    result = clv.analyse_contractual(customers)
    assert not result.available and "monthly fee" in result.reason
    assert ct.contractual_available(customers) == result.reason


@pytest.mark.slow
def test_cdnow_as_the_pipeline_reads_it_gives_the_published_bg_nbd():
    """The CDNOW data source drops $0 purchase days from the transactions but keeps them as
    signups; taking the signup as the first purchase restores the paper's calibration."""
    tx = clv.cdnow_transactions()
    daily = tx.groupby(["customer_id", "date"], as_index=False)["amount"].sum()
    customers = (
        daily.groupby("customer_id", as_index=False)["date"]
        .min()
        .rename(columns={"date": "signup_date"})
    )
    result = clv.analyse_transactions(
        daily[daily["amount"] > 0],
        customers=customers,
        as_of="1998-07-01",
        holdout_months=9,
        models=["bg_nbd"],
    )
    assert result.available and result.calibration_end == "1997-09-30"
    params = result.parameters.set_index(["model", "parameter"])["value"].round(3)
    assert params["bg_nbd"].to_dict() == {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    assert params["gamma_gamma"].round(2).to_dict() == {"p": 6.25, "q": 3.74, "v": 15.44}
    assert len(result.values) == 2357


def test_unavailable_parts_keep_the_columns_the_report_formats():
    contractual = clv.ContractualValue(available=False, reason="no fees")
    transactional = clv.TransactionalValue(available=False, reason="no log")
    viz.show_table(contractual.by_segment, percent=["mean_p_churn", "share_at_risk"])
    viz.show_table(contractual.truth_check, percent=["ratio"])
    viz.show_table(transactional.holdout)
    assert "Not available" in clv_plots.plot_holdout(transactional.holdout).texts[0].get_text()
    assert "Not available" in clv_plots.plot_payback(contractual.payback_curves).texts[0].get_text()
    customers = pd.DataFrame({"customer_id": ["A"], "segment": ["all"]})
    values = clv.value_table(customers, contractual, transactional)
    viz.show_table(values.nlargest(10, "value_at_risk"), percent=["p_churn"])


def test_new_customer_value_without_channel_or_acquisition_cost():
    customers = pd.DataFrame({"customer_id": ["A", "B"], "segment": ["DSL", "Fiber"]})
    result = clv.new_customer_values(
        customers, ConstantHazard(0.01), margin=[10.0, 20.0], horizon_months=12
    )
    table = result.by_group.set_index("segment")
    assert table["payback_month"].isna().all() and table["net_value"].isna().all()
    assert table.loc["Fiber", "value"] == pytest.approx(2 * table.loc["DSL", "value"])
    assert set(result.payback_curves["segment"]) == {"DSL", "Fiber"}


@pytest.mark.slow
def test_weibull_aft_tenure_model_also_agrees_with_the_truth_at_two_years(small_market):
    sim, customers = small_market
    model = clv.fit_tenure_model(customers, kind="weibull_aft", random_state=0)
    active = customers[~customers["churned"]]
    kw = dict(margin=clv.monthly_margin(active), horizon_months=24)
    fitted = clv.residual_values(active, model, **kw)
    true = clv.residual_values(active, clv.true_tenure_model(sim.truth), **kw)
    check = clv.compare_values(fitted, true, active)
    assert (check["ratio"] - 1).abs().max() < 0.05, check
