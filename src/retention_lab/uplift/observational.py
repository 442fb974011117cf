"""Observational (staff- or rule-assigned) cases: adjusted estimates side by side and diagnostics.

Where nobody randomised, an effect can only be estimated by adjusting for the
covariates given, and it is only as good as they are: it removes the
confounding they carry and none other. Beside the doubly robust (AIPW)
estimate of :mod:`~retention_lab.uplift.effects` this module gives

- inverse-probability weighting (Hajek: weights normalised within each arm),
  with an influence-function standard error that treats the cross-fitted
  propensity as known;
- standardisation (the outcome model's mean prediction under each arm, the
  g-formula); its spread of predictions is not an interval (the models'
  fitting error is not in it), so it gets no standard error;
- per instrument: the effective sample size of the weights (Kish), the
  largest covariate imbalance before and after weighting, the cases trimmed
  for lack of overlap, and the E-value of the doubly robust estimate
  (VanderWeele and Ding 2017): how strongly an unmeasured confounder would
  have to be tied to both the instrument and the outcome (risk-ratio scale)
  to explain the estimate away, and its interval's bound closest to no effect.

Continuous outcomes get the E-value of the standardised difference
``d = effect / sd(outcome)`` through ``RR = exp(0.91 d)`` (VanderWeele and
Ding's approximation).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from retention_lab.uplift.cases import UpliftInput
from retention_lab.uplift.effects import EFFECT_COLUMNS, _row

DIAGNOSTIC_COLUMNS = [
    "instrument",
    "outcome",
    "n_treated",
    "n_control",
    "trimmed",
    "trim_bounds",
    "ess_treated",
    "ess_control",
    "max_smd_before",
    "max_smd_after",
    "e_value",
    "e_value_ci",
]
# the report's table: the trim bounds are stated in its text, the arm sizes in the effects table
TABLE_COLUMNS = ["instrument", "trimmed", "ess_treated", "ess_control", "max_smd_before",
                 "max_smd_after", "e_value", "e_value_ci"]  # fmt: skip


def adjusted_effects(
    data: UpliftInput,
    outcome_col: str,
    mu: pd.DataFrame,
    propensity: pd.DataFrame,
    *,
    mask: np.ndarray,
    population: str = "rule",
) -> pd.DataFrame:
    """IPW and standardisation estimates of each instrument's effect over the cases in ``mask``.

    Parameters
    ----------
    mu
        Cross-fitted outcome predictions, one column per arm
        (:func:`~retention_lab.uplift.outcome_predictions`).
    propensity
        Arm propensities, one column per arm (:func:`~retention_lab.uplift.fit_propensity`).

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`~retention_lab.uplift.difference_in_means`
        (instrument, outcome, estimator "ipw" or "standardisation",
        population, effect, std_error, lower, upper, n_treated, n_control,
        status); standardisation has no standard error.
    """
    y = data.cases[outcome_col].to_numpy(float)[mask]
    t = data.cases[data.treatment_col].astype(str).to_numpy()[mask]
    n0 = int((t == data.control).sum())
    rows = []
    for inst in data.instruments:
        n1 = int((t == inst).sum())
        status = "estimated" if min(n1, n0) >= 2 else f"not estimable: {min(n1, n0)} cases"
        eff = se = np.nan
        if status == "estimated":
            influence = []
            for arm in (inst, data.control):
                w = (t == arm) / propensity[arm].to_numpy(float)[mask]
                mean = (w * y).sum() / w.sum()
                influence.append((mean, w * (y - mean) / w.mean()))
            (m1, f1), (m0, f0) = influence
            eff, se = m1 - m0, np.std(f1 - f0, ddof=1) / np.sqrt(len(y))
        rows.append(_row(inst, outcome_col, "ipw", population, eff, se, n1, n0, status))
        std = np.nan
        if status == "estimated":
            std = float(np.mean(mu[inst].to_numpy()[mask] - mu[data.control].to_numpy()[mask]))
        rows.append(
            _row(inst, outcome_col, "standardisation", population, std, np.nan, n1, n0, status)
        )
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def kish_ess(weights: np.ndarray) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` of a set of weights."""
    weights = np.asarray(weights, float)
    return float(weights.sum() ** 2 / (weights**2).sum()) if weights.size else 0.0


def e_value(ratio: float) -> float:
    """E-value of a risk ratio: ``RR + sqrt(RR (RR - 1))`` after turning RR below 1 over."""
    if not np.isfinite(ratio) or ratio <= 0:
        return float("nan")
    ratio = max(ratio, 1 / ratio)
    return float(ratio + np.sqrt(ratio * (ratio - 1)))


def _risk_ratio(effect: float, baseline: float, sd: float, binary: bool) -> float:
    if binary:
        return (baseline + effect) / baseline if baseline > 0 else float("nan")
    return float(np.exp(0.91 * effect / sd)) if sd > 0 else float("nan")


def diagnostics(
    data: UpliftInput,
    outcome_col: str,
    ate: pd.DataFrame,
    scores: pd.DataFrame,
    propensity: pd.DataFrame,
    balance: pd.DataFrame,
    *,
    mask: np.ndarray,
    trim_bounds: tuple[float, float],
    binary: bool,
) -> pd.DataFrame:
    """Overlap, weights, balance and sensitivity of each instrument's doubly robust estimate.

    ``mask`` is the observational cases kept (common support); ``ate`` holds
    the doubly robust rows (estimator "aipw", population "rule").

    Returns
    -------
    pandas.DataFrame
        instrument, outcome, n_treated, n_control, trimmed (observational
        cases of the pair outside common support), trim_bounds (text),
        ess_treated, ess_control (Kish effective sample size of the IPW
        weights), max_smd_before, max_smd_after (largest absolute
        standardised mean difference of a covariate before and after
        weighting), e_value, e_value_ci (for the interval's bound closest to
        no effect; 1 when the interval includes no effect).
    """
    rule = ~data.randomised()
    t = data.cases[data.treatment_col].astype(str).to_numpy()
    y = data.cases[outcome_col].to_numpy(float)
    trimmed = propensity["trimmed"].to_numpy()
    dr = ate[(ate["estimator"] == "aipw") & (ate["population"] == "rule")]
    dr = dr[dr["outcome"] == outcome_col].set_index("instrument")
    baseline = float(scores.loc[mask, data.control].mean()) if mask.any() else np.nan
    sd = float(np.std(y[mask], ddof=1)) if mask.sum() > 1 else np.nan
    rows = []
    for inst in data.instruments:
        pair = rule & np.isin(t, [inst, data.control])
        kept = pair & mask
        w1 = 1 / propensity[inst].to_numpy(float)[kept & (t == inst)]
        w0 = 1 / propensity[data.control].to_numpy(float)[kept & (t == data.control)]
        smd = balance[balance["instrument"] == inst]
        eff = dr["effect"].get(inst, np.nan)
        lo, hi = dr["lower"].get(inst, np.nan), dr["upper"].get(inst, np.nan)
        near = 0.0 if lo <= 0 <= hi else (lo if eff > 0 else hi)
        rows.append(
            {
                "instrument": inst,
                "outcome": outcome_col,
                "n_treated": int(w1.size),
                "n_control": int(w0.size),
                "trimmed": int((pair & trimmed).sum()),
                "trim_bounds": f"{trim_bounds[0]:g} to {trim_bounds[1]:g}",
                "ess_treated": kish_ess(w1),
                "ess_control": kish_ess(w0),
                "max_smd_before": float(smd["smd_rule"].abs().max()),
                "max_smd_after": float(smd["smd_rule_weighted"].abs().max()),
                "e_value": e_value(_risk_ratio(eff, baseline, sd, binary)),
                "e_value_ci": e_value(_risk_ratio(near, baseline, sd, binary)),
            }
        )
    return pd.DataFrame(rows, columns=DIAGNOSTIC_COLUMNS)


def findings(data_features: list[str], diag: pd.DataFrame, ate: pd.DataFrame, unit) -> list[str]:
    """Sentences on the observational estimates: what they rest on and how fragile they are.

    ``unit`` formats an effect in the outcome's unit (for example ``+3.1 pp``).
    """
    if diag.empty:
        return []
    shown = ", ".join(data_features[:8]) + (" ..." if len(data_features) > 8 else "")
    out = [
        "The estimates for the cases where staff or a rule chose the instrument rest on the "
        f"covariates given ({shown}): they remove the confounding these carry and none other. "
        "An unmeasured reason for the choice that also moves the outcome would bias them."
    ]
    dr = ate[(ate["estimator"] == "aipw") & (ate["population"] == "rule")]
    for r in diag.itertuples():
        row = dr[(dr["instrument"] == r.instrument) & (dr["outcome"] == r.outcome)]
        if row.empty or not np.isfinite(row["effect"].iloc[0]):
            continue
        e = row.iloc[0]
        out.append(
            f"{r.instrument}: doubly robust {unit(e['effect'])} (95% CI {unit(e['lower'])} to "
            f"{unit(e['upper'])}); {r.trimmed:,} cases outside the propensity bounds "
            f"{r.trim_bounds} were trimmed; the weights leave an effective {r.ess_treated:,.0f} "
            f"treated and {r.ess_control:,.0f} control cases; the largest covariate imbalance "
            f"falls from {r.max_smd_before:.2f} to {r.max_smd_after:.2f} standard deviations. "
            f"E-value {r.e_value:.2f} ({r.e_value_ci:.2f} for the interval): an unmeasured "
            f"confounder tied to both the instrument and the outcome by a risk ratio of "
            f"{r.e_value:.2f} could explain the estimate away."
        )
    return out
