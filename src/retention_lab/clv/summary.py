"""The whole CLV stage: ``analyse`` -> ``ClvSummary``, ``findings``, the per-customer values."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from retention_lab import formatting as fmt
from retention_lab import progress
from retention_lab.clv import contractual as ct
from retention_lab.clv import renewals as rn
from retention_lab.clv import transactional as tr
from retention_lab.clv.rfm import (
    calibration_holdout,
    check_discount_rate,
    rfm_summary,
    validate_transactions,
)
from retention_lab.clv.settings import DEFAULTS
from retention_lab.units import DAYS_PER_MONTH

log = logging.getLogger(__name__)

NO_SEGMENT = "all"  # the segment of every customer when the customers table has none
VALUE_COLUMNS = [
    "customer_id",
    "segment",
    "active",
    "tenure_months",
    "monthly_margin",
    "residual_value",
    "expected_months",
    "p_churn",
    "churn_source",
    "value_at_risk",
    "p_alive",
    "expected_purchases",
    "expected_spend",
    "transactional_value",
    "value",
]


CONTRACTUAL_VALUE_COLUMNS = [
    "customer_id", "segment", "tenure_months", "monthly_margin", "residual_value",
    "expected_months", "p_churn_risk", "p_churn", "churn_source", "value_at_risk",
]  # fmt: skip
BY_SEGMENT_COLUMNS = [
    "segment", "customers", "mean_value", "total_value", "mean_p_churn", "value_at_risk",
    "share_at_risk",
]  # fmt: skip
NEW_CUSTOMER_COLUMNS = [
    "segment", "channel", "customers", "value", "acquisition_cost", "net_value", "payback_month",
]  # fmt: skip
PAYBACK_COLUMNS = ["channel", "month", "cumulative_margin", "acquisition_cost", "net"]
TRUTH_COLUMNS = ["group", "customers", "fitted", "true", "ratio"]
RENEWAL_FIT_COLUMNS = ["cohort", "alpha", "beta", "mean_churn", "periods", "active", "derl"]
RENEWAL_COLUMNS = list(rn.RENEWAL_COLUMNS)
RENEWAL_CURVE_COLUMNS = [
    "cohort", "period", "survival", "lower", "upper", "observed", "retention",
    "observed_retention",
]  # fmt: skip
PARAMETER_COLUMNS = ["model", "parameter", "value", "fitted_on"]
HOLDOUT_COLUMNS = ["frequency", "customers", "actual", "predicted", "model"]
TRANSACTIONAL_VALUE_COLUMNS = [
    "customer_id", "frequency", "recency", "T", "monetary_value", "p_alive",
    "expected_purchases", "expected_spend", "clv",
]  # fmt: skip


def _empty(columns: list[str]):
    return field(default_factory=lambda: pd.DataFrame(columns=columns))


@dataclass(frozen=True, eq=False)
class ContractualValue:
    """Residual value, value at risk, new-customer value and payback (subscription data)."""

    available: bool
    reason: str = ""
    values: pd.DataFrame = _empty(CONTRACTUAL_VALUE_COLUMNS)
    by_segment: pd.DataFrame = _empty(BY_SEGMENT_COLUMNS)
    new_customers: pd.DataFrame = _empty(NEW_CUSTOMER_COLUMNS)
    payback_curves: pd.DataFrame = _empty(PAYBACK_COLUMNS)
    truth_check: pd.DataFrame = _empty(TRUTH_COLUMNS)
    tenure_model: object = field(default=None, repr=False)
    churn_source: str = ""


@dataclass(frozen=True, eq=False)
class RenewalValue:
    """The sBG model on cohorts of renewing contracts: parameters with intervals, curves, DERL.

    ``table`` holds the counts fitted (cohort, period, customers), ``params``
    the point estimates per cohort, ``estimates`` every quantity with its
    standard error and 95 % interval, ``curves`` the observed and projected
    share still active (see :meth:`RenewalFit.projection`). ``discount_rate``
    is per period of ``period_months``; DERL is in periods.
    """

    available: bool
    reason: str = ""
    source: str = ""
    period_months: float = 12.0
    discount_rate: float = 0.10
    table: pd.DataFrame = _empty(RENEWAL_COLUMNS)
    params: pd.DataFrame = _empty(RENEWAL_FIT_COLUMNS)
    estimates: pd.DataFrame = _empty(rn.ESTIMATE_COLUMNS)
    curves: pd.DataFrame = _empty(RENEWAL_CURVE_COLUMNS)
    fit: object = field(default=None, repr=False)

    @property
    def unit(self) -> str:
        """The renewal period in words, plural: years, months, quarters or periods of n months."""
        return _PERIOD_NAMES.get(
            self.period_months, ("", f"periods of {self.period_months:g} months")
        )[1]

    @property
    def period_name(self) -> str:
        """The renewal period in words, singular: year, month, quarter or period."""
        return _PERIOD_NAMES.get(self.period_months, ("period", ""))[0]


_PERIOD_NAMES = {12.0: ("year", "years"), 6.0: ("half-year", "half-years"),
                 3.0: ("quarter", "quarters"), 1.0: ("month", "months")}  # fmt: skip


@dataclass(frozen=True, eq=False)
class TransactionalValue:
    """BG/NBD or Pareto/NBD with Gamma-Gamma on a purchase log (non-contractual setting)."""

    available: bool
    reason: str = ""
    parameters: pd.DataFrame = _empty(PARAMETER_COLUMNS)
    holdout: pd.DataFrame = _empty(HOLDOUT_COLUMNS)
    values: pd.DataFrame = _empty(TRANSACTIONAL_VALUE_COLUMNS)
    calibration_end: str = ""
    models: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True, eq=False)
class ClvSummary:
    """Headline numbers and tables of the CLV stage."""

    contractual: ContractualValue
    transactional: TransactionalValue
    values: pd.DataFrame
    discount_rate: float
    horizon_months: int
    margin: float
    seconds: float = 0.0
    renewals: RenewalValue = field(default_factory=lambda: RenewalValue(available=False))

    def to_metrics(self) -> dict[str, float]:
        """Headline numbers for MLflow and ``results.json``."""
        m: dict[str, float] = {
            "discount_rate": self.discount_rate,
            "horizon_months": float(self.horizon_months),
        }
        if len(self.values):
            m["customers_valued"] = float(len(self.values))
            m["total_value"] = float(self.values["value"].sum())
        c = self.contractual
        if c.available:
            v = c.values
            m.update(
                active_customers=float(len(v)),
                total_residual_value=float(v["residual_value"].sum()),
                mean_residual_value=float(v["residual_value"].mean()),
                total_value_at_risk=float(v["value_at_risk"].sum()),
                share_value_at_risk=float(v["value_at_risk"].sum() / v["residual_value"].sum()),
                mean_new_customer_value=_weighted(c.new_customers, "value"),
                mean_new_customer_net_value=_weighted(c.new_customers, "net_value"),
            )
            if not c.truth_check.empty:
                total = c.truth_check[c.truth_check["group"] == "all"].iloc[0]
                m["truth_value_ratio"] = float(total["ratio"])
        t = self.transactional
        if t.available:
            for row in t.parameters.itertuples():
                m[f"{row.model}_{row.parameter}"] = float(row.value)
            total = t.holdout[t.holdout["frequency"] == "all"].iloc[0]
            m["holdout_predicted_per_customer"] = float(total["predicted"])
            m["holdout_actual_per_customer"] = float(total["actual"])
            m["total_transactional_value"] = float(t.values["clv"].sum())
            m["mean_p_alive"] = float(t.values["p_alive"].mean())
        r = self.renewals
        if r.available:
            m["renewal_cohorts"] = float(len(r.params))
            for e in r.estimates.itertuples():
                key = f"renewal_{e.quantity}.{e.cohort}"
                m[key] = float(e.estimate)
                m[f"std_error.{key}"] = float(e.std_error)
                m[f"lower.{key}"], m[f"upper.{key}"] = float(e.lower), float(e.upper)
            for c in r.curves[r.curves["period"] > 0].itertuples():
                key = f"renewal_survival.{c.cohort}.{c.period}"
                m[key] = float(c.survival)
                m[f"lower.{key}"], m[f"upper.{key}"] = float(c.lower), float(c.upper)
        return {k: v for k, v in m.items() if np.isfinite(v)}


def _weighted(table: pd.DataFrame, column: str) -> float:
    if table.empty:
        return float("nan")
    return float(np.average(table[column], weights=table["customers"]))


# -------------------------------------------------------------- contractual
def analyse_contractual(
    customers: pd.DataFrame,
    *,
    transactions: pd.DataFrame | None = None,
    scores: pd.DataFrame | None = None,
    truth=None,
    tenure_model: ct.TenureModel | None = None,
    discount_rate: float = DEFAULTS.discount_rate,
    horizon_months: int = DEFAULTS.horizon_months,
    margin: float = DEFAULTS.margin,
    survival_model: str = DEFAULTS.survival_model,
    covariates: Sequence[str] = tuple(DEFAULTS.covariates),
    strata: Sequence[str] = tuple(DEFAULTS.strata),
    risk_horizon_months: float = DEFAULTS.risk_horizon_months,
    max_customers: int | None = DEFAULTS.max_survival_customers,
    random_state: int | None = None,
) -> ContractualValue:
    """Residual value of active customers, value at risk, new-customer value and payback.

    ``tenure_model`` (any ``TenureModel``) is used when given; otherwise one is
    fitted with lifelines. ``scores`` (the survival stage's customer_id,
    p_churn_horizon) supply the churn probability of the value at risk;
    ``truth`` (simulator ground truth) adds a check of the value against the
    value from the true parameters. Data without fees or churn return an
    unavailable result with the reason.
    """
    check_discount_rate(discount_rate)
    reason = ct.contractual_available(customers)
    if reason:
        return ContractualValue(available=False, reason=reason)
    model = tenure_model or ct.fit_tenure_model(
        customers,
        kind=survival_model,
        covariates=list(covariates),
        strata=list(strata),
        max_customers=max_customers,
        random_state=random_state,
    )
    active = customers[~customers["churned"].to_numpy(bool)]
    margins = ct.monthly_margin(active, transactions, margin=margin)
    opts = dict(discount_rate=discount_rate, horizon_months=horizon_months)
    values = ct.residual_values(
        active, model, margin=margins, risk_horizon_months=risk_horizon_months, **opts
    )
    values = ct.value_at_risk(values, scores=scores)
    segment = active["segment"].to_numpy() if "segment" in active.columns else NO_SEGMENT
    values.insert(1, "segment", segment)
    sample = customers
    if max_customers is not None and len(customers) > max_customers:
        sample = customers.sample(n=max_customers, random_state=random_state)
    new = ct.new_customer_values(
        sample, model, margin=ct.monthly_margin(sample, transactions, margin=margin), **opts
    )
    truth_check = pd.DataFrame(columns=TRUTH_COLUMNS)
    if truth is not None and "contract" in active.columns:
        true_model = ct.true_tenure_model(truth)
        true_values = ct.residual_values(
            active, true_model, margin=margins, risk_horizon_months=risk_horizon_months, **opts
        )
        truth_check = compare_values(values, true_values, active)
    return ContractualValue(
        available=True,
        values=values,
        by_segment=_by_segment(values),
        new_customers=new.by_group,
        payback_curves=new.payback_curves,
        truth_check=truth_check,
        tenure_model=model,
        churn_source="survival stage" if scores is not None and len(scores) else "clv model",
    )


def _by_segment(values: pd.DataFrame) -> pd.DataFrame:
    key = values["segment"] if "segment" in values.columns else pd.Series(NO_SEGMENT, values.index)
    table = values.groupby(key.to_numpy()).agg(
        customers=("residual_value", "size"),
        mean_value=("residual_value", "mean"),
        total_value=("residual_value", "sum"),
        mean_p_churn=("p_churn", "mean"),
        value_at_risk=("value_at_risk", "sum"),
    )
    table["share_at_risk"] = table["value_at_risk"] / table["total_value"]
    table = table.rename_axis("segment").reset_index()
    return table.sort_values("value_at_risk", ascending=False, ignore_index=True)


def compare_values(
    fitted: pd.DataFrame, true: pd.DataFrame, customers: pd.DataFrame
) -> pd.DataFrame:
    """Mean residual value from the fitted and the true model, overall and by segment and contract.

    Returns
    -------
    pandas.DataFrame
        group ("all", "segment=...", "contract=..."), customers, fitted, true,
        ratio (fitted / true).
    """
    frame = pd.DataFrame(
        {"fitted": fitted["residual_value"].to_numpy(), "true": true["residual_value"].to_numpy()}
    )
    rows = [("all", len(frame), frame["fitted"].mean(), frame["true"].mean())]
    for col in ("segment", "contract"):
        if col in customers.columns:
            for level, g in frame.groupby(customers[col].to_numpy()):
                rows.append((f"{col}={level}", len(g), g["fitted"].mean(), g["true"].mean()))
    out = pd.DataFrame(rows, columns=["group", "customers", "fitted", "true"])
    out["ratio"] = out["fitted"] / out["true"]
    return out


# ----------------------------------------------------------------- renewals
def renewal_input(
    customers: pd.DataFrame | None, *, as_of=None, source=None, contract: str = "one-year"
) -> tuple[pd.DataFrame, str, float, str]:
    """The renewal counts the stage fits: the configured table, else the customers' contracts.

    ``source`` is the configuration's ``clv.renewals`` (read with
    :func:`~retention_lab.clv.renewals.read_renewals`); without it, customers on
    ``contract`` are grouped into signup-year cohorts observed at ``as_of``.

    Returns
    -------
    table : pandas.DataFrame
        cohort, period, customers (empty when there is nothing to fit).
    origin : str
        Where the counts come from, in words.
    period_months : float
        Length of one renewal period.
    reason : str
        Why there is nothing to fit ("" when there is).
    """
    if source is not None:
        return rn.read_renewals(source), "the configured renewal table", source.period_months, ""
    empty = pd.DataFrame(columns=RENEWAL_COLUMNS)
    if customers is None or as_of is None or "contract" not in customers.columns:
        return empty, "", 12.0, "no renewal table (clv.renewals) and no contract type per customer"
    table = rn.renewal_table(customers, as_of=as_of, contract=contract)
    usable = table.groupby("cohort")["period"].max()
    table = table[table["cohort"].isin(usable[usable >= 1].index)]
    if table.empty:
        reason = f"no signup-year cohort of {contract} contracts has reached its first renewal"
        return empty, "", 12.0, reason
    return table, f"{contract} contracts of the customers table by signup year", 12.0, ""


def analyse_renewals(
    table: pd.DataFrame,
    *,
    origin: str = "the renewal table",
    period_months: float = 12.0,
    discount_rate: float = DEFAULTS.discount_rate,
    reason: str = "",
    random_state: int | None = None,
) -> RenewalValue:
    """Fit the sBG model to renewal counts and project each cohort's retention.

    ``discount_rate`` is annual; DERL discounts at its equivalent per period of
    ``period_months``. The curves reach twice the longest observed period (at
    least 10 periods). An empty table returns an unavailable result with ``reason``.
    """
    check_discount_rate(discount_rate)
    if table.empty:
        return RenewalValue(available=False, reason=reason or "no renewal counts")
    per_period = rn.period_discount_rate(discount_rate, period_months)
    fit = rn.fit_renewals(table, discount_rate=per_period, random_state=random_state)
    horizon = max(10, 2 * int(fit.params["periods"].max()))
    return RenewalValue(
        available=True,
        source=origin,
        period_months=period_months,
        discount_rate=per_period,
        table=fit.renewals,
        params=fit.params,
        estimates=fit.estimates,
        curves=fit.projection(horizon),
        fit=fit,
    )


# ---------------------------------------------------------- transactional
def analyse_transactions(
    transactions: pd.DataFrame | None,
    *,
    customers: pd.DataFrame | None = None,
    as_of=None,
    models: list[str] = ("bg_nbd", "pareto_nbd"),
    discount_rate: float = DEFAULTS.discount_rate,
    horizon_months: int = DEFAULTS.horizon_months,
    margin: float = DEFAULTS.margin,
    time_unit_days: float = DEFAULTS.time_unit_days,
    holdout_months: int = DEFAULTS.holdout_months,
    priors: str = DEFAULTS.priors,
    max_customers: int | None = DEFAULTS.max_transaction_customers,
    random_state: int | None = None,
    unavailable_reason: str = "",
) -> TransactionalValue:
    """Repeat-purchase and spend models on a purchase log, with a calibration/holdout check.

    The holdout is the last ``holdout_months`` before ``as_of``; the
    calibration period ends the day before. The first model of ``models`` is
    refitted on the whole log for the per-customer values. Without a
    transactions table an unavailable result is returned.
    """
    check_discount_rate(discount_rate)
    if transactions is None or transactions.empty:
        return TransactionalValue(
            available=False, reason=unavailable_reason or "the dataset has no transactions table"
        )
    validate_transactions(transactions, customers=customers)
    end = pd.Timestamp(as_of) if as_of is not None else transactions["date"].max()
    cal_end = end - pd.DateOffset(months=holdout_months) - pd.Timedelta(days=1)
    birth = None
    if customers is not None and "signup_date" in customers.columns:
        birth = customers.set_index("customer_id")["signup_date"]
    opts = dict(freq="D", freq_multiplier=time_unit_days, first_purchase=birth)
    calibration = calibration_holdout(
        transactions, calibration_end=cal_end, observation_end=end, **opts
    )
    calibration = calibration[calibration["T"] > 0].reset_index(drop=True)
    if calibration.empty or not (calibration["frequency"] > 0).any():
        return TransactionalValue(
            available=False,
            reason=f"no repeat purchases before the holdout period (before {cal_end.date()})",
        )
    fit_opts = dict(priors=priors, max_customers=max_customers, random_state=random_state)
    rows, holdouts, fitted = _calibration_fits(calibration, models, fit_opts)
    full = rfm_summary(transactions, observation_end=end, **opts)
    full = full[full["T"] > 0].reset_index(drop=True)
    headline = models[0]
    progress.step(f"{tr.MODEL_NAMES[headline]} and Gamma-Gamma on {len(full):,} customers")
    purchases = tr.fit_purchase_model(full, kind=headline, **fit_opts)
    spend = tr.fit_spend_model(full, **fit_opts)
    values = tr.customer_values(
        full,
        purchases,
        spend,
        horizon_months=horizon_months,
        discount_rate=discount_rate,
        margin=margin,
        time_unit_days=time_unit_days,
    )
    parameters = pd.DataFrame(rows, columns=["model", "parameter", "value"])
    parameters["fitted_on"] = "calibration"
    return TransactionalValue(
        available=True,
        parameters=parameters,
        holdout=pd.concat(holdouts, ignore_index=True),
        values=values,
        calibration_end=str(cal_end.date()),
        models={
            "purchases": purchases,
            "spend": spend,
            **{f"{k}_calibration": v for k, v in fitted.items()},
        },
    )


def _calibration_fits(calibration: pd.DataFrame, models, fit_opts):
    """Each purchase model and the spend model fitted on the calibration period.

    Returns
    -------
    rows : list of tuple
        (model, parameter, value) of every fitted model.
    holdouts : list of pandas.DataFrame
        Each purchase model's holdout check (``transactional.holdout_check``), with ``model``.
    fitted : dict
        The purchase models by kind.
    """
    rows, holdouts, fitted = [], [], {}
    for i, kind in enumerate(models, start=1):
        progress.step(f"{tr.MODEL_NAMES[kind]} on the calibration period", i, len(models))
        model = tr.fit_purchase_model(calibration, kind=kind, **fit_opts)
        fitted[kind] = model
        rows += [(kind, k, v) for k, v in model.params.items()]
        holdouts.append(tr.holdout_check(calibration, model).assign(model=kind))
    spend_cal = tr.fit_spend_model(calibration, **fit_opts)
    rows += [("gamma_gamma", k, v) for k, v in spend_cal.params.items()]
    return rows, holdouts, fitted


# ------------------------------------------------------------------ stage
def value_table(
    customers: pd.DataFrame, contractual: ContractualValue, transactional: TransactionalValue
) -> pd.DataFrame:
    """The per-customer value table the plan stage reads (``clv/values.parquet``).

    Returns
    -------
    pandas.DataFrame
        One row per customer: customer_id, segment, active, tenure_months,
        monthly_margin, residual_value (discounted expected margin over the
        horizon, contractual), expected_months (expected paid months in the
        horizon), p_churn (churn probability within the risk horizon),
        churn_source ("survival stage" or "clv model"), value_at_risk
        (residual_value * p_churn), p_alive, expected_purchases,
        expected_spend, transactional_value (non-contractual CLV), value (the
        residual value where the contractual value exists, else the
        transactional value). Churned customers have value 0; columns of a
        part that is unavailable are NaN.
    """
    if customers is None:  # a run on a renewal table or a campaign export alone
        customers = pd.DataFrame({"customer_id": pd.Series(dtype=str)})
    base = pd.DataFrame({"customer_id": customers["customer_id"].astype(str).to_numpy()})
    base["segment"] = customers["segment"].to_numpy() if "segment" in customers else NO_SEGMENT
    active = ~customers["churned"].to_numpy(bool) if "churned" in customers else True
    base["active"] = active
    base["tenure_months"] = (
        customers["tenure_months"].to_numpy(float) if "tenure_months" in customers else np.nan
    )
    if contractual.available:
        cols = [
            "monthly_margin",
            "residual_value",
            "expected_months",
            "p_churn",
            "churn_source",
            "value_at_risk",
        ]
        c = contractual.values.assign(customer_id=contractual.values["customer_id"].astype(str))
        base = base.merge(c[["customer_id", *cols]], on="customer_id", how="left")
    if transactional.available:
        t = transactional.values.assign(customer_id=transactional.values["customer_id"].astype(str))
        t = t.rename(columns={"clv": "transactional_value"})
        cols = ["p_alive", "expected_purchases", "expected_spend", "transactional_value"]
        base = base.merge(t[["customer_id", *cols]], on="customer_id", how="left")
    for col in VALUE_COLUMNS:
        if col not in base.columns:
            base[col] = np.nan
    if contractual.available:
        for col in ("residual_value", "expected_months", "value_at_risk"):
            base[col] = base[col].fillna(0.0)
        base["value"] = base["residual_value"]
    else:
        base["value"] = base["transactional_value"].fillna(0.0)
    return base[VALUE_COLUMNS]


def analyse(tables, inputs, settings, *, truth=None, random_state=None) -> ClvSummary:
    """Run the CLV stage on the canonical tables.

    Parameters
    ----------
    tables
        The run's canonical tables (customers, transactions).
    inputs : pandas.DataFrame or None
        The survival stage's churn scores (``read_scores``), used for the churn
        probability when ``settings.use_survival_scores``; None fits a tenure model here.
    settings : ClvSettings
        The configuration's ``clv`` section; a smoke run passes ``ClvSettings.fast()``
        (smaller samples and only the first repeat-purchase model).
    truth
        The simulator's ground truth, or None for real data.
    """
    cfg = settings
    t0 = time.perf_counter()
    customers = tables.customers
    if customers is not None:
        progress.step(f"contractual value: tenure model and values of {len(customers):,} customers")
    contractual = analyse_contractual(
        customers,
        transactions=tables.transactions,
        scores=inputs if cfg.use_survival_scores else None,
        truth=truth,
        discount_rate=cfg.discount_rate,
        horizon_months=cfg.horizon_months,
        margin=cfg.margin,
        survival_model=cfg.survival_model,
        covariates=cfg.covariates,
        strata=cfg.strata,
        risk_horizon_months=cfg.risk_horizon_months,
        max_customers=cfg.max_survival_customers,
        random_state=random_state,
    )
    transactional = _repeat_purchases(tables, contractual, cfg, random_state)
    table, origin, period_months, reason = renewal_input(
        customers, as_of=tables.as_of, source=cfg.renewals
    )
    renewals = analyse_renewals(
        table,
        origin=origin,
        period_months=period_months,
        discount_rate=cfg.discount_rate,
        reason=reason,
        random_state=random_state,
    )
    values = value_table(customers, contractual, transactional)
    seconds = time.perf_counter() - t0
    log.info("clv stage computed in %.1f s", seconds)
    return ClvSummary(
        contractual=contractual,
        transactional=transactional,
        values=values,
        discount_rate=cfg.discount_rate,
        horizon_months=cfg.horizon_months,
        margin=cfg.margin,
        seconds=seconds,
        renewals=renewals,
    )


def _repeat_purchases(tables, contractual, cfg, random_state):
    """The repeat-purchase models of the transactions, unless the contract's value applies."""
    transactions = tables.transactions
    skip = ""
    if cfg.non_contractual == "never":
        skip = "switched off in the configuration (clv.non_contractual: never)"
    elif cfg.non_contractual == "auto" and contractual.available and transactions is not None:
        skip = (
            "the transactions are subscription bills, which follow the contract; the contractual "
            "value applies (set clv.non_contractual: always to fit them anyway)"
        )
    progress.step("repeat-purchase models" + (": not fitted" if skip else ""))
    return analyse_transactions(
        None if skip else transactions,
        unavailable_reason=skip,
        customers=tables.customers if tables.has_dates else None,
        as_of=tables.as_of,
        models=list(cfg.transaction_models),
        discount_rate=cfg.discount_rate,
        horizon_months=cfg.horizon_months,
        margin=cfg.margin,
        time_unit_days=cfg.time_unit_days,
        holdout_months=cfg.holdout_months,
        priors=cfg.priors,
        max_customers=cfg.max_transaction_customers,
        random_state=random_state,
    )


def findings(summary: ClvSummary, *, currency: str = "USD") -> list[str]:
    """Plain-language sentences with the stage's numbers, money in ``currency``, for the report."""
    out: list[str] = []
    missing: list[str] = []  # parts that do not apply, said last

    def money(value: float) -> str:
        return fmt.money(value, currency)

    years = summary.horizon_months / 12
    rate = f"{summary.discount_rate:.0%} a year"
    c = summary.contractual
    if c.available:
        v = c.values
        total, risk = v["residual_value"].sum(), v["value_at_risk"].sum()
        out.append(
            f"The {len(v):,} active customers are worth {money(total)} in discounted margin "
            f"over the next {years:g} years (discounted at {rate}), "
            f"{money(v['residual_value'].mean())} each on average."
        )
        top = c.by_segment.iloc[0]
        where = (
            f"; segment '{top['segment']}' holds the most ({money(top['value_at_risk'])}, "
            f"{top['share_at_risk']:.0%} of its value)"
            if len(c.by_segment) > 1
            else ""
        )
        out.append(
            f"{money(risk)} ({risk / total:.0%}) of that value is at risk of churning within the "
            f"risk horizon{where}. Churn probabilities come from the {c.churn_source}."
        )
        out += _new_customer_findings(c.new_customers, summary.horizon_months, money)
        if not c.truth_check.empty:
            all_row = c.truth_check[c.truth_check["group"] == "all"].iloc[0]
            worst = c.truth_check.iloc[(c.truth_check["ratio"] - 1).abs().argmax()]
            out.append(
                f"Against the simulator's true parameters the fitted model's residual value is "
                f"{all_row['ratio'] - 1:+.1%} off in total and at most {worst['ratio'] - 1:+.1%} "
                f"in one group ({worst['group']})."
            )
    else:
        missing.append(f"Contractual value: not available for this dataset ({c.reason}).")
    t = summary.transactional
    if t.available:
        p = t.parameters.set_index(["model", "parameter"])["value"]
        tot = t.holdout[(t.holdout["frequency"] == "all")].iloc[0]
        first = t.holdout["model"].iloc[0]
        out.append(
            f"Repeat purchases ({tr.MODEL_NAMES[first]}, calibration until {t.calibration_end}): "
            f"in the holdout period customers made {tot['actual']:.2f} repeat purchases each "
            f"against {tot['predicted']:.2f} predicted "
            f"({tot['predicted'] / tot['actual'] - 1:+.0%})."
        )
        out.append(
            f"Gamma-Gamma spend model: p = {p[('gamma_gamma', 'p')]:.2f}, q = "
            f"{p[('gamma_gamma', 'q')]:.2f}, gamma = {p[('gamma_gamma', 'v')]:.2f}; the "
            f"{len(t.values):,} customers' transactional lifetime value is "
            f"{money(t.values['clv'].sum())} over {years:g} years, and "
            f"{t.values['p_alive'].mean():.0%} of them are expected to still be buying."
        )
    else:
        missing.append(f"Non-contractual value: not available for this dataset ({t.reason}).")
    r = summary.renewals
    if r.available:
        out += renewal_findings(r, annual_rate=summary.discount_rate)
    else:
        missing.append(f"Renewal cohorts: not available for this dataset ({r.reason}).")
    return out + missing


MAX_COHORT_FINDINGS = 4


def renewal_findings(renewals: RenewalValue, *, annual_rate: float) -> list[str]:
    """Sentences on the sBG fit: per cohort churn, retention growth and DERL with intervals."""
    unit, one = renewals.unit, renewals.period_name
    est = renewals.estimates.set_index(["cohort", "quantity"])
    params = renewals.params.sort_values("periods", ascending=False, kind="stable")
    out = [
        f"Renewal cohorts ({renewals.source}; shifted-beta-geometric model, {len(params)} "
        f"cohort{'s' if len(params) != 1 else ''}, one renewal per {one}; DERL, the "
        f"discounted expected residual lifetime, discounted at {annual_rate:.0%} a year)."
    ]

    def interval(cohort: str, quantity: str, form: str) -> str:
        row = est.loc[(cohort, quantity)]
        if not np.isfinite(row["lower"]):
            return format(row["estimate"], form)
        return (
            f"{format(row['estimate'], form)} (95% CI {format(row['lower'], form)} to "
            f"{format(row['upper'], form)})"
        )

    observed = renewals.curves.dropna(subset=["observed_retention"])
    for p in params.head(MAX_COHORT_FINDINGS).itertuples():
        cohort = str(p.cohort)
        first = observed.loc[(observed["cohort"] == cohort) & (observed["period"] == 1)]
        start = "".join(f"{v:.0%} at the first renewal to " for v in first["observed_retention"])
        observed_n = f"{p.periods} renewal{'s' if p.periods != 1 else ''} observed"
        if p.periods < 2:
            out.append(
                f"Cohort '{cohort}' ({observed_n}, {p.active:,} customers still active): "
                f"{1 - first['observed_retention'].iloc[0]:.0%} left at the first renewal; one "
                f"renewal cannot show how churn probabilities differ between customers, so "
                f"alpha, beta and DERL are not identified."
            )
            continue
        if not np.isfinite(est.loc[(cohort, "alpha"), "lower"]):
            out.append(
                f"Cohort '{cohort}' ({observed_n}, {p.active:,} customers still active): one "
                f"churn probability fits every customer, {p.mean_churn:.0%} per {one} (alpha and "
                f"beta grow without bound, so they have no interval); DERL {p.derl:.2f} {unit}."
            )
            continue
        out.append(
            f"Cohort '{cohort}' ({observed_n}, {p.active:,} customers still "
            f"active): alpha {interval(cohort, 'alpha', '.3f')}, beta "
            f"{interval(cohort, 'beta', '.3f')}; mean churn probability "
            f"{interval(cohort, 'mean_churn', '.0%')} per {one}; the renewal rate goes from "
            f"{start}{interval(cohort, 'next_retention', '.0%')} expected at the next renewal; "
            f"an active customer's discounted expected residual lifetime is "
            f"{interval(cohort, 'derl', '.2f')} {unit}."
        )
    if len(params) > MAX_COHORT_FINDINGS:
        out.append(
            f"{len(params) - MAX_COHORT_FINDINGS} more cohorts are in the table of estimates "
            f"(DERL from {params['derl'].min():.2f} to {params['derl'].max():.2f} {unit})."
        )
    return out


def _new_customer_findings(nc: pd.DataFrame, horizon: int, money) -> list[str]:
    if nc.empty:
        return []
    text = f"A new customer is worth {money(_weighted(nc, 'value'))} on average"
    if nc["acquisition_cost"].isna().all():
        return [
            text + ".",
            "Payback: not available for this dataset (no acquisition cost recorded).",
        ]
    best = nc.sort_values("net_value", ascending=False).iloc[0]
    worst = nc.sort_values("net_value").iloc[0]
    out = [
        f"{text}; net of acquisition cost the best group is {_group(best, nc)} "
        f"({money(best['net_value'])}) and the worst {_group(worst, nc)} "
        f"({money(worst['net_value'])})."
    ]
    slow = nc.sort_values("payback_month", ascending=False, na_position="first").iloc[0]
    paid = nc["payback_month"].notna()
    median = f"{nc.loc[paid, 'payback_month'].median():.0f} months" if paid.any() else "never"
    when = (
        f"{slow['payback_month']:.0f} months"
        if pd.notna(slow["payback_month"])
        else f"not within {horizon} months"
    )
    out.append(
        f"Acquisition cost is paid back after {median} for the median group; "
        f"slowest: {_group(slow, nc)} ({when})."
    )
    return out


def _group(row: pd.Series, table: pd.DataFrame) -> str:
    keys = [c for c in ("segment", "channel") if c in table.columns]
    return " / ".join(str(row[k]) for k in keys) or "all"


def months_to_units(months: float, time_unit_days: float) -> float:
    """Months expressed in the summary's time unit."""
    return months * DAYS_PER_MONTH / time_unit_days


def read_scores(stage) -> pd.DataFrame | None:
    """The survival stage's churn scores of this run (``survival/scores.parquet``), or None.

    Returns
    -------
    pandas.DataFrame or None
        The columns of :func:`retention_lab.survival.score_active` (``customer_id``,
        ``p_churn_horizon``, ...); None when the survival stage did not run.
    """
    from retention_lab.errors import MissingStageOutput

    try:
        return stage.read_output("survival", "scores")
    except MissingStageOutput:
        log.info("no survival scores in this run: the clv stage fits its own tenure model")
        return None


def availability(summary: ClvSummary) -> pd.DataFrame:
    """Which parts of the stage ran on this dataset, and why a part did not.

    Returns
    -------
    pandas.DataFrame
        part, status ("computed" or "not available for this dataset"), reason.
    """
    rows = []
    for part, result in (
        ("contractual value (subscriptions)", summary.contractual),
        ("non-contractual value (purchase log)", summary.transactional),
        ("renewal cohorts (shifted-beta-geometric)", summary.renewals),
    ):
        status = "computed" if result.available else "not available for this dataset"
        rows.append((part, status, result.reason))
    return pd.DataFrame(rows, columns=["part", "status", "reason"])


def top_customers(values: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The ``n`` customers with the most value at risk (by value where that is not known).

    Returns
    -------
    pandas.DataFrame
        The first ``n`` rows of ``values``, with its columns (those of :func:`value_table`:
        ``customer_id``, ``segment``, ``value``, ``value_at_risk``, ...).
    """
    order = values.sort_values(["value_at_risk", "value"], ascending=False, na_position="last")
    return order.head(n).reset_index(drop=True)
