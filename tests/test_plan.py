"""Tests for the retention plan: allocation, baselines, truth, edge cases, action list."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import Bounds, LinearConstraint, milp

from retention_lab import plan
from retention_lab.clv import ClvSettings
from retention_lab.data.loaders import Tables
from retention_lab.data.simulate import SimulatorSettings, simulate
from retention_lab.errors import MissingStageOutput
from retention_lab.labels import label
from retention_lab.plan import PlanSettings
from retention_lab.plan.knapsack import NOTHING, allocate, fill_in_order, is_feasible
from retention_lab.stage import StageContext

from .conftest import make_config

# the customer value's horizon and discount rate, as the clv stage's defaults compute it
VALUE = {
    "value_months": ClvSettings().horizon_months,
    "annual_discount": ClvSettings().discount_rate,
}


# ------------------------------------------------------------------ fixtures
def _instance(rng: np.random.Generator, n: int, m: int = 5):
    base = np.array([15.0, 60.0, 120.0, 30.0, 40.0])[:m]
    cost = base[None, :] * rng.uniform(0.8, 1.2, (n, m))
    value = rng.gamma(2.0, 40.0, (n, m)) * rng.uniform(0.0, 1.0, (n, 1)) - cost
    return value, cost


def _exact(value, cost, budget, capacity):
    """The integer optimum by scipy's MILP on the full formulation (no pruning)."""
    n, m = value.shape
    k = n * m
    rows = [np.kron(np.eye(n), np.ones(m)), cost.ravel()[None, :]]
    upper = [np.ones(n), [budget]]
    for a in range(m):
        if np.isfinite(capacity[a]):
            row = np.zeros(k)
            row[a::m] = 1.0
            rows.append(row[None, :])
            upper.append([capacity[a]])
    res = milp(
        -value.ravel(),
        constraints=LinearConstraint(np.vstack(rows), -np.inf, np.concatenate(upper)),
        integrality=np.ones(k),
        bounds=Bounds(0, 1),
    )
    assert res.status == 0
    return -res.fun


@pytest.fixture(scope="module")
def market():
    """A simulated market large enough for the effects to be learnt (fixed seed)."""
    data = simulate(SimulatorSettings(n_customers=100_000, months=72), random_state=2)
    tables = Tables(
        customers=data.customers,
        as_of=data.as_of,
        problems=data.problems,
        interventions=data.interventions,
    )
    active = data.customers[data.customers["end_date"].isna()]
    # value of a retained customer: 30 months of margin (stands in for the clv stage)
    values = pd.DataFrame(
        {
            "customer_id": active["customer_id"].astype(str),
            "segment": active["segment"],
            "value": active["monthly_fee"] * 0.6 * 30,
            "p_churn": 0.2,
        }
    )
    scores = pd.DataFrame(
        {
            "customer_id": active["customer_id"].astype(str),
            "p_churn_horizon": np.where(active["contract"] == "month-to-month", 0.3, 0.1),
        }
    )
    return data, tables, plan.PlanInputs(values=values, scores=scores, effects=None, **VALUE)


@pytest.fixture(scope="module")
def pooled_inputs(market):
    """The market's inputs with the uplift stage's pooled cells: the plan refits no effect model.

    For tests of what the plan does with its effects, whichever model gave them.
    """
    data, tables, _ = market
    return _pooled_inputs(data, tables)


@pytest.fixture(scope="module")
def summary(market, pooled_inputs):
    data, tables, _ = market
    config = PlanSettings(budget=20_000, capacities={"technician_visit": 30})
    return plan.analyse(
        tables,
        pooled_inputs,
        config.fast(),
        truth=data.truth,
        random_state=0,
    )


# ---------------------------------------------------------------- allocation
@pytest.mark.parametrize("budget", [500.0, 3_000.0, 12_000.0])
def test_allocation_is_within_its_stated_gap_of_the_exact_optimum(rng, budget):
    value, cost = _instance(rng, 150)
    capacity = np.array([np.inf, 10, 5, np.inf, 20])
    optimum = _exact(value, cost, budget, capacity)
    for exact_max in (20_000, 0):  # the MILP path and the LP-rounding path
        a = allocate(value, cost, budget=budget, capacity=capacity, exact_max_customers=exact_max)
        assert is_feasible(a.choice, cost, budget=budget, capacity=capacity)
        assert a.value <= optimum + 1e-6
        assert a.bound >= optimum - 1e-6
        assert optimum - a.value <= a.gap + 1e-6
    exact = allocate(value, cost, budget=budget, capacity=capacity)
    assert exact.value == pytest.approx(optimum, rel=1e-6)


def test_lagrangian_allocation_of_many_customers_keeps_budget_and_capacities(rng, monkeypatch):
    from retention_lab.plan import knapsack as module

    monkeypatch.setattr(module, "LP_SAMPLE", 3_000)
    value, cost = _instance(rng, 20_000)
    capacity = np.array([np.inf, 300, 100, np.inf, np.inf])
    a = module.allocate(
        value, cost, budget=20_000.0, capacity=capacity, exact_max_customers=0,
        lp_max_customers=5_000, random_state=0,
    )  # fmt: skip
    assert a.method == "lagrangian"
    assert is_feasible(a.choice, cost, budget=20_000.0, capacity=capacity)
    lp = module.allocate(
        value, cost, budget=20_000.0, capacity=capacity, exact_max_customers=0,
        lp_max_customers=50_000,
    )  # fmt: skip
    # the Lagrangian bound is valid (>= the LP optimum) and the gap is small
    assert a.bound >= lp.bound - 1e-6
    assert a.value >= lp.bound - a.gap - 1e-6
    assert a.relative_gap < 0.01


def test_zero_budget_treats_nobody(rng):
    value, cost = _instance(rng, 50)
    a = allocate(value, cost, budget=0.0)
    assert a.n_treated == 0 and a.value == 0.0 and a.gap == 0.0


def test_budget_larger_than_treating_everyone_gives_everyone_their_best_option(rng):
    value, cost = _instance(rng, 80)
    a = allocate(value, cost, budget=1e9)
    best = np.where(value.max(axis=1) > 0, value.argmax(axis=1), NOTHING)
    np.testing.assert_array_equal(a.choice, best)
    assert a.gap == 0.0 and a.cost < 1e9


def test_no_customer_with_positive_net_value_means_no_action(rng):
    value, cost = _instance(rng, 40)
    a = allocate(-np.abs(value) - 1.0, cost, budget=1e6)
    assert a.n_treated == 0 and a.value == 0.0


def test_instrument_with_zero_capacity_is_never_used(rng):
    value, cost = _instance(rng, 200)
    value[:, 2] += 1_000.0  # by far the best instrument ...
    capacity = np.array([np.inf, np.inf, 0, np.inf, np.inf])  # ... but unavailable
    for exact_max in (20_000, 0):
        a = allocate(value, cost, budget=5_000.0, capacity=capacity, exact_max_customers=exact_max)
        assert not (a.choice == 2).any()
        assert is_feasible(a.choice, cost, budget=5_000.0, capacity=capacity)


def test_fill_in_order_skips_what_no_longer_fits():
    cost = np.array([[50.0, 10.0], [50.0, 10.0], [50.0, 10.0]])
    choice = fill_in_order(np.array([0, 1, 2]), np.array([0, 0, 1]), cost, budget=70.0)
    np.testing.assert_array_equal(choice, [0, NOTHING, 1])


def test_allocation_rejects_bad_inputs(rng):
    value, cost = _instance(rng, 5)
    with pytest.raises(ValueError, match="non-negative"):
        allocate(value, -cost, budget=10.0)
    with pytest.raises(ValueError, match="budget"):
        allocate(value, cost, budget=-1.0)


# ------------------------------------------------------------- the whole plan
def test_plan_beats_every_baseline_by_the_ground_truth(summary):
    comp = summary.comparison.set_index("policy")
    assert set(comp.index) == {"plan", "oracle", *plan.BASELINES}
    truth = comp["true_net_value"]
    assert truth["plan"] > 0
    for name in plan.BASELINES:
        assert truth["plan"] > truth[name], name
    assert truth["oracle"] >= truth["plan"]


def test_true_net_value_comes_from_the_simulator_alone(summary, market):
    from retention_lab.data.simulate import true_net_values

    data, tables, inputs = market
    cand = summary.candidates
    # valuing every customer at ten times the value must not change the truth
    rich = dataclasses.replace(
        inputs, values=inputs.values.assign(value=inputs.values["value"] * 10)
    )
    assert summary.effects_source.startswith("uplift stage (cells pooled")
    again = plan.analyse(
        tables,
        rich,
        PlanSettings(budget=20_000, baselines=["nothing"]).fast(),
        truth=data.truth,
        random_state=0,
    )
    acts = again.actions
    tv = true_net_values(
        data.truth, cand.set_index("customer_id").loc[acts["customer_id"]].reset_index(),
        acts["problem_type"].to_numpy(), **VALUE,
    )  # fmt: skip
    chosen = tv[tv["arm"].to_numpy() == np.repeat(acts["instrument"].to_numpy(), 6)]
    comp = again.comparison.set_index("policy")
    assert comp.loc["plan", "true_net_value"] == pytest.approx(chosen["net_value"].sum())


def test_plan_and_baselines_keep_the_budget_and_capacities(summary):
    comp = summary.comparison.set_index("policy")
    assert (comp["spent"] <= summary.budget + 1e-6).all()
    used = summary.by_instrument.set_index("instrument")
    assert used.loc["technician_visit", "customers"] <= 30
    assert summary.actions["cost"].sum() <= summary.budget + 1e-6
    assert summary.allocation.gap <= 1e-6 * max(summary.allocation.bound, 1.0)


def test_the_plan_uses_the_best_cell_to_its_capacity_and_gains_by_truth(summary, market):
    # the plan acts where the truth says it helps; technician visits against network problems
    # (the best cell) are used up to their capacity
    from retention_lab.data.simulate import true_net_values

    data, _, _ = market
    acts = summary.actions
    assert len(acts) > 0
    used = acts[acts["instrument"] == "technician_visit"]
    assert len(used) == 30 and (used["problem_type"] == "network").all()
    cand = summary.candidates.set_index("customer_id").loc[acts["customer_id"]].reset_index()
    tv = true_net_values(data.truth, cand, acts["problem_type"].to_numpy(), **VALUE)
    chosen = tv[tv["arm"].to_numpy() == np.repeat(acts["instrument"].to_numpy(), 6)]
    visits = chosen["arm"].to_numpy() == "technician_visit"
    assert (chosen.loc[visits, "net_value"] > 0).mean() > 0.8
    assert chosen["net_value"].sum() > 0


def test_off_policy_estimates_have_intervals_around_the_point(summary):
    ope = summary.off_policy
    assert set(ope["estimator"]) == {"IPW", "DR"}
    ok = ope["policy"] != "nothing"
    sub = ope[ok]
    assert (sub["net_lower"] <= sub["net_value"]).all() and (
        sub["net_value"] <= sub["net_upper"]
    ).all()
    nothing = ope[~ok]
    assert (nothing[["incremental_customers", "net_value"]] == 0).all().all()


def test_action_list_has_the_crm_columns_and_a_csv(summary, tmp_path):
    acts = summary.actions
    assert list(acts.columns) == plan.ACTION_COLUMNS
    assert acts["customer_id"].is_unique
    assert (acts["expected_net_value"] > 0).all()
    assert acts["reason"].str.contains("problem").all()
    path = plan.write_actions_csv(acts, tmp_path / "plan")
    back = pd.read_csv(path)
    assert len(back) == len(acts) and list(back.columns) == plan.ACTION_COLUMNS


def test_threats_and_playbook_rank_and_choose(summary):
    assert summary.threats.empty  # without the survival stage's threats the plan ranks none
    book = summary.playbook
    assert {"best", "runner_up", "cost_per_saved", "return_on_spend"} <= set(book.columns)
    assert (book.loc[book["best"] == "do nothing", "best_net_value"] == 0).all()


def test_findings_are_plain_sentences_with_numbers(summary, market):
    data, tables, inputs = market
    threats = plan.threat_table(SURVIVAL_THREATS, tables, values=inputs.values)
    summary = dataclasses.replace(summary, threats=threats)
    text = plan.findings(summary)
    assert any("budget" in t for t in text)
    top = summary.threats.iloc[0]["problem_type"]  # code names in words, or the user's words
    assert any(t.startswith(f"The most costly threat is {label(top)}:") for t in text)
    renamed = plan.findings(summary, labels={top: "Top threat"})
    assert any(t.startswith("The most costly threat is Top threat:") for t in renamed)
    assert any("ground truth" in t for t in text)
    metrics = summary.to_metrics()
    assert metrics["true_net_value"] > metrics["true_net_value_best_baseline"]


def test_zero_budget_plan_treats_nobody_and_still_reports(market, pooled_inputs):
    data, tables, _ = market
    inputs = pooled_inputs
    s = plan.analyse(
        tables,
        inputs,
        PlanSettings(budget=0.0, baselines=["random", "nothing"]).fast(),
        truth=None,
        random_state=1,
    )
    assert s.allocation.n_treated == 0 and s.actions.empty
    assert (s.comparison["spent"] == 0).all()
    assert plan.findings(s)


def test_plan_without_valuable_customers_does_nothing(market, pooled_inputs):
    data, tables, _ = market
    inputs = pooled_inputs
    worthless = dataclasses.replace(inputs, values=inputs.values.assign(value=0.0))
    s = plan.analyse(
        tables,
        worthless,
        PlanSettings(budget=10_000.0, baselines=["nothing"]).fast(),
        random_state=1,
    )
    assert s.allocation.n_treated == 0 and s.actions.empty


def test_uplift_effects_are_used_when_given(market):
    data, tables, inputs = market
    cand = plan.candidates(tables, values=inputs.values, scores=inputs.scores)
    effects = pd.DataFrame(
        {
            "customer_id": np.repeat(cand["customer_id"].to_numpy(), 1),
            "instrument": "discount",
            "effect": 0.5,
            "effect_std": 0.0,
        }
    )
    s = plan.analyse(
        tables,
        dataclasses.replace(inputs, effects=effects),
        PlanSettings(budget=5_000.0, baselines=["nothing"], exact_max_customers=0).fast(),
        random_state=1,
    )
    assert s.effects_source == "uplift stage"
    assert set(s.actions["instrument"]) == {"discount"}


# ------------------------------------------------------------ stage inputs
def test_missing_upstream_outputs_name_the_stage_to_run(tmp_path):
    stage = StageContext(name="plan", config=make_config(), run_dir=tmp_path)
    with pytest.raises(MissingStageOutput, match="run the 'clv' stage before 'plan'"):
        plan.read_inputs(stage)
    (tmp_path / "clv").mkdir()
    pd.DataFrame({"customer_id": ["C1"], "value": [1.0]}).to_parquet(
        tmp_path / "clv" / "values.parquet"
    )
    with pytest.raises(MissingStageOutput, match="run the 'survival' stage"):
        plan.read_inputs(stage)
    (tmp_path / "survival").mkdir()
    pd.DataFrame({"customer_id": ["C1"], "p_churn_horizon": [0.1]}).to_parquet(
        tmp_path / "survival" / "scores.parquet"
    )
    assert plan.read_inputs(stage).effects is None  # auto: the plan's own model
    with pytest.raises(MissingStageOutput, match="run the 'uplift' stage"):
        plan.read_inputs(stage, effects_source="uplift")


def test_plan_with_a_huge_budget_or_a_closed_instrument(market, pooled_inputs):
    data, tables, _ = market
    inputs = pooled_inputs
    rich = plan.analyse(
        tables,
        inputs,
        PlanSettings(budget=1e9, baselines=["best_single"]).fast(),
        random_state=1,
    )
    assert rich.allocation.method == "none needed" and rich.allocation.gap == 0.0
    assert 0 < rich.allocation.cost < 1e9
    closed = plan.analyse(
        tables,
        inputs,
        PlanSettings(
            budget=1e9, capacities={"technician_visit": 0}, baselines=["best_single"]
        ).fast(),
        random_state=1,
    )
    assert "technician_visit" in set(rich.actions["instrument"])
    assert "technician_visit" not in set(closed.actions["instrument"])
    assert closed.by_instrument.set_index("instrument").loc["technician_visit", "customers"] == 0


# the survival stage's threats table (``survival.threat_table``), as the plan reads it
SURVIVAL_THREATS = pd.DataFrame(
    {"problem_type": ["price", "network"], "hazard_ratio": [2.4, 2.0],
     "hr_lower": [2.2, 1.8], "hr_upper": [2.6, 2.2], "attributable_churn": [100.0, 300.0],
     "attributable_lower": [80.0, 250.0], "attributable_upper": [120.0, 350.0],
     "share_of_churn": [0.05, 0.15], "rank": [2, 1]}
)  # fmt: skip


def test_threats_are_the_survival_stages_valued_by_the_segments_that_report_them(market):
    data, tables, inputs = market
    table = plan.threat_table(SURVIVAL_THREATS, tables, values=inputs.values)
    assert list(table["rank"]) == [1, 2] and table["value_lost"].is_monotonic_decreasing
    row = table.set_index("problem_type").loc["price"]
    assert row["hazard_ratio"] == 2.4 and row["hr_upper"] == 2.6  # the Cox estimate, unchanged
    # by hand: each price report weighs its customer's segment mean value
    segment_value = inputs.values.groupby("segment")["value"].mean()
    segment = data.customers.set_index("customer_id")["segment"]
    reports = data.problems.loc[data.problems["problem_type"] == "price", "customer_id"]
    expected = segment.reindex(reports).map(segment_value).mean()
    assert row["value_per_churn"] == pytest.approx(expected, rel=1e-9)
    assert row["value_lost"] == pytest.approx(100.0 * expected)
    assert row["value_lower"] == pytest.approx(80.0 * expected)
    assert plan.threat_table(None, tables, values=inputs.values).empty


# ------------------------------------------------- pooled effects, null market
def _pooled_inputs(data, tables):
    """Stage inputs with pooled cells from the randomised cases (the uplift stage stands aside)."""
    import retention_lab.uplift as up
    from retention_lab.data.loaders import derive_tenure
    from retention_lab.uplift import effects as ef
    from retention_lab.uplift import pooling

    t = Tables(
        customers=derive_tenure(data.customers, data.as_of), as_of=data.as_of,
        problems=data.problems, interventions=data.interventions,
    )  # fmt: skip
    cases = up.case_table(t, truth=data.truth)
    out = data.truth.intervention_outcomes
    prop = out.pivot_table(index="intervention_id", columns="arm", values="propensity")
    prop = prop.reindex(cases.cases["intervention_id"].astype(str)).reset_index(drop=True)
    mu = pd.DataFrame(0.0, index=prop.index, columns=cases.arms)
    scores = ef.aipw_scores(cases, "retained", mu, prop[cases.arms])
    pooled = pooling.pooled_effects(cases, scores, prop, keep=cases.randomised(), min_cases=20)
    active = data.customers[data.customers["end_date"].isna()]
    values = pd.DataFrame(
        {
            "customer_id": active["customer_id"].astype(str),
            "segment": active["segment"],
            "value": active["monthly_fee"] * 0.6 * 30,
        }
    )
    scores = pd.DataFrame(
        {
            "customer_id": active["customer_id"].astype(str),
            "p_churn_horizon": np.where(active["contract"] == "month-to-month", 0.3, 0.1),
        }
    )
    return plan.PlanInputs(values=values, scores=scores, effects=None, pooled=pooled, **VALUE)


@pytest.fixture(scope="module")
def null_market():
    data = simulate(SimulatorSettings(n_customers=50_000, null_effects=True), random_state=3)
    tables = Tables(
        customers=data.customers, as_of=data.as_of,
        problems=data.problems, interventions=data.interventions,
    )  # fmt: skip
    return data, tables, _pooled_inputs(data, tables)


def test_plan_on_a_market_where_nothing_helps_treats_almost_nobody(null_market):
    data, tables, inputs = null_market
    s = plan.analyse(
        tables,
        inputs,
        PlanSettings(budget=20_000, baselines=["nothing"]).fast(),
        truth=data.truth,
        random_state=0,
    )
    assert s.effects_source.startswith("uplift stage (cells pooled")
    assert s.allocation.n_treated <= 0.01 * len(s.candidates)
    comp = s.comparison.set_index("policy")
    assert comp.loc["plan", "true_net_value"] >= -comp.loc["plan", "spent"] - 1e-6


def test_plan_without_a_binding_capacity_gets_most_of_the_oracles_value(market):
    data, tables, _ = market
    s = plan.analyse(
        tables,
        _pooled_inputs(data, tables),
        PlanSettings(budget=20_000).fast(),
        truth=data.truth,
        random_state=0,
    )
    truth = s.comparison.set_index("policy")["true_net_value"]
    for name in plan.BASELINES:
        assert truth["plan"] > truth[name], name
    assert truth["plan"] >= 0.5 * truth["oracle"]
