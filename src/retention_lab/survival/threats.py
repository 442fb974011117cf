"""Threats: churn reasons as competing risks, and problem events as time-varying hazard factors."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from retention_lab.errors import DataError, StatisticalWarning
from retention_lab.survival._prep import DURATION, EVENT, check_customers
from retention_lab.survival.descriptive import ALL
from retention_lab.units import DAYS_PER_MONTH, Z95

HALF_DAY = 0.5 / DAYS_PER_MONTH
TREATED = ", treated"
UNKNOWN = "unknown"


def cumulative_incidence(
    customers: pd.DataFrame,
    *,
    reason_col: str = "churn_reason",
    by: str | None = None,
    step_months: float = 0.25,
) -> pd.DataFrame:
    """Cumulative incidence of churn by reason (Aalen-Johansen), overall or by group.

    Each reason competes with the others: the curves add up to one minus the
    Kaplan-Meier retention. Tied times are handled exactly (no jittering).
    Churned customers without a reason count as "unknown". Confidence intervals
    use the delta-method variance of Collett (2015, p. 411) on the log(-log) scale.

    Returns
    -------
    pandas.DataFrame
        ``grouping``, ``group``, ``churn_reason``, ``time_months``, ``cif``, ``lower``, ``upper``.
    """
    check_customers(customers, columns=[reason_col] + ([by] if by else []))
    groups = (
        [(ALL, customers)]
        if by is None
        else [(str(k), g) for k, g in customers.groupby(by, observed=True, sort=True)]
    )
    frames = []
    for level, frame in groups:
        reason = frame[reason_col].astype("string").fillna(UNKNOWN).where(frame[EVENT], None)
        for name in sorted(reason.dropna().unique()):
            cif = _aalen_johansen(
                frame[DURATION].to_numpy(float),
                frame[EVENT].to_numpy(bool),
                (reason == name).fillna(False).to_numpy(bool),
                step_months,
            )
            frames.append(cif.assign(grouping=by or ALL, group=level, churn_reason=name))
    cols = ["grouping", "group", "churn_reason", "time_months", "cif", "lower", "upper"]
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True)[cols]


def _aalen_johansen(
    t: np.ndarray, event: np.ndarray, cause: np.ndarray, step: float
) -> pd.DataFrame:
    times, inverse = np.unique(t, return_inverse=True)
    d = np.bincount(inverse, weights=event, minlength=times.size)
    dk = np.bincount(inverse, weights=cause & event, minlength=times.size)
    removed = np.bincount(inverse, minlength=times.size)
    n = removed[::-1].cumsum()[::-1].astype(float)
    surv = np.cumprod(1.0 - d / n)
    lag = np.concatenate([[1.0], surv[:-1]])
    f = np.cumsum(lag * dk / n)
    # Collett's variance: sum_i (F - F_i)^2 a_i + sum_i b_i - 2 sum_i (F - F_i) c_i, as prefix sums
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(n > d, d / (n * (n - d)), 0.0)
    b = lag**2 * dk * (n - dk) / n**3
    c = lag * dk / n**2
    a0, a1, a2 = np.cumsum(a), np.cumsum(a * f), np.cumsum(a * f**2)
    var = f**2 * a0 - 2 * f * a1 + a2 + np.cumsum(b) - 2 * (f * np.cumsum(c) - np.cumsum(c * f))
    var = np.maximum(var, 0.0)
    grid = np.round(np.arange(0.0, times[-1] + step, step), 6)
    idx = np.searchsorted(times, grid, side="right") - 1
    cif = np.where(idx >= 0, f[np.maximum(idx, 0)], 0.0)
    v = np.where(idx >= 0, var[np.maximum(idx, 0)], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(v) / (cif * np.abs(np.log(cif)))
        loglog = np.log(-np.log(cif))
        lower = np.exp(-np.exp(loglog + Z95 * se))
        upper = np.exp(-np.exp(loglog - Z95 * se))
    ok = (cif > 0) & (cif < 1) & np.isfinite(se)
    return pd.DataFrame(
        {
            "time_months": grid,
            "cif": cif,
            "lower": np.where(ok, lower, cif),
            "upper": np.where(ok, upper, cif),
        }
    )


def reason_table(
    cif: pd.DataFrame,
    customers: pd.DataFrame,
    *,
    horizons: Sequence[float],
    reason_col: str = "churn_reason",
) -> pd.DataFrame:
    """Churn reasons ranked by how many customers they take, with cumulative incidence at horizons.

    Returns
    -------
    pandas.DataFrame
        ``churn_reason``, ``churned`` (customers), ``share_of_churn``, then
        ``cif_<h>m`` per horizon within follow-up (overall curves), sorted by ``churned``.
    """
    churned = customers.loc[customers[EVENT], reason_col].astype("string").fillna(UNKNOWN)
    table = churned.value_counts().rename_axis("churn_reason").rename("churned").reset_index()
    table["share_of_churn"] = table["churned"] / max(len(churned), 1)
    overall = cif[cif["grouping"] == ALL]
    if overall.empty:
        return table
    top = overall["time_months"].max()
    for h in horizons:
        if h > top:
            continue
        at = overall[
            np.isclose(
                overall["time_months"], overall["time_months"][overall["time_months"] <= h].max()
            )
        ]
        table[f"cif_{h:g}m"] = (
            table["churn_reason"].map(at.set_index("churn_reason")["cif"]).fillna(0.0)
        )
    return table.sort_values("churned", ascending=False, ignore_index=True)


def problem_episodes(
    customers: pd.DataFrame,
    problems: pd.DataFrame,
    *,
    covariates: Sequence[str] = (),
    strata: Sequence[str] = (),
    window_days: float | dict[str, float] = 56.0,
    problem_types: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Counting-process rows (start, stop] per customer with one 0/1 column per active problem type.

    A problem of type k marks the customer exposed to k from its date for
    ``window_days`` (a number, or one per type); overlapping problems of one type
    extend the exposure. Times are months from signup; a tenure ends half a day
    after ``tenure_months`` (the end of the last day), so a churn on the day of a
    problem counts as exposed, and a churn on the signup day is kept.

    Returns
    -------
    pandas.DataFrame
        ``customer_id``, ``start``, ``stop`` (months), ``churned`` (on the last row of a
        churned customer), one column ``problem[<type>]`` per type, and the
        ``covariates`` and ``strata`` columns copied from ``customers``.
    """
    check_customers(customers, columns=["signup_date", *covariates, *strata])
    for col in ("customer_id", "date", "problem_type"):
        if col not in problems.columns:
            raise DataError(file="problems", column=col, expected="a column of the problems table")
    types = (
        sorted(problems["problem_type"].astype(str).unique())
        if problem_types is None
        else list(problem_types)
    )
    windows = (
        window_days if isinstance(window_days, dict) else {k: float(window_days) for k in types}
    )
    ci, t0, t1, kind, tenure = _problem_intervals(customers, problems, types, windows)
    cust_k, start_k, stop_k, exposure = _exposure_steps(
        ci, t0, t1, kind, tenure, n=len(customers), k=len(types)
    )
    is_last = np.r_[cust_k[1:] != cust_k[:-1], True]
    event = customers[EVENT].to_numpy(bool)[cust_k] & is_last
    out = pd.DataFrame(
        {
            "customer_id": customers["customer_id"].to_numpy()[cust_k],
            "start": start_k,
            "stop": stop_k,
            EVENT: event,
        }
    )
    for j, name in enumerate(types):
        out[f"problem[{name}]"] = exposure[:, j]
    for col in dict.fromkeys([*covariates, *strata]):
        out[col] = customers[col].to_numpy()[cust_k]
    return out


def _problem_intervals(customers, problems, types, windows):
    """Each problem's customer (row position), exposure start and end (months) and type code.

    Problems after the customer's tenure are dropped; a start before signup is moved to 0.
    The tenure is returned too, ending half a day after ``tenure_months``.
    """
    pos = pd.Series(np.arange(len(customers)), index=customers["customer_id"].to_numpy())
    p = problems[
        problems["customer_id"].isin(pos.index) & problems["problem_type"].astype(str).isin(types)
    ]
    ci = pos.loc[p["customer_id"].to_numpy()].to_numpy()
    signup = pd.to_datetime(customers["signup_date"]).to_numpy()
    t0 = (
        (pd.to_datetime(p["date"]).to_numpy() - signup[ci]) / np.timedelta64(1, "D")
    ) / DAYS_PER_MONTH
    kind = pd.Categorical(p["problem_type"].astype(str), categories=types).codes.astype(np.int64)
    width = np.array([windows[k.removesuffix(TREATED)] for k in types]) / DAYS_PER_MONTH
    # a tenure ends at the end of its last day: a churn on the signup day, or on the day of
    # a problem, is then at risk and exposed to that problem
    tenure = customers[DURATION].to_numpy(float) + HALF_DAY
    t1 = t0 + width[kind]
    inside = t0 < tenure[ci]
    ci, t0, t1, kind = ci[inside], np.maximum(t0[inside], 0.0), t1[inside], kind[inside]
    return ci, t0, t1, kind, tenure


def _exposure_steps(ci, t0, t1, kind, tenure, *, n: int, k: int):
    """Split each tenure at the change points of its exposures: (start, stop] and 0/1 per type.

    Returns
    -------
    tuple of numpy.ndarray
        Customer row position, start, stop and the (rows x types) exposure of each step.
    """
    # change points: customer start (0), problem start (+1), problem end (-1), tenure end
    cust = np.concatenate([np.arange(n), ci, ci])
    time = np.concatenate([np.zeros(n), t0, np.minimum(t1, tenure[ci])])
    delta = np.zeros((cust.size, k), dtype=np.int32)
    m = ci.size
    delta[n + np.arange(m), kind] = 1
    delta[n + m + np.arange(m), kind] = -1
    order = np.lexsort((time, cust))
    cust, time, delta = cust[order], time[order], delta[order]
    # cumulative exposure counts within customer
    counts = np.cumsum(delta, axis=0)
    first = np.r_[True, cust[1:] != cust[:-1]]
    base = np.maximum.accumulate(np.where(first, np.arange(cust.size), 0))
    counts = counts - np.vstack([np.zeros((1, k), np.int32), counts[:-1]])[base]
    # one row per change point: exposure holds until the next change point (or tenure end)
    last = np.r_[cust[1:] != cust[:-1], True]
    stop = np.where(last, tenure[cust], np.r_[time[1:], 0.0])
    # collapse several change points at the same time: keep the last state at that time
    same_next = np.r_[(cust[1:] == cust[:-1]) & (time[1:] == time[:-1]), False]
    keep = ~same_next & (stop > time)
    exposure = (counts[keep] > 0).astype(np.int8)
    cust_k, start_k, stop_k = cust[keep], time[keep], stop[keep]
    return cust_k, start_k, stop_k, exposure


def events_while_exposed(
    customers: pd.DataFrame,
    problems: pd.DataFrame,
    *,
    window_days: float | dict[str, float],
    problem_types: Sequence[str],
) -> pd.DataFrame:
    """Which problem types were active when each churned customer left.

    Returns
    -------
    pandas.DataFrame
        One row per churned customer: ``customer_id`` and one 0/1 column per problem
        type, named by the type (``network``, ``billing``, ...).
    """
    churned = customers[customers[EVENT]]
    episodes = problem_episodes(
        churned, problems, window_days=window_days, problem_types=problem_types
    )
    return episodes[episodes[EVENT]].drop(columns=["start", "stop", EVENT]).reset_index(drop=True)


def mark_treated(problems: pd.DataFrame, interventions: pd.DataFrame | None) -> pd.DataFrame:
    """Rename the type of problems answered by a retention action to ``"<type>, treated"``.

    An action (``instrument`` other than "none") changes the hazard during the
    problem's window, so treated windows get their own hazard ratio and the plain
    ``problem[<type>]`` term keeps the effect of an untreated problem (controls,
    "none", count as untreated). Problems link to actions by ``problem_id`` when
    both tables have it, otherwise by customer, date and problem type.

    Returns
    -------
    pandas.DataFrame
        ``problems`` with its columns (``customer_id``, ``date``, ``problem_type``, ...),
        ``problem_type`` renamed where the problem was treated.
    """
    if interventions is None or interventions.empty or "instrument" not in interventions.columns:
        return problems
    acted = interventions[interventions["instrument"].astype(str) != "none"]
    if "problem_id" in problems.columns and "problem_id" in acted.columns:
        treated = problems["problem_id"].isin(acted["problem_id"])
    elif "problem_type" in acted.columns:
        keys = ["customer_id", "date", "problem_type"]
        marks = acted[keys].drop_duplicates().assign(_treated=True)
        treated = problems[keys].merge(marks, on=keys, how="left")["_treated"].fillna(False)
        treated = pd.Series(treated.to_numpy(bool), index=problems.index)
    else:
        return problems
    kind = problems["problem_type"].astype(str)
    return problems.assign(problem_type=kind.where(~treated.to_numpy(), kind + TREATED))


def threat_table(
    problem_hr: pd.DataFrame, exposed: pd.DataFrame, *, n_churned: int
) -> pd.DataFrame:
    """Problem types ranked by the churn they cause.

    For a churn that happened while problem windows A were active, the share of its
    hazard due to them is ``1 - exp(-sum_A gamma)`` (``gamma`` the estimated log
    hazard ratios, negative ones counted as 0), split over A in proportion to
    ``gamma``. Summed over churned customers this is the expected number of churns
    each type caused, treated and untreated windows together (churn under the
    current retention practice); the bounds redo the sum with that type's 95% CI
    bounds. ``problem_hr`` has one row per model term (``term``, ``level`` = problem
    type, ``kind`` "problem" or "problem_treated").

    Returns
    -------
    pandas.DataFrame
        ``problem_type``, ``hazard_ratio``, ``hr_lower``, ``hr_upper`` (untreated windows),
        ``hazard_ratio_treated`` (NaN-free: equals ``hazard_ratio`` when no window was
        treated), ``churned_while_active``, ``attributable_churn``, ``attributable_lower``,
        ``attributable_upper``, ``share_of_churn``, ``rank``.
    """
    terms = problem_hr.reset_index(drop=True)
    base = terms["level"].astype(str).to_numpy()
    E = exposed[terms["term"]].to_numpy(float) if len(exposed) else np.zeros((0, len(terms)))

    def attributable(g: np.ndarray) -> np.ndarray:
        g = np.maximum(g, 0.0)
        total = E @ g
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(total[:, None] > 0, E * g[None, :] / total[:, None], 0.0)
        per_term = (share * -np.expm1(-total)[:, None]).sum(axis=0)
        return pd.Series(per_term).groupby(base).sum()

    gamma = terms["log_hazard_ratio"].to_numpy(float)
    point = attributable(gamma)
    lower, upper = pd.Series(0.0, index=point.index), pd.Series(0.0, index=point.index)
    for kind in point.index:
        rows = base == kind
        lower[kind] = attributable(np.where(rows, terms["log_hr_lower"], gamma))[kind]
        upper[kind] = attributable(np.where(rows, terms["log_hr_upper"], gamma))[kind]
    plain = terms[terms["kind"] == "problem"].set_index("level").reindex(point.index)
    treated = terms[terms["kind"] == "problem_treated"].set_index("level")
    hr_treated = treated["hazard_ratio"].reindex(point.index).fillna(plain["hazard_ratio"])
    churned = pd.Series(E.sum(axis=0)).groupby(base).sum().reindex(point.index)
    table = pd.DataFrame(
        {
            "problem_type": point.index,
            "hazard_ratio": plain["hazard_ratio"].to_numpy(),
            "hr_lower": plain["hr_lower"].to_numpy(),
            "hr_upper": plain["hr_upper"].to_numpy(),
            "hazard_ratio_treated": hr_treated.to_numpy(),
            "churned_while_active": churned.to_numpy().astype(int),
            "attributable_churn": point.to_numpy(),
            "attributable_lower": lower.to_numpy(),
            "attributable_upper": upper.to_numpy(),
            "share_of_churn": point.to_numpy() / max(n_churned, 1),
        }
    ).sort_values("attributable_churn", ascending=False, ignore_index=True)
    table["rank"] = np.arange(1, len(table) + 1)
    if (table["churned_while_active"] < 10).any():
        few = table.loc[table["churned_while_active"] < 10, "problem_type"].tolist()
        warnings.warn(
            f"problem types {few} have fewer than 10 churns while active; their hazard "
            "ratios are imprecise",
            StatisticalWarning,
            stacklevel=2,
        )
    return table
