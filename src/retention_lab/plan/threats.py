"""Threat criticality and the instrument playbook.

``threat_table`` ranks problem types by how often they happen, how much they
raise the churn rate while they are open (a crude rate ratio: churns per
customer-day inside the problem windows against outside them), the churn they
cause (excess churns and their share of all churn) and the value that churn
destroys. ``playbook`` picks, per problem type and segment, the instrument with
the best expected net value (effect x customer value - cost), the runner-up,
or "do nothing" where no instrument pays off.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from retention_lab.units import Z95

DO_NOTHING = "do nothing"


def threat_table(
    tables,
    *,
    values: pd.DataFrame,
    window_days: float = 91.0,
    adjusted: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Problem types ranked by the value their churn destroys.

    A churn counts as inside a problem window when it happens within
    ``window_days`` of a problem of that type. The rate ratio compares churns
    per customer-day inside windows with the rate outside any window (customer
    time outside = all customer time minus the windows; overlaps are ignored),
    with a log-normal 95% CI. Excess churns are ``inside * (1 - 1/ratio)``
    (bounds from the ratio's CI); value lost weighs each excess churn by the mean
    value of an active customer of the churned customers' segments.

    ``adjusted`` is the survival stage's threat table (Cox model with problems
    as time-varying covariates); when given, its hazard ratio and 95% CI are
    added as ``cox_hazard_ratio``, ``cox_hr_lower``, ``cox_hr_upper`` (adjusted for
    the customer covariates, unlike the crude rate ratio).

    Returns
    -------
    pandas.DataFrame
        problem_type, problems, customers, rate_ratio, ratio_lower, ratio_upper,
        churns_inside, excess_churn, excess_lower, excess_upper, share_of_churn,
        share_lower, share_upper, value_lost, value_lower, value_upper, rank.
    """
    cols = [
        "problem_type", "problems", "customers", "rate_ratio", "ratio_lower", "ratio_upper",
        "churns_inside", "excess_churn", "excess_lower", "excess_upper", "share_of_churn",
        "share_lower", "share_upper", "value_lost", "value_lower", "value_upper", "rank",
    ]  # fmt: skip
    problems, cust = tables.problems, tables.customers
    if problems is None or problems.empty or "end_date" not in cust.columns:
        return pd.DataFrame(columns=cols)
    as_of = pd.Timestamp(tables.as_of)
    c = cust[["customer_id", "signup_date", "end_date"]].assign(
        customer_id=cust["customer_id"].astype(str)
    )
    stop = c["end_date"].fillna(as_of)
    total_days = float((stop - c["signup_date"]).dt.days.clip(lower=0).sum())
    churned = c["end_date"].notna()
    p = problems[["customer_id", "date", "problem_type"]].assign(
        customer_id=problems["customer_id"].astype(str),
        problem_type=problems["problem_type"].astype(str),
    )
    p = p.merge(c, on="customer_id")
    win_end = (p["date"] + pd.Timedelta(days=window_days)).where(
        lambda x: x < p["end_date"].fillna(as_of), p["end_date"].fillna(as_of)
    )
    p["exposure"] = (win_end - p["date"]).dt.days.clip(lower=0)
    p["churn_inside"] = (
        p["end_date"].notna()
        & (p["end_date"] >= p["date"])
        & (p["end_date"] < p["date"] + pd.Timedelta(days=window_days))
    )
    seg_value = pd.Series(dtype=float)
    if "segment" in values.columns:
        seg_value = values.groupby(values["segment"].astype(str))["value"].mean()
    mean_value = float(values["value"].mean()) if len(values) else 0.0
    segment = cust.set_index(cust["customer_id"].astype(str)).get("segment")
    p["value"] = (
        segment.reindex(p["customer_id"]).astype(str).map(seg_value).to_numpy(float)
        if segment is not None and len(seg_value)
        else mean_value
    )
    p["value"] = p["value"].fillna(mean_value)
    inside_days = float(p["exposure"].sum())
    inside_churn = int(p.drop_duplicates("customer_id", keep="last")["churn_inside"].sum())
    outside_churn = max(int(churned.sum()) - inside_churn, 1)
    outside_rate = outside_churn / max(total_days - inside_days, 1.0)
    n_churned = max(int(churned.sum()), 1)
    rows = []
    for kind, g in p.groupby("problem_type", sort=True):
        a = int(g["churn_inside"].sum())
        rate = a / max(float(g["exposure"].sum()), 1.0)
        rr = rate / outside_rate if a else 0.0
        se = np.sqrt(1.0 / max(a, 1) + 1.0 / outside_churn)
        lo, hi = (rr * np.exp(-Z95 * se), rr * np.exp(Z95 * se)) if a else (0.0, 0.0)

        def excess(ratio: float, a: int = a) -> float:
            return a * (1.0 - 1.0 / ratio) if ratio > 1 else 0.0

        v = float(g.loc[g["churn_inside"], "value"].mean()) if a else 0.0
        ex, ex_lo, ex_hi = excess(rr), excess(lo), excess(hi)
        rows.append(
            (kind, len(g), g["customer_id"].nunique(), rr, lo, hi, a, ex, ex_lo, ex_hi,
             ex / n_churned, ex_lo / n_churned, ex_hi / n_churned, ex * v, ex_lo * v, ex_hi * v)
        )  # fmt: skip
    table = pd.DataFrame(rows, columns=cols[:-1]).sort_values(
        "value_lost", ascending=False, ignore_index=True
    )
    table["rank"] = np.arange(1, len(table) + 1)
    if adjusted is not None and {"problem_type", "hazard_ratio"} <= set(adjusted.columns):
        cox = adjusted.assign(problem_type=adjusted["problem_type"].astype(str))
        cox = cox.drop_duplicates("problem_type").set_index("problem_type")
        pairs = (("hazard_ratio", "cox_hazard_ratio"), ("hr_lower", "cox_hr_lower"),
                 ("hr_upper", "cox_hr_upper"))  # fmt: skip
        for k, (src, dst) in enumerate(p for p in pairs if p[0] in cox.columns):
            table.insert(6 + k, dst, table["problem_type"].map(cox[src]).to_numpy(float))
    return table


def playbook(
    cells: pd.DataFrame,
    *,
    value_col: str = "value",
) -> pd.DataFrame:
    """Best and runner-up instrument per problem type x segment, or "do nothing".

    Parameters
    ----------
    cells
        One row per problem_type, segment and instrument: effect, effect_lower,
        effect_upper (retention gain), cost (mean per customer), ``value_col``
        (mean value of a retained customer), cases (randomised cases behind it).

    Returns
    -------
    pandas.DataFrame
        problem_type, segment, best, best_net_value, net_lower, net_upper,
        runner_up, runner_up_net_value, cost_per_saved, cps_lower, cps_upper
        (inf where the effect may be nil), return_on_spend, ros_lower, ros_upper,
        confident (the best's net value CI is above 0). Where nothing pays, the
        cost and return columns describe the least bad instrument (the runner-up).
    """
    c = cells.copy()
    c["net"] = c["effect"] * c[value_col] - c["cost"]
    c["net_lower"] = c["effect_lower"] * c[value_col] - c["cost"]
    c["net_upper"] = c["effect_upper"] * c[value_col] - c["cost"]
    rows = []
    for (kind, seg), g in c.groupby(["problem_type", "segment"], sort=True):
        g = g.sort_values("net", ascending=False)
        top = g.iloc[0]
        second = g.iloc[1] if len(g) > 1 else None
        pays = top["net"] > 0
        cost = float(top["cost"])
        eff = float(top["effect"])
        rows.append(
            {
                "problem_type": kind,
                "segment": seg,
                "best": top["instrument"] if pays else DO_NOTHING,
                "best_net_value": float(top["net"]) if pays else 0.0,
                "net_lower": float(top["net_lower"]) if pays else 0.0,
                "net_upper": float(top["net_upper"]) if pays else 0.0,
                "runner_up": (
                    (
                        second["instrument"]
                        if second is not None and second["net"] > 0
                        else DO_NOTHING
                    )
                    if pays
                    else top["instrument"]
                ),
                "runner_up_net_value": (
                    float(second["net"]) if pays and second is not None else float(top["net"])
                ),
                "cost_per_saved": cost / eff if eff > 0 else np.inf,
                "cps_lower": cost / top["effect_upper"] if top["effect_upper"] > 0 else np.inf,
                "cps_upper": cost / top["effect_lower"] if top["effect_lower"] > 0 else np.inf,
                "return_on_spend": float(top["net"]) / cost if cost > 0 else np.nan,
                "ros_lower": float(top["net_lower"]) / cost if cost > 0 else np.nan,
                "ros_upper": float(top["net_upper"]) / cost if cost > 0 else np.nan,
                "confident": bool(pays and top["net_lower"] > 0),
            }
        )
    return pd.DataFrame(rows)
