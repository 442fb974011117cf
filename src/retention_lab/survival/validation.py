"""Validation on held-out customers, and estimated versus true hazard ratios on simulated data."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from lifelines import CRCSplineFitter, KaplanMeierFitter
from lifelines.exceptions import ConvergenceError
from lifelines.utils import concordance_index

from retention_lab.errors import StatisticalWarning
from retention_lab.survival._prep import (
    DURATION,
    EVENT,
    check_customers,
    make_rng,
    require_events,
    sample_customers,
)
from retention_lab.survival.regression import CoxResult, fit_cox
from retention_lab.survival.scores import survival_curves
from retention_lab.survival.settings import DEFAULTS
from retention_lab.units import Z95


@dataclass(frozen=True)
class Validation:
    """Out-of-sample performance of the Cox model that produces the scores.

    ``calibration``: ``predicted``, ``observed`` (smoothed, Austin et al. 2020) on a grid of
    predicted probabilities of churn by ``horizon_months``. ``brier``: ``time_months``,
    ``brier`` (IPCW, Graf et al. 1999), ``brier_null`` (everyone gets the Kaplan-Meier
    retention), ``skill`` (1 - brier / brier_null).
    """

    concordance: float
    horizon_months: float
    ici: float
    e50: float
    calibration: pd.DataFrame
    brier: pd.DataFrame
    n_train: int
    n_test: int
    model: CoxResult = field(repr=False)


def split_customers(
    customers: pd.DataFrame,
    *,
    test_share: float,
    random_state: int | np.random.Generator | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random split into (train, test) customers, stratified by churn status.

    Returns
    -------
    train, test : pandas.DataFrame
        Rows of ``customers`` with all its columns (``customer_id``, ``tenure_months``,
        ``churned``, ...).
    """
    if not 0 < test_share < 1:
        raise ValueError(f"test_share must be in (0, 1), got {test_share}")
    rng = make_rng(random_state)
    test = np.zeros(len(customers), bool)
    for flag in (True, False):
        idx = np.flatnonzero(customers[EVENT].to_numpy(bool) == flag)
        test[rng.choice(idx, size=int(round(test_share * idx.size)), replace=False)] = True
    return customers.loc[~test], customers.loc[test]


def brier_scores(
    predicted_survival: np.ndarray,
    durations: np.ndarray,
    events: np.ndarray,
    times: Sequence[float],
) -> pd.DataFrame:
    """Time-dependent Brier score with inverse-probability-of-censoring weights.

    ``predicted_survival`` has shape (customers, times). Times at which the
    censoring distribution is exhausted are left out (with a warning).

    Returns
    -------
    pandas.DataFrame
        ``time_months``, ``brier``, ``brier_null`` (the Kaplan-Meier curve without
        covariates) and ``skill`` (``1 - brier / brier_null``).
    """
    durations, events = np.asarray(durations, float), np.asarray(events, bool)
    censor = KaplanMeierFitter().fit(durations, ~events)

    def G(t):
        return censor.survival_function_at_times(np.atleast_1d(t)).to_numpy()

    g_before = G(np.maximum(durations - 1e-9, 0.0))
    km = KaplanMeierFitter().fit(durations, events)
    rows, dropped = [], []
    for j, t in enumerate(times):
        g_t = float(G(t)[0])
        died = (durations <= t) & events
        alive = durations > t
        if g_t <= 0 or (died & (g_before <= 0)).any() or not alive.any():
            dropped.append(t)
            continue
        s = predicted_survival[:, j]
        w_died = np.where(died, 1.0 / np.where(g_before > 0, g_before, 1.0), 0.0)
        score = np.mean(s**2 * w_died + (1 - s) ** 2 * alive / g_t)
        s0 = float(km.survival_function_at_times([t]).iloc[0])
        null = np.mean(s0**2 * w_died + (1 - s0) ** 2 * alive / g_t)
        rows.append(
            {
                "time_months": float(t),
                "brier": score,
                "brier_null": null,
                "skill": 1.0 - score / null if null > 0 else 0.0,
            }
        )
    if dropped:
        warnings.warn(
            f"no Brier score at {dropped} months: no held-out customer is followed that long",
            StatisticalWarning,
            stacklevel=2,
        )
    return pd.DataFrame(rows, columns=["time_months", "brier", "brier_null", "skill"])


CALIBRATION_PENALIZERS = (1e-6, 1e-2, 1.0)


def _calibration_spline(frame: pd.DataFrame) -> CRCSplineFitter | None:
    """The hazard spline on the cloglog prediction, penalised more until it converges."""
    regressors = {"beta_": ["cll"], "gamma0_": "1", "gamma1_": "1", "gamma2_": "1"}
    for penalizer in CALIBRATION_PENALIZERS:
        crc = CRCSplineFitter(n_baseline_knots=3, penalizer=penalizer)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return crc.fit_right_censoring(frame, "T", "E", regressors=regressors)
        except ConvergenceError:
            continue
    return None


def calibration_at(
    predicted_churn: np.ndarray, durations: np.ndarray, events: np.ndarray, horizon: float
) -> tuple[pd.DataFrame, float, float]:
    """Smoothed calibration of P(churn by ``horizon``): curve, ICI and E50 (Austin et al. 2020).

    The observed probability is read from a flexible hazard model of the held-out
    tenures on the complementary log-log of the prediction (lifelines'
    ``CRCSplineFitter``, as in ``lifelines.calibration``).

    Returns
    -------
    curve : pandas.DataFrame
        ``predicted`` and ``observed`` probability of churn by the horizon, on a grid.
    ici : float
        Integrated calibration index: mean absolute difference, observed - predicted.
    e50 : float
        Median absolute difference. The curve is empty and both are NaN (with a
        warning) when the spline does not converge even when penalised.
    """
    p = np.clip(np.asarray(predicted_churn, float), 1e-8, 1 - 1e-8)
    frame = pd.DataFrame(
        {
            "cll": np.log(-np.log(1 - p)),
            "T": np.maximum(np.asarray(durations, float), 1e-3),
            "E": np.asarray(events, bool),
        }
    )
    crc = _calibration_spline(frame)
    if crc is None:
        warnings.warn(
            "the calibration spline did not converge (penalised up to "
            f"{CALIBRATION_PENALIZERS[-1]:g}): calibration is not assessed",
            StatisticalWarning,
            stacklevel=2,
        )
        return pd.DataFrame(columns=["predicted", "observed"]), float("nan"), float("nan")
    observed = 1 - crc.predict_survival_function(frame[["cll"]], times=[horizon]).to_numpy().ravel()
    delta = np.abs(observed - p)
    grid = np.linspace(np.quantile(p, 0.01), np.quantile(p, 0.99), 50)
    curve = (
        1
        - crc.predict_survival_function(
            pd.DataFrame({"cll": np.log(-np.log(1 - grid))}), times=[horizon]
        )
        .to_numpy()
        .ravel()
    )
    return (
        pd.DataFrame({"predicted": grid, "observed": curve}),
        float(delta.mean()),
        float(np.median(delta)),
    )


def validate(
    customers: pd.DataFrame,
    *,
    covariates: Sequence[str],
    strata: Sequence[str] = tuple(DEFAULTS.strata),
    horizon_months: float = DEFAULTS.score_horizon_months,
    brier_times: Sequence[float] = tuple(DEFAULTS.horizons_months),
    test_share: float = DEFAULTS.test_share,
    max_customers: int | None = DEFAULTS.max_validation_customers,
    max_calibration: int = 20_000,
    random_state: int | np.random.Generator | None = None,
) -> Validation:
    """Fit the Cox model on training customers and score it on held-out customers.

    Harrell's concordance uses the predicted retention at ``horizon_months`` as the
    score (comparable across strata). Calibration is assessed on at most
    ``max_calibration`` held-out customers (the spline fit is the slow part).
    """
    check_customers(customers, columns=[*covariates, *strata])
    require_events(customers, what="validate a model")
    rng = make_rng(random_state)
    pool = sample_customers(customers, max_customers, by=[*strata, EVENT], rng=rng)
    train, test = split_customers(pool, test_share=test_share, random_state=rng)
    require_events(train, what="fit the model on the training split")
    model = fit_cox(train, covariates=covariates, strata=strata, random_state=rng)
    times = sorted({float(t) for t in brier_times} | {float(horizon_months)})
    surv = survival_curves(model, test, np.array(times))
    t, e = test[DURATION].to_numpy(float), test[EVENT].to_numpy(bool)
    at_h = surv[:, times.index(float(horizon_months))]
    if e.sum() == 0:
        warnings.warn(
            "no churn among the held-out customers: concordance is undefined and reported as 0.5",
            StatisticalWarning,
            stacklevel=2,
        )
        c_index = 0.5
    else:
        c_index = float(concordance_index(t, at_h, e))
    cal = (
        test
        if len(test) <= max_calibration
        else sample_customers(test, max_calibration, by=[EVENT], rng=rng)
    )
    pos = test.index.get_indexer(cal.index)
    curve, ici, e50 = calibration_at(1 - at_h[pos], t[pos], e[pos], float(horizon_months))
    brier = brier_scores(
        surv[:, [times.index(float(b)) for b in brier_times]], t, e, list(brier_times)
    )
    return Validation(
        concordance=c_index,
        horizon_months=float(horizon_months),
        ici=ici,
        e50=e50,
        calibration=curve,
        brier=brier,
        n_train=len(train),
        n_test=len(test),
        model=model,
    )


def _unit_scale(unit: object) -> float:
    """Leading number of a unit such as "10 years" (1 when there is none)."""
    if not isinstance(unit, str):
        return 1.0
    match = re.match(r"\s*([0-9.]+)", unit)
    return float(match.group(1)) if match else 1.0


def compare_to_truth(
    result: CoxResult,
    log_hazard_ratios: pd.DataFrame | None,
    problem_log_hazard_ratios: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Estimated versus true log hazard ratios, and whether each truth lies in the 95% CI.

    Categorical terms are re-expressed against the truth's reference level (using
    the estimates' covariance); numeric terms are scaled to the truth's unit (the
    leading number of ``unit``, e.g. "10 years" -> 10). Returns an empty frame
    (same columns) when there is no truth, i.e. on real data.

    Returns
    -------
    pandas.DataFrame
        ``term``, ``covariate``, ``level``, ``reference``, ``unit``, ``true_log_hr``,
        ``estimate``, ``lower``, ``upper``, ``covered`` (bool), ``z`` ((estimate - truth) / se).
    """
    cols = TRUTH_COLUMNS
    if log_hazard_ratios is None:
        return pd.DataFrame(columns=cols)
    params, cov = result.model.params_, result.covariance()
    rows = _covariate_truth_rows(result, log_hazard_ratios, params, cov)
    rows += _problem_truth_rows(problem_log_hazard_ratios, params, cov)
    if not rows:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame(rows)
    out["lower"], out["upper"] = (
        out["estimate"] - Z95 * out["se"],
        out["estimate"] + Z95 * out["se"],
    )
    out["covered"] = (out["lower"] <= out["true_log_hr"]) & (out["true_log_hr"] <= out["upper"])
    out["z"] = (out["estimate"] - out["true_log_hr"]) / out["se"]
    return out[cols]


TRUTH_COLUMNS = [
    "term",
    "covariate",
    "level",
    "reference",
    "unit",
    "true_log_hr",
    "estimate",
    "lower",
    "upper",
    "covered",
    "z",
]


def _covariate_truth_rows(result: CoxResult, truth: pd.DataFrame, params, cov) -> list[dict]:
    """Each true covariate log hazard ratio with the estimate re-expressed on its scale."""
    hr = result.hazard_ratios.set_index("term")
    rows = []

    def column(covariate, level):
        name = f"{covariate}[{level}]"
        return name if name in params.index else None

    for r in truth.itertuples():
        if r.covariate not in set(hr["covariate"]):
            continue
        weights = pd.Series(0.0, index=params.index)
        if isinstance(r.level, str):
            a, b = column(r.covariate, r.level), column(r.covariate, r.reference)
            if a is None and r.level != result.design.references.get(r.covariate):
                continue
            if a:
                weights[a] += 1.0
            if b:
                weights[b] -= 1.0
        else:
            weights[r.covariate] = _unit_scale(r.unit)
        rows.append(
            {
                "term": r.term,
                "covariate": r.covariate,
                "level": r.level if isinstance(r.level, str) else None,
                "reference": r.reference if isinstance(r.reference, str) else None,
                "unit": r.unit if isinstance(r.unit, str) else None,
                "true_log_hr": float(r.log_hazard_ratio),
                "estimate": float(weights @ params),
                "se": float(np.sqrt(weights.to_numpy() @ cov.to_numpy() @ weights.to_numpy())),
            }
        )
    return rows


def _problem_truth_rows(truth: pd.DataFrame | None, params, cov) -> list[dict]:
    """Each true problem log hazard ratio (against no open problem) with its estimate."""
    rows = []
    for r in [] if truth is None else truth.itertuples():
        name = f"problem[{r.problem_type}]"
        if name not in params.index:
            continue
        rows.append(
            {
                "term": name,
                "covariate": "problem_type",
                "level": r.problem_type,
                "reference": "no problem",
                "unit": None,
                "true_log_hr": float(r.log_hazard_ratio),
                "estimate": float(params[name]),
                "se": float(np.sqrt(cov.loc[name, name])),
            }
        )
    return rows
