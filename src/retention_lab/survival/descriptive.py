"""Descriptive survival: Kaplan-Meier, median tenure, log-rank tests, hazard over tenure, RMST."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter, NelsonAalenFitter
from lifelines.statistics import logrank_test, multivariate_logrank_test
from lifelines.utils import median_survival_times
from statsmodels.stats.multitest import multipletests

from retention_lab.errors import StatisticalWarning
from retention_lab.survival._prep import DURATION, EVENT, check_customers
from retention_lab.units import Z95

ALL = "all"


def _grid(customers: pd.DataFrame, step: float) -> np.ndarray:
    top = float(customers[DURATION].max())
    return np.round(np.arange(0.0, top + step, step), 6)


def _lower_upper(ci: pd.DataFrame) -> np.ndarray:
    """Columns (lower, upper) of a lifelines confidence-interval frame, found by name."""
    lower = [c for c in ci.columns if "lower" in c][0]
    upper = [c for c in ci.columns if "upper" in c][0]
    return ci[[lower, upper]].to_numpy(dtype=float)


def _rmst(t: np.ndarray, e: np.ndarray, tau: float) -> tuple[float, float]:
    """Kaplan-Meier RMST up to ``tau`` and its variance (Klein and Moeschberger, 2003, 4.5)."""
    times, inverse = np.unique(t, return_inverse=True)
    d = np.bincount(inverse, weights=e, minlength=times.size)
    n = np.bincount(inverse, minlength=times.size)[::-1].cumsum()[::-1].astype(float)
    keep = (times <= tau) & (d > 0)
    times, d, n = times[keep], d[keep], n[keep]
    surv = np.cumprod(1.0 - d / n)
    knots = np.concatenate([[0.0], times, [tau]])
    levels = np.concatenate([[1.0], surv])
    areas = levels * np.diff(knots)
    rmst = float(areas.sum())
    tail = areas[::-1].cumsum()[::-1][1:]  # area from each event time to tau
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(n > d, tail**2 * d / (n * (n - d)), 0.0)
    return rmst, float(terms.sum())


def _groups(customers: pd.DataFrame, by: str | None, *, min_customers: int = 2):
    """Yield (level, frame) per group; groups below ``min_customers`` are skipped with a warning."""
    if by is None:
        yield ALL, customers
        return
    small = []
    for level, frame in customers.groupby(by, observed=True, sort=True):
        if len(frame) < min_customers:
            small.append(str(level))
            continue
        yield str(level), frame
    if small:
        warnings.warn(
            f"{by} level(s) {small} have fewer than {min_customers} customers and are left "
            "out of the per-group survival tables; merge them with another level",
            StatisticalWarning,
            stacklevel=3,
        )


def km_table(
    customers: pd.DataFrame, *, by: str | None = None, step_months: float = 0.25
) -> pd.DataFrame:
    """Kaplan-Meier survival on a regular tenure grid, overall or by group.

    Groups with fewer than two customers are left out with a ``StatisticalWarning``.
    With no churn at all the curve stays at 1 (a documented result, not an error).

    Returns
    -------
    pandas.DataFrame
        ``grouping`` (``by`` or "all"), ``group``, ``time_months``, ``survival``,
        ``lower``, ``upper`` (95% pointwise, log-log), ``at_risk``; rows stop at the
        group's longest observed tenure.
    """
    check_customers(customers, columns=[by] if by else [])
    frames = []
    for level, frame in _groups(customers, by):
        grid = _grid(frame, step_months)
        kmf = KaplanMeierFitter().fit(frame[DURATION], frame[EVENT], timeline=grid)
        ci = _lower_upper(kmf.confidence_interval_survival_function_)
        durations = np.sort(frame[DURATION].to_numpy())
        at_risk = len(durations) - np.searchsorted(durations, grid, side="left")
        surv = kmf.survival_function_.iloc[:, 0].to_numpy()
        lower = np.where(np.isnan(ci[:, 0]), surv, ci[:, 0])
        upper = np.where(np.isnan(ci[:, 1]), surv, ci[:, 1])
        frames.append(
            pd.DataFrame(
                {
                    "grouping": by or ALL,
                    "group": level,
                    "time_months": grid,
                    "survival": surv,
                    "lower": lower,
                    "upper": upper,
                    "at_risk": at_risk,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def median_tenure(customers: pd.DataFrame, *, by: str | None = None) -> pd.DataFrame:
    """Median tenure with a 95% CI, overall or by group.

    A median (or CI bound) that the data never reach is ``inf``: more than half
    of the group is still retained at its longest observed tenure.

    Returns
    -------
    pandas.DataFrame
        ``grouping``, ``group``, ``customers``, ``churned``, ``median_months``,
        ``lower``, ``upper``, ``max_followup_months``.
    """
    check_customers(customers, columns=[by] if by else [])
    rows = []
    for level, frame in _groups(customers, by):
        kmf = KaplanMeierFitter().fit(frame[DURATION], frame[EVENT])
        ci = median_survival_times(kmf.confidence_interval_).to_numpy().ravel()
        rows.append(
            {
                "grouping": by or ALL,
                "group": level,
                "customers": len(frame),
                "churned": int(frame[EVENT].sum()),
                "median_months": float(kmf.median_survival_time_),
                "lower": float(ci[0]),
                "upper": float(ci[1]),
                "max_followup_months": float(frame[DURATION].max()),
            }
        )
    return pd.DataFrame(rows)


def retention_at(
    customers: pd.DataFrame, *, horizons: Sequence[float], by: str | None = None
) -> pd.DataFrame:
    """Share retained at each horizon (Kaplan-Meier) with a 95% CI.

    Horizons beyond a group's longest observed tenure are not estimable and are
    left out (with a ``StatisticalWarning``), never reported as NaN.

    Returns
    -------
    pandas.DataFrame
        ``grouping``, ``group``, ``horizon_months``, ``retention``, ``lower``, ``upper``.
    """
    check_customers(customers, columns=[by] if by else [])
    rows, dropped = [], []
    for level, frame in _groups(customers, by):
        top = float(frame[DURATION].max())
        usable = [float(h) for h in horizons if h <= top]
        dropped += [(level, h) for h in horizons if h > top]
        if not usable:
            continue
        kmf = KaplanMeierFitter().fit(frame[DURATION], frame[EVENT])
        surv = kmf.survival_function_at_times(usable).to_numpy()
        ci = kmf.confidence_interval_survival_function_
        idx = np.searchsorted(ci.index.to_numpy(), usable, side="right") - 1
        lo, hi = _lower_upper(ci.iloc[idx]).T
        for h, s, a, b in zip(usable, surv, lo, hi, strict=True):
            rows.append(
                {
                    "grouping": by or ALL,
                    "group": level,
                    "horizon_months": h,
                    "retention": float(s),
                    "lower": float(a if np.isfinite(a) else s),
                    "upper": float(b if np.isfinite(b) else s),
                }
            )
    if dropped:
        warnings.warn(
            f"retention is not estimable beyond the longest observed tenure; left out "
            f"{dropped[:5]} (group, horizon in months)",
            StatisticalWarning,
            stacklevel=2,
        )
    return pd.DataFrame(
        rows, columns=["grouping", "group", "horizon_months", "retention", "lower", "upper"]
    )


def logrank_tests(
    customers: pd.DataFrame, *, by: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Multivariate and pairwise log-rank tests of equal survival across the levels of a grouping.

    Groupings with a single level (or no churn) are left out with a ``StatisticalWarning``.

    Returns
    -------
    tuple of pandas.DataFrame
        ``overall``: ``grouping``, ``levels``, ``test_statistic``, ``df``, ``p_value``;
        ``pairwise``: ``grouping``, ``group_a``, ``group_b``, ``test_statistic``, ``p_value``,
        ``p_holm`` (Holm-adjusted within the grouping).
    """
    check_customers(customers, columns=list(by))
    overall, pairwise = [], []
    for col in by:
        kept = customers.groupby(col, observed=True).filter(lambda g: len(g) >= 2)
        levels = sorted(kept[col].astype(str).unique())
        if len(levels) < 2 or kept[EVENT].sum() == 0:
            warnings.warn(
                f"no log-rank test for {col}: it needs two levels with customers and at "
                "least one churn",
                StatisticalWarning,
                stacklevel=2,
            )
            continue
        res = multivariate_logrank_test(kept[DURATION], kept[col].astype(str), kept[EVENT])
        overall.append(
            {
                "grouping": col,
                "levels": len(levels),
                "test_statistic": res.test_statistic,
                "df": res.degrees_of_freedom,
                "p_value": res.p_value,
            }
        )
        rows = []
        text = kept[col].astype(str)
        for a, b in combinations(levels, 2):
            fa, fb = kept[text == a], kept[text == b]
            r = logrank_test(fa[DURATION], fb[DURATION], fa[EVENT], fb[EVENT])
            rows.append(
                {
                    "grouping": col,
                    "group_a": a,
                    "group_b": b,
                    "test_statistic": r.test_statistic,
                    "p_value": r.p_value,
                }
            )
        frame = pd.DataFrame(rows)
        frame["p_holm"] = multipletests(frame["p_value"].to_numpy(), method="holm")[1]
        pairwise.append(frame)
    overall_df = pd.DataFrame(
        overall, columns=["grouping", "levels", "test_statistic", "df", "p_value"]
    )
    pair_df = (
        pd.concat(pairwise, ignore_index=True)
        if pairwise
        else pd.DataFrame(
            columns=["grouping", "group_a", "group_b", "test_statistic", "p_value", "p_holm"]
        )
    )
    return overall_df, pair_df


def hazard_table(
    customers: pd.DataFrame,
    *,
    by: str | None = None,
    bandwidth_months: float = 1.0,
    step_months: float = 0.25,
    min_at_risk: int = 50,
) -> pd.DataFrame:
    """Monthly churn hazard over tenure: kernel-smoothed Nelson-Aalen (Epanechnikov), with a 95% CI.

    Renewal spikes and early-life risk show as peaks; ``bandwidth_months`` trades
    noise for sharpness (a spike narrower than the bandwidth is flattened). The
    curve stops where fewer than ``min_at_risk`` customers remain at risk (the
    tail would be noise).

    Returns
    -------
    pandas.DataFrame
        ``grouping``, ``group``, ``time_months``, ``hazard`` (churn per customer-month),
        ``lower``, ``upper``; groups without churn are left out with a warning.
    """
    check_customers(customers, columns=[by] if by else [])
    frames, no_events = [], []
    for level, frame in _groups(customers, by):
        if frame[EVENT].sum() == 0:
            no_events.append(level)
            continue
        grid = _grid(frame, step_months)
        naf = NelsonAalenFitter().fit(frame[DURATION], frame[EVENT], timeline=grid)
        durations = np.sort(frame[DURATION].to_numpy(float))
        at_risk = len(durations) - np.searchsorted(durations, grid, side="left")
        smooth = naf.smoothed_hazard_(bandwidth_months)
        # lifelines 0.30 labels these two columns the wrong way round; sort them per row
        ci = np.sort(
            naf.smoothed_hazard_confidence_intervals_(bandwidth_months).to_numpy(float), axis=1
        )
        frames.append(
            pd.DataFrame(
                {
                    "grouping": by or ALL,
                    "group": level,
                    "time_months": smooth.index.to_numpy(),
                    "hazard": smooth.iloc[:, 0].to_numpy(),
                    "lower": ci[:, 0],
                    "upper": ci[:, 1],
                }
            ).loc[at_risk >= min(min_at_risk, len(frame))]
        )
    if no_events:
        warnings.warn(
            f"no hazard curve for {by} level(s) {no_events}: no churn observed",
            StatisticalWarning,
            stacklevel=2,
        )
    if not frames:
        return pd.DataFrame(
            columns=["grouping", "group", "time_months", "hazard", "lower", "upper"]
        )
    out = pd.concat(frames, ignore_index=True)
    return out.fillna({"lower": 0.0})


def rmst_table(
    customers: pd.DataFrame, *, by: str, tau_months: float, reference: str | None = None
) -> pd.DataFrame:
    """Restricted mean survival time up to ``tau_months`` by group, and differences to a reference.

    The reference is the largest group unless given. ``tau_months`` must not
    exceed the shortest group's longest follow-up (``DataError`` otherwise is
    avoided by capping ``tau`` there, stated in the ``tau_months`` column).

    Returns
    -------
    pandas.DataFrame
        ``grouping``, ``group``, ``customers``, ``tau_months``, ``rmst_months``, ``lower``,
        ``upper``, ``reference``, ``difference_months``, ``difference_lower``,
        ``difference_upper`` (95% CIs, normal approximation).
    """
    check_customers(customers, columns=[by])
    groups = dict(_groups(customers, by))
    tau = min([tau_months] + [float(f[DURATION].max()) for f in groups.values()])
    if tau < tau_months:
        warnings.warn(
            f"RMST horizon capped at {tau:.1f} months (the shortest follow-up among the "
            f"{by} groups) instead of {tau_months}",
            StatisticalWarning,
            stacklevel=2,
        )
    est = {}
    for level, frame in groups.items():
        mean, var = _rmst(frame[DURATION].to_numpy(float), frame[EVENT].to_numpy(float), tau)
        est[level] = (mean, var, len(frame))
    ref = reference or max(est, key=lambda k: est[k][2])
    rows = []
    for level, (mean, var, n) in est.items():
        se = np.sqrt(var)
        diff = mean - est[ref][0]
        se_diff = 0.0 if level == ref else np.sqrt(var + est[ref][1])
        rows.append(
            {
                "grouping": by,
                "group": level,
                "customers": n,
                "tau_months": tau,
                "rmst_months": mean,
                "lower": mean - Z95 * se,
                "upper": mean + Z95 * se,
                "reference": ref,
                "difference_months": diff,
                "difference_lower": diff - Z95 * se_diff,
                "difference_upper": diff + Z95 * se_diff,
            }
        )
    return pd.DataFrame(rows)
