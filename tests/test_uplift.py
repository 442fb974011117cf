"""Uplift stage tests: estimates against the simulator's truth, degenerate inputs, direct use.

One simulated market (60,000 customers, seed 11: about 41,000 cases with an
observed 6-month outcome, 30 % randomised) is analysed once per module with
the default configuration.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import retention_lab.uplift as up
from retention_lab import report
from retention_lab.config import parse_config
from retention_lab.data.loaders import Tables, derive_tenure
from retention_lab.data.simulate import SimulatorSettings, simulate
from retention_lab.errors import DataError, StatisticalWarning
from retention_lab.units import Z95
from retention_lab.uplift import UpliftSettings
from retention_lab.uplift.hazard import instrument_hazard_ratios as hazard_ratios
from retention_lab.uplift.hazard import recent_changes

SEED = 11


def _tables(sim) -> Tables:
    return Tables(
        customers=derive_tenure(sim.customers, sim.as_of),
        as_of=sim.as_of,
        problems=sim.problems,
        interventions=sim.interventions,
        transactions=sim.transactions,
    )


@pytest.fixture(scope="module")
def market(market_data):
    sim = market_data
    tables = _tables(sim)
    return sim, tables, up.case_table(tables, truth=sim.truth)


@pytest.fixture(scope="module")
def summary(market):
    _, _, data = market
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StatisticalWarning)
        return up.analyse(None, data, UpliftSettings(), random_state=0)


@pytest.fixture(scope="module")
def small():
    sim = simulate(SimulatorSettings(n_customers=3_000, months=36), random_state=5)
    tables = _tables(sim)
    return tables, up.case_table(tables, truth=sim.truth)


def _toy(n=400, seed=0, arms=("none", "a", "b")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(n)],
            "treatment": rng.choice(arms, n),
            "segment": rng.choice(["x", "y"], n),
            "age": rng.normal(40, 10, n),
        }
    )
    lift = np.where(frame["treatment"] != arms[0], 0.2 * (frame["segment"] == "x"), 0.0)
    frame["outcome"] = (rng.random(n) < 0.4 + lift).astype(int)
    return frame


# ------------------------------------------------------------------ the input
@pytest.mark.slow
def test_case_outcomes_match_the_simulators_expectation(market):
    _, _, data = market
    cases, truth = data.cases, data.truth
    got = truth.to_numpy()[np.arange(len(cases)), truth.columns.get_indexer(cases["instrument"])]
    rev_cols = truth.columns.get_indexer("revenue:" + cases["instrument"])
    rev = truth.to_numpy()[np.arange(len(cases)), rev_cols]
    se = np.sqrt(got.mean() * (1 - got.mean()) / len(cases))
    assert abs(cases["retained"].mean() - got.mean()) < 4 * se
    assert cases["revenue"].mean() == pytest.approx(rev.mean(), rel=0.01)
    assert data.horizon_days == 182 == sim_horizon(market)


def sim_horizon(market) -> int:
    return market[0].truth.parameters["horizon_days"]


def test_horizon_default_matches_the_simulator():
    assert UpliftSettings().horizon_months == SimulatorSettings().outcome_horizon_months
    assert up.horizon_days_of(6) == 182


@pytest.mark.slow
def test_cases_whose_horizon_ends_after_as_of_are_dropped(market):
    sim, _, data = market
    last = pd.Timestamp(sim.as_of) - pd.Timedelta(days=data.horizon_days)
    assert data.cases["date"].max() <= last
    assert len(data.cases) < len(sim.interventions)


# ------------------------------------------------------------------ design checks
@pytest.mark.slow
def test_randomised_share_is_balanced_and_the_rule_is_not(summary):
    bal = summary.balance
    assert bal["smd_random"].abs().max() < 0.15
    assert bal["smd_rule"].abs().max() > 0.5
    worst = bal.loc[bal["smd_rule"].abs().idxmax()]
    assert abs(worst["smd_rule_weighted"]) < abs(worst["smd_rule"]) / 2


@pytest.mark.slow
def test_arm_sizes_and_overlap_cover_every_arm(summary):
    arms = summary.arm_sizes
    random = arms[arms["assignment"] == "random"]
    assert random["share"].between(1 / 6 - 0.02, 1 / 6 + 0.02).all()
    assert set(summary.overlap["instrument"]) == set(random["instrument"]) - {"none"}
    assert summary.overlap["propensity"].between(0, 1).all()
    assert summary.trimmed_share < 0.05


@pytest.mark.slow
def test_propensity_model_is_close_to_the_true_rule(market):
    sim, _, data = market
    small = data.subset(np.arange(len(data.cases)) < 15_000)
    prop = up.fit_propensity(
        small,
        max_iter=100,
        learning_rate=0.05,
        max_leaf_nodes=8,
        min_samples_leaf=200,
        random_state=0,
    )
    out = sim.truth.intervention_outcomes
    true = out.pivot_table(
        index=out["intervention_id"].astype(str), columns="arm", values="propensity"
    )
    true = true.reindex(small.cases["intervention_id"].astype(str)).reset_index(drop=True)
    rule = ~small.randomised()
    mae = (prop.loc[rule, small.arms] - true.loc[rule, small.arms]).abs().mean()
    assert (mae < 0.04).all(), mae
    rand = small.randomised()
    assert np.allclose(prop.loc[rand, small.arms].to_numpy(), 1 / 6, atol=0.02)


# ------------------------------------------------------------- average effects
@pytest.mark.slow
def test_randomised_ate_covers_the_true_ate_per_instrument(summary):
    ate = summary.ate_table()
    dim = ate[ate["estimator"] == "difference_in_means"]
    assert len(dim) == 5
    covered = (dim["lower"] <= dim["true_effect"]) & (dim["true_effect"] <= dim["upper"])
    assert covered.all(), dim


@pytest.mark.slow
def test_doubly_robust_is_closer_to_the_truth_than_naive_where_the_rule_confounds(summary):
    ate = summary.ate_table()
    naive = ate[ate["estimator"] == "naive"].set_index("instrument")
    dr = ate[(ate["estimator"] == "aipw") & (ate["population"] == "rule")].set_index("instrument")
    naive_se = (naive["upper"] - naive["lower"]) / (2 * Z95)
    naive_err = (naive["effect"] - naive["true_effect"]).abs()
    confounded = naive_err[naive_err > 2 * naive_se].index
    assert "discount" in confounded  # the rule gives discounts to the riskiest customers
    dr_err = (dr["effect"] - dr["true_effect"]).abs()
    assert (dr_err[confounded] < naive_err[confounded]).all(), (dr_err, naive_err)


@pytest.mark.slow
def test_revenue_effects_show_the_discounts_lost_revenue(summary):
    rev = summary.revenue_table()
    dim = rev[rev["estimator"] == "difference_in_means"].set_index("instrument")
    covered = (dim["lower"] <= dim["true_effect"]) & (dim["true_effect"] <= dim["upper"])
    assert covered.sum() >= len(dim) - 1  # 95% intervals: two misses of five have p = 0.02
    assert dim.loc["discount", "upper"] < 0


@pytest.mark.slow
def test_effect_matrix_has_every_cell_and_finds_the_harmful_plan_upgrade(summary):
    m = summary.matrix_table()
    assert len(m) == 5 * 5 * 3  # instrument x problem type x segment
    est = m[m["status"] == "estimated"]
    assert len(est) > 0.6 * len(m)
    cell = m[
        (m["instrument"] == "plan_upgrade")
        & (m["problem_type"] == "price")
        & (m["segment"] == "mass")
    ].iloc[0]
    assert cell["effect"] < 0 and cell["true_effect"] < 0
    assert (
        (est["lower"] <= est["true_effect"]) & (est["true_effect"] <= est["upper"])
    ).mean() > 0.85
    pos = est[est["effect"] > 0]
    assert pos["cost_per_saved"].notna().all()


# ---------------------------------------------------------------- hazard ratios
@pytest.mark.slow
def test_hazard_ratios_recover_the_true_log_hazard_effects(summary):
    every = summary.hazard_ratios.query("period == 'all' and status == 'estimated'")
    assert len(every) == 5 * 5  # instrument x problem type
    z = (every["log_hazard_ratio"] - every["true_log_hazard_ratio"]) / every["se"]
    # the 25 cells share their control arms, so their errors are correlated, and an
    # instrument's effect differs between the segments a problem-type cell mixes (the true
    # value is the mean over the treated cases, the Cox estimate weighs them by their
    # events): coverage near the nominal 95% less that, no cell further than 3.5 SE away
    assert (z.abs() < 1.96).mean() >= 0.75 and z.abs().max() < 3.5
    cells = every.set_index(["instrument", "problem_type"])
    assert cells.loc[("technician_visit", "network"), "upper"] < 0.7  # true hazard ratio 0.5
    assert cells.loc[("plan_upgrade", "price"), "hazard_ratio"] > 1  # harmful for mass


@pytest.mark.slow
def test_hazard_findings_report_the_strongest_cell_and_the_truth_check(summary):
    text = " ".join(up.findings(summary))
    assert "technician_visit against network 0." in text
    assert "hazard-ratio intervals cover" in text
    changes = summary.hazard_changes()
    assert len(changes) == 25 and summary.to_metrics()["recent_hazard_changes"] == 0
    assert "No instrument's hazard ratio in the recent cases" in text


def test_recent_changes_test_the_difference_of_log_hazard_ratios():
    hazard = pd.DataFrame(
        {
            "period": ["earlier", "recent", "earlier", "recent"],
            "problem_type": ["price", "price", "network", "network"],
            "instrument": ["discount"] * 2 + ["technician_visit"] * 2,
            "log_hazard_ratio": [-0.8, -0.3, -0.6, -0.6],
            "se": [0.1, 0.1, 0.2, 0.1],
        }
    )
    changes = recent_changes(hazard).set_index("instrument")
    z = 0.5 / np.sqrt(0.02)
    assert changes.loc["discount", "z"] == pytest.approx(z)
    p = 2 * stats.norm.sf(z)
    assert changes.loc["discount", "p_holm"] == pytest.approx(2 * p)  # Holm: 2 cells
    assert changes["changed"].to_dict() == {"discount": True, "technician_visit": False}


@pytest.mark.slow
def test_a_weaker_discount_after_a_competitor_entry_shows_in_the_recent_cases():
    """Shock at month 24 of 36: the recent cases are those after it, the earlier ones before.

    The competitor's offer makes the discount useless (true log hazard ratio -0.2 for
    mass and -0.7 for business customers -> 0 against competitor offers) and comes four
    times as often, a change the test can detect (z = 3.3 against a Holm bound near 3.1).
    """
    shock = {"month": 24, "discount_effect": 0.0, "competitor_offer_rate": 4.0}
    settings = SimulatorSettings(n_customers=250_000, months=36, shock=shock)
    sim = simulate(settings, random_state=SEED)
    data = up.case_table(_tables(sim), truth=sim.truth)
    hazard = hazard_ratios(data)
    recent = hazard.query("period == 'recent'")
    shock_date = pd.Timestamp(sim.truth.parameters["shock_date"])
    assert abs(recent["window_start"].iloc[0] - shock_date) < pd.Timedelta(days=2)
    changes = recent_changes(hazard)
    changed = set(
        changes.loc[changes["changed"], "instrument"]
        + "|"
        + changes.loc[changes["changed"], "problem_type"]
    )
    assert "discount|competitor_offer" in changed
    assert changed <= {"discount|competitor_offer", "discount|price", "discount|billing"}
    cell = recent.set_index(["instrument", "problem_type"]).loc[("discount", "competitor_offer")]
    assert abs(cell["log_hazard_ratio"] - cell["true_log_hazard_ratio"]) < 2.5 * cell["se"]
    assert cell["true_log_hazard_ratio"] == 0.0


# ------------------------------------------------------------ individual effects
@pytest.mark.slow
def test_chosen_learner_correlates_with_the_true_effects(summary):
    chosen = summary.chosen_truth().set_index("instrument")
    assert set(chosen.index) == set(summary.chosen["instrument"])
    # instruments whose true effect varies from case to case (discount, technician visit)
    assert chosen.loc["discount", "correlation"] > 0.3
    assert chosen.loc["technician_visit", "correlation"] > 0.15
    assert chosen["correlation"].mean() > 0.1


@pytest.mark.slow
def test_top_30_percent_by_predicted_uplift_beats_random_targeting(summary):
    chosen = summary.chosen_truth().set_index("instrument")
    gain = chosen["true_gain_top"] - chosen["true_gain_random"]
    assert gain.sum() > 0
    assert gain["discount"] > 0.01  # > 1 extra customer retained per 100 treated
    assert gain["technician_visit"] > 0


@pytest.mark.slow
def test_learners_are_evaluated_on_every_instrument_with_bands(summary):
    lm = summary.learner_metrics
    assert set(lm["learner"]) == {"s", "t", "x", "dr"}
    assert len(lm) == 4 * 5
    assert (lm["qini_lower"] <= lm["qini"]).all() and (lm["qini"] <= lm["qini_upper"]).all()
    assert summary.chosen["rule"].str.len().gt(0).all()
    calib = summary.calibration
    assert set(calib["decile"]) == set(range(1, 11))


def test_qini_curve_matches_causalml(rng):
    from causalml.metrics import get_qini

    n = 2_000
    frame = pd.DataFrame({"instrument": rng.choice(["none", "a"], n), "score": rng.normal(size=n)})
    frame["retained"] = (
        rng.random(n) < 0.5 + 0.1 * (frame["instrument"] == "a") * (frame["score"] > 0)
    ).astype(int)
    ours = up.uplift_curves(frame, score_col="score", instrument="a")
    theirs = get_qini(
        pd.DataFrame(
            {
                "y": frame["retained"],
                "w": (frame["instrument"] == "a").astype(int),
                "score": frame["score"],
            }
        )
    )["score"].to_numpy()
    n_t = (frame["instrument"] == "a").sum()
    pos = np.ceil(ours["share"].to_numpy() * n).astype(int)
    assert np.allclose(ours["qini"].to_numpy() * n_t, theirs[pos], atol=1e-9)


def test_money_qini_ends_at_the_difference_in_mean_net_revenue(rng):
    from retention_lab.uplift import evaluation as ev

    n = 3_000
    frame = pd.DataFrame({"instrument": rng.choice(["none", "a"], n), "score": rng.normal(size=n)})
    frame["revenue"] = rng.gamma(2.0, 50.0, n) + 30.0 * (frame["instrument"] == "a")
    frame["cost"] = np.where(frame["instrument"] == "a", 40.0, np.nan)
    net = ev.net_revenue(
        frame, treatment_col="instrument", control="none", revenue_col="revenue", cost_col="cost"
    )
    treated = (frame["instrument"] == "a").to_numpy()
    assert np.allclose(net[treated], frame["revenue"][treated] - 40.0)
    assert np.allclose(net[~treated], frame["revenue"][~treated])
    metrics, curves = ev.evaluate(
        frame.assign(net_revenue=net),
        {"s": frame[["score"]].rename(columns={"score": "a"})},
        treatment_col="instrument",
        outcome_col="net_revenue",
        control="none",
        n_bootstrap=200,
        random_state=1,
    )
    end = curves.iloc[-1]
    assert end["qini"] == pytest.approx(net[treated].mean() - net[~treated].mean())
    assert end["qini"] < 0  # the instrument keeps 30 of revenue and costs 40
    assert end["qini_lower"] < end["qini"] < end["qini_upper"]
    assert len(metrics) == 1


@pytest.mark.slow
def test_money_qini_of_the_chosen_learners_has_bands_and_shows_the_costly_discount(summary):
    money = summary.chosen_money().set_index("instrument")
    assert len(money) == 5
    assert ((money["qini_lower"] <= money["qini"]) & (money["qini"] <= money["qini_upper"])).all()
    curves = summary.chosen_money_curves()
    discount_at_all = curves[curves["instrument"] == "discount"].iloc[-1]
    assert discount_at_all["qini_upper"] < 0  # it costs more than the revenue it keeps
    assert {f"qini_net_revenue.{i}" for i in money.index} <= set(summary.to_metrics())


@pytest.mark.slow
def test_plan_table_has_one_row_per_active_customer_and_instrument(summary, market):
    _, tables, data = market
    effects = up.plan_effects(summary, data, tables)
    assert list(effects.columns) == up.EFFECT_TABLE_COLUMNS
    active = up.active_customers(tables)
    assert len(effects) == len(active) * 5
    assert effects.groupby("customer_id").size().eq(5).all()
    assert (effects["effect_std"] >= 0).all()
    assert (effects["effect_lower"] <= effects["effect"]).all()
    disc = effects[effects["instrument"] == "discount"].merge(
        active[["customer_id", "monthly_fee"]]
    )
    assert np.allclose(disc["cost"], np.round(1.2 * disc["monthly_fee"], 2), atol=0.02)


@pytest.mark.slow
def test_findings_name_instruments_and_the_naive_bias(summary):
    text = up.findings(summary)
    assert any("Randomised comparison" in s for s in text)
    assert any("naive comparison" in s and "doubly robust" in s for s in text)
    assert any("Against the simulator's truth" in s for s in text)
    metrics = summary.to_metrics()
    assert metrics["cases"] == summary.n_cases
    assert all(np.isfinite(v) for v in metrics.values())


# --------------------------------------------------------------- degenerate input
def test_no_treated_cases_in_a_stratum_is_not_estimable():
    frame = _toy()
    frame = frame[~((frame["treatment"] == "a") & (frame["segment"] == "y"))]
    out = up.difference_in_means(
        frame, treatment_col="treatment", outcome_col="outcome", control="none", by=["segment"]
    )
    row = out[(out["instrument"] == "a") & (out["segment"] == "y")].iloc[0]
    assert np.isnan(row["effect"])
    assert row["status"] == "not estimable: 0 cases with a in segment=y"
    assert out.loc[out["instrument"] == "b", "status"].eq("estimated").all()


def test_outcome_that_never_varies_is_rejected():
    frame = _toy().assign(outcome=1)
    data = up.from_frame(frame, control="none")
    with pytest.raises(DataError, match="column 'outcome'.*never|column 'outcome'.*varies"):
        up.analyse(None, data, UpliftSettings().fast())


def test_missing_control_arm_is_rejected():
    frame = _toy(arms=("a", "b"))
    data = up.from_frame(frame, control="none")
    with pytest.raises(DataError, match="column 'treatment': a control arm labelled 'none'"):
        up.analyse(None, data, UpliftSettings().fast())


def test_fewer_rows_than_folds_is_rejected():
    frame = pd.DataFrame(
        {
            "treatment": ["none", "none", "a", "a", "b"],
            "outcome": [0, 1, 0, 1, 1],
            "age": [30.0, 40, 50, 60, 70],
        }
    )
    data = up.from_frame(frame, control="none")
    with pytest.raises(DataError, match="cross-fitting"):
        up.analyse(None, data, UpliftSettings(folds=3))
    with pytest.raises(DataError, match="at least 3 rows for 3-fold cross-fitting"):
        up.design.fold_ids(np.array(["a", "b"]), 3, 0)


def test_missing_interventions_gives_a_documented_empty_result(small):
    tables, _ = small
    bare = Tables(customers=tables.customers, as_of=tables.as_of)
    data = up.case_table(bare)
    assert not data.available
    result = up.analyse(None, data, UpliftSettings())
    assert not result.available and result.to_metrics() == {}
    assert up.findings(result)[0].startswith("Uplift analysis not available for this dataset")
    assert up.plan_effects(result, data, bare).empty
    assert result.matrix_table().empty and result.ate_table().empty


def test_unknown_learner_and_unfitted_model_are_clear():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="call 'fit' first"):
        up.UpliftModel("t").predict(_toy())
    with pytest.raises(ValueError, match="unknown learner"):
        up.UpliftModel("q").fit(
            _toy(), treatment_col="treatment", outcome_col="outcome", features=["age"]
        )


def test_dr_effects_equal_causalmls_own_prediction():
    from retention_lab.uplift.learners import _as_str

    frame = _toy(n=4_000, seed=4)
    model = up.UpliftModel(
        "dr", control="none", folds=2, max_iter=30, min_samples_leaf=50, random_state=3
    ).fit(frame, treatment_col="treatment", outcome_col="outcome", features=["segment", "age"])
    x = model.encoder_.transform(_as_str(frame, model.features_)).astype(np.float32)
    folds = model.predict_folds(frame)
    for k, fold_model in enumerate(model.models_):
        groups = list(fold_model.t_groups)
        own = fold_model.predict(x)[:, [groups.index(a) for a in model.instruments_]]
        np.testing.assert_allclose(folds[k], own, rtol=0, atol=1e-12)
    # the effect is real: arm a lifts segment x by 0.2 and y by nothing
    effect = model.predict(frame)["a"].groupby(frame["segment"]).mean()
    assert effect["x"] - effect["y"] > 0.08


def test_learners_split_categories_natively_and_score_unseen_levels():
    frame = _toy(n=2_000, seed=6)
    fit = dict(treatment_col="treatment", outcome_col="outcome", features=["segment", "age"])
    params = dict(control="none", folds=2, max_iter=30, min_samples_leaf=50, random_state=3)
    s_model = up.UpliftModel("s", **params).fit(frame, **fit)
    t_model = up.UpliftModel("t", **params).fit(frame, **fit)
    # one coded column for segment; causalml's S-learner puts the arm before it
    assert s_model.models_[0].models["a"].is_categorical_.tolist() == [False, True, False]
    assert t_model.models_[0].model_c.is_categorical_.tolist() == [True, False]
    unseen = t_model.predict(frame.head(50).assign(segment="z"))  # a level never fitted
    assert unseen.shape == (50, 2) and np.isfinite(unseen.to_numpy()).all()
    effect = t_model.predict(frame)["a"].groupby(frame["segment"]).mean()
    assert effect["x"] - effect["y"] > 0.08  # arm a lifts segment x by 0.2, y by nothing


def test_weak_learners_warn(small):
    _, data = small
    with pytest.warns(StatisticalWarning, match="better than random"):
        up.analyse(None, data, UpliftSettings().fast(), random_state=1)


# --------------------------------------------------------------------- direct use
@pytest.mark.slow
def test_campaign_export_runs_through_the_configuration(tmp_path, market):
    _, _, data = market
    cases = data.cases.drop_duplicates("customer_id").head(6_000)
    export = pd.DataFrame(
        {
            "client": cases["customer_id"].astype(str),
            "arm": cases["instrument"].replace({"none": "holdout"}),
            "stayed": cases["retained"].astype(bool),
            "segment": cases["segment"],
            "tenure": cases["tenure_months"],
            "fee": cases["monthly_fee"],
            "problem": cases["problem_type"],
        }
    )
    path = tmp_path / "campaign.csv"
    export.to_csv(path, index=False)
    config = parse_config(
        {
            "name": "campaign",
            "uplift": {
                "campaign_file": str(path),
                "campaign_treatment_col": "arm",
                "campaign_outcome_col": "stayed",
                "campaign_control": "holdout",
                "campaign_id_col": "client",
            },
        }
    )
    direct = up.prepare(None, settings=config.uplift)
    assert direct.source == "campaign" and direct.features == [
        "segment",
        "tenure",
        "fee",
        "problem",
    ]
    assert direct.strata == ["segment", "problem"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StatisticalWarning)
        result = up.analyse(None, direct, config.uplift.fast(), random_state=0)
    assert result.available and result.n_randomised == len(export)
    assert set(result.ate_table()["instrument"]) == set(export["arm"]) - {"holdout"}
    effects = up.plan_effects(result, direct)
    assert len(effects) == len(export) * 5
    assert effects["customer_id"].isin(export["client"]).all()
    same = up.difference_in_means(
        export, treatment_col="arm", outcome_col="stayed", control="holdout"
    )
    ours = result.ate_table().query("estimator == 'difference_in_means'")
    assert np.allclose(
        same.sort_values("instrument")["effect"], ours.sort_values("instrument")["effect"]
    )


def test_config_section_has_a_description_on_every_field():
    for name, info in UpliftSettings.model_fields.items():
        assert info.description, name
    with pytest.raises(Exception, match="learners"):
        parse_config({"name": "x", "uplift": {"learners": ["q"]}})


# -------------------------------------------------------------------------- plots
def _figures(result):
    from retention_lab.uplift import plots

    return [
        plots.plot_average_effects(result.ate_table()).figure,
        plots.plot_effect_matrix(result.matrix_table(), strata=result.strata).figure,
        plots.plot_overlap(result.overlap),
        plots.plot_balance(result.balance).figure,
        plots.plot_qini(result.curves),
        plots.plot_qini(result.curves, kind="uplift"),
        plots.plot_qini(result.chosen_money_curves(), kind="money", currency="USD"),
        plots.plot_calibration(result.calibration, result.chosen),
        plots.plot_hazard_ratios(result.hazard_ratios),
    ]


@pytest.mark.slow
def test_every_figure_has_a_title_and_labelled_axes(summary):
    import matplotlib.pyplot as plt

    for fig in _figures(summary):
        visible = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
        assert fig._suptitle is not None or visible[0].get_title()
        for ax in visible:
            assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
        plt.close(fig)


def test_figures_of_an_unavailable_result_say_so():
    import matplotlib.pyplot as plt

    for fig in _figures(up.analyse(None, up.unavailable("no interventions"), UpliftSettings())):
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert "Not available for this dataset" in texts
        plt.close(fig)


@pytest.mark.slow
def test_randomised_cells_check_the_doubly_robust_matrix(summary):
    aipw = summary.matrix_table()
    rand = summary.matrix_table("difference_in_means")
    assert len(rand) == len(aipw)
    both = aipw.merge(rand, on=["problem_type", "segment", "instrument"], suffixes=("", "_r"))
    both = both[(both["status"] == "estimated") & (both["status_r"] == "estimated")]
    covered = (both["lower_r"] <= both["true_effect_r"]) & (
        both["true_effect_r"] <= both["upper_r"]
    )
    assert covered.mean() > 0.85
    assert np.corrcoef(both["effect"], both["effect_r"])[0, 1] > 0.3


# ------------------------------------------------------------------ partial pooling
def test_pooled_cells_are_closer_to_the_truth_than_the_raw_cells(summary):
    acc = summary.pooling_accuracy().set_index("scale")
    assert set(acc.index) == {"retention", "log_hazard"}
    assert (acc["cells"] == 75).all()
    assert (acc["pooled_rmse"] <= 0.7 * acc["raw_rmse"]).all(), acc
    assert (acc["pooled_coverage"] >= 0.9).all(), acc


def test_every_pooled_cell_has_an_interval_of_positive_width(summary):
    for scale in ("retention", "log_hazard"):
        t = summary.pooled_table(scale)
        assert len(t) == 75
        assert np.isfinite(t["pooled"]).all()
        assert (t["upper"] - t["lower"] > 0).all()
        assert t["shrinkage"].between(0, 1).all()
        assert t["prob_benefit"].between(0, 1).all()
    # the harmful plan upgrade for mass customers with price problems is found as harmful
    t = summary.pooled_table().set_index(["instrument", "problem_type", "segment"])
    assert t.loc[("plan_upgrade", "price", "mass"), "prob_benefit"] < 0.05
    assert t.loc[("technician_visit", "network", "mass"), "prob_benefit"] > 0.95


def test_pooling_recovers_a_known_hierarchy(rng):
    from retention_lab.uplift.pooling import pool_cells

    problems, segments = np.meshgrid(np.arange(5), np.arange(3), indexing="ij")
    problems, segments = problems.ravel().astype(str), segments.ravel().astype(str)
    errors_raw, errors_pooled, covered, thin, thick = [], [], [], [], []
    for _ in range(100):
        theta = (0.02 + rng.normal(0, 0.04, 5)[problems.astype(int)]
                 + rng.normal(0, 0.01, 3)[segments.astype(int)])  # fmt: skip
        se = rng.choice([0.01, 0.05, 0.1], size=theta.size)
        raw = theta + rng.normal(0, se)
        cells = pd.DataFrame(
            {"instrument": "x", "problem_type": problems, "segment": segments,
             "raw": raw, "raw_se": se, "true_effect": theta}
        )  # fmt: skip
        out = pool_cells(cells, scale="retention")
        errors_raw.append(raw - theta)
        errors_pooled.append(out["pooled"] - theta)
        covered.append((out["lower"] <= theta) & (theta <= out["upper"]))
        thin.append(out.loc[se == 0.1, "shrinkage"].mean())
        thick.append(out.loc[se == 0.01, "shrinkage"].mean())
    rmse = lambda e: np.sqrt(np.mean(np.square(np.concatenate(e))))  # noqa: E731
    assert rmse(errors_pooled) < 0.7 * rmse(errors_raw)
    assert 0.9 <= np.mean(np.concatenate(covered)) <= 0.99
    assert np.nanmean(thin) > np.nanmean(thick)


def test_staff_records_are_compared_with_the_randomised_cells(summary):
    ovr = summary.observed_vs_randomised()
    assert len(ovr) > 20
    assert (ovr["lower"] <= ovr["difference"]).all() and (ovr["difference"] <= ovr["upper"]).all()
    text = up.findings(summary)
    assert any("staff records" in t for t in text)
    assert not any("Bonferroni" in t or "clears the bound" in t for t in text)
    # what a manager acts on comes first, in words; the checks follow (the report's appendix)
    key = text[: report.MAX_KEY_FINDINGS]
    assert key[1].startswith("Randomised comparison against no action")
    assert any(" works best for " in t for t in key)
    checks = ("staff records", "Against the simulator's truth", "Chosen learner", "E-value")
    assert not any(word in t for t in key for word in checks)
    assert not any("_" in t for t in key)
    renamed = up.findings(summary, labels={"technician_visit": "Engineer visit"})
    assert "Engineer visit" in renamed[1] and "technician" not in renamed[1]
