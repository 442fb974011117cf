"""The uplift stage in one call: ``analyse`` -> ``UpliftSummary``; ``findings`` words it."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from retention_lab import progress
from retention_lab.errors import StatisticalWarning
from retention_lab.labels import capitalised, label
from retention_lab.uplift import design
from retention_lab.uplift import effects as ef
from retention_lab.uplift import evaluation as ev
from retention_lab.uplift import hazard as hz
from retention_lab.uplift import observational as obs
from retention_lab.uplift import pooling as po
from retention_lab.uplift.cases import UpliftInput, prepare
from retention_lab.uplift.learners import UpliftModel, fit_learners

log = logging.getLogger(__name__)


def _empty(columns):
    return pd.DataFrame(columns=list(columns))


@dataclass(frozen=True, eq=False)
class UpliftSummary:
    """Everything the uplift report shows (tables are DataFrames; see ``analyse``)."""

    available: bool
    reason: str = ""
    source: str = "interventions"
    n_cases: int = 0
    n_randomised: int = 0
    trimmed_share: float = float("nan")
    control: str = "none"
    outcome: str = "retained"
    outcome_type: str = "binary"
    revenue_outcome: str | None = None
    arm_sizes: pd.DataFrame = field(default_factory=lambda: _empty(design.ARM_SIZE_COLUMNS))
    balance: pd.DataFrame = field(
        default_factory=lambda: _empty(
            ["instrument", "feature", "smd_random", "smd_rule", "smd_rule_weighted"]
        )
    )
    overlap: pd.DataFrame = field(
        default_factory=lambda: _empty(["instrument", "received", "propensity", "trimmed"])
    )
    ate: pd.DataFrame = field(default_factory=lambda: _empty(ef.EFFECT_COLUMNS + ["true_effect"]))
    effect_matrix: pd.DataFrame = field(
        default_factory=lambda: _empty(
            ["instrument", "effect", "lower", "upper", "cost_per_saved", "status"]
        )
    )
    learner_metrics: pd.DataFrame = field(default_factory=lambda: _empty(ev.METRIC_COLUMNS))
    curves: pd.DataFrame = field(
        default_factory=lambda: _empty(
            ["instrument", "learner", "share", "qini", "uplift", "random"]
        )
    )
    money_metrics: pd.DataFrame = field(default_factory=lambda: _empty(ev.METRIC_COLUMNS))
    money_curves: pd.DataFrame = field(default_factory=lambda: _empty(ev.CURVE_COLUMNS))
    calibration: pd.DataFrame = field(
        default_factory=lambda: _empty(
            ["instrument", "learner", "decile", "predicted", "observed", "lower", "upper"]
        )
    )
    chosen: pd.DataFrame = field(
        default_factory=lambda: _empty(
            ["instrument", "learner", "qini", "qini_lower", "qini_upper", "reliable", "rule"]
        )
    )
    truth_check: pd.DataFrame = field(
        default_factory=lambda: _empty(
            ["instrument", "learner", "pehe", "correlation", "true_gain_top", "true_gain_random"]
        )
    )
    hazard_ratios: pd.DataFrame = field(default_factory=lambda: _empty(hz.HAZARD_COLUMNS))
    pooled: pd.DataFrame = field(default_factory=lambda: _empty(po.POOLED_COLUMNS))
    costs: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    models: dict[str, UpliftModel] = field(default_factory=dict)
    observational: pd.DataFrame = field(default_factory=lambda: _empty(obs.DIAGNOSTIC_COLUMNS))
    features: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    strata: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def availability(self) -> pd.DataFrame:
        """One row: whether the stage applies to this dataset, and why not.

        Returns
        -------
        pandas.DataFrame
            source, available, cases, randomised, note.
        """
        return pd.DataFrame(
            {
                "source": [self.source],
                "available": [self.available],
                "cases": [self.n_cases],
                "randomised": [self.n_randomised],
                "note": [self.reason or "uplift analysis run"],
            }
        )

    def to_metrics(self) -> dict[str, float]:
        """Headline numbers for MLflow and ``results.json`` (empty when not available)."""
        if not self.available:
            return {}
        out = {
            "cases": float(self.n_cases),
            "randomised_cases": float(self.n_randomised),
            "trimmed_share": float(self.trimmed_share),
        }
        for r in self.ate.itertuples():
            key = f"{r.estimator}_{r.population}_{r.outcome}_{r.instrument}"
            if np.isfinite(r.effect):
                out[f"effect.{key}"] = float(r.effect)
                out[f"std_error.{key}"] = float(r.std_error)
                out[f"lower.{key}"], out[f"upper.{key}"] = float(r.lower), float(r.upper)
        for r in self.observational.itertuples():
            out[f"e_value.{r.outcome}_{r.instrument}"] = float(r.e_value)
            out[f"ess_treated.{r.outcome}_{r.instrument}"] = float(r.ess_treated)
        for r in self.chosen.itertuples():
            out[f"qini.{r.instrument}"] = float(r.qini)
        for r in self.chosen_money().itertuples():
            out[f"qini_net_revenue.{r.instrument}"] = float(r.qini)
        if len(self.hazard_ratios):
            out["recent_hazard_changes"] = float(self.hazard_changes()["changed"].sum())
        tc = self.chosen_truth()
        for r in tc.itertuples():
            out[f"truth_correlation.{r.instrument}"] = float(r.correlation)
            out[f"truth_pehe.{r.instrument}"] = float(r.pehe)
        return {k: v for k, v in out.items() if np.isfinite(v)}

    def _of_chosen(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of a per-learner table that belong to each instrument's chosen learner."""
        return frame.merge(self.chosen[["instrument", "learner"]], on=["instrument", "learner"])

    def chosen_money(self) -> pd.DataFrame:
        """Qini in money (net revenue per treated case) of the chosen learner per instrument.

        Returns
        -------
        pandas.DataFrame
            instrument, learner, qini, qini_lower, qini_upper (bootstrap 95 % band);
            empty when the cases carry no revenue or cost.
        """
        cols = ["instrument", "learner", "qini", "qini_lower", "qini_upper"]
        if self.money_metrics.empty:
            return _empty(cols)
        return self._of_chosen(self.money_metrics)[cols]

    def chosen_money_curves(self) -> pd.DataFrame:
        """The money Qini curves of the chosen learner per instrument (for ``plot_qini``).

        Returns
        -------
        pandas.DataFrame
            instrument, learner, share, qini, qini_lower, qini_upper (extra net
            revenue per treated case and its band), uplift, uplift_lower,
            uplift_upper, random.
        """
        return self._of_chosen(self.money_curves)

    def observational_table(self) -> pd.DataFrame:
        """Overlap, weights, balance and E-value per instrument on the main outcome.

        Returns
        -------
        pandas.DataFrame
            instrument, trimmed, ess_treated, ess_control, max_smd_before,
            max_smd_after, e_value, e_value_ci (see ``observational.diagnostics``).
        """
        d = self.observational[self.observational["outcome"] == self.outcome]
        return d[obs.TABLE_COLUMNS].reset_index(drop=True)

    def percent(self, *columns: str) -> list[str]:
        """The ``columns`` to show as percentages: all for a binary outcome, none otherwise."""
        return list(columns) if self.outcome_type == "binary" else []

    def chosen_truth(self) -> pd.DataFrame:
        """Truth metrics of the chosen learner per instrument (simulated data only).

        Returns
        -------
        pandas.DataFrame
            The columns of :func:`~retention_lab.uplift.truth_metrics`: instrument, learner,
            pehe, correlation, true_ate, true_gain_top, true_gain_random.
        """
        if self.truth_check.empty or self.chosen.empty:
            return self.truth_check.iloc[0:0]
        return self._of_chosen(self.truth_check)

    def ate_table(self, outcome: str | None = None) -> pd.DataFrame:
        """Average effects on one outcome (default retention): randomised and rule side by side.

        Returns
        -------
        pandas.DataFrame
            instrument, estimator, population, effect, lower, upper, n_treated,
            n_control, true_effect (NaN on real data), status.
        """
        outcome = outcome or self.outcome
        cols = [
            "instrument",
            "estimator",
            "population",
            "effect",
            "lower",
            "upper",
            "n_treated",
            "n_control",
            "true_effect",
            "status",
        ]
        t = self.ate[self.ate["outcome"] == outcome] if "outcome" in self.ate else self.ate
        return t.reindex(columns=cols).reset_index(drop=True)

    def revenue_table(self) -> pd.DataFrame:
        """Average effects on revenue over the horizon (empty without transactions).

        Returns
        -------
        pandas.DataFrame
            The columns of :meth:`UpliftSummary.ate_table`: instrument, estimator,
            population, effect, lower, upper, n_treated, n_control, true_effect, status.
        """
        return self.ate_table(self.revenue_outcome or "<none>")

    def hazard_table(self, period: str = "all") -> pd.DataFrame:
        """Instrument hazard ratios of one period ("all", "recent" or "earlier"), by problem type.

        Returns
        -------
        pandas.DataFrame
            problem_type, instrument, hazard_ratio, lower, upper, n_treated,
            n_control, churned_treated, churned_control, true hazard ratio
            (simulated data), status.
        """
        h = self.hazard_ratios.loc[self.hazard_ratios["period"] == period]
        h = h.assign(true_hazard_ratio=np.exp(h["true_log_hazard_ratio"]))
        cols = ["problem_type", "instrument", "hazard_ratio", "lower", "upper", "n_treated",
                "n_control", "churned_treated", "churned_control", "true_hazard_ratio",
                "status"]  # fmt: skip
        return h.reindex(columns=cols).reset_index(drop=True)

    def pooled_table(self, scale: str = "retention") -> pd.DataFrame:
        """Raw and partially pooled effect per cell on one scale ("retention" or "log_hazard").

        Returns
        -------
        pandas.DataFrame
            instrument, problem_type, segment, raw, raw_lower, raw_upper,
            pooled, lower, upper, shrinkage, prob_benefit, lfsr, n_treated,
            n_control, true_effect (NaN on real data).
        """
        cols = ["instrument", "problem_type", "segment", "raw", "raw_lower", "raw_upper",
                "pooled", "lower", "upper", "shrinkage", "prob_benefit", "lfsr", "n_treated",
                "n_control", "true_effect"]  # fmt: skip
        t = self.pooled.loc[self.pooled["scale"] == scale]
        return t.reindex(columns=cols).reset_index(drop=True)

    def pooling_accuracy(self) -> pd.DataFrame:
        """Simulated data: raw against pooled RMSE and interval coverage (``pooling``).

        Returns
        -------
        pandas.DataFrame
            scale, cells, raw_rmse, pooled_rmse, rmse_ratio, raw_coverage, pooled_coverage.
        """
        return po.pooling_accuracy(self.pooled)

    def observed_vs_randomised(self) -> pd.DataFrame:
        """Per cell: the rule cases' doubly robust estimate against the randomised one.

        Returns
        -------
        pandas.DataFrame
            instrument, problem_type, segment, random_estimate, rule_estimate,
            difference, lower, upper, disagree (see ``pooling.observational_vs_randomised``).
        """
        return po.observational_vs_randomised(
            self.pooled.loc[self.pooled["scale"] == "retention"], min_se=0.1
        )

    def hazard_changes(self) -> pd.DataFrame:
        """Recent against earlier hazard ratio per cell (``hazard.recent_changes``).

        Returns
        -------
        pandas.DataFrame
            problem_type, instrument, earlier, recent (hazard ratios), z, p_value,
            p_holm, changed (bool).
        """
        return hz.recent_changes(self.hazard_ratios)

    def matrix_table(self, estimator: str = "aipw") -> pd.DataFrame:
        """The retention effect matrix per stratum cell with revenue effect and cost per saved.

        ``estimator="aipw"`` (default): doubly robust over all cases with common
        support; ``"difference_in_means"``: randomised cases only (honest, noisier).

        Returns
        -------
        pandas.DataFrame
            strata columns, instrument, effect, lower, upper, n_treated,
            n_control, revenue_effect, cost_per_saved, true_effect, status.
        """
        m = self.effect_matrix
        if "outcome" in m:
            m = m[(m["outcome"] == self.outcome) & (m["estimator"] == estimator)]
        cols = [
            *self.strata,
            "instrument",
            "effect",
            "lower",
            "upper",
            "n_treated",
            "n_control",
            "revenue_effect",
            "cost_per_saved",
            "true_effect",
            "status",
        ]
        return m.reindex(columns=cols).reset_index(drop=True)


def _split(data: UpliftInput, test_share: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of held-out randomised cases (stratified by arm)."""
    rand = data.randomised()
    arms = data.cases[data.treatment_col].astype(str).to_numpy()
    test = np.zeros(len(arms), bool)
    for arm in data.arms:
        idx = np.flatnonzero(rand & (arms == arm))
        k = int(round(test_share * len(idx)))
        test[rng.choice(idx, size=k, replace=False)] = True
    return test


def analyse(tables, inputs, settings, *, truth=None, random_state=None) -> UpliftSummary:
    """Run the whole uplift analysis.

    Steps: design checks (arm sizes, balance, cross-fitted propensity with
    trimming); average effects (difference in means on randomised cases;
    naive and cross-fitted AIPW on rule-assigned cases; the AIPW effect
    matrix by strata with cost per customer saved), for retention and
    revenue; S/T/X/DR-learners fitted on rule cases plus part of the
    randomised ones and evaluated on the held-out randomised cases; the
    learner per instrument with the highest Qini coefficient is chosen.

    Parameters
    ----------
    tables
        The run's canonical tables; only read when ``inputs`` is None.
    inputs : UpliftInput or None
        The prepared cases (:func:`~retention_lab.uplift.prepare`, :func:`case_table`
        or :func:`from_frame`); None prepares them from ``tables`` (or the
        configured campaign export) here.
    settings : UpliftSettings
        The configuration's ``uplift`` section; a smoke run passes
        ``UpliftSettings.fast()`` (small models and bootstraps).
    truth
        The simulator's ground truth, used only when the cases are prepared here.

    Returns
    -------
    UpliftSummary
        Unavailable (``available=False``) when the cases are.
    """
    data = prepare(tables, settings=settings, truth=truth) if inputs is None else inputs
    if not data.available:
        return UpliftSummary(available=False, reason=data.reason, source=data.source)
    with threadpool_limits(settings.threads):
        return _analyse(data, settings, random_state)


def _analyse(data: UpliftInput, cfg, random_state) -> UpliftSummary:
    """The available cases' analysis: design, average effects, hazards, individual effects."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(random_state)
    design.check_input(data, folds=cfg.folds)
    params = dict(
        max_iter=cfg.max_iter,
        learning_rate=cfg.learning_rate,
        max_leaf_nodes=cfg.max_leaf_nodes,
        min_samples_leaf=cfg.min_samples_leaf,
    )
    progress.step(f"propensity scores of {len(data.cases):,} cases, cross-fitted")
    prop = design.fit_propensity(
        data,
        folds=cfg.folds,
        trim_bounds=tuple(cfg.trim_bounds),
        random_state=rng.integers(2**31),
        **params,
    )
    keep = ~prop["trimmed"].to_numpy()
    rand = data.randomised()
    rule = ~rand
    bal = design.balance(data, propensity=prop)
    costs = ef.mean_costs(data)
    average = _average_effects(data, cfg, rng, params, prop, keep, bal, costs)
    progress.step("instrument hazard ratios")
    hazard = hz.instrument_hazard_ratios(
        data, window_months=cfg.hazard_window_months, recent_months=cfg.recent_months
    )
    individual = _individual_effects(data, cfg, rng, params, prop, keep)
    seconds = time.perf_counter() - t0
    log.info("uplift analysis of %d cases in %.1f s", len(data.cases), seconds)
    return UpliftSummary(
        available=True,
        source=data.source,
        n_cases=len(data.cases),
        n_randomised=int(rand.sum()),
        trimmed_share=float((~keep & rule).sum() / rule.sum()) if rule.any() else 0.0,
        control=data.control,
        outcome=data.outcome_col,
        outcome_type=data.outcome_type,
        revenue_outcome=data.revenue_col,
        arm_sizes=design.arm_sizes(data),
        balance=bal,
        overlap=design.overlap_table(data, prop),
        hazard_ratios=hazard,
        costs=costs,
        **average,
        **individual,
        features=list(data.features),
        strata=list(data.strata),
        seconds=seconds,
    )


def _average_effects(data, cfg, rng, params, prop, keep, bal, costs) -> dict:
    """Average effects, the effect matrix by strata, pooled cells and observational checks.

    Returns
    -------
    dict
        ``ate``, ``effect_matrix``, ``pooled`` and ``observational`` of ``UpliftSummary``.
    """
    outcomes = [data.outcome_col] + ([data.revenue_col] if data.revenue_col else [])
    pooled = _empty(po.POOLED_COLUMNS)
    ate_parts, matrix_parts, diag_parts = [], [], []
    for outcome in progress.each(outcomes, "average effects, effect matrix and pooling"):
        mu = ef.outcome_predictions(
            data, outcome, keep=keep, folds=cfg.folds, random_state=rng.integers(2**31), **params
        )
        scores = ef.aipw_scores(data, outcome, mu, prop)
        is_rev = outcome == data.revenue_col
        if not is_rev and data.strata and data.outcome_type == "binary":  # retention scale
            pooled = po.pooled_effects(data, scores, prop, keep=keep, min_cases=cfg.min_cell_cases)
        ate_parts += _randomised_and_naive(data, outcome, keep)
        if (~data.randomised()).any():
            ate, diag = _rule_effects(data, outcome, cfg, mu, scores, prop, keep, bal)
            ate_parts += ate
            diag_parts.append(diag)
        if data.strata:
            matrix_parts += _cell_effects(data, outcome, cfg, scores, keep)
    ate = pd.concat([p for p in ate_parts if not p.empty] or ate_parts, ignore_index=True)
    if "true_effect" not in ate.columns:
        ate["true_effect"] = np.nan
    return {
        "ate": ate,
        "effect_matrix": _matrix(data, matrix_parts, costs),
        "pooled": pooled,
        "observational": (
            pd.concat(diag_parts, ignore_index=True)
            if diag_parts
            else _empty(obs.DIAGNOSTIC_COLUMNS)
        ),
    }


def _randomised_and_naive(data, outcome, keep) -> list[pd.DataFrame]:
    """Difference in means on the randomised cases, and the naive one on the rule-assigned."""
    rand = data.randomised()
    rule = ~rand
    is_rev = outcome == data.revenue_col
    dim = ef.difference_in_means(
        data.cases[rand],
        treatment_col=data.treatment_col,
        outcome_col=outcome,
        control=data.control,
    )
    parts = [dim.merge(ef.true_effects(data, mask=rand, revenue=is_rev), how="left")]
    if rule.any():
        naive = ef.difference_in_means(
            data.cases[rule & keep],
            treatment_col=data.treatment_col,
            outcome_col=outcome,
            control=data.control,
            estimator="naive",
            population="rule",
        )
        parts.append(
            naive.merge(ef.true_effects(data, mask=rule & keep, revenue=is_rev), how="left")
        )
    return parts


def _rule_effects(data, outcome, cfg, mu, scores, prop, keep, bal):
    """AIPW and adjusted effects on the rule-assigned cases, their diagnostics, AIPW on all."""
    rule = ~data.randomised()
    is_rev = outcome == data.revenue_col
    dr = ef.aipw_effects(data, scores, mask=rule & keep, outcome_col=outcome, population="rule")
    dr = dr.merge(ef.true_effects(data, mask=rule & keep, revenue=is_rev), how="left")
    adjusted = obs.adjusted_effects(data, outcome, mu, prop, mask=rule & keep)
    adjusted = adjusted.merge(ef.true_effects(data, mask=rule & keep, revenue=is_rev), how="left")
    diag = obs.diagnostics(
        data,
        outcome,
        dr,
        scores,
        prop,
        bal,
        mask=rule & keep,
        trim_bounds=tuple(cfg.trim_bounds),
        binary=data.outcome_type == "binary" and not is_rev,
    )
    alld = ef.aipw_effects(data, scores, mask=keep, outcome_col=outcome, population="all")
    alld = alld.merge(ef.true_effects(data, mask=keep, revenue=is_rev), how="left")
    return [dr, adjusted, alld], diag


def _cell_effects(data, outcome, cfg, scores, keep) -> list[pd.DataFrame]:
    """AIPW effects on all cases and differences in means on the randomised, per stratum cell."""
    rand = data.randomised()
    is_rev = outcome == data.revenue_col
    cell = ef.aipw_effects(
        data,
        scores,
        mask=keep,
        outcome_col=outcome,
        by=data.strata,
        min_cases=cfg.min_cell_cases,
        population="all",
    )
    cell = cell.merge(ef.true_effects(data, mask=keep, by=data.strata, revenue=is_rev), how="left")
    rcell = ef.difference_in_means(
        data.cases[rand],
        treatment_col=data.treatment_col,
        outcome_col=outcome,
        control=data.control,
        by=data.strata,
        min_cases=cfg.min_cell_cases,
    )
    rcell = rcell.merge(
        ef.true_effects(data, mask=rand, by=data.strata, revenue=is_rev), how="left"
    )
    return [cell, rcell]


def _matrix(data, matrix_parts, costs) -> pd.DataFrame:
    """The effect matrix with the cost per customer saved and the revenue effect of each cell."""
    if not matrix_parts:
        return _empty([*data.strata, *ef.EFFECT_COLUMNS])
    matrix = pd.concat([p for p in matrix_parts if not p.empty] or matrix_parts, ignore_index=True)
    if matrix.empty:
        return matrix
    matrix["cost_per_saved"] = np.where(
        matrix["outcome"] == data.outcome_col, ef.cost_per_saved(matrix, costs), np.nan
    )
    if data.revenue_col:
        key = [*data.strata, "instrument", "estimator"]
        rev = matrix[matrix["outcome"] == data.revenue_col][[*key, "effect"]].rename(
            columns={"effect": "revenue_effect"}
        )
        return matrix.merge(rev, on=key, how="left")
    matrix["revenue_effect"] = np.nan
    return matrix


def _individual_effects(data, cfg, rng, params, prop, keep) -> dict:
    """Learners fitted on the training cases, evaluated and chosen on held-out randomised ones.

    Returns
    -------
    dict
        ``models``, ``learner_metrics``, ``curves``, ``money_metrics``,
        ``money_curves``, ``calibration``, ``chosen``, ``truth_check`` and
        ``notes`` of ``UpliftSummary``.
    """
    test = _split(data, cfg.test_share, rng)
    notes = []
    if not test.any():  # learners are judged on held-out randomised cases only
        notes.append(
            "Individual effects were not modelled: no case was randomised, and the learners "
            "are only evaluated (and chosen) on held-out randomised cases."
        )
    train_idx = np.flatnonzero(keep & ~test)
    if cfg.max_train_cases and len(train_idx) > cfg.max_train_cases:
        train_idx = np.sort(rng.choice(train_idx, size=cfg.max_train_cases, replace=False))
    models = fit_learners(
        data.cases.iloc[train_idx].reset_index(drop=True),
        learners=list(cfg.learners) if test.any() else [],
        treatment_col=data.treatment_col,
        outcome_col=data.outcome_col,
        features=data.features,
        control=data.control,
        propensity=prop.iloc[train_idx].reset_index(drop=True),
        folds=cfg.folds,
        l2_regularization=cfg.l2_regularization,
        threads=cfg.threads,
        random_state=rng.integers(2**31),
        **params,
    )
    test_cases = data.cases[test].reset_index(drop=True)
    progress.step(f"evaluating the learners on {len(test_cases):,} held-out randomised cases")
    preds = {k: m.predict(test_cases) for k, m in models.items()}
    arms = dict(treatment_col=data.treatment_col, control=data.control)
    metrics, curves = ev.evaluate(
        test_cases,
        preds,
        outcome_col=data.outcome_col,
        n_bootstrap=cfg.n_bootstrap,
        random_state=rng.integers(2**31),
        **arms,
    )
    money_metrics, money_curves = _money_evaluation(data, test_cases, preds, cfg, rng)
    chosen = ev.choose_learners(metrics)
    truth_check = _empty(
        ["instrument", "learner", "pehe", "correlation", "true_gain_top", "true_gain_random"]
    )
    if data.truth is not None:
        truth_check = ev.truth_metrics(
            test_cases, preds, data.truth[test].reset_index(drop=True), control=data.control
        )
    unreliable = chosen.loc[~chosen["reliable"].astype(bool), "instrument"].tolist()
    if unreliable:
        warnings.warn(
            f"no learner ranks cases better than random for {unreliable} (Qini band includes "
            "zero on the held-out randomised cases); use the average effect for these "
            "instruments or collect more randomised cases",
            StatisticalWarning,
            stacklevel=4,
        )
    return {
        "models": models,
        "learner_metrics": metrics,
        "curves": curves,
        "money_metrics": money_metrics,
        "money_curves": money_curves,
        "calibration": ev.calibration(test_cases, preds, outcome_col=data.outcome_col, **arms),
        "chosen": chosen,
        "truth_check": truth_check,
        "notes": notes,
    }


def _money_evaluation(data, test_cases, preds, cfg, rng):
    """Qini and uplift curves of net revenue (revenue - cost), when the cases carry both."""
    money_seed = rng.integers(2**31)
    if not (data.revenue_col and data.cost_col):
        return _empty(ev.METRIC_COLUMNS), _empty(ev.CURVE_COLUMNS)
    money = ev.net_revenue(
        test_cases,
        treatment_col=data.treatment_col,
        control=data.control,
        revenue_col=data.revenue_col,
        cost_col=data.cost_col,
    )
    return ev.evaluate(
        test_cases.assign(net_revenue=money),
        preds,
        treatment_col=data.treatment_col,
        outcome_col="net_revenue",
        control=data.control,
        n_bootstrap=cfg.n_bootstrap,
        random_state=money_seed,
    )


def _pp(x: float) -> str:
    return f"{x * 100:+.1f} pp"


def _unit(summary: UpliftSummary):
    """Formatter of an effect in the outcome's unit: pp for a binary outcome, else its own."""
    if summary.outcome_type == "binary":
        return _pp
    return lambda x: f"{x:+,.3g}"


def findings(summary: UpliftSummary, *, labels: Mapping[str, str] | None = None) -> list[str]:
    """Plain-language findings, every number computed from ``summary``, most important first.

    What a manager acts on comes first (what works on average, where each
    instrument works best or harms, how far staff records mislead); the checks
    an analyst reads (pooling and learners against the truth, observational
    diagnostics, hazard ratios, the chosen learners) follow, and the report
    puts them in its appendix. Instruments, problems and segments read as
    ``retention_lab.labels.label`` words them (``labels``: ``report.labels``).
    """
    if not summary.available:
        return [f"Uplift analysis not available for this dataset: {summary.reason}."]
    _pp = _unit(summary)  # effects in the outcome's unit: pp for a binary outcome
    ate, y = summary.ate, summary.outcome
    rnd = ate[(ate["estimator"] == "difference_in_means") & (ate["outcome"] == y)]
    rnd = rnd[rnd["status"] == "estimated"].sort_values("effect", ascending=False)
    out = [
        f"{summary.n_cases:,} retention cases with an observed outcome, "
        f"{summary.n_randomised:,} of them randomised.",
        *_randomised_findings(summary, rnd, labels, _pp),
    ]
    cells, detail = _cell_findings(summary, labels, _pp)
    out += cells + _selection_findings(summary, labels, _pp)
    diag = summary.observational
    # observational data: the doubly robust estimates are the answer, else a check
    (out if summary.n_randomised == 0 else detail).extend(
        obs.findings(summary.features, diag[diag["outcome"] == y], ate, _pp)
    )
    detail += _hazard_findings(summary) + _learner_findings(summary, rnd, _pp)
    return out + detail + summary.notes


def _randomised_findings(summary: UpliftSummary, rnd, labels, _pp) -> list[str]:
    """The randomised comparison of every instrument against no action."""
    if not len(rnd):
        return []
    y = summary.outcome
    parts = [
        f"{label(r.instrument, labels)} {_pp(r.effect)} (95% CI {_pp(r.lower)} to {_pp(r.upper)})"
        for r in rnd.itertuples()
    ]
    change = (
        "change in the share still customers at the horizon"
        if summary.outcome_type == "binary"
        else f"change in the mean {y}"
    )
    return [f"Randomised comparison against no action, {change}: " + "; ".join(parts) + "."]


def _cell_findings(summary: UpliftSummary, labels, _pp) -> tuple[list[str], list[str]]:
    """Where each instrument works best or harms (pooled cells), and the pooling's checks.

    Returns
    -------
    key : list of str
        What a manager acts on.
    detail : list of str
        The pooling against the truth and the staff records against randomisation.
    """
    out: list[str] = []
    detail: list[str] = []

    def name(value) -> str:
        return label(value, labels)

    est = summary.pooled_table("retention").dropna(subset=["pooled"])
    if len(est):
        # 75 cells are read at once: a cell is called out by its posterior probability under
        # partial pooling, which shrinks chance highs and lows, not by 75 separate tests
        note = f"posterior probability {{:.0%}}, {len(est)} cells pooled within each instrument"

        def where(r):
            return f"{name(r['problem_type'])} / {name(r['segment'])}"

        for inst, g in est.groupby("instrument"):
            best = g.sort_values("pooled", ascending=False).iloc[0]
            if best["prob_benefit"] >= 0.95:
                out.append(
                    f"{capitalised(name(inst))} works best for {where(best)}: "
                    f"{_pp(best['pooled'])} "
                    f"(95% interval {_pp(best['lower'])} to {_pp(best['upper'])}; "
                    + note.format(best["prob_benefit"])
                    + ")."
                )
        harmful = est[est["prob_benefit"] <= 0.05].sort_values("pooled")
        for _, r in harmful.head(3).iterrows():
            out.append(
                f"{capitalised(name(r['instrument']))} is harmful for {where(r)}: "
                f"{_pp(r['pooled'])} "
                f"(95% interval {_pp(r['lower'])} to {_pp(r['upper'])}; "
                + note.format(1 - r["prob_benefit"])
                + "); stop using it there."
            )
        acc = summary.pooling_accuracy()
        for r in acc[acc["scale"] == "retention"].itertuples():
            detail.append(
                f"Against the simulator's truth, pooling cuts the error of the cell effects from "
                f"{_pp(r.raw_rmse)} to {_pp(r.pooled_rmse)} (root mean square) and its 95% "
                f"intervals cover {r.pooled_coverage:.0%} of the {r.cells} true cell effects."
            )
        ovr = summary.observed_vs_randomised()
        if len(ovr):
            bias = float(ovr["difference"].mean())
            detail.append(
                f"In {len(ovr)} cells with enough randomised and staff-assigned cases, the staff "
                f"records (doubly robust) differ from the randomised estimate by {_pp(bias)} on "
                f"average; they disagree beyond chance in {int(ovr['disagree'].sum())} cells."
            )
    return out, detail


def _selection_findings(summary: UpliftSummary, labels, _pp) -> list[str]:
    """How far the naive comparison of staff-assigned cases misleads (selection bias)."""
    ate, y, out = summary.ate, summary.outcome, []
    naive = ate[(ate["estimator"] == "naive") & (ate["outcome"] == y)]
    dr = ate[(ate["estimator"] == "aipw") & (ate["population"] == "rule") & (ate["outcome"] == y)]
    if len(naive) and len(dr):
        j = naive.merge(dr, on="instrument", suffixes=("_naive", "_dr"))
        j["gap"] = j["effect_naive"] - j["effect_dr"]
        j = j.dropna(subset=["gap"]).sort_values("gap", key=np.abs, ascending=False)
        if len(j):
            r = j.iloc[0]
            instrument = label(r["instrument"], labels)
            out.append(
                f"Staff-assigned cases mislead: the naive comparison gives {instrument} "
                f"{_pp(r['effect_naive'])}, the doubly robust estimate {_pp(r['effect_dr'])} "
                f"(selection bias {_pp(r['gap'])}); {summary.trimmed_share:.1%} of the "
                "rule-assigned cases lacked common support and were trimmed."
            )
    return out


def _learner_findings(summary: UpliftSummary, rnd, _pp) -> list[str]:
    """The chosen learner per instrument and, on simulated data, how well it ranks by truth."""
    detail: list[str] = []
    if not summary.chosen.empty:
        lm = summary.learner_metrics.merge(summary.chosen[["instrument", "learner"]])
        items = [
            f"{r.instrument}: {r.learner.upper()}-learner (top 30% uplift "
            f"{_pp(r.uplift_at_30)} vs {_pp(_ate(rnd, r.instrument))} "
            f"on average)"
            for r in lm.itertuples()
        ]
        detail.append(
            "Chosen learner per instrument (highest Qini coefficient on held-out "
            "randomised cases): " + "; ".join(items) + "."
        )
    tc = summary.chosen_truth()
    if len(tc):
        lo, hi = tc["correlation"].min(), tc["correlation"].max()
        top, rnd30 = 100 * tc["true_gain_top"].mean(), 100 * tc["true_gain_random"].mean()
        detail.append(
            "Against the simulator's truth, the chosen learners' predicted effects correlate "
            f"{lo:.2f} to {hi:.2f} with the true effects; treating the top 30% by predicted "
            f"uplift retains {top:.1f} extra customers per 100 treated against {rnd30:.1f} "
            "for a random 30% (mean over instruments)."
        )
    return detail


def _hazard_findings(summary: UpliftSummary) -> list[str]:
    """The strongest hazard ratio per instrument, recent changes, and the truth check."""
    h = summary.hazard_ratios
    if h.empty:
        return []
    out = []
    every = summary.hazard_table("all").dropna(subset=["hazard_ratio"])
    strongest = (
        every.loc[every["upper"] < 1].sort_values("hazard_ratio").drop_duplicates("instrument")
    )
    if len(strongest):
        items = [
            f"{r.instrument} against {r.problem_type} {r.hazard_ratio:.2f} "
            f"(95% CI {r.lower:.2f} to {r.upper:.2f})"
            for r in strongest.itertuples()
        ]
        window = summary.hazard_ratios["window_end"].iloc[0]
        out.append(
            "Hazard ratio of churn in the weeks after the case, treated against untreated "
            f"(Cox, adjusted for the customer covariates; cases up to {window:%Y-%m-%d}), "
            "where each instrument cuts churn most: " + "; ".join(items) + "."
        )
    recent = h.loc[h["period"] == "recent"]
    if len(recent):
        start, end = recent["window_start"].iloc[0], recent["window_end"].iloc[0]
        span = f"{start:%Y-%m-%d} to {end:%Y-%m-%d}"
        changes = summary.hazard_changes()
        changed = changes.loc[changes["changed"]].sort_values("p_holm")
        if len(changed):
            items = [
                f"{r.instrument} against {r.problem_type} {r.recent:.2f} recently against "
                f"{r.earlier:.2f} before (z = {r.z:.1f})"
                for r in changed.itertuples()
            ]
            out.append(
                f"Effects changed in the recent cases ({span}; Holm-corrected over "
                f"{len(changes)} cells): " + "; ".join(items) + ". Plans built on older "
                "estimates of these instruments are stale."
            )
        elif len(changes):
            out.append(
                f"No instrument's hazard ratio in the recent cases ({span}) differs from the "
                f"earlier cases ({len(changes)} cells tested, Holm-corrected at "
                f"{hz.CHANGE_ALPHA:.0%})."
            )
    truth = every.dropna(subset=["true_hazard_ratio"])
    if len(truth):
        covered = ((truth["lower"] <= truth["true_hazard_ratio"])
                   & (truth["true_hazard_ratio"] <= truth["upper"])).sum()  # fmt: skip
        out.append(
            f"Against the simulator's truth, {covered} of {len(truth)} hazard-ratio intervals "
            "cover the mean true effect of the cell's treated cases."
        )
    return out


def _ate(table: pd.DataFrame, instrument: str) -> float:
    row = table[table["instrument"] == instrument]
    return float(row["effect"].iloc[0]) if len(row) else float("nan")
