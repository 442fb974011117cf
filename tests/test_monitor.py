"""The monitoring stage: quantities, flag rule, history from MLflow, shock and no-shock markets."""

from __future__ import annotations

import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retention_lab import monitor, tracking
from retention_lab.config import RunConfig
from retention_lab.data.loaders import simulated_tables
from retention_lab.data.simulate import simulate
from retention_lab.monitor import MonitorSettings
from retention_lab.stage import StageContext
from retention_lab.uplift import case_table
from retention_lab.uplift.hazard import instrument_hazard_ratios

from .conftest import CHANGED_BY_A_COMPETITOR_ENTRY, make_config

EXPERIMENT = "retention-lab-monitor-test"


# ------------------------------------------------------------------ synthetic history
def hazard_ratios(shift: float = 0.0) -> pd.DataFrame:
    rows = [
        ("segment[vip]", "segment", "vip", "categorical", -0.8, 0.05),
        ("age", "age", None, "numeric", -0.015, 0.002),
        ("problem[competitor_offer]", "problem", "competitor_offer", "problem", 1.3 + shift, 0.06),
        ("problem[network]", "problem", "network", "problem", 0.7, 0.06),
    ]
    return pd.DataFrame(
        rows, columns=["term", "covariate", "level", "kind", "log_hazard_ratio", "se"]
    )


def effects(discount_competitor: float = 0.12) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "problem_type": ["competitor_offer", "price", "network"],
            "segment": ["mass", "mass", "vip"],
            "instrument": ["discount", "discount", "technician_visit"],
            "effect": [discount_competitor, 0.09, 0.10],
            "std_error": [0.01, 0.01, 0.02],
            "lower": [np.nan] * 3,
            "upper": [np.nan] * 3,
            "status": "estimated",
        }
    )


def instrument_hazards(recent_discount: float = -0.8) -> pd.DataFrame:
    """Log hazard ratios of two cells, recent and on all cases (the uplift stage's table)."""
    return pd.DataFrame(
        {
            "period": ["recent", "all", "recent", "all"],
            "problem_type": ["competitor_offer"] * 2 + ["network"] * 2,
            "instrument": ["discount"] * 2 + ["technician_visit"] * 2,
            "log_hazard_ratio": [recent_discount, -0.8, -0.6, -0.6],
            "se": [0.1, 0.05, 0.1, 0.05],
            "n_treated": [1000, 3000, 800, 2400],
            "n_control": [500, 1500, 500, 1500],
        }
    )


def values() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "segment": ["mass"] * 8 + ["vip"] * 2,
            "active": [True] * 10,
            "value": [100.0] * 8 + [1000.0] * 2,
        }
    )


def outputs(
    label: str,
    *,
    retention: float = 0.8,
    hr_shift: float = 0.0,
    discount: float = 0.12,
    recent_discount: float = -0.8,
    profile: pd.DataFrame | None = None,
) -> monitor.RunOutputs:
    tables = {
        ("survival", "hazard_ratios"): hazard_ratios(hr_shift),
        ("uplift", "effect_matrix"): effects(discount),
        ("uplift", "instrument_hazard_ratios"): instrument_hazards(recent_discount),
        ("clv", "values"): values(),
    }
    if profile is not None:
        tables[("monitoring", "input_profile")] = profile
    return monitor.RunOutputs(
        run_id=label,
        started=pd.Timestamp(label),
        as_of=label,
        metrics={
            "survival": {
                "median_tenure_months": 30.0,
                "median_tenure_lower": 28.0,
                "median_tenure_upper": 32.0,
                "retention_12m": retention,
                "n_customers": 5000.0,
            }
        },
        tables=tables,
    )


STAGES = ["data", "survival", "uplift", "clv", "plan", "monitoring"]


def compare(current, previous, settings: MonitorSettings | None = None) -> monitor.MonitorSummary:
    """The monitor on saved outputs only (no tables), this run against ``previous``."""
    inputs = monitor.MonitorInputs(current, previous, STAGES)
    return monitor.analyse(None, inputs, settings or MonitorSettings())


def test_run_quantities_read_every_stage_with_its_scale():
    q = monitor.run_quantities(outputs("2024-01-01"))
    assert set(q["family"]) == {
        "survival",
        "hazard ratio",
        "problem hazard ratio",
        "instrument effect",
        "instrument hazard ratio",
        "value",
    }
    hr = q.loc[q["group"] == "problem=competitor_offer"].iloc[0]
    assert hr["scale"] == "log" and hr["estimate"] == pytest.approx(np.exp(1.3))
    assert hr["lower"] < hr["estimate"] < hr["upper"]
    median = q.loc[q["quantity"] == "median tenure"].iloc[0]
    assert median["se"] == pytest.approx(4.0 / (2 * 1.959964), rel=1e-4)
    retention = q.loc[q["quantity"] == "retention at 12 months"].iloc[0]
    assert np.isnan(retention["se"])  # these metrics carry no bounds
    bounded = {"retention_12m": 0.8, "retention_12m_lower": 0.78, "retention_12m_upper": 0.82}
    (retention,) = monitor.survival_quantities(bounded, {}).to_dict("records")
    assert retention["se"] == pytest.approx(0.04 / (2 * 1.959964), rel=1e-4)
    effect = q.loc[q["group"] == "instrument=discount|problem_type=competitor_offer|segment=mass"]
    assert effect["se"].iloc[0] == pytest.approx(0.01)
    vip = q.loc[(q["family"] == "value") & (q["group"] == "segment=vip")]
    assert vip["estimate"].iloc[0] == 2000.0
    recent = q.loc[q["family"] == "instrument hazard ratio"].set_index("group")
    assert len(recent) == 2  # the recent period only, with the estimate on all cases as reference
    cell = recent.loc["instrument=discount|problem_type=competitor_offer"]
    assert cell["estimate"] == pytest.approx(np.exp(-0.8)) and cell["se"] == 0.1
    assert cell["reference"] == pytest.approx(np.exp(-0.8)) and cell["reference_se"] == 0.05
    assert q.loc[q["family"] != "instrument hazard ratio", "reference"].isna().all()


def test_a_level_is_compared_only_against_the_same_reference_level():
    def ratios(reference: str, log_hr: float) -> pd.DataFrame:
        return pd.DataFrame(
            [("plan[premium]", "plan", "premium", reference, "categorical", log_hr, 0.08)],
            columns=["term", "covariate", "level", "reference", "kind", "log_hazard_ratio", "se"],
        )

    def quantities(reference: str, log_hr: float) -> pd.DataFrame:
        run = outputs("2024-01-01")
        run.tables[("survival", "hazard_ratios")] = ratios(reference, log_hr)
        q = monitor.run_quantities(run)
        return q.loc[q["family"] == "hazard ratio"]

    # the most common plan (the reference) changed from standard to basic between runs:
    # premium vs standard 1.15 and premium vs basic 0.69 are different quantities
    earlier, later = quantities("standard", 0.14), quantities("basic", -0.37)
    assert earlier["group"].tolist() == ["plan=premium vs standard"]
    assert monitor.compare_quantities(later, earlier).empty
    same = monitor.compare_quantities(quantities("standard", -0.37), earlier)
    assert same["tested"].all() and same["p_value"].iloc[0] < 1e-4


def test_a_recent_hazard_ratio_is_compared_with_the_previous_runs_estimate_on_all_cases():
    previous = outputs("2024-01-01")
    # the previous run's recent estimate moved by chance (-0.5): the reference stays -0.8
    previous.tables[("uplift", "instrument_hazard_ratios")] = instrument_hazards(-0.5)
    current = outputs("2024-02-01", recent_discount=-0.3)
    summary = compare(current, [previous])
    (flag,) = summary.flags.to_dict("records")
    assert flag["group"] == "instrument=discount|problem_type=competitor_offer"
    assert flag["previous"] == pytest.approx(np.exp(-0.8))  # all cases, not the recent -0.5
    assert flag["z"] == pytest.approx(0.5 / np.sqrt(0.1**2 + 0.05**2))
    assert flag["previous_upper"] == pytest.approx(np.exp(-0.8 + 1.959964 * 0.05), rel=1e-5)
    assert summary.stale_stages == ["uplift", "plan"]
    # the trend follows the recent estimates themselves
    history = summary.history.loc[summary.history["family"] == "instrument hazard ratio"]
    assert sorted(history["estimate"].round(4)) == sorted(np.exp([-0.5, -0.3, -0.6, -0.6]).round(4))


def test_first_run_says_there_is_nothing_to_compare():
    summary = compare(outputs("2024-01-01"), [])
    assert not summary.has_history and summary.flags.empty
    assert summary.to_metrics()["previous_runs"] == 0.0
    (finding,) = monitor.findings(summary)
    assert "nothing to compare yet" in finding
    assert summary.flag_table.empty and summary.comparison_table.empty


def test_unchanged_runs_raise_no_flag():
    summary = compare(outputs("2024-02-01"), [outputs("2024-01-01")])
    assert summary.comparison["tested"].sum() >= 8
    assert summary.flags.empty
    assert any("No statistically meaningful change" in f for f in monitor.findings(summary))


def test_shifted_estimates_are_flagged_ranked_and_name_the_stage_to_rerun():
    current = outputs("2024-02-01", hr_shift=0.5, discount=0.04)
    summary = compare(current, [outputs("2024-01-01")])
    flagged = set(summary.flags["group"])
    assert flagged == {
        "problem=competitor_offer",
        "instrument=discount|problem_type=competitor_offer|segment=mass",
    }
    # impact = relative move x value concerned: the hazard ratio bears on the whole book
    # (EUR 2,800), the discount effect on the mass segment (EUR 800)
    top, second = summary.flags.iloc[0], summary.flags.iloc[1]
    assert top["family"] == "problem hazard ratio" and top["rank"] == 1
    assert top["impact_unit"] == "EUR" and top["impact"] == pytest.approx(np.expm1(0.5) * 2800)
    assert second["impact"] == pytest.approx(800 * 2 / 3)
    assert summary.stale_stages == ["survival", "uplift", "plan"]
    text = " ".join(monitor.findings(summary, currency="EUR", labels={"mass": "Mass market"}))
    assert (
        "Stale:" in text
        and "Rerun with fresh data (since 2024-01-01): survival, uplift, plan" in text
    )
    # money in the run's currency, groups in words: no code names, no bare amounts
    assert f"it bears on about EUR {np.expm1(0.5) * 2800:,.0f} of the customers' value" in text
    assert "(Problem: competitor offer)" in text and "Segment: Mass market" in text
    assert "=" not in text.replace("z = ", "") and "_" not in text
    from retention_lab.monitor import plots

    ax = plots.plot_flags(summary.flags, currency="CHF")
    assert ax.get_xlabel() == "Impact (CHF)"
    groups = {tick.get_text().split("\n")[1] for tick in ax.get_yticklabels()}
    assert "Problem: competitor offer" in groups


def test_a_flag_on_an_instrument_the_plan_uses_is_ranked_by_the_plans_value():
    current = outputs("2024-02-01", hr_shift=0.5, discount=0.04)
    current.tables[("plan", "actions")] = pd.DataFrame(
        {
            "instrument": ["discount", "discount", "technician_visit"],
            "problem_type": ["competitor_offer", "competitor_offer", "network"],
            "segment": ["mass", "vip", "vip"],
            "expected_saved_value": [3000.0, 5000.0, 700.0],
        }
    )
    summary = compare(current, [outputs("2024-01-01")])
    ranked = summary.flags.set_index("group")
    effect = ranked.loc["instrument=discount|problem_type=competitor_offer|segment=mass"]
    # the plan expects 3,000 from discounts against competitor offers in the mass segment
    assert effect["impact_basis"] == "plan" and effect["impact"] == pytest.approx(3000 * 2 / 3)
    assert effect["rank"] == 1
    hazard = ranked.loc["problem=competitor_offer"]  # no instrument: the book's value
    assert hazard["impact_basis"] == "customers"
    text = " ".join(monitor.findings(summary))
    assert "of the saved value the plan expects from it" in text
    assert not any("plan treats nobody" in m for m in summary.missing)


def test_the_current_run_is_read_from_its_folder_with_its_plan_for_the_ranking(tmp_path):
    import json

    for stage, name, table in [
        ("uplift", "instrument_hazard_ratios", instrument_hazards()),
        ("plan", "actions", pd.DataFrame({"instrument": ["discount"],
                                          "expected_saved_value": [10.0]})),
        ("plan", "unrelated", pd.DataFrame({"x": [1]})),
    ]:  # fmt: skip
        (tmp_path / stage).mkdir(exist_ok=True)
        table.to_parquet(tmp_path / stage / f"{name}.parquet")
    (tmp_path / "uplift" / "results.json").write_text(
        json.dumps({"status": "succeeded", "metrics": {"cases": 10.0}})
    )
    context = StageContext("monitoring", make_config(stages=["uplift", "plan"]), tmp_path)
    current = context.this_run(as_of="2024-01-01")
    assert set(current.tables) == {("uplift", "instrument_hazard_ratios"), ("plan", "actions")}
    assert current.metrics == {"uplift": {"cases": 10.0}}


def test_a_large_move_without_a_ci_is_listed_not_flagged():
    summary = compare(outputs("2024-02-01", retention=0.5), [outputs("2024-01-01")])
    assert summary.flags.empty
    (row,) = summary.large_untested.to_dict("records")
    assert row["quantity"] == "retention at 12 months"
    assert any("no confidence interval" in f for f in monitor.findings(summary))


def test_holm_adjusts_in_step_down_order_and_keeps_missing_p_values():
    p = pd.Series([0.01, 0.04, 0.03, np.nan], index=list("abcd"))
    adjusted = monitor.holm(p)
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1 -> 0.03, 0.06, 0.04 -> running maximum
    np.testing.assert_allclose(adjusted[list("abc")], [0.03, 0.06, 0.06])
    assert np.isnan(adjusted["d"])


def test_psi_is_zero_for_equal_mixes_and_grows_with_the_shift():
    base = pd.Series([50.0, 30.0, 20.0])
    assert monitor.psi(base, base * 3) == pytest.approx(0.0)
    small, large = pd.Series([48.0, 30.0, 22.0]), pd.Series([20.0, 30.0, 50.0])
    assert 0 < monitor.psi(base, small) < 0.01 < 0.25 < monitor.psi(base, large)


def test_trend_detects_a_steady_drift_only():
    history = []
    for order in range(5):
        for group, slope in (("drifting", 0.05), ("flat", 0.0)):
            history.append(
                {
                    "stage": "survival",
                    "family": "hazard ratio",
                    "quantity": "hazard ratio",
                    "group": group,
                    "estimate": np.exp(0.3 + slope * order),
                    "se": 0.01,
                    "scale": "log",
                    "run_order": order,
                }  # fmt: skip
            )
    trends = monitor.trends(pd.DataFrame(history)).set_index("group")
    assert trends.loc["drifting", "slope_per_run"] == pytest.approx(0.05)
    assert trends["drifting"].to_dict() == {"drifting": True, "flat": False}


# ------------------------------------------------------------------ inputs and history
@pytest.fixture(scope="module")
def market():
    """Two snapshots of one simulated market, six months apart, with and without a shock.

    60,000 customers: enough recent retention cases for most instrument hazard ratios.
    """

    def snapshots(shock: dict | None, seed: int, n_customers: int = 60_000):
        simulator = {"n_customers": n_customers, "months": 36}
        if shock:
            simulator["shock"] = shock
        config = make_config(seed=seed, data={"source": "simulator", "simulator": simulator})
        simulated = simulate(config.data.simulator, random_state=config.seed)
        return [simulated_tables(simulated, date(2022, 1, 1)),
                simulated_tables(simulated, date(2022, 7, 1))]  # fmt: skip

    return snapshots


def test_input_profile_measures_features_recent_problems_and_reasons(market):
    before, _ = market(None, seed=1, n_customers=3000)
    profile = monitor.input_profile(before, recent_months=6)
    assert set(profile["section"]) == {"categorical", "numeric", "problem_rate", "churn_reason"}
    seg = profile.loc[(profile["section"] == "categorical") & (profile["feature"] == "segment")]
    assert seg["value"].sum() == seg["n"].iloc[0] == (~before.customers["churned"]).sum()
    rates = profile.loc[profile["section"] == "problem_rate"]
    recent = before.problems["date"] > pd.Timestamp("2022-01-01") - pd.Timedelta(days=6 * 30.4375)
    assert rates["value"].sum() == recent.sum()
    assert (rates["n"] > 0).all()  # customer-months at risk in the window


def log_run(
    tracking_uri,
    profile,
    as_of,
    *,
    status=True,
    monitoring=True,
    experiment=EXPERIMENT,
    uplift_tables: dict[str, pd.DataFrame] | None = None,
) -> str:
    """A pipeline run as the runner logs it: the monitoring stage's input profile and,
    when given, tables of an uplift stage. Returns the monitoring stage's run id."""
    time.sleep(0.005)  # runs are ordered by their start time in milliseconds
    parent = tracking.start_run(
        tracking_uri, experiment, run_name=as_of,
        tags={"retention_lab.kind": "pipeline", "config_name": "test", "data_as_of": as_of},
    )  # fmt: skip
    config = RunConfig(name="test", tracking={"experiment": experiment,
                                              "tracking_uri": tracking_uri})  # fmt: skip
    stage_tables = {"uplift": uplift_tables or {}, "monitoring": {}}
    if monitoring:
        stage_tables["monitoring"]["input_profile"] = profile
    for stage, tables in stage_tables.items():
        if stage == "uplift" and not tables:
            continue
        child = tracking.start_run(
            tracking_uri, experiment, run_name=stage, parent_run_id=parent,
            tags={"stage": stage},
        )  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            context = StageContext(stage, config, Path(tmp), mlflow_run_id=child)
            for name, table in tables.items():
                context.save_table(table, name)
        tracking.end_run(tracking_uri, child, succeeded=True)
    tracking.end_run(tracking_uri, parent, succeeded=status)
    return child


def monitoring_stage(tracking_uri, run_id, *, experiment=EXPERIMENT) -> StageContext:
    """The monitoring stage's context in a pipeline run whose stage run is ``run_id``."""
    tracking_config = {"experiment": experiment, "tracking_uri": tracking_uri}
    config = RunConfig(name="test", tracking=tracking_config)
    return StageContext("monitoring", config, Path(tempfile.mkdtemp()), mlflow_run_id=run_id)


def test_history_is_read_from_mlflow_newest_first_and_skips_failed_runs(market, tracking_uri):
    before, after = market(None, seed=2, n_customers=2000)
    p1, p2 = monitor.input_profile(before), monitor.input_profile(after)
    log_run(tracking_uri, p1, "2021-07-01")
    log_run(tracking_uri, p1, "2021-10-01", status=False)  # a failed run is no reference
    log_run(tracking_uri, p1, "2022-01-01")
    current = log_run(tracking_uri, p2, "2022-07-01", monitoring=False)
    earlier = monitoring_stage(tracking_uri, current).earlier_runs(max_runs=5)
    assert [o.as_of for o in earlier] == ["2022-01-01", "2021-07-01"]
    pd.testing.assert_frame_equal(earlier[0].table("monitoring", "input_profile"), p1)
    assert monitoring_stage(tracking_uri, None).earlier_runs(5) == []  # interactive: no history


def flagged_after(tracking_uri, before, after, config: MonitorSettings, experiment: str):
    """Log the earlier snapshot as a finished run, then monitor the later one against it.

    Both runs carry the input profile and the instrument hazard ratios (the
    uplift stage's estimate, computed here without the rest of the stage).
    """

    def hazards(tables):
        return {"instrument_hazard_ratios": instrument_hazard_ratios(case_table(tables))}

    def profile(tables):
        return monitor.input_profile(
            tables, features=config.features, recent_months=config.recent_months
        )

    log_run(tracking_uri, profile(before), str(before.as_of), experiment=experiment,
            uplift_tables=hazards(before))  # fmt: skip
    current_child = log_run(
        tracking_uri, None, str(after.as_of), monitoring=False, experiment=experiment
    )
    stage = monitoring_stage(tracking_uri, current_child, experiment=experiment)
    previous = stage.earlier_runs(max_runs=config.n_runs)
    current = monitor.RunOutputs(
        run_id=current_child, started=pd.Timestamp.now(), as_of=str(after.as_of),
        tables={("monitoring", "input_profile"): profile(after),
                ("uplift", "instrument_hazard_ratios"): hazards(after)["instrument_hazard_ratios"]},
    )  # fmt: skip
    summary = compare(current, previous, config)
    return summary


def test_competitor_entry_flags_the_changed_inputs_and_nothing_else(market, tracking_uri):
    """Shock at month 24 (2022-01-01): competitor offers x2.5, weaker discounts.

    Six months after the shock a 60,000-customer market has too few recent
    cases to see the weaker discount (``test_monitor_shock`` runs a larger
    market through the pipeline); the competitor-offer rate must be flagged and
    nothing the shock left unchanged may be.
    """
    before, after = market({"month": 24}, seed=5)
    summary = flagged_after(tracking_uri, before, after, MonitorSettings(), "shock")
    flagged = set(summary.flags["group"])
    assert "problem_type=competitor_offer" in flagged and flagged <= CHANGED_BY_A_COMPETITOR_ENTRY
    rate = summary.flags.set_index("group").loc["problem_type=competitor_offer"]
    assert rate["current"] / rate["previous"] == pytest.approx(2.5, rel=0.25)
    assert summary.flags.iloc[0]["group"] == "problem_type=competitor_offer"  # largest impact
    assert "survival" in summary.stale_stages and "uplift" in summary.stale_stages
    unchanged = summary.comparison.loc[~summary.comparison["flagged"]]
    assert (unchanged["family"] != "problem rate").sum() >= 20  # the rest were tested, not flagged
    hazards = summary.comparison.loc[summary.comparison["family"] == "instrument hazard ratio"]
    assert hazards["tested"].sum() >= 15


@pytest.mark.slow
def test_without_a_shock_flags_stay_within_the_false_alarm_rate(market, tracking_uri):
    config = MonitorSettings()
    flagged_runs = tests = flags = 0
    seeds = range(11, 19)
    for seed in seeds:
        before, after = market(None, seed=seed)
        summary = flagged_after(tracking_uri, before, after, config, f"no-shock-{seed}")
        tests += int(summary.comparison["tested"].sum())
        flags += len(summary.flags)
        flagged_runs += bool(len(summary.flags))
    # Holm keeps P(any false flag in a run) <= alpha = 5%: with 8 markets, 2 or more
    # flagged runs would happen by chance with probability 5.7%
    assert flagged_runs <= 1, (flagged_runs, flags, tests)
    assert tests >= 8 * 25


def test_history_panels_label_each_family_and_draw_the_biggest_moves_first():
    import matplotlib.pyplot as plt

    from retention_lab.monitor import plots

    runs = [outputs("2024-01-01"), outputs("2024-02-01", recent_discount=-0.2)]
    summary = compare(runs[1], [runs[0]])
    fig = plots.plot_monitor_panels(
        summary.history, families=monitor.HEADLINE_FAMILIES, currency="USD"
    )
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == len({"survival", "instrument hazard ratio", "instrument effect",
                             "problem hazard ratio", "value"})  # fmt: skip
    titles = {ax.get_title(): ax for ax in axes}
    survival = titles["Median tenure across runs"]
    assert survival.get_ylabel() == "Median tenure (months)" and survival.get_xlabel()
    hazard = next(ax for title, ax in titles.items() if title.startswith("Hazard ratio in recent"))
    # the discount moved by 0.6 on the log scale (6 SE), the technician visit not at all
    legend = [t.get_text() for t in hazard.get_legend().get_texts()]
    assert legend[0] == "Instrument: discount, Problem type: competitor offer"
    value = next(ax for ax in axes if ax.get_title().lower().startswith("total value"))
    assert value.get_ylabel() == "Total value of active customers (USD)"  # the run's currency
    plt.close(fig)
