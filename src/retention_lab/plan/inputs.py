"""What the plan decides on: candidates, past cases, instrument costs and effects.

- ``candidates``: active customers with an open problem (the latest problem at
  most ``open_problem_days`` old) joined to their value and churn risk;
- ``past_cases``: retention cases whose outcome (still a customer ``horizon``
  months after the case) is observed;
- ``instrument_costs`` / ``cost_matrix``: cost per customer of each instrument,
  a fixed part plus a multiple of the monthly fee, fitted to the recorded costs;
- ``EffectModel``: the plan's own effect model, a penalised logistic regression
  of retention on customer covariates, the problem type, the arm and the arm's
  interactions with the problem type and the segment, fitted on the randomised
  cases only (the rule-assigned ones are confounded);
- ``effect_matrix``: effects of the uplift stage's table, aligned to the candidates;
- ``pooled_matrix``: the uplift stage's partially pooled cell effects, aligned to any rows;
- ``spread_by_risk``: a cell's effect spread over its customers in proportion to their risk;
- ``net_value_probability``: the plan's risk rule, P(effect x value - cost > 0).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import LogisticRegression

from retention_lab.errors import DataError
from retention_lab.plan.settings import DEFAULTS
from retention_lab.units import DAYS_PER_MONTH, horizon_days_of

log = logging.getLogger(__name__)

CONTROL = "none"
COVARIATES = ("segment", "plan", "contract", "channel", "age", "data_usage_gb", "monthly_fee")
CATEGORICAL = ("segment", "plan", "contract", "channel", "problem_type")


def _tenure(signup: pd.Series, at: pd.Series | pd.Timestamp) -> np.ndarray:
    return ((at - signup).dt.days.to_numpy(float)) / DAYS_PER_MONTH


def candidates(
    tables,
    *,
    values: pd.DataFrame,
    scores: pd.DataFrame | None = None,
    open_problem_days: float = DEFAULTS.open_problem_days,
    value_col: str = "value",
) -> pd.DataFrame:
    """Active customers with an open problem, their value and their churn risk.

    Parameters
    ----------
    tables
        The run's canonical tables (customers, problems).
    values
        The clv stage's per-customer values (customer_id, ``value_col``).
    scores
        The survival stage's scores (customer_id, p_churn_horizon); when absent
        the clv table's ``p_churn`` is the risk.

    Returns
    -------
    pandas.DataFrame
        customer_id, problem_type, problem_date, days_open, tenure_months,
        customer covariates present, value, p_churn.
    """
    cust, problems = tables.customers, tables.problems
    as_of = pd.Timestamp(tables.as_of)
    if problems is None or problems.empty:
        return pd.DataFrame(columns=["customer_id", "problem_type", "value", "p_churn"])
    active = cust[cust["end_date"].isna()]
    latest = problems.sort_values("date").drop_duplicates("customer_id", keep="last")
    latest = latest[latest["date"] >= as_of - pd.Timedelta(days=open_problem_days)]
    keep = [c for c in ("customer_id", "signup_date", *COVARIATES) if c in active.columns]
    out = active[keep].merge(
        latest[["customer_id", "date", "problem_type"]].rename(columns={"date": "problem_date"}),
        on="customer_id",
    )
    out["customer_id"] = out["customer_id"].astype(str)
    out["problem_type"] = out["problem_type"].astype(str)
    out["days_open"] = (as_of - out["problem_date"]).dt.days
    out["tenure_months"] = _tenure(out["signup_date"], as_of)
    if value_col not in values.columns:
        raise DataError(
            file="clv/values.parquet",
            column=value_col,
            expected="the value basis of the plan (plan.value_basis)",
        )
    v = values[["customer_id", value_col]].rename(columns={value_col: "value"})
    v = v.assign(customer_id=v["customer_id"].astype(str))
    out = out.merge(v, on="customer_id", how="left")
    missing = out["value"].isna()
    if missing.any():
        log.warning("%d candidates have no value in the clv table; valued at 0", missing.sum())
        out["value"] = out["value"].fillna(0.0)
    if scores is not None and "p_churn_horizon" in scores.columns:
        risk = scores[["customer_id", "p_churn_horizon"]].rename(
            columns={"p_churn_horizon": "p_churn"}
        )
    elif "p_churn" in values.columns:
        risk = values[["customer_id", "p_churn"]]
    else:
        risk = pd.DataFrame({"customer_id": [], "p_churn": []})
    risk = risk.assign(customer_id=risk["customer_id"].astype(str))
    out = out.merge(risk, on="customer_id", how="left")
    out["p_churn"] = out["p_churn"].fillna(out["p_churn"].mean()).fillna(0.0)
    return out.sort_values("customer_id", ignore_index=True)


def past_cases(tables, *, horizon_months: int) -> pd.DataFrame:
    """Retention cases whose outcome at the horizon is observed.

    Returns
    -------
    pandas.DataFrame
        intervention_id (when present), customer_id, date, instrument,
        assignment, problem_type, cost, customer covariates present,
        tenure_months (at the case), retained (bool).
    """
    iv = tables.interventions
    if iv is None or iv.empty:
        return pd.DataFrame(columns=["customer_id", "instrument", "assignment", "retained"])
    cust = tables.customers
    horizon = pd.Timedelta(days=horizon_days_of(horizon_months))  # the uplift stage's horizon
    as_of = pd.Timestamp(tables.as_of)
    keep = [c for c in ("customer_id", "signup_date", "end_date", *COVARIATES) if c in cust.columns]
    cases = iv.drop(columns=[c for c in keep if c != "customer_id"], errors="ignore").merge(
        cust[keep], on="customer_id"
    )
    if "problem_type" not in cases.columns and tables.problems is not None:
        if "problem_id" in cases.columns and "problem_id" in tables.problems.columns:
            cases = cases.merge(tables.problems[["problem_id", "problem_type"]], on="problem_id")
    cases = cases[cases["date"] + horizon <= as_of].copy()
    cases["retained"] = cases["end_date"].isna() | (cases["end_date"] >= cases["date"] + horizon)
    cases["tenure_months"] = _tenure(cases["signup_date"], cases["date"])
    for col in ("customer_id", "instrument", "assignment", "problem_type"):
        if col in cases.columns:
            cases[col] = cases[col].astype(str)
    return cases.reset_index(drop=True)


def instrument_costs(
    interventions: pd.DataFrame | None,
    customers: pd.DataFrame,
    *,
    overrides: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Cost of each instrument per customer: ``fixed + fee_multiple * monthly_fee``.

    Fitted by least squares on the recorded costs (the fee term only when the
    customers carry a monthly fee and the costs vary with it); an override from
    the configuration replaces the fit with a flat cost.

    Returns
    -------
    pandas.DataFrame
        instrument, fixed, fee_multiple, mean_cost, source ("recorded", "configured").
    """
    overrides = dict(overrides or {})
    rows = []
    if interventions is not None and "cost" in interventions.columns:
        fee_of = customers.set_index(customers["customer_id"].astype(str)).get("monthly_fee")
        iv = interventions.assign(customer_id=interventions["customer_id"].astype(str))
        for name, g in iv.groupby("instrument", sort=True):
            name = str(name)
            if name == CONTROL or name in overrides:
                continue
            cost = g["cost"].to_numpy(float)
            fixed, multiple = float(np.nanmean(cost)), 0.0
            if fee_of is not None and len(g) >= 3:
                fee = fee_of.reindex(g["customer_id"]).to_numpy(float)
                ok = np.isfinite(fee) & np.isfinite(cost)
                if ok.sum() >= 3 and np.std(fee[ok]) > 0 and np.std(cost[ok]) > 1e-9:
                    X = np.column_stack([np.ones(ok.sum()), fee[ok]])
                    coef = np.linalg.lstsq(X, cost[ok], rcond=None)[0]
                    if coef[1] > 1e-6:
                        fixed, multiple = float(coef[0]), float(coef[1])
            rows.append((name, fixed, multiple, float(np.nanmean(cost)), "recorded"))
    for name, cost in overrides.items():
        if name != CONTROL:
            rows.append((name, float(cost), 0.0, float(cost), "configured"))
    cols = ["instrument", "fixed", "fee_multiple", "mean_cost", "source"]
    return pd.DataFrame(rows, columns=cols).sort_values("instrument", ignore_index=True)


def cost_matrix(frame: pd.DataFrame, costs: pd.DataFrame, instruments: list[str]) -> np.ndarray:
    """Cost of each instrument for each row of ``frame``, shape ``(row, instrument)``."""
    table = costs.set_index("instrument").reindex(instruments)
    if table["fixed"].isna().any():
        raise DataError(
            file="interventions",
            column="cost",
            expected="a recorded or configured cost for every instrument (plan.costs)",
            rows=list(table.index[table["fixed"].isna()]),
        )
    fee = frame["monthly_fee"].to_numpy(float) if "monthly_fee" in frame.columns else None
    out = np.broadcast_to(table["fixed"].to_numpy(float), (len(frame), len(instruments))).copy()
    if fee is not None:
        out += np.nan_to_num(fee)[:, None] * table["fee_multiple"].to_numpy(float)[None, :]
    return np.maximum(np.round(out, 2), 0.0)


class EffectModel:
    """Retention probability under each arm: a penalised logistic regression.

    ``logit P(retained) = base(x) + arm + arm x problem_type + arm x segment``,
    where ``base`` holds the customer covariates, the tenure and the problem
    type. The effect of an instrument on a customer is its predicted retention
    minus the control's.

    Parameters
    ----------
    c
        Inverse L2 penalty (``sklearn.linear_model.LogisticRegression(C=...)``).
    """

    def __init__(self, c: float = 1.0):
        self.c = c

    def _base(self, frame: pd.DataFrame) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
        cols = []
        for name in self.numeric_:
            x = frame[name].to_numpy(float)
            if name == "tenure_months":
                x = np.log1p(np.maximum(x, 0))
            cols.append(((x - self.centre_[name]) / self.scale_[name])[:, None])
        onehot = {}
        for name, levels in self.levels_.items():
            codes = pd.Categorical(frame[name].astype(str), categories=levels).codes
            m = np.zeros((len(frame), len(levels)))
            ok = codes >= 0
            m[np.flatnonzero(ok), codes[ok]] = 1.0
            onehot[name] = m
            cols.append(m[:, 1:])
        return cols, onehot

    def base_design(self, frame: pd.DataFrame) -> np.ndarray:
        """Covariate part of the design (no arm terms), e.g. for a model of the arm itself."""
        return np.hstack(self._base(frame)[0])

    def _design(self, frame: pd.DataFrame, arm: np.ndarray) -> np.ndarray:
        cols, onehot = self._base(frame)
        a = np.zeros((len(frame), len(self.arms_)))
        codes = pd.Categorical(arm, categories=self.arms_).codes
        a[np.arange(len(frame)), codes] = 1.0
        a = a[:, 1:]
        cols.append(a)
        for name in ("problem_type", "segment"):
            if name in onehot:
                cols.append((a[:, :, None] * onehot[name][:, None, :]).reshape(len(frame), -1))
        return np.hstack(cols)

    def fit(
        self, cases: pd.DataFrame, *, arm_col: str = "instrument", outcome_col: str = "retained"
    ):
        """Fit on cases (one row per case, the arm and the 0/1 outcome)."""
        if cases.empty:
            raise DataError(
                file="interventions",
                column=arm_col,
                expected="randomised cases with an observed outcome",
            )
        arms = sorted(cases[arm_col].astype(str).unique())
        if CONTROL not in arms:
            raise DataError(
                file="interventions", column=arm_col, expected=f"control cases ('{CONTROL}')"
            )
        self.arms_ = [CONTROL] + [a for a in arms if a != CONTROL]
        self.numeric_ = [
            c
            for c in ("tenure_months", "age", "data_usage_gb", "monthly_fee")
            if c in cases.columns
        ]
        self.centre_, self.scale_ = {}, {}
        for name in self.numeric_:
            x = cases[name].to_numpy(float)
            x = np.log1p(np.maximum(x, 0)) if name == "tenure_months" else x
            self.centre_[name] = float(np.nanmean(x))
            self.scale_[name] = float(np.nanstd(x)) or 1.0
        self.levels_ = {
            c: sorted(cases[c].astype(str).unique()) for c in CATEGORICAL if c in cases.columns
        }
        y = cases[outcome_col].to_numpy(bool)
        X = self._design(cases, cases[arm_col].astype(str).to_numpy())
        self.model_ = LogisticRegression(C=self.c, solver="newton-cholesky", max_iter=200)
        if y.all() or not y.any():
            self.constant_ = float(y.mean())
        else:
            self.constant_ = None
            self.model_.fit(X, y)
        return self

    def predict_retention(self, frame: pd.DataFrame) -> np.ndarray:
        """Predicted retention per row and arm, shape ``(row, arm)`` in ``arms_`` order."""
        out = np.empty((len(frame), len(self.arms_)))
        for j, arm in enumerate(self.arms_):
            if self.constant_ is not None:
                out[:, j] = self.constant_
            else:
                X = self._design(frame, np.full(len(frame), arm))
                out[:, j] = self.model_.predict_proba(X)[:, 1]
        return out

    def predict_effects(self, frame: pd.DataFrame) -> np.ndarray:
        """Effect of each instrument (retention minus the control's), shape ``(row, instrument)``.

        Instruments are ``arms_[1:]``.
        """
        p = self.predict_retention(frame)
        return p[:, 1:] - p[:, :1]


def effect_matrix(
    effects: pd.DataFrame, candidates: pd.DataFrame, instruments: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The uplift stage's effects aligned to the candidates: ``(effect, effect_std)``.

    ``effects`` is long (customer_id, instrument, effect[, effect_std]); a
    candidate or instrument without a row gets effect 0 (it is not treated).
    """
    missing = [c for c in ("customer_id", "instrument", "effect") if c not in effects.columns]
    if missing:
        raise DataError(
            file="uplift/effects.parquet",
            column=missing[0],
            expected="columns customer_id, instrument, effect",
        )
    e = effects.assign(customer_id=effects["customer_id"].astype(str))
    if "effect_std" not in e.columns:
        e = e.assign(effect_std=np.nan)
    wide = e.pivot_table(index="customer_id", columns="instrument", values=["effect", "effect_std"])
    ids = candidates["customer_id"].astype(str)
    eff = wide["effect"].reindex(index=ids, columns=instruments).to_numpy(float)
    std = wide["effect_std"].reindex(index=ids, columns=instruments).to_numpy(float)
    return np.nan_to_num(eff), std


def pooled_matrix(
    pooled: pd.DataFrame, frame: pd.DataFrame, instruments: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The pooled retention effect of each row's problem x segment cell: ``(effect, sd)``.

    ``pooled`` is the uplift stage's ``pooled_effects`` table; rows of ``frame``
    need problem_type and segment. A cell without an estimate gets effect 0 and
    NaN sd (it is not treated).
    """
    need = ["instrument", "problem_type", "segment", "pooled", "pooled_sd"]
    missing = [c for c in need if c not in pooled.columns]
    if missing:
        raise DataError(file="uplift/pooled_effects.parquet", column=missing[0], expected="present")
    p = pooled[pooled["scale"] == "retention"] if "scale" in pooled.columns else pooled
    keys = pd.MultiIndex.from_arrays(
        [frame["problem_type"].astype(str), frame["segment"].astype(str)]
    )
    out = []
    for col in ("pooled", "pooled_sd"):
        wide = p.pivot_table(
            index=["problem_type", "segment"], columns="instrument", values=col, aggfunc="first"
        )
        out.append(wide.reindex(index=keys, columns=instruments).to_numpy(float))
    return np.nan_to_num(out[0]), out[1]


def spread_by_risk(
    effect: np.ndarray, effect_sd: np.ndarray, frame: pd.DataFrame, *, cap: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Spread each cell's effect over its customers in proportion to their churn risk.

    An instrument that multiplies the churn hazard by ``exp(theta)`` keeps about
    ``(1 - exp(theta)) x p`` of customers whose churn probability is ``p``; so a
    customer's gain is the cell's mean gain times ``p / mean p`` of the cell's
    rows (``frame``: problem_type, segment, p_churn), capped at ``cap``. The
    cell's mean effect is unchanged; so is the relative precision.
    """
    p = frame["p_churn"].to_numpy(float)
    keys = frame["problem_type"].astype(str) + "|" + frame["segment"].astype(str)
    mean = pd.Series(p).groupby(keys.to_numpy()).transform("mean").to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(mean > 0, np.minimum(p / mean, cap), 1.0)[:, None]
    return effect * ratio, effect_sd * ratio


def net_value_probability(
    effect: np.ndarray, effect_sd: np.ndarray, value: np.ndarray, cost: np.ndarray
) -> np.ndarray:
    """Probability that ``effect x value - cost > 0``, the effect normal with sd ``effect_sd``.

    Arrays are ``(row, instrument)`` (``value`` one per row); a NaN sd counts
    as no uncertainty (the sign of the point estimate decides).
    """
    v = np.asarray(value, float)[:, None]
    net = effect * v - cost
    spread = np.nan_to_num(effect_sd) * np.abs(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(spread > 0, net / spread, np.sign(net) * np.inf)
    return stats.norm.cdf(np.nan_to_num(z, nan=-np.inf))
