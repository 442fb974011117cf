"""Per-customer scores for the plan: churn risk within a horizon, given the tenure survived."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from retention_lab.errors import DataError, StatisticalWarning
from retention_lab.survival._prep import (
    DURATION,
    EVENT,
    check_customers,
    design_matrix,
    stratum_keys,
)
from retention_lab.survival.regression import CoxResult
from retention_lab.survival.settings import DEFAULTS

TAIL_MONTHS = 12.0


def baseline_cumulative_hazard(cox: CoxResult, grid: np.ndarray) -> dict[str, np.ndarray]:
    """Baseline cumulative hazard per stratum on ``grid`` (months), extrapolated past the data.

    Within the observed tenure the Breslow step function of the fitted model is
    used. Past a stratum's longest observed tenure the hazard is held at its
    average over the last ``TAIL_MONTHS`` months (a constant-hazard tail), so
    long-tenured customers never get a zero risk just because nobody has been a
    customer longer.
    """
    lookup = _BaselineLookup(cox)
    return {
        key: _evaluate(times, values, np.asarray(grid, float))
        for key, (times, values) in lookup.curves.items()
    }


def linear_predictor(cox: CoxResult, customers: pd.DataFrame) -> np.ndarray:
    """Centred linear predictor ``(x - mean) . beta`` with the fitted model's coding.

    A categorical level the model never saw (e.g. too rare to be in the fitted
    sample) is scored as the reference level, with a ``StatisticalWarning``.
    """
    design = cox.design
    levels = {
        cov: list(g["level"]) + [design.references[cov]]
        for cov, g in design.terms[design.terms["kind"] == "categorical"].groupby("covariate")
    }
    covariates = list(dict.fromkeys(design.terms["covariate"]))
    for cov, allowed in levels.items():
        unknown = ~customers[cov].astype(str).isin(allowed)
        if unknown.any():
            warnings.warn(
                f"{int(unknown.sum()):,} customers have a {cov} level the model was not fitted on "
                f"({sorted(customers.loc[unknown, cov].astype(str).unique())[:5]}); they are "
                f"scored as the reference level {design.references[cov]!r}",
                StatisticalWarning,
                stacklevel=3,
            )
    X = design_matrix(customers, covariates, references=design.references, levels=levels).X
    beta = cox.model.params_
    X = X[beta.index]
    return (X.to_numpy(float) - cox.means[beta.index].to_numpy(float)) @ beta.to_numpy(float)


def survival_curves(cox: CoxResult, customers: pd.DataFrame, times: np.ndarray) -> np.ndarray:
    """Predicted survival from signup, ``S(t | x) = exp(-H0_s(t) exp(lp))``, (customers, times)."""
    lookup = _BaselineLookup(cox)
    lp = linear_predictor(cox, customers)
    keys = lookup.keys(customers, cox.strata)
    grid = np.broadcast_to(np.asarray(times, float)[None, :], (len(customers), len(times)))
    return np.exp(-lookup.at(keys, grid) * np.exp(lp)[:, None])


def score_active(
    cox: CoxResult,
    customers: pd.DataFrame,
    *,
    horizon_months: float = DEFAULTS.score_horizon_months,
    step_months: float = 0.25,
    chunk: int = 100_000,
) -> pd.DataFrame:
    """Churn risk of every active customer within ``horizon_months`` from now.

    Conditional on the tenure ``a`` already survived: ``p_churn_horizon =
    1 - S(a + h | x) / S(a | x)``; ``expected_remaining_months`` is the expected
    time still retained within the horizon, the integral of ``S(a + u | x) / S(a | x)``
    over ``u`` in ``[0, h]`` (trapezoid rule on ``step_months``). An empty frame is
    returned when nobody is active.

    Returns
    -------
    pandas.DataFrame
        ``customer_id``, ``tenure_months``, ``horizon_months``, ``p_churn_horizon``,
        ``expected_remaining_months``.
    """
    check_customers(customers, columns=list(cox.strata))
    active = customers[~customers[EVENT].to_numpy(bool)]
    cols = [
        "customer_id",
        "tenure_months",
        "horizon_months",
        "p_churn_horizon",
        "expected_remaining_months",
    ]
    if active.empty:
        return pd.DataFrame(columns=cols)
    if horizon_months <= 0:
        raise ValueError(f"horizon_months must be positive, got {horizon_months}")
    steps = max(int(np.ceil(horizon_months / step_months)), 1)
    offsets = np.linspace(0.0, horizon_months, steps + 1)
    frames = []
    base = _BaselineLookup(cox)
    for lo in range(0, len(active), chunk):
        part = active.iloc[lo : lo + chunk]
        lp = linear_predictor(cox, part)
        a = part[DURATION].to_numpy(float)
        H = base.at(
            base.keys(part, cox.strata), a[:, None] + offsets[None, :]
        )  # (customers, steps + 1)
        cond = np.exp(-(H - H[:, :1]) * np.exp(lp)[:, None])
        remaining = np.trapezoid(cond, offsets, axis=1)
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": part["customer_id"].to_numpy(),
                    "tenure_months": a,
                    "horizon_months": float(horizon_months),
                    "p_churn_horizon": 1.0 - cond[:, -1],
                    "expected_remaining_months": remaining,
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    beyond = (active[DURATION] > cox.model.baseline_cumulative_hazard_.index.max()).mean()
    if beyond > 0.05:
        warnings.warn(
            f"{beyond:.0%} of active customers are past the longest tenure the model was "
            "fitted on; their risk uses a constant-hazard tail",
            StatisticalWarning,
            stacklevel=2,
        )
    return out


class _BaselineLookup:
    """Evaluate the stratum baseline cumulative hazards at arbitrary times (with the tail)."""

    def __init__(self, cox: CoxResult):
        base = cox.model.baseline_cumulative_hazard_
        self.curves = {}
        for col in base.columns:
            key = "|".join(map(str, col)) if isinstance(col, tuple) else str(col)
            self.curves[key] = (base.index.to_numpy(float), base[col].to_numpy(float))
        self.default = next(iter(self.curves))

    def keys(self, customers: pd.DataFrame, strata) -> np.ndarray:
        if not strata:
            return np.full(len(customers), self.default)
        return stratum_keys(customers, strata)

    def at(self, keys: np.ndarray, times: np.ndarray) -> np.ndarray:
        out = np.empty_like(times, dtype=float)
        unknown = sorted(set(keys) - set(self.curves))
        if unknown:
            raise DataError(
                file="customers",
                column="strata",
                expected=f"a stratum the model was fitted on (unknown: {unknown})",
            )
        for key in np.unique(keys):
            rows = keys == key
            out[rows] = _evaluate(*self.curves[key], times[rows].ravel()).reshape(times[rows].shape)
        return out


def _evaluate(times: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(times, grid, side="right") - 1
    h = np.where(idx >= 0, values[np.maximum(idx, 0)], 0.0)
    t_max = times[-1]
    back = np.searchsorted(times, t_max - TAIL_MONTHS, side="right") - 1
    span = t_max - (times[back] if back >= 0 else 0.0)
    rate = (values[-1] - (values[back] if back >= 0 else 0.0)) / span if span > 0 else 0.0
    return np.where(grid > t_max, values[-1] + rate * (grid - t_max), h)
