"""Renewal data aggregated by cohort: the shifted-beta-geometric (sBG) model.

Fader and Hardie (2007) model a cohort of contracts that renew once a period:
each customer has a constant churn probability ``theta`` per period, and
``theta`` varies across customers as Beta(alpha, beta). The fit uses
pymc-marketing's ``ShiftedBetaGeoModel`` (flat priors, maximum a posteriori =
maximum likelihood) on the customers behind the counts; the discounted
expected residual lifetime (DERL, Fader and Hardie 2010) of a customer who has
renewed ``n - 1`` times is ``(beta + n - 1) / (alpha + beta + n - 1) *
2F1(1, beta + n; alpha + beta + n; 1 / (1 + d))`` periods.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import betaln, hyp2f1

from retention_lab.errors import DataError
from retention_lab.units import DAYS_PER_MONTH

log = logging.getLogger(__name__)


def renewal_table(
    customers: pd.DataFrame,
    *,
    as_of,
    contract: str = "one-year",
    period_months: int = 12,
    cohort_col: str = "signup_date",
) -> pd.DataFrame:
    """Cohort renewal counts of one contract type: customers still active at each renewal.

    Cohorts are signup years; a customer counts as alive at period ``k`` if
    their tenure reached ``k * period_months``. Only periods every member of a
    cohort could have reached by ``as_of`` are listed.

    Returns
    -------
    pandas.DataFrame
        cohort, period (0, 1, ...), customers (alive at the period).
    """
    sub = customers[customers.get("contract", pd.Series(dtype=object)) == contract]
    if sub.empty or cohort_col not in sub.columns:
        return pd.DataFrame(columns=["cohort", "period", "customers"])
    as_of = pd.Timestamp(as_of)
    year = sub[cohort_col].dt.year
    rows = []
    for cohort, group in sub.groupby(year):
        youngest = (as_of - group[cohort_col].max()).days / DAYS_PER_MONTH
        periods = int(youngest // period_months)
        tenure = group["tenure_months"].to_numpy(float)
        churned = group["churned"].to_numpy(bool)
        for k in range(periods + 1):
            alive = ((tenure >= k * period_months) | ~churned).sum()
            rows.append((str(cohort), k, int(alive)))
    return pd.DataFrame(rows, columns=["cohort", "period", "customers"])


def _check_renewals(renewals: pd.DataFrame) -> None:
    missing = [c for c in ("cohort", "period", "customers") if c not in renewals.columns]
    if missing:
        raise DataError(file="renewals", column=missing[0], expected="cohort, period, customers")
    problems = []
    for cohort, g in renewals.sort_values("period").groupby("cohort"):
        n = g["customers"].to_numpy()
        if g["period"].iloc[0] != 0 or (np.diff(g["period"]) != 1).any() or (np.diff(n) > 0).any():
            problems.append(str(cohort))
    if problems:
        raise DataError(
            file="renewals",
            column="customers",
            rows=problems,
            expected="periods 0, 1, 2, ... per cohort with counts that never increase",
        )


def expand_renewals(renewals: pd.DataFrame) -> pd.DataFrame:
    """One row per customer behind cohort counts, in pymc-marketing's sBG layout.

    A customer lost between periods ``t - 1`` and ``t`` has ``recency = t``;
    customers still active after the last observed period ``P`` have
    ``recency = T = P + 1`` (censored).

    Returns
    -------
    pandas.DataFrame
        customer_id, cohort, recency, T.
    """
    _check_renewals(renewals)
    frames = []
    for cohort, g in renewals.sort_values("period").groupby("cohort"):
        n = g["customers"].to_numpy(int)
        last = len(n) - 1
        if last < 1:
            continue
        lost = n[:-1] - n[1:]
        recency = np.r_[np.repeat(np.arange(1, last + 1), lost), np.full(n[-1], last + 1)]
        frames.append(pd.DataFrame({"cohort": str(cohort), "recency": recency, "T": last + 1}))
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "customer_id", np.arange(len(out)))
    return out


@dataclass(frozen=True, eq=False)
class RenewalFit:
    """Fitted sBG parameters per cohort with projected retention and DERL."""

    params: pd.DataFrame
    model: object = field(repr=False)

    def projection(self, periods: int) -> pd.DataFrame:
        """Projected share of each cohort still active at periods 0..``periods``.

        Returns
        -------
        pandas.DataFrame
            cohort, period, survival (share of the cohort still active).
        """
        rows = []
        for r in self.params.itertuples():
            for t in range(periods + 1):
                s = np.exp(betaln(r.alpha, r.beta + t) - betaln(r.alpha, r.beta))
                rows.append((r.cohort, t, float(s)))
        return pd.DataFrame(rows, columns=["cohort", "period", "survival"])


def derl(alpha: float, beta: float, renewals: int, discount_rate: float) -> float:
    """Discounted expected residual lifetime (periods) after ``renewals`` renewals (FH 2010)."""
    n = renewals + 1
    ratio = (beta + n - 1) / (alpha + beta + n - 1)
    return float(ratio * hyp2f1(1.0, beta + n, alpha + beta + n, 1.0 / (1.0 + discount_rate)))


def fit_renewals(
    renewals: pd.DataFrame, *, discount_rate: float = 0.10, priors: str = "flat"
) -> RenewalFit:
    """Fit the sBG model per cohort to renewal counts (cohort, period, customers).

    ``discount_rate`` is per renewal period (annual for yearly contracts).

    Returns
    -------
    RenewalFit
        ``params``: cohort, alpha, beta, mean_churn (alpha / (alpha + beta)),
        periods (observed), active (customers after the last period), derl
        (of an active customer, periods).
    """
    from pymc_marketing.clv import ShiftedBetaGeoModel
    from pymc_marketing.prior import Prior

    data = expand_renewals(renewals)
    config = None
    if priors == "flat":
        config = {
            "alpha": Prior("HalfFlat", dims="cohort"),
            "beta": Prior("HalfFlat", dims="cohort"),
        }
    model = ShiftedBetaGeoModel(model_config=config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(data=data, method="map", progressbar=False)
    post = model.fit_result
    rows = []
    for cohort in model.cohorts:
        a = float(post["alpha"].sel(cohort=cohort).mean())
        b = float(post["beta"].sel(cohort=cohort).mean())
        sub = data[data["cohort"] == cohort]
        periods = int(sub["T"].iloc[0]) - 1
        active = int((sub["recency"] == sub["T"]).sum())
        rows.append(
            (cohort, a, b, a / (a + b), periods, active, derl(a, b, periods, discount_rate))
        )
    params = pd.DataFrame(
        rows, columns=["cohort", "alpha", "beta", "mean_churn", "periods", "active", "derl"]
    )
    log.info("sBG fitted to %d cohorts", len(params))
    return RenewalFit(params=params, model=model)
