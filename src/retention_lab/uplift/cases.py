"""The uplift stage's input: one row per case (treatment, outcome, features).

Every estimator of the stage works on a plain frame with column-name
arguments. :func:`case_table` is the adapter from the canonical tables
(interventions joined to customers, problems and transactions);
:func:`from_frame` and :func:`read_campaign` take a plain campaign export
(one row per customer: treatment, outcome, features) instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from retention_lab.data.sources import label_text, map_columns, read_raw_table
from retention_lab.errors import DataError
from retention_lab.units import DAYS_PER_MONTH, horizon_days_of

CANONICAL_FEATURES = (
    "tenure_months",
    "segment",
    "plan",
    "contract",
    "monthly_fee",
    "channel",
    "region",
    "age",
    "data_usage_gb",
    "problem_type",
    "severity",
)


@dataclass(frozen=True, eq=False)
class UpliftInput:
    """Cases and the names of their columns; what every step of the stage reads.

    Attributes
    ----------
    cases : pandas.DataFrame
        One row per case; at least ``id_col``, ``treatment_col``, ``outcome_col``
        and the ``features``.
    treatment_col, outcome_col, id_col : str
        Arm label (``control`` = untreated), binary outcome (1 = retained) and case id.
    features : list of str
        Covariates the learners and the propensity model use.
    control : str
        Label of the control arm.
    assignment_col : str or None
        Column with "random" / "rule"; ``None`` means every case was randomised.
    revenue_col, cost_col, customer_col : str or None
        Revenue over the horizon, cost of the instrument, customer id (optional).
    strata : list of str
        Columns of the effect matrix (e.g. problem_type, segment) present in ``cases``.
    outcome_type : str
        "binary" (1 = retained) or "continuous" (an amount; effects in its unit).
    truth : pandas.DataFrame or None
        Simulated data only: the true retention probability per arm (one column
        per arm, rows aligned with ``cases``), ``revenue:<arm>`` columns with
        the true expected revenue and ``log_hazard:<arm>`` columns with the
        arm's true effect on the log hazard of churn while it acts.
    available : bool
        False when the dataset has no cases; ``reason`` says why.
    """

    cases: pd.DataFrame
    treatment_col: str = "instrument"
    outcome_col: str = "retained"
    features: list[str] = field(default_factory=list)
    control: str = "none"
    id_col: str = "intervention_id"
    assignment_col: str | None = "assignment"
    revenue_col: str | None = "revenue"
    cost_col: str | None = "cost"
    customer_col: str | None = "customer_id"
    strata: list[str] = field(default_factory=list)
    truth: pd.DataFrame | None = None
    horizon_days: int | None = None
    as_of: pd.Timestamp | None = None
    source: str = "interventions"
    outcome_type: str = "binary"
    available: bool = True
    reason: str = ""

    @property
    def arms(self) -> list[str]:
        """Arm labels, control first, then the instruments in sorted order."""
        labels = sorted(set(self.cases[self.treatment_col].astype(str)) - {self.control})
        return [self.control, *labels]

    @property
    def instruments(self) -> list[str]:
        """Treated arms (every arm but the control)."""
        return self.arms[1:]

    def randomised(self) -> np.ndarray:
        """Boolean mask of the randomised cases."""
        if self.assignment_col is None:
            return np.ones(len(self.cases), bool)
        return (self.cases[self.assignment_col].astype(str) == "random").to_numpy()

    def subset(self, mask: np.ndarray) -> UpliftInput:
        """The same input restricted to the rows in ``mask`` (index reset)."""
        truth = None if self.truth is None else self.truth[mask].reset_index(drop=True)
        return replace(self, cases=self.cases[mask].reset_index(drop=True), truth=truth)

    def __repr__(self) -> str:
        if not self.available:
            return f"UpliftInput(not available: {self.reason})"
        n_rand = int(self.randomised().sum())
        return (
            f"UpliftInput(source={self.source}, cases={len(self.cases):,}, randomised={n_rand:,}, "
            f"arms={self.arms}, features={len(self.features)}, truth={self.truth is not None})"
        )


def unavailable(reason: str) -> UpliftInput:
    """An empty input for a dataset the stage cannot use (the report says ``reason``)."""
    cases = pd.DataFrame(columns=["intervention_id", "instrument", "retained"])
    return UpliftInput(cases=cases, available=False, reason=reason, source="none")


def _revenue(cases: pd.DataFrame, transactions: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """Sum of amounts per case with ``date <= t < date + horizon`` (vectorised searchsorted)."""
    ids = pd.Index(pd.unique(transactions["customer_id"].astype(str)))
    t_code = ids.get_indexer(transactions["customer_id"].astype(str)).astype(np.int64)
    t_day = transactions["date"].to_numpy("datetime64[D]").astype(np.int64)
    base = t_day.min() - 10 * horizon_days
    span = int(t_day.max() - base + 20 * horizon_days)
    key = t_code * span + (t_day - base)
    order = np.argsort(key, kind="stable")
    key = key[order]
    cum = np.concatenate([[0.0], np.cumsum(transactions["amount"].to_numpy(float)[order])])
    c_code = ids.get_indexer(cases["customer_id"].astype(str)).astype(np.int64)
    c_day = cases["date"].to_numpy("datetime64[D]").astype(np.int64) - base
    c_day = np.clip(c_day, 0, span - horizon_days - 1)
    lo = np.searchsorted(key, c_code * span + c_day, side="left")
    hi = np.searchsorted(key, c_code * span + c_day + horizon_days, side="left")
    return np.where(c_code >= 0, cum[hi] - cum[lo], 0.0)


def case_table(
    tables,
    *,
    horizon_months: int = 6,
    features: list[str] | None = None,
    truth=None,
) -> UpliftInput:
    """Build the cases from the canonical tables (the adapter for canonical data).

    A case dated ``d`` is *retained* when the customer's ``end_date`` is empty or
    on or after ``d + horizon_days``; cases whose horizon ends after ``as_of``
    are dropped (outcome unobserved). Revenue is the sum of the customer's
    transactions dated in ``[d, d + horizon_days)``.

    Parameters
    ----------
    tables : retention_lab.data.Tables
        Needs interventions and dated customers; problems (severity) and
        transactions (revenue) are optional. Without interventions the result
        is :func:`unavailable`.
    horizon_months
        Outcome horizon; ``horizon_days = 7 * round(months * 30.4375 / 7)``.
    features
        Covariates to use (default :data:`CANONICAL_FEATURES`, those present).
    truth : GroundTruth, optional
        The simulator's truth; adds the true retention probability per arm.

    Returns
    -------
    UpliftInput
        ``cases`` has intervention_id, customer_id, date, instrument,
        assignment, problem_type, severity, cost, the customer covariates,
        tenure_months (at the case date), retained (0/1), revenue (when
        transactions exist).
    """
    if tables.interventions is None or len(tables.interventions) == 0:
        return unavailable("this dataset has no interventions table (retention cases)")
    if not tables.has_dates:
        return unavailable("customers carry no signup and end dates")
    h = horizon_days_of(horizon_months)
    iv = tables.interventions.copy()
    if "intervention_id" not in iv.columns:
        iv["intervention_id"] = [f"I{i:08d}" for i in range(1, len(iv) + 1)]
    as_of = pd.Timestamp(tables.as_of)
    iv = iv[iv["date"] + pd.Timedelta(days=h) <= as_of]
    if iv.empty:
        return unavailable(
            f"no retention case has its {horizon_months}-month outcome observed by {as_of.date()}"
        )
    cases = _with_customers(iv, tables)
    cases["tenure_months"] = (cases["date"] - cases["signup_date"]).dt.days / DAYS_PER_MONTH
    end = cases["end_date"]
    cases["retained"] = (end.isna() | (end >= cases["date"] + pd.Timedelta(days=h))).astype(int)
    revenue_col = None
    if tables.transactions is not None and len(tables.transactions):
        cases["revenue"] = _revenue(cases, tables.transactions, h)
        revenue_col = "revenue"
    for col in ("instrument", "assignment", "problem_type", "segment"):
        if col in cases.columns:
            cases[col] = cases[col].astype(object)
    cases = cases.reset_index(drop=True)
    wanted = list(features) if features is not None else list(CANONICAL_FEATURES)
    feats = [c for c in wanted if c in cases.columns and cases[c].notna().any()]
    out_truth = None
    if truth is not None:
        out_truth = _truth_table(truth, cases)
    assignment = "assignment" if "assignment" in cases.columns else None
    return UpliftInput(
        cases=cases,
        features=feats,
        assignment_col=assignment,
        revenue_col=revenue_col,
        cost_col="cost" if "cost" in cases.columns else None,
        strata=[c for c in ("problem_type", "segment") if c in cases.columns],
        truth=out_truth,
        horizon_days=h,
        as_of=as_of,
    )


def _with_customers(iv: pd.DataFrame, tables) -> pd.DataFrame:
    """The observed cases joined to their customer's covariates and their problem's severity."""
    cust = tables.customers.drop(
        columns=["tenure_days", "tenure_months", "churned"], errors="ignore"
    )
    drop = [c for c in cust.columns if c in iv.columns and c != "customer_id"]
    cases = iv.merge(cust.drop(columns=drop), on="customer_id", how="left", validate="many_to_one")
    if "severity" not in cases.columns and tables.problems is not None and "problem_id" in cases:
        if "severity" in tables.problems.columns:
            sev = tables.problems.set_index(tables.problems["problem_id"].astype(str))["severity"]
            cases["severity"] = cases["problem_id"].astype(str).map(sev).to_numpy()
    return cases


def _truth_table(truth, cases: pd.DataFrame) -> pd.DataFrame | None:
    """Per case and arm: true retention probability, expected revenue and log-hazard effect.

    Columns ``<arm>``, ``revenue:<arm>`` and ``log_hazard:<arm>`` (the effect in
    the case's period when the market had a shock), rows aligned with ``cases``.
    """
    out = truth.intervention_outcomes
    if len(out) == 0:
        return None
    key = out["intervention_id"].astype(str)
    p = out.pivot_table(index=key, columns="arm", values="p_retained", aggfunc="first")
    rev = out.pivot_table(index=key, columns="arm", values="expected_revenue", aggfunc="first")
    rev.columns = [f"revenue:{c}" for c in rev.columns]
    wide = p.join(rev)
    wide = wide.reindex(cases["intervention_id"].astype(str).to_numpy())
    if wide.isna().all(axis=None):
        return None
    wide = wide.reset_index(drop=True)
    if {"problem_type", "segment"} <= set(cases.columns):
        wide = wide.join(_true_log_hazards(truth, cases))
    return wide


def _true_log_hazards(truth, cases: pd.DataFrame) -> pd.DataFrame:
    """``log_hazard:<arm>``: each arm's true log-hazard effect for the case's cell and period."""
    effects = truth.instrument_effects
    shock = truth.parameters.get("shock_date")
    period = np.full(len(cases), "all", dtype=object)
    if shock:
        period = np.where(cases["date"] >= pd.Timestamp(shock), "after", "before")
    wide = effects.pivot_table(
        index=["problem_type", "segment", "period"],
        columns="instrument",
        values="log_hazard_effect",
        aggfunc="first",
    )
    wide.columns = [f"log_hazard:{c}" for c in wide.columns]
    index = pd.MultiIndex.from_arrays(
        [cases["problem_type"].astype(str), cases["segment"].astype(str), period]
    )
    return wide.reindex(index).reset_index(drop=True)


def from_frame(
    frame: pd.DataFrame,
    *,
    treatment_col: str = "treatment",
    outcome_col: str = "outcome",
    control: object = "control",
    features: list[str] | None = None,
    id_col: str | None = "customer_id",
    assignment_col: str | None = None,
    revenue_col: str | None = None,
    cost_col: str | None = None,
    strata: list[str] | None = None,
    outcome_type: str = "binary",
    file: str = "campaign",
) -> UpliftInput:
    """Wrap a plain campaign export (one row per customer) for the stage's functions.

    Parameters
    ----------
    control
        Label of the control arm, compared by value (``0`` finds ``0.0``; see
        :func:`~retention_lab.data.sources.label_text`).
    features
        Covariate columns; default every column except the id, treatment,
        outcome, assignment, revenue and cost columns.
    assignment_col
        Column with "random" / "rule"; ``None`` (default) treats the whole
        export as a randomised campaign.
    strata
        Columns of the effect matrix; default the categorical features with at
        most 12 levels (first two).
    outcome_type
        "binary" (0/1 or true/false) or "continuous" (any finite number:
        revenue, spend; effects are in its unit).
    file
        Name of the export in error messages.

    Returns
    -------
    UpliftInput
        The export with the treatment labels as text, ``outcome_col`` as 0/1
        integers (binary) or floats (continuous) and an id column
        (``case_id`` = row number when ``id_col`` is missing).
    """
    for col in [treatment_col, outcome_col, *(c for c in (assignment_col,) if c)]:
        if col not in frame.columns:
            raise DataError(file=file, column=col, expected=f"present (got {list(frame.columns)})")
    cases = frame.reset_index(drop=True).copy()
    if id_col is None or id_col not in cases.columns:
        id_col = "case_id"
        cases[id_col] = np.arange(len(cases))
    cases[outcome_col] = _outcome(cases, outcome_col, id_col, outcome_type, file=file)
    cases[treatment_col] = cases[treatment_col].map(label_text)
    _check_assignment(cases, assignment_col, id_col, file=file)
    reserved = {id_col, treatment_col, outcome_col, assignment_col, revenue_col, cost_col}
    feats = list(features) if features is not None else [c for c in cases if c not in reserved]
    missing = [c for c in feats if c not in cases.columns]
    if missing:
        raise DataError(file=file, column=missing[0], expected="present (a feature)")
    if strata is None:
        strata = [
            c
            for c in feats
            if not pd.api.types.is_numeric_dtype(cases[c]) and cases[c].nunique() <= 12
        ][:2]
    return UpliftInput(
        cases=cases,
        treatment_col=treatment_col,
        outcome_col=outcome_col,
        features=feats,
        control=label_text(control),
        id_col=id_col,
        assignment_col=assignment_col,
        revenue_col=revenue_col,
        cost_col=cost_col,
        customer_col=id_col,
        strata=list(strata),
        source="campaign",
        outcome_type=outcome_type,
    )


def _check_assignment(cases: pd.DataFrame, col: str | None, id_col: str, *, file: str) -> None:
    """Refuse an assignment column with a value other than "random" or "rule"."""
    if col is None:
        return
    bad = ~cases[col].isin(["random", "rule"])
    if bad.any():
        raise DataError(
            file=file,
            column=col,
            rows=cases.loc[bad, id_col].astype(str).unique()[:20].tolist(),
            expected="random or rule (map your labels with values:)",
        )


def _outcome(cases: pd.DataFrame, col: str, id_col: str, kind: str, *, file: str) -> pd.Series:
    """The outcome column checked and typed: 0/1 integers (binary) or finite floats."""
    y = cases[col]
    if kind == "binary":
        if y.dtype == bool or set(pd.unique(y.dropna())) <= {0, 1}:
            return y.astype(int) if y.notna().all() else y
        bad = ~y.isin([0, 1, True, False]) & y.notna()
        expected = "a binary outcome (0/1 or true/false; outcome_type: continuous for amounts)"
    else:
        number = pd.to_numeric(y, errors="coerce")
        bad = (number.isna() | ~np.isfinite(number.fillna(0.0))) & y.notna()
        if not bad.any():
            return number.astype(float)
        expected = "a continuous outcome (a finite number)"
    rows = cases.loc[bad, id_col].astype(str).unique()[:20].tolist()
    raise DataError(file=file, column=col, rows=rows, expected=expected)


def read_campaign(source, *, database: str | None = None, base_dir: str | None = None):
    """Read, map and wrap a campaign export (the configuration's ``uplift.campaign``).

    ``source`` is a :class:`~retention_lab.uplift.settings.CampaignSource`: its
    ``columns`` map the canonical ``customer_id``, ``treatment``, ``outcome``
    and ``assignment`` to the export's columns and its ``values`` map labels,
    as for the customers table. ``assignment`` says how arms were given:
    every row randomised, every row observational (staff or a rule chose), or
    mixed (the assignment column says random or rule per row).
    ``load_config`` makes a relative path absolute from the configuration's folder.

    Returns
    -------
    UpliftInput
        See :func:`from_frame`; cases in canonical names (customer_id,
        treatment, outcome, assignment when not randomised, the covariates).
    """
    frame, label = read_raw_table("campaign", source, database=database, base_dir=base_dir)
    frame = map_columns(frame, "campaign", source, file=label)
    assignment_col = None
    if source.assignment == "observational":
        frame = frame.assign(assignment="rule")
        assignment_col = "assignment"
    elif source.assignment == "mixed":
        assignment_col = "assignment"
    return from_frame(
        frame,
        treatment_col="treatment",
        outcome_col="outcome",
        control=source.control,
        features=source.features,
        id_col="customer_id",
        assignment_col=assignment_col,
        outcome_type=source.outcome_type,
        file=label,
    )


def prepare(tables, *, settings, truth=None) -> UpliftInput:
    """The stage's cases: the campaign export when configured, else the canonical adapter.

    ``settings`` is the configuration's ``uplift`` section (``UpliftSettings``).
    """
    if settings.campaign is not None:
        return read_campaign(settings.campaign)
    return case_table(
        tables, horizon_months=settings.horizon_months, features=settings.features, truth=truth
    )


def active_customers(tables, *, features: list[str] | None = None) -> pd.DataFrame:
    """Active customers at ``as_of`` with their most recent problem, ready to score.

    Customers without any recorded problem are left out (the learners were
    trained on cases that answer a problem).

    Returns
    -------
    pandas.DataFrame
        customer_id, the customer covariates, tenure_months (at ``as_of``),
        problem_type and severity of the latest problem, problem_date.
    """
    cust = tables.customers
    if tables.problems is None or "end_date" not in cust.columns:
        return pd.DataFrame(columns=["customer_id", *(features or [])])
    active = cust[cust["end_date"].isna()].copy()
    probs = tables.problems.sort_values("date").drop_duplicates("customer_id", keep="last")
    keep = ["customer_id", "date", "problem_type"] + (
        ["severity"] if "severity" in probs.columns else []
    )
    probs = probs[keep].rename(columns={"date": "problem_date"})
    active = active.drop(columns=["problem_type", "severity"], errors="ignore")
    out = active.merge(probs, on="customer_id", how="inner")
    for col in ("problem_type", "segment"):
        if col in out.columns:
            out[col] = out[col].astype(object)
    return out.reset_index(drop=True)
