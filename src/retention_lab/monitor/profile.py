"""The input profile: what the monitor itself measures on a run's tables.

The profile is small and stored with the run (``tables/input_profile.parquet`` of
the monitoring run), so the next run can compare its inputs with this one
without reading the old data again:

- ``categorical``: counts of each level of a key customer feature (active customers);
- ``numeric``: quantiles of a numeric feature (active customers), for the PSI;
- ``problem_rate``: problem events of each type in the recent window and the
  customer-months at risk in it;
- ``churn_reason``: churns by recorded reason in the recent window.

The recent window (``recent_months`` before ``as_of``) keeps two runs' rates
and mixes from sharing most of their events, so a market change shows at full
strength instead of being diluted by years of history.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from retention_lab.monitor.settings import DEFAULTS
from retention_lab.units import DAYS_PER_MONTH

QUANTILE_LEVELS = np.round(np.linspace(0.0, 1.0, 41), 4)
PROFILE_COLUMNS = ["section", "feature", "level", "value", "n"]


def input_profile(
    tables,
    *,
    features: Sequence[str] = tuple(DEFAULTS.features),
    recent_months: float = DEFAULTS.recent_months,
) -> pd.DataFrame:
    """Profile a run's tables (a ``Tables``) for comparison with later runs.

    Returns
    -------
    pandas.DataFrame
        section ("categorical", "numeric", "problem_rate", "churn_reason"),
        feature, level (a category, ``q0.025``-style quantile label, problem
        type or reason), value (count, quantile value), n (customers, months
        at risk, churns). Features missing from the data are left out.
    """
    customers = tables.customers
    as_of = pd.Timestamp(tables.as_of)
    start = as_of - pd.Timedelta(days=recent_months * DAYS_PER_MONTH)
    active = (
        customers.loc[~customers["churned"].astype(bool)] if "churned" in customers else customers
    )
    parts = [_features(active, features)]
    if tables.has_dates:
        exposure = _months_at_risk(customers, start, as_of)
        if tables.problems is not None:
            parts.append(_problem_rates(tables.problems, start, as_of, exposure))
        if "churn_reason" in customers.columns:
            parts.append(_churn_reasons(customers, start, as_of))
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=PROFILE_COLUMNS)
    return pd.concat(parts, ignore_index=True)[PROFILE_COLUMNS]


def _features(active: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    rows = []
    for feature in features:
        if feature not in active.columns:
            continue
        column = active[feature].dropna()
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            values = np.quantile(column.to_numpy(float), QUANTILE_LEVELS) if len(column) else []
            rows += [
                ("numeric", feature, f"q{q:g}", float(v), len(column))
                for q, v in zip(QUANTILE_LEVELS, values, strict=False)
            ]
        else:
            counts = column.astype(str).value_counts()
            rows += [
                ("categorical", feature, level, float(c), len(column))
                for level, c in counts.items()
            ]
    return pd.DataFrame(rows, columns=PROFILE_COLUMNS)


def _months_at_risk(customers: pd.DataFrame, start: pd.Timestamp, as_of: pd.Timestamp) -> float:
    entry = customers["signup_date"].clip(lower=start)
    exit_ = customers["end_date"].where(customers["churned"].astype(bool), as_of).clip(upper=as_of)
    days = (exit_ - entry).dt.days.clip(lower=0)
    return float(days.sum() / DAYS_PER_MONTH)


def _problem_rates(
    problems: pd.DataFrame, start: pd.Timestamp, as_of: pd.Timestamp, exposure: float
) -> pd.DataFrame:
    recent = problems.loc[(problems["date"] > start) & (problems["date"] <= as_of)]
    counts = recent["problem_type"].astype(str).value_counts()
    types = sorted(set(problems["problem_type"].astype(str)))
    return pd.DataFrame(
        [("problem_rate", "problem_type", t, float(counts.get(t, 0)), exposure) for t in types],
        columns=PROFILE_COLUMNS,
    )


def _churn_reasons(
    customers: pd.DataFrame, start: pd.Timestamp, as_of: pd.Timestamp
) -> pd.DataFrame:
    churned = customers.loc[customers["churned"].astype(bool)]
    recent = churned.loc[(churned["end_date"] > start) & (churned["end_date"] <= as_of)]
    reasons = recent["churn_reason"].fillna("unknown").astype(str)
    counts = reasons.value_counts()
    levels = sorted(set(churned["churn_reason"].fillna("unknown").astype(str)))
    return pd.DataFrame(
        [("churn_reason", "churn_reason", r, float(counts.get(r, 0)), len(recent)) for r in levels],
        columns=PROFILE_COLUMNS,
    )
