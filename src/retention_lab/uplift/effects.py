"""Average effects with confidence intervals: difference in means and cross-fitted AIPW.

Randomised cases get the plain difference in means against the control
(Welch standard error). Rule-assigned cases get a doubly robust (augmented
inverse-probability-weighted, cross-fitted) estimate beside the naive
difference. The AIPW scores of all cases with common support give the effect
matrix (instrument x problem type x segment).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor

from retention_lab.units import Z95
from retention_lab.uplift.cases import UpliftInput
from retention_lab.uplift.design import _seed, fold_ids, model_matrix

EFFECT_COLUMNS = [
    "instrument",
    "outcome",
    "estimator",
    "population",
    "effect",
    "std_error",
    "lower",
    "upper",
    "n_treated",
    "n_control",
    "status",
]


def _row(inst, outcome, estimator, population, effect, se, n1, n0, status="estimated"):
    if status != "estimated":
        effect = se = np.nan
    return {
        "instrument": inst,
        "outcome": outcome,
        "estimator": estimator,
        "population": population,
        "effect": effect,
        "std_error": se,
        "lower": effect - Z95 * se,
        "upper": effect + Z95 * se,
        "n_treated": int(n1),
        "n_control": int(n0),
        "status": status,
    }


def difference_in_means(
    frame: pd.DataFrame,
    *,
    treatment_col: str = "instrument",
    outcome_col: str = "retained",
    control: str = "none",
    by: list[str] | None = None,
    min_cases: int = 2,
    estimator: str = "difference_in_means",
    population: str = "randomised",
) -> pd.DataFrame:
    """Mean outcome of each instrument minus the control's, with a Welch 95 % CI.

    A stratum where an instrument or the control has fewer than ``min_cases``
    cases is reported with ``status`` "not estimable: ..." (the reason names the
    stratum) and NaN effect.

    Returns
    -------
    pandas.DataFrame
        ``by`` columns, instrument, outcome, estimator, population, effect,
        std_error, lower, upper, n_treated, n_control, status.
    """
    by = list(by or [])
    arms = frame[treatment_col].astype(str)
    instruments = sorted(set(arms) - {control})
    groups = frame.groupby(by, sort=True, observed=True) if by else [((), frame)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        where = ", ".join(f"{c}={v}" for c, v in zip(by, key, strict=True)) or "all cases"
        ga = g[treatment_col].astype(str)
        y0 = g.loc[ga == control, outcome_col].to_numpy(float)
        for inst in instruments:
            y1 = g.loc[ga == inst, outcome_col].to_numpy(float)
            status = "estimated"
            if len(y1) < min_cases:
                status = f"not estimable: {len(y1)} cases with {inst} in {where}"
            elif len(y0) < min_cases:
                status = f"not estimable: {len(y0)} control cases in {where}"
            eff = se = np.nan
            if status == "estimated":
                eff = y1.mean() - y0.mean()
                se = np.sqrt(y1.var(ddof=1) / len(y1) + y0.var(ddof=1) / len(y0))
            row = _row(inst, outcome_col, estimator, population, eff, se, len(y1), len(y0), status)
            rows.append({**dict(zip(by, key, strict=True)), **row})
    return pd.DataFrame(rows, columns=[*by, *EFFECT_COLUMNS])


def outcome_predictions(
    data: UpliftInput,
    outcome_col: str,
    *,
    keep: np.ndarray,
    folds: int = 3,
    max_iter: int = 100,
    learning_rate: float = 0.1,
    max_leaf_nodes: int = 15,
    min_samples_leaf: int = 50,
    random_state=None,
) -> pd.DataFrame:
    """Cross-fitted outcome model per arm: each case's predicted outcome under every arm.

    One gradient-boosted regressor per arm and fold is fitted on the arm's
    cases outside the fold (rows in ``keep`` only) and predicts every case in
    the fold, so no case is scored by a model that saw it.

    Returns
    -------
    pandas.DataFrame
        One column per arm, rows aligned with ``data.cases`` (NaN outside ``keep``).
    """
    arms = data.arms
    x, categorical = model_matrix(data.cases, data.features)
    y = data.cases[outcome_col].to_numpy(float)
    t = data.cases[data.treatment_col].astype(str).to_numpy()
    idx = np.flatnonzero(keep)
    fid = np.full(len(y), -1)
    fid[idx] = fold_ids(t[idx], folds, random_state)
    lo, hi = np.nanmin(y), np.nanmax(y)
    out = np.full((len(y), len(arms)), np.nan)
    for j, arm in enumerate(arms):
        for f in range(folds):
            train = keep & (fid != f) & (t == arm)
            pred_rows = fid == f
            if train.sum() < 2:
                out[pred_rows, j] = y[keep & (t == arm)].mean() if (keep & (t == arm)).any() else 0
                continue
            model = HistGradientBoostingRegressor(
                max_iter=max_iter,
                learning_rate=learning_rate,
                max_leaf_nodes=max_leaf_nodes,
                min_samples_leaf=min(min_samples_leaf, max(1, int(train.sum()) // 10)),
                categorical_features=categorical,
                early_stopping=False,
                random_state=_seed([f, j] if random_state is None else [random_state, f, j]),
            )
            model.fit(x[train], y[train])
            out[pred_rows, j] = np.clip(model.predict(x[pred_rows]), lo, hi)
    return pd.DataFrame(out, columns=arms)


def aipw_scores(
    data: UpliftInput, outcome_col: str, mu: pd.DataFrame, propensity: pd.DataFrame
) -> pd.DataFrame:
    """AIPW score of every arm: ``mu_a(x) + 1{T=a} (Y - mu_a(x)) / e_a(x)``.

    The mean of ``score[a] - score[control]`` over any set of cases estimates
    the instrument's average effect there; it stays consistent when either
    the outcome model or the propensity model is right.

    Returns
    -------
    pandas.DataFrame
        One column per arm, named as in the treatment column (``none``, ``discount``,
        ...), rows aligned with ``data.cases``.
    """
    y = data.cases[outcome_col].to_numpy(float)
    t = data.cases[data.treatment_col].astype(str).to_numpy()
    out = {}
    for arm in data.arms:
        m = mu[arm].to_numpy()
        e = propensity[arm].to_numpy()
        out[arm] = m + (t == arm) * (y - m) / e
    return pd.DataFrame(out)


def aipw_effects(
    data: UpliftInput,
    scores: pd.DataFrame,
    *,
    mask: np.ndarray,
    outcome_col: str,
    by: list[str] | None = None,
    min_cases: int = 2,
    population: str = "rule",
) -> pd.DataFrame:
    """Doubly robust effect of each instrument (mean score difference) with a 95 % CI.

    Returns
    -------
    pandas.DataFrame
        Same columns as :func:`difference_in_means` (estimator "aipw").
    """
    by = list(by or [])
    t = data.cases[data.treatment_col].astype(str).to_numpy()
    frame = data.cases.loc[mask, by].copy() if by else pd.DataFrame(index=np.flatnonzero(mask))
    frame["_t"] = t[mask]
    sc = scores[mask].reset_index(drop=True)
    frame = frame.reset_index(drop=True)
    groups = frame.groupby(by, sort=True, observed=True) if by else [((), frame)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        where = ", ".join(f"{c}={v}" for c, v in zip(by, key, strict=True)) or "all cases"
        n0 = int((g["_t"] == data.control).sum())
        for inst in data.instruments:
            n1 = int((g["_t"] == inst).sum())
            status = "estimated"
            if n1 < min_cases:
                status = f"not estimable: {n1} cases with {inst} in {where} ({population})"
            elif n0 < min_cases:
                status = f"not estimable: {n0} control cases in {where} ({population})"
            eff = se = np.nan
            if status == "estimated":
                d = sc.loc[g.index, inst].to_numpy() - sc.loc[g.index, data.control].to_numpy()
                eff, se = d.mean(), d.std(ddof=1) / np.sqrt(len(d))
            row = _row(inst, outcome_col, "aipw", population, eff, se, n1, n0, status)
            rows.append({**dict(zip(by, key, strict=True)), **row})
    return pd.DataFrame(rows, columns=[*by, *EFFECT_COLUMNS])


def true_effects(
    data: UpliftInput, *, mask: np.ndarray, by: list[str] | None = None, revenue: bool = False
) -> pd.DataFrame:
    """Simulated data: the true average effect of each instrument over the cases in ``mask``.

    Returns
    -------
    pandas.DataFrame
        ``by`` columns, instrument, true_effect (mean of ``p[a] - p[control]``).
    """
    by = list(by or [])
    if data.truth is None:
        return pd.DataFrame(columns=[*by, "instrument", "true_effect"])
    pre = "revenue:" if revenue else ""
    tr = data.truth[mask].reset_index(drop=True)
    frame = data.cases.loc[mask, by].reset_index(drop=True) if by else pd.DataFrame(index=tr.index)
    for inst in data.instruments:
        frame[inst] = tr[pre + inst].to_numpy() - tr[pre + data.control].to_numpy()
    if by:
        wide = frame.groupby(by, observed=True)[data.instruments].mean().reset_index()
    else:
        wide = frame[data.instruments].mean().to_frame().T
    return wide.melt(id_vars=by, var_name="instrument", value_name="true_effect")


def cost_per_saved(effects: pd.DataFrame, costs: pd.Series) -> pd.Series:
    """Mean instrument cost over the retention effect (NaN where the effect is not positive)."""
    cost = effects["instrument"].map(costs).astype(float)
    eff = effects["effect"].astype(float)
    return (cost / eff).where(eff > 0)


def mean_costs(data: UpliftInput) -> pd.Series:
    """Mean recorded cost per case of each instrument (NaN without a cost column)."""
    if data.cost_col is None or data.cost_col not in data.cases.columns:
        return pd.Series(np.nan, index=data.instruments)
    g = data.cases.groupby(data.cases[data.treatment_col].astype(str))[data.cost_col].mean()
    return g.reindex(data.instruments)
