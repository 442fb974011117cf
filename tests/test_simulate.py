from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from retention_lab.data.simulate import (
    GroundTruth,
    MarketShock,
    SimulatedData,
    SimulatorSettings,
    read_ground_truth,
    simulate,
    write_simulation,
)

TABLES = ("customers", "problems", "interventions", "transactions")
INSTRUMENTS = ["none", "discount", "bonus", "technician_visit", "personal_manager", "plan_upgrade"]


@pytest.fixture(scope="module")
def data(market_data) -> SimulatedData:
    return market_data


@pytest.fixture(scope="module")
def small() -> SimulatedData:
    return simulate(SimulatorSettings(n_customers=3_000, months=36), random_state=7)


@pytest.fixture(scope="module")
def cases(data: SimulatedData) -> pd.DataFrame:
    """Interventions with the realised outcome and the true p_retained of every arm."""
    horizon = pd.Timedelta(days=data.truth.parameters["horizon_days"])
    iv = data.interventions.merge(data.customers[["customer_id", "end_date"]], on="customer_id")
    iv["observed"] = iv["date"] + horizon <= pd.Timestamp(data.as_of)
    iv["retained"] = iv["end_date"].isna() | (iv["end_date"] >= iv["date"] + horizon)
    out = data.truth.intervention_outcomes
    p = out.pivot(index="intervention_id", columns="arm", values="p_retained")
    rev = out.pivot(index="intervention_id", columns="arm", values="expected_revenue")
    iv = iv.join(p, on="intervention_id")
    pos = p.columns.get_indexer(iv["instrument"])
    iv["p_assigned"] = p.reindex(iv["intervention_id"]).to_numpy()[np.arange(len(iv)), pos]
    iv["rev_assigned"] = rev.reindex(iv["intervention_id"]).to_numpy()[np.arange(len(iv)), pos]
    return iv


def _z_per_arm(cases: pd.DataFrame) -> pd.Series:
    g = cases.groupby("instrument").agg(
        n=("retained", "size"), real=("retained", "mean"), truth=("p_assigned", "mean")
    )
    return (g["real"] - g["truth"]) / np.sqrt(g["truth"] * (1 - g["truth"]) / g["n"])


# ------------------------------------------------------------- determinism
def test_same_seed_gives_identical_tables_and_other_seed_differs(small: SimulatedData):
    settings = SimulatorSettings(n_customers=3_000, months=36)
    again = simulate(settings, random_state=7)
    other = simulate(settings, random_state=8)
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(small, name), getattr(again, name))
    for name in GroundTruth.TABLES:
        pd.testing.assert_frame_equal(getattr(small.truth, name), getattr(again.truth, name))
    assert small.truth.parameters == again.truth.parameters
    for name in TABLES:
        assert not getattr(small, name).equals(getattr(other, name))


# ------------------------------------------------------------------ schema
def test_ids_unique_dtypes_and_dates_within_window(data: SimulatedData):
    c = data.customers
    as_of = pd.Timestamp(data.as_of)
    assert data.as_of == pd.Timestamp("2026-01-01").date()
    assert c["customer_id"].is_unique and data.problems["problem_id"].is_unique
    assert data.interventions["intervention_id"].is_unique
    for name in TABLES:
        assert getattr(data, name)["customer_id"].dtype == pd.StringDtype("pyarrow")
    assert c["signup_date"].dtype == "datetime64[ns]" and c["end_date"].dtype == "datetime64[ns]"
    assert (c["signup_date"] == c["signup_date"].dt.normalize()).all()
    churned = c["end_date"].notna()
    assert (c.loc[churned, "end_date"] < as_of).all()
    assert (c.loc[churned, "end_date"] >= c.loc[churned, "signup_date"]).all()
    assert (
        c.loc[churned, "churn_reason"].notna().all()
        and c.loc[~churned, "churn_reason"].isna().all()
    )
    assert set(c["segment"]) == {"mass", "business", "vip"}
    assert set(c["contract"]) == {"month-to-month", "one-year", "two-year"}
    assert c["age"].dtype == np.int64 and (c["monthly_fee"] > 0).all()


@pytest.mark.parametrize("table", ["problems", "interventions", "transactions"])
def test_events_belong_to_known_customers_while_active(data: SimulatedData, table: str):
    events = getattr(data, table).merge(
        data.customers[["customer_id", "signup_date", "end_date"]], on="customer_id", how="left"
    )
    assert events["signup_date"].notna().all()
    stop = events["end_date"].fillna(pd.Timestamp(data.as_of))
    assert (events["date"] >= events["signup_date"]).all()
    if table == "transactions":  # a bill needs the customer active that day
        assert (events["date"] < stop).all() and (events["amount"] > 0).all()
    else:  # a problem opens on the first day of a tenure week the customer started
        assert (events["date"] <= stop).all()
        assert ((events["date"] - events["signup_date"]).dt.days % 7 == 0).all()


def test_labels_cover_problem_types_instruments_and_assignments(data: SimulatedData):
    iv = data.interventions
    assert set(data.problems["problem_type"]) == {
        "network",
        "billing",
        "price",
        "service",
        "competitor_offer",
    }
    assert data.problems["severity"].between(1, 3).all()
    assert set(iv["instrument"]) == set(INSTRUMENTS)
    assert set(iv["assignment"]) == {"random", "rule"}
    assert (iv.loc[iv["instrument"] == "none", "cost"] == 0).all()
    assert (iv.loc[iv["instrument"] != "none", "cost"] > 0).all()
    joined = iv.merge(data.problems, on="problem_id", suffixes=("", "_p"))
    assert len(joined) == len(iv)
    assert (joined["customer_id"] == joined["customer_id_p"]).all()
    assert (joined["date"] == joined["date_p"]).all()


def test_transactions_are_monthly_bills_reduced_by_discounts(data: SimulatedData):
    tx = data.transactions.merge(data.customers[["customer_id", "monthly_fee"]], on="customer_id")
    ratio = (tx["amount"] / tx["monthly_fee"]).round(2)
    assert set(ratio.unique()) <= {1.0, 0.8}
    assert 0 < (ratio == 0.8).mean() < 0.1
    gaps = tx.groupby("customer_id", observed=True)["date"].diff().dt.days.dropna()
    assert gaps.between(28, 31).all()


# ------------------------------------------------------------ ground truth
def test_truth_tables_have_the_documented_columns(data: SimulatedData):
    t = data.truth
    assert {"term", "covariate", "level", "unit", "log_hazard_ratio", "reference"} <= set(
        t.log_hazard_ratios.columns
    )
    assert (t.log_hazard_ratios["log_hazard_ratio"].abs() >= 0.15).all()
    assert "contract" not in set(t.log_hazard_ratios["covariate"])
    assert list(t.problem_log_hazard_ratios.columns) == [
        "problem_type",
        "log_hazard_ratio",
        "window_weeks",
    ]
    effects = t.instrument_effects.set_index(["instrument", "problem_type", "segment"]).sort_index()
    assert (effects.loc["none", "log_hazard_effect"] == 0).all()
    assert effects.loc[("plan_upgrade", "price", "mass"), "log_hazard_effect"].item() > 0
    assert effects.loc[("technician_visit", "network", "mass"), "log_hazard_effect"].item() < 0
    out = t.intervention_outcomes
    assert len(out) == len(INSTRUMENTS) * len(data.interventions)
    assert out["p_retained"].between(0, 1).all() and (out["expected_revenue"] > 0).all()
    np.testing.assert_allclose(out.groupby("intervention_id")["propensity"].sum(), 1.0)
    random_ids = data.interventions.loc[
        data.interventions["assignment"] == "random", "intervention_id"
    ]
    np.testing.assert_allclose(
        out.loc[out["intervention_id"].isin(random_ids), "propensity"], 1 / len(INSTRUMENTS)
    )
    assert (out["horizon_days"] == t.parameters["horizon_days"]).all()


@pytest.mark.parametrize("assignment", ["random", "rule"])
def test_realised_retention_per_arm_matches_p_retained(cases: pd.DataFrame, assignment: str):
    sub = cases[cases["observed"] & (cases["assignment"] == assignment)]
    z = _z_per_arm(sub)
    assert len(z) == len(INSTRUMENTS) and sub.groupby("instrument").size().min() > 1_000
    assert z.abs().max() < 4, z


def test_realised_retention_is_calibrated_across_deciles_of_p_retained(cases: pd.DataFrame):
    sub = cases[cases["observed"]]
    decile = pd.qcut(sub["p_assigned"], 10, labels=False, duplicates="drop")
    g = sub.groupby(decile).agg(
        n=("retained", "size"), real=("retained", "mean"), truth=("p_assigned", "mean")
    )
    z = (g["real"] - g["truth"]) / np.sqrt(g["truth"] * (1 - g["truth"]) / g["n"])
    assert (z**2).sum() < 29.6, z  # chi-square, 10 df, 0.999 quantile


def _recomputed_p_retained(data: SimulatedData, case: pd.Series) -> pd.Series:
    """p_retained of every arm of one case, rebuilt from the public tables and the truth."""
    t = data.truth
    cust = data.customers.set_index("customer_id").loc[case["customer_id"]]
    xb = 0.0
    for row in t.log_hazard_ratios.itertuples():
        if row.level is None:
            xb += row.log_hazard_ratio * (cust[row.covariate] - row.centre) / 10.0
        else:
            xb += row.log_hazard_ratio * (cust[row.covariate] == row.level)
    w0 = (case["date"] - cust["signup_date"]).days // 7
    gam = t.problem_log_hazard_ratios.set_index("problem_type")
    window = int(gam["window_weeks"].iloc[0])
    horizon = t.parameters["horizon_weeks"]
    j = np.arange(horizon)
    earlier = data.problems[
        (data.problems["customer_id"] == case["customer_id"])
        & (data.problems["date"] <= case["date"])
        & (data.problems["date"] > case["date"] - pd.Timedelta(weeks=window))
    ]
    log_lam = np.full(horizon, xb)
    for k, grp in earlier.groupby("problem_type"):
        remaining = ((grp["date"] - case["date"]).dt.days // 7).max() + window
        log_lam += gam.loc[k, "log_hazard_ratio"] * (j < remaining)
    base = t.baseline_hazard.set_index(["contract", "tenure_week"])["weekly_hazard"]
    lam0 = base.loc[cust["contract"]].loc[w0 + j].to_numpy() * np.exp(log_lam)
    eff = t.instrument_effects
    eff = eff[(eff["problem_type"] == case["problem_type"]) & (eff["segment"] == cust["segment"])]
    theta = eff.set_index("instrument")["log_hazard_effect"]
    return pd.Series(
        {a: np.exp(-(lam0 * np.exp(theta[a] * (j < window))).sum()) for a in INSTRUMENTS}
    )


def test_p_retained_is_exact_given_the_truth_tables(data: SimulatedData, cases: pd.DataFrame):
    sample = cases.sample(60, random_state=0)
    for _, case in sample.iterrows():
        expected = _recomputed_p_retained(data, case)
        np.testing.assert_allclose(
            case[INSTRUMENTS].astype(float), expected[INSTRUMENTS], rtol=1e-10
        )


def test_realised_bills_over_horizon_match_expected_revenue(data: SimulatedData, cases):
    horizon = pd.Timedelta(days=data.truth.parameters["horizon_days"])
    sub = cases[cases["observed"] & (cases["assignment"] == "random")]
    tx = data.transactions.merge(
        sub[["intervention_id", "customer_id", "date"]], on="customer_id", suffixes=("", "_case")
    )
    tx = tx[(tx["date"] >= tx["date_case"]) & (tx["date"] < tx["date_case"] + horizon)]
    realised = tx.groupby("intervention_id")["amount"].sum()
    sub = sub.assign(revenue=sub["intervention_id"].map(realised).fillna(0.0))
    g = sub.groupby("instrument").agg(
        n=("revenue", "size"),
        real=("revenue", "mean"),
        sd=("revenue", "std"),
        truth=("rev_assigned", "mean"),
    )
    z = (g["real"] - g["truth"]) / (g["sd"] / np.sqrt(g["n"]))
    assert z.abs().max() < 4, z


def test_naive_rule_share_comparison_is_biased(cases: pd.DataFrame):
    rule = cases[cases["observed"] & (cases["assignment"] == "rule")]
    control = rule[rule["instrument"] == "none"]["retained"]
    biased = []
    for arm in INSTRUMENTS[1:]:
        treated = rule[rule["instrument"] == arm]
        naive = treated["retained"].mean() - control.mean()
        truth = (treated[arm] - treated["none"]).mean()  # effect on the treated
        se = np.sqrt(treated["retained"].var() / len(treated) + control.var() / len(control))
        biased.append(abs(naive - truth) > 3 * se)
    assert sum(biased) >= 2


def _person_weeks(data: SimulatedData, customers: pd.DataFrame) -> pd.DataFrame:
    """One row per full tenure week before as_of: churned that week, in a problem window."""
    as_of = pd.Timestamp(data.as_of)
    window = int(data.truth.problem_log_hazard_ratios["window_weeks"].iloc[0])
    full = ((as_of - customers["signup_date"]).dt.days // 7).to_numpy()
    churn_week = ((customers["end_date"] - customers["signup_date"]).dt.days // 7).to_numpy()
    churned = ~np.isnan(churn_week) & (np.nan_to_num(churn_week, nan=-1) < full)
    n = np.where(churned, np.nan_to_num(churn_week, nan=0) + 1, full).astype(np.int64)
    offset = np.concatenate([[0], np.cumsum(n)])
    row = np.repeat(np.arange(len(n)), n)
    week = np.arange(offset[-1]) - offset[row]
    event = churned[row] & (week == n[row] - 1)
    pos = pd.Series(np.arange(len(n)), index=customers["customer_id"].to_numpy())
    pr = data.problems[data.problems["customer_id"].isin(pos.index)]
    pc = pos[pr["customer_id"].to_numpy()].to_numpy()
    pw = (
        (pr["date"].to_numpy() - customers["signup_date"].to_numpy()[pc])
        .astype("m8[D]")
        .astype(int)
    ) // 7
    keep = pw < n[pc]
    pc, pw = pc[keep], pw[keep]
    diff = np.zeros(offset[-1] + 1, np.int64)
    np.add.at(diff, offset[pc] + pw, 1)
    np.add.at(diff, np.minimum(offset[pc] + pw + window, offset[pc + 1]), -1)
    return pd.DataFrame(
        {"row": row, "week": week, "event": event, "in_problem": np.cumsum(diff)[:-1] > 0}
    )


def test_reference_customers_churn_at_the_baseline_hazard(data: SimulatedData):
    c = data.customers
    ref = c[(c["segment"] == "mass") & (c["plan"] == "basic") & (c["channel"] == "online")]
    ref = ref.reset_index(drop=True)
    pw = _person_weeks(data, ref)
    pw = pw[~pw["in_problem"]]
    lhr = data.truth.log_hazard_ratios.set_index("covariate")
    xb = sum(
        lhr.loc[cov, "log_hazard_ratio"] * (ref[cov] - lhr.loc[cov, "centre"]) / 10.0
        for cov in ("age", "data_usage_gb")
    ).to_numpy()
    base = data.truth.baseline_hazard.set_index(["contract", "tenure_week"])["weekly_hazard"]
    contract = ref["contract"].to_numpy()[pw["row"]]
    lam = base.reindex(pd.MultiIndex.from_arrays([contract, pw["week"]])).to_numpy()
    pw = pw.assign(contract=contract, expected=-np.expm1(-lam * np.exp(xb[pw["row"]])))
    by = pw.groupby("contract")[["event", "expected"]].sum()
    assert ((by["event"] / by["expected"]).between(0.85, 1.15)).all(), by
    one = pw[pw["contract"] == "one-year"]
    spike = one[one["week"].between(50, 54)]["event"].mean()
    calm = one[one["week"].between(20, 40)]["event"].mean()
    assert spike > 4 * calm


def test_churn_is_more_frequent_during_problem_windows(data: SimulatedData):
    c = data.customers
    pw = _person_weeks(data, c[c["segment"] == "mass"].reset_index(drop=True))
    rate = pw.groupby("in_problem")["event"].mean()
    assert rate[True] > 1.5 * rate[False]


def test_churn_reason_follows_the_active_problem(data: SimulatedData):
    window = pd.Timedelta(weeks=int(data.truth.problem_log_hazard_ratios["window_weeks"].iloc[0]))
    last = data.problems.sort_values("date").groupby("customer_id", observed=True).tail(1)
    j = last.merge(data.customers[["customer_id", "end_date", "churn_reason"]], on="customer_id")
    j = j[j["end_date"].notna() & (j["end_date"] < j["date"] + window)]
    competitor = j[j["problem_type"] == "competitor_offer"]["churn_reason"].eq("competitor").mean()
    base = data.customers["churn_reason"].eq("competitor").mean()
    assert competitor > 2 * base


# ------------------------------------------------------------------- shock
def test_shock_raises_competitor_offers_and_weakens_discounts():
    settings = SimulatorSettings(n_customers=20_000, shock=MarketShock(month=36))
    d = simulate(settings, random_state=3)
    shock_date = pd.Timestamp(d.truth.parameters["shock_date"])
    assert shock_date == pd.Timestamp("2023-01-01")
    after = d.problems["date"] >= shock_date
    share = d.problems.groupby(after)["problem_type"].apply(
        lambda s: (s == "competitor_offer").mean()
    )
    assert share[True] > 1.5 * share[False]
    eff = d.truth.instrument_effects
    disc = eff[
        (eff["instrument"] == "discount") & eff["problem_type"].isin(["price", "competitor_offer"])
    ]
    theta = disc.pivot_table(
        index=["problem_type", "segment"], columns="period", values="log_hazard_effect"
    )
    assert (theta["before"] < 0).all() and (theta["after"].abs() < theta["before"].abs()).all()


def test_no_shock_has_one_period(small: SimulatedData):
    assert set(small.truth.instrument_effects["period"]) == {"all"}
    assert small.truth.parameters["shock_date"] is None


# -------------------------------------------------------------------- files
def _ids_as_arrow(frame: pd.DataFrame) -> pd.DataFrame:
    """Parquet keeps "string" but reads it back with pandas' default (python) storage, and
    pyarrow reads dates back in microseconds where the simulator builds nanoseconds."""
    ids = [c for c in ("customer_id", "problem_id", "intervention_id") if c in frame]
    dates = frame.select_dtypes("datetime").columns
    wanted = dict.fromkeys(ids, pd.StringDtype("pyarrow")) | dict.fromkeys(dates, "datetime64[ns]")
    return frame.astype(wanted)


def test_write_simulation_round_trips_and_refuses_to_overwrite(small: SimulatedData, tmp_path):
    out = tmp_path / "sim"
    write_simulation(small, out)
    for name in TABLES:
        pd.testing.assert_frame_equal(
            _ids_as_arrow(pd.read_parquet(out / f"{name}.parquet")), getattr(small, name)
        )
    truth = read_ground_truth(out)
    for name in GroundTruth.TABLES:
        pd.testing.assert_frame_equal(
            _ids_as_arrow(getattr(truth, name)), getattr(small.truth, name)
        )
    assert truth.parameters == json.loads(json.dumps(small.truth.parameters))
    assert truth.parameters["customer_id_dtype"] == "string[pyarrow]"
    with pytest.raises(FileExistsError):
        write_simulation(small, out)
    (tmp_path / "empty").mkdir()
    write_simulation(small, tmp_path / "empty")


def test_transactions_can_be_switched_off():
    d = simulate(SimulatorSettings(n_customers=500, months=24, transactions=False), random_state=0)
    assert d.transactions is None


def test_a_market_without_retention_cases_simulates_and_loads_without_that_table():
    from retention_lab.config import parse_config
    from retention_lab.data import load_tables

    data = simulate(SimulatorSettings(n_customers=300, intervention_rate=0.0), random_state=1)
    assert len(data.interventions) == 0 and len(data.truth.intervention_outcomes) == 0
    config = parse_config(
        {"name": "x", "data": {"simulator": {"n_customers": 300, "intervention_rate": 0.0}}}
    )
    tables, _ = load_tables(config.data, random_state=1)
    assert tables.interventions is None and tables.problems is not None


# ------------------------------------------------- acting now on active customers
def test_true_treatment_outcomes_rebuild_from_the_truth_tables(small: SimulatedData):
    from retention_lab.data.simulate import true_treatment_outcomes

    truth = small.truth
    active = small.customers[small.customers["end_date"].isna()].head(40).reset_index(drop=True)
    kinds = np.resize(["price", "network", "competitor_offer", "billing", "service"], len(active))
    out = true_treatment_outcomes(truth, active, kinds)
    assert list(out.columns) == ["customer_id", "arm", "p_retained", "expected_revenue", "cost"]
    assert len(out) == len(active) * len(INSTRUMENTS)
    params = truth.parameters
    horizon, window = params["horizon_weeks"], params["problem_window_weeks"]
    as_of = pd.Timestamp(params["as_of"])
    base = truth.baseline_hazard.set_index(["contract", "tenure_week"])["weekly_hazard"]
    gamma = truth.problem_log_hazard_ratios.set_index("problem_type")["log_hazard_ratio"]
    theta = truth.instrument_effects.set_index(["instrument", "problem_type", "segment"])
    for i, row in active.iterrows():
        xb = 0.0
        for t in truth.log_hazard_ratios.itertuples():
            if t.level is None:
                xb += t.log_hazard_ratio * (row[t.covariate] - t.centre) / float(t.unit.split()[0])
            else:
                xb += t.log_hazard_ratio * (row[t.covariate] == t.level)
        week = (as_of - row["signup_date"]).days // 7
        h0 = base.loc[row["contract"]].reindex(range(week, week + horizon)).to_numpy()
        inside = np.arange(horizon) < window
        for arm in INSTRUMENTS:
            th = theta.loc[(arm, kinds[i], row["segment"]), "log_hazard_effect"]
            lam = h0 * np.exp(xb + inside * (gamma[kinds[i]] + th))
            got = out.loc[(out["customer_id"] == row["customer_id"]) & (out["arm"] == arm)]
            assert got["p_retained"].iloc[0] == pytest.approx(np.exp(-lam.sum()), rel=1e-9)


def test_true_treatment_outcomes_order_the_arms_as_the_effects_do(small: SimulatedData):
    from retention_lab.data.simulate import true_treatment_outcomes

    active = small.customers[small.customers["end_date"].isna()].head(200)
    arms = ["none", "discount", "plan_upgrade"]
    out = true_treatment_outcomes(small.truth, active, "price", arms=arms)
    p = out.pivot(index="customer_id", columns="arm", values="p_retained")
    assert (p["discount"] > p["none"]).all()  # discounts help against price problems
    mass = active.set_index("customer_id")["segment"].reindex(p.index) == "mass"
    assert (p.loc[mass, "plan_upgrade"] < p.loc[mass, "none"]).all()  # and upgrades hurt mass
    with pytest.raises(ValueError, match="unknown problem types"):
        true_treatment_outcomes(small.truth, active, "meteor")
