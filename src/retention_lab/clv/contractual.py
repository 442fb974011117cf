"""Contractual lifetime value: monthly margin times the chance of still being a customer.

A subscriber pays on each monthly anniversary of signup while still a
customer. The value of a customer at tenure ``a`` months sums, over the
anniversaries ``n = floor(a) + 1, ..., floor(a) + H`` ahead, the monthly margin
times the probability of still being a customer then, conditional on the
tenure already survived, ``S(n) / S(a)``, discounted at the annual rate ``r``
by ``(1 + r) ** (-(n - a) / 12)``. A new customer pays at signup and at
``n = 1, ..., H - 1``.

The survival curve ``S(t | customer)`` comes from any *tenure model*: an object
with ``survival(customers, months) -> array`` (``months`` has one row per
customer). This module fits one with lifelines (a Cox model with a baseline
hazard per contract type, or a Weibull AFT) so the stage runs on its own, and
builds the true one from the simulator's parameters for checks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from retention_lab.clv.rfm import check_discount_rate
from retention_lab.clv.settings import DEFAULTS
from retention_lab.errors import DataError
from retention_lab.units import DAYS_PER_MONTH

log = logging.getLogger(__name__)

TAIL_MONTHS = 12.0
CHUNK = 50_000


class TenureModel(Protocol):
    """Anything that gives survival from signup at given tenures."""

    def survival(self, customers: pd.DataFrame, months: np.ndarray) -> np.ndarray:
        """``S(months[i, j] | customer i)``; ``months`` has shape (len(customers), k)."""
        ...


# ------------------------------------------------------------------ inputs
def monthly_margin(
    customers: pd.DataFrame,
    transactions: pd.DataFrame | None = None,
    *,
    margin: float = DEFAULTS.margin,
    fee_col: str = "monthly_fee",
) -> pd.Series:
    """Monthly margin per customer: ``margin`` times the monthly fee.

    Without a fee column, the customer's mean monthly spend from
    ``transactions`` is used (total amount / months of tenure, at least one).
    Returns a Series aligned with ``customers``; ``DataError`` names customers
    without a usable fee.
    """
    if fee_col in customers.columns:
        fee = customers[fee_col].astype(float)
    elif transactions is not None:
        total = transactions.groupby("customer_id")["amount"].sum()
        months = np.maximum(np.ceil(customers["tenure_months"].to_numpy(float)), 1.0)
        fee = customers["customer_id"].map(total).fillna(0.0) / months
    else:
        raise DataError(
            file="customers",
            column=fee_col,
            expected="a monthly fee (or a transactions table) for the contractual value",
        )
    bad = fee.isna() | (fee < 0)
    if bad.any():
        raise DataError(
            file="customers",
            column=fee_col,
            rows=customers.loc[bad, "customer_id"].astype(str).tolist(),
            expected="a monthly fee >= 0",
        )
    return (fee * margin).rename("monthly_margin")


def contractual_available(
    customers: pd.DataFrame | None, *, fee_col: str = "monthly_fee"
) -> str | None:
    """``None`` when the contractual value can be computed, else the reason it cannot."""
    if customers is None:
        return "the configuration gives no customers table, data.source is none"
    if "tenure_months" not in customers.columns or "churned" not in customers.columns:
        return "customers carry no tenure and churn flag"
    if fee_col not in customers.columns or customers[fee_col].isna().all():
        return "customers carry no monthly fee (not a subscription business)"
    if not customers["churned"].any():
        return "nobody has churned, so no survival model can be fitted"
    if customers["churned"].all():
        return "no customer is active"
    return None


# ------------------------------------------------------------ tenure models
def _design(
    customers: pd.DataFrame, covariates: list[str], levels: dict[str, list]
) -> pd.DataFrame:
    cols = {}
    for cov in covariates:
        if cov in levels:
            values = customers[cov].astype(str).to_numpy()
            for level in levels[cov][1:]:
                cols[f"{cov}={level}"] = (values == level).astype(float)
        else:
            cols[cov] = customers[cov].astype(float).to_numpy()
    return pd.DataFrame(cols, index=customers.index)


def _check_tenure(customers: pd.DataFrame, columns: list[str]) -> None:
    needed = ["customer_id", "tenure_months", "churned", *columns]
    missing = [c for c in needed if c not in customers.columns]
    if missing:
        raise DataError(file="customers", column=missing[0], expected=f"columns {needed}")
    bad = customers[["tenure_months", *columns]].isna().any(axis=1)
    if bad.any():
        raise DataError(
            file="customers",
            column=", ".join(["tenure_months", *columns]),
            rows=customers.loc[bad, "customer_id"].astype(str).tolist(),
            expected="no missing values in the survival model's columns",
        )


@dataclass(frozen=True, eq=False)
class LifelinesTenureModel:
    """A lifelines model of tenure (months) usable as a ``TenureModel``."""

    kind: str
    covariates: list[str]
    strata: list[str]
    levels: dict[str, list]
    model: object = field(repr=False)
    n_customers: int = 0
    means: pd.Series = field(default_factory=pd.Series, repr=False)
    _baseline: dict = field(default_factory=dict, repr=False)

    def _lp(self, customers: pd.DataFrame) -> np.ndarray:
        X = _design(customers, self.covariates, self.levels)
        if self.kind == "cox":
            beta = self.model.params_
            X = X[beta.index]
            mean = self.means[beta.index]  # lifelines centres the covariates
            return (X.to_numpy(float) - mean.to_numpy(float)) @ beta.to_numpy(float)
        params = self.model.params_["lambda_"]
        X = X.assign(Intercept=1.0)[params.index]
        return X.to_numpy(float) @ params.to_numpy(float)

    def survival(self, customers: pd.DataFrame, months: np.ndarray) -> np.ndarray:
        """``S(months | customer)`` from signup."""
        months = np.asarray(months, float)
        lp = self._lp(customers)
        if self.kind == "weibull_aft":
            rho = float(np.exp(self.model.params_.loc[("rho_", "Intercept")]))
            return np.exp(-((months / np.exp(lp)[:, None]) ** rho))
        keys = _stratum_keys(customers, self.strata)
        H = np.empty_like(months)
        for key in np.unique(keys):
            if key not in self._baseline:
                raise DataError(
                    file="customers",
                    column=", ".join(self.strata),
                    expected=f"a stratum the survival model was fitted on (unknown: {key})",
                )
            rows = keys == key
            H[rows] = _cumhaz(*self._baseline[key], months[rows])
        return np.exp(-H * np.exp(lp)[:, None])


def _stratum_keys(customers: pd.DataFrame, strata: list[str]) -> np.ndarray:
    if not strata:
        return np.full(len(customers), "all", dtype=object)
    parts = [customers[s].astype(str).to_numpy(object) for s in strata]
    keys = parts[0]
    for part in parts[1:]:
        keys = keys + "|" + part
    return keys


def _cumhaz(times: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Breslow step function at ``grid``; past the data a constant hazard (last 12 months)."""
    idx = np.searchsorted(times, grid, side="right") - 1
    h = np.where(idx >= 0, values[np.maximum(idx, 0)], 0.0)
    t_max = times[-1]
    back = np.searchsorted(times, t_max - TAIL_MONTHS, side="right") - 1
    start_t, start_v = (times[back], values[back]) if back >= 0 else (0.0, 0.0)
    rate = (values[-1] - start_v) / (t_max - start_t) if t_max > start_t else 0.0
    return np.where(grid > t_max, values[-1] + rate * (grid - t_max), h)


def fit_tenure_model(
    customers: pd.DataFrame,
    *,
    kind: str = "cox",
    covariates: Sequence[str] = tuple(DEFAULTS.covariates),
    strata: Sequence[str] = tuple(DEFAULTS.strata),
    max_customers: int | None = DEFAULTS.max_survival_customers,
    random_state: int | None = None,
) -> LifelinesTenureModel:
    """Fit a lifelines model of tenure in months (churn = event, active = censored).

    ``kind="cox"``: ``CoxPHFitter`` with a separate Breslow baseline per
    ``strata`` level (contract renewal spikes need no shape assumption);
    ``"weibull_aft"``: ``WeibullAFTFitter`` with the strata as covariates.
    Covariates missing from ``customers`` are left out. A random sample of
    ``max_customers`` is fitted.
    """
    from lifelines import WeibullAFTFitter

    from retention_lab.cox import CoxPHFitter

    covariates = [c for c in covariates if c in customers.columns]
    strata = [s for s in strata if s in customers.columns]
    if kind == "weibull_aft":
        covariates, strata = covariates + strata, []
    elif kind != "cox":
        raise ValueError(f"kind must be 'cox' or 'weibull_aft', got {kind!r}")
    _check_tenure(customers, covariates + strata)
    sample = customers
    if max_customers is not None and len(customers) > max_customers:
        sample = customers.sample(n=max_customers, random_state=random_state)
    levels = {}
    for cov in covariates:
        if not pd.api.types.is_numeric_dtype(sample[cov]):
            counts = sample[cov].astype(str).value_counts()
            levels[cov] = [counts.index[0], *sorted(counts.index[1:])]  # reference: most common
    X = _design(sample, covariates, levels)
    X = X.loc[:, X.std() > 0]
    df = X.assign(
        tenure_months=np.maximum(sample["tenure_months"].to_numpy(float), 1e-3),
        churned=sample["churned"].to_numpy(bool),
    )
    baseline = {}
    if kind == "cox":
        df = df.assign(_stratum=_stratum_keys(sample, strata))
        model = CoxPHFitter(penalizer=1e-4).fit(
            df, "tenure_months", "churned", strata=["_stratum"] if strata else None
        )
        base = model.baseline_cumulative_hazard_
        for col in base.columns:
            key = col[0] if isinstance(col, tuple) else col
            key = "all" if not strata else str(key)
            series = base[col].dropna()
            baseline[key] = (series.index.to_numpy(float), series.to_numpy(float))
    else:
        model = WeibullAFTFitter(penalizer=1e-4).fit(df, "tenure_months", "churned")
    log.info("%s tenure model fitted on %d customers", kind, len(sample))
    return LifelinesTenureModel(
        kind=kind,
        covariates=covariates,
        strata=strata,
        levels=levels,
        model=model,
        n_customers=len(sample),
        means=X.mean(),
        _baseline=baseline,
    )


@dataclass(frozen=True, eq=False)
class TrueTenureModel:
    """The simulator's true survival (baseline weekly hazard per contract times exp(x beta)).

    Problem events raise the hazard for a while; they are not part of this
    curve, so it is the survival of a customer without problems.
    """

    weekly_hazard: dict[str, np.ndarray]
    terms: pd.DataFrame

    def linear_predictor(self, customers: pd.DataFrame) -> np.ndarray:
        """``x . beta`` from the true log hazard ratios (numeric terms centred)."""
        xb = np.zeros(len(customers))
        for row in self.terms.itertuples():
            if row.level is None or (isinstance(row.level, float) and np.isnan(row.level)):
                scale = float(re.match(r"[\d.]+", str(row.unit)).group()) if row.unit else 1.0
                xb += (
                    row.log_hazard_ratio
                    * (customers[row.covariate].astype(float) - row.centre)
                    / scale
                )
            else:
                xb += row.log_hazard_ratio * (customers[row.covariate].astype(str) == row.level)
        return np.asarray(xb, float)

    def survival(self, customers: pd.DataFrame, months: np.ndarray) -> np.ndarray:
        """``S(months | customer)`` from signup, hazard constant within each tenure week."""
        weeks = np.asarray(months, float) * DAYS_PER_MONTH / 7.0
        H = np.empty_like(weeks)
        contract = customers["contract"].astype(str).to_numpy()
        for key in np.unique(contract):
            rows = contract == key
            H[rows] = _weekly_cumhaz(self.weekly_hazard[key], weeks[rows])
        return np.exp(-H * np.exp(self.linear_predictor(customers))[:, None])


def _weekly_cumhaz(hazard: np.ndarray, weeks: np.ndarray) -> np.ndarray:
    cum = np.r_[0.0, np.cumsum(hazard)]
    n = len(hazard)
    tail = hazard[-52:].mean()
    w = np.floor(np.minimum(weeks, n)).astype(int)
    inside = cum[w] + hazard[np.minimum(w, n - 1)] * (np.minimum(weeks, n) - w)
    return np.where(weeks > n, cum[-1] + tail * (weeks - n), inside)


def true_tenure_model(truth) -> TrueTenureModel:
    """The true tenure model from a simulator ``GroundTruth``."""
    base = truth.baseline_hazard.sort_values(["contract", "tenure_week"])
    hazards = {k: g["weekly_hazard"].to_numpy(float) for k, g in base.groupby("contract")}
    return TrueTenureModel(weekly_hazard=hazards, terms=truth.log_hazard_ratios)


# ------------------------------------------------------------------ values
def _discount(months_ahead: np.ndarray, rate: float) -> np.ndarray:
    return (1.0 + rate) ** (-np.asarray(months_ahead, float) / 12.0)


def residual_values(
    customers: pd.DataFrame,
    model: TenureModel,
    *,
    margin: pd.Series | np.ndarray,
    discount_rate: float = DEFAULTS.discount_rate,
    horizon_months: int = DEFAULTS.horizon_months,
    risk_horizon_months: float = DEFAULTS.risk_horizon_months,
) -> pd.DataFrame:
    """Discounted expected residual value of each customer given the tenure survived.

    Returns
    -------
    pandas.DataFrame
        customer_id, tenure_months, monthly_margin, residual_value (discounted
        margin over the horizon), expected_months (expected paid months in the
        horizon), p_churn_risk (probability of leaving within
        ``risk_horizon_months``).
    """
    rate = check_discount_rate(discount_rate)
    margin = np.asarray(margin, float)
    a = customers["tenure_months"].to_numpy(float)
    n = np.floor(a)[:, None] + np.arange(1, horizon_months + 1)[None, :]
    out_value = np.empty(len(customers))
    out_months = np.empty(len(customers))
    out_risk = np.empty(len(customers))
    for lo in range(0, len(customers), CHUNK):
        part = customers.iloc[lo : lo + CHUNK]
        sl = slice(lo, lo + len(part))
        grid = np.column_stack([a[sl], a[sl] + risk_horizon_months, n[sl]])
        S = model.survival(part, grid)
        s_now = np.maximum(S[:, :1], 1e-300)
        cond = S[:, 2:] / s_now
        out_value[sl] = (cond * _discount(n[sl] - a[sl, None], rate)).sum(axis=1) * margin[sl]
        out_months[sl] = cond.sum(axis=1)
        out_risk[sl] = 1.0 - S[:, 1] / s_now[:, 0]
    return pd.DataFrame(
        {
            "customer_id": customers["customer_id"].to_numpy(),
            "tenure_months": a,
            "monthly_margin": margin,
            "residual_value": out_value,
            "expected_months": out_months,
            "p_churn_risk": np.clip(out_risk, 0.0, 1.0),
        }
    )


@dataclass(frozen=True)
class NewCustomerValue:
    """Value of a new customer by group and the payback curves against acquisition cost."""

    by_group: pd.DataFrame
    payback_curves: pd.DataFrame


def new_customer_values(
    customers: pd.DataFrame,
    model: TenureModel,
    *,
    margin: pd.Series | np.ndarray,
    by: list[str] = ("segment", "channel"),
    curve_by: str = "channel",
    discount_rate: float = DEFAULTS.discount_rate,
    horizon_months: int = DEFAULTS.horizon_months,
    acquisition_col: str = "acquisition_cost",
) -> NewCustomerValue:
    """Expected discounted margin of a customer from signup, and when it repays acquisition.

    Each customer's covariates are scored as if just signed up (tenure 0), so a
    group's value is that of a new customer with the group's mix.

    Returns
    -------
    NewCustomerValue
        ``by_group``: the ``by`` columns, customers, value (discounted margin over
        the horizon), acquisition_cost (mean), net_value, payback_month (first
        month whose cumulative discounted margin reaches the acquisition cost;
        NaN if not within the horizon). ``payback_curves``: ``curve_by``, month,
        cumulative_margin, acquisition_cost, net (cumulative margin - cost).
    """
    rate = check_discount_rate(discount_rate)
    margin = np.asarray(margin, float)
    by = [c for c in by if c in customers.columns] or ["all"]
    if curve_by not in customers.columns:
        curve_by = by[0]
    customers = customers.assign(all="all") if "all" in (*by, curve_by) else customers
    months = np.arange(horizon_months)
    disc = _discount(months, rate)
    cum = np.empty((len(customers), horizon_months))
    for lo in range(0, len(customers), CHUNK):
        part = customers.iloc[lo : lo + CHUNK]
        S = model.survival(part, np.broadcast_to(months.astype(float), (len(part), horizon_months)))
        cum[lo : lo + len(part)] = np.cumsum(S * disc, axis=1) * margin[lo : lo + len(part), None]
    cost = (
        customers[acquisition_col].astype(float).to_numpy()
        if acquisition_col in customers.columns
        else np.full(len(customers), np.nan)  # unknown: no payback month
    )
    cum_cols = [f"m{k}" for k in range(horizon_months)]
    wide = pd.concat(
        [
            customers[list(dict.fromkeys([*by, curve_by]))].reset_index(drop=True),
            pd.DataFrame(cum, columns=cum_cols),
        ],
        axis=1,
    ).assign(acquisition_cost=cost)

    def payback(row_cum: np.ndarray, c: float) -> float:
        hit = np.flatnonzero(row_cum >= c)
        return float(hit[0]) if hit.size else float("nan")

    grouped = wide.groupby(by, observed=True)
    means = grouped[[*cum_cols, "acquisition_cost"]].mean()
    by_group = pd.DataFrame(
        {
            "customers": grouped.size(),
            "value": means[cum_cols[-1]],
            "acquisition_cost": means["acquisition_cost"],
        }
    )
    by_group["net_value"] = by_group["value"] - by_group["acquisition_cost"]
    by_group["payback_month"] = [
        payback(means.loc[idx, cum_cols].to_numpy(float), means.loc[idx, "acquisition_cost"])
        for idx in means.index
    ]
    by_group = by_group.reset_index()
    curves = wide.groupby(curve_by, observed=True)[[*cum_cols, "acquisition_cost"]].mean()
    long = curves[cum_cols].stack().rename("cumulative_margin").reset_index()
    long["month"] = long["level_1"].str[1:].astype(int)
    long = long.drop(columns="level_1")
    long["acquisition_cost"] = long[curve_by].map(curves["acquisition_cost"])
    long["net"] = long["cumulative_margin"] - long["acquisition_cost"]
    return NewCustomerValue(by_group=by_group, payback_curves=long)


def value_at_risk(
    values: pd.DataFrame,
    *,
    scores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Value at risk = residual value times the probability of churning within the risk horizon.

    The churn probability is the survival stage's ``p_churn_horizon`` where
    ``scores`` (customer_id, p_churn_horizon) has the customer, else this
    stage's own ``p_churn_risk``.

    Returns
    -------
    pandas.DataFrame
        ``values`` plus p_churn (used), churn_source ("survival stage" or
        "clv model"), value_at_risk.
    """
    out = values.copy()
    p = out["p_churn_risk"].to_numpy(float)
    source = np.full(len(out), "clv model", dtype=object)
    if scores is not None and len(scores):
        mapped = (
            out["customer_id"]
            .astype(str)
            .map(
                scores.assign(customer_id=scores["customer_id"].astype(str))
                .drop_duplicates("customer_id")
                .set_index("customer_id")["p_churn_horizon"]
            )
        )
        have = mapped.notna().to_numpy()
        p = np.where(have, mapped.to_numpy(float), p)
        source[have] = "survival stage"
    out["p_churn"] = p
    out["churn_source"] = source
    out["value_at_risk"] = out["residual_value"] * p
    return out
