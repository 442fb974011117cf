"""Threat criticality and the instrument playbook.

``threat_table`` puts a value on the survival stage's threats (the churn each
problem type causes, from its Cox model) and ranks them by the value that churn
destroys. ``playbook`` picks, per problem type and segment, the instrument with
the best expected net value (effect x customer value - cost), the runner-up,
or "do nothing" where no instrument pays off.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DO_NOTHING = "do nothing"
THREAT_COLUMNS = [
    "problem_type", "value_lost", "value_lower", "value_upper", "hazard_ratio", "hr_lower",
    "hr_upper", "share_of_churn", "attributable_churn", "attributable_lower",
    "attributable_upper", "value_per_churn", "rank",
]  # fmt: skip


def threat_table(threats: pd.DataFrame | None, tables, *, values: pd.DataFrame) -> pd.DataFrame:
    """The survival stage's threats in money, ranked by the value their churn destroys.

    The churn each problem type causes is the survival stage's (``threats``:
    hazard ratios from the Cox model with problems as time-varying covariates,
    adjusted for the customer covariates, and the attributable churn with its
    95% bounds); the plan adds what it costs. Each caused churn is valued at the
    mean value of a customer of the segments that report the problem: the
    segments' mean values (``values``, the clv stage's) weighted by their share
    of the problem's reports.

    Returns
    -------
    pandas.DataFrame
        problem_type, value_lost, value_lower, value_upper (what a manager
        ranks by, first), hazard_ratio, hr_lower, hr_upper, share_of_churn,
        attributable_churn, attributable_lower, attributable_upper,
        value_per_churn, rank (by value lost). Empty when the survival stage
        gave no threats.
    """
    kept = [
        "problem_type", "hazard_ratio", "hr_lower", "hr_upper", "attributable_churn",
        "attributable_lower", "attributable_upper", "share_of_churn",
    ]  # fmt: skip
    if threats is None or threats.empty:
        return pd.DataFrame(columns=THREAT_COLUMNS)
    table = threats[kept].assign(problem_type=threats["problem_type"].astype(str))
    table["value_per_churn"] = table["problem_type"].map(_value_per_churn(tables, values))
    table["value_per_churn"] = table["value_per_churn"].fillna(_mean_value(values))
    for bound, column in (("value_lost", "attributable_churn"),
                          ("value_lower", "attributable_lower"),
                          ("value_upper", "attributable_upper")):  # fmt: skip
        table[bound] = table[column] * table["value_per_churn"]
    table = table.sort_values("value_lost", ascending=False, ignore_index=True)
    table["rank"] = np.arange(1, len(table) + 1)
    return table[THREAT_COLUMNS]


def _mean_value(values: pd.DataFrame) -> float:
    return float(values["value"].mean()) if len(values) else 0.0


def _value_per_churn(tables, values: pd.DataFrame) -> pd.Series:
    """Per problem type: the mean customer value of its segments, weighted by their reports."""
    problems, customers = tables.problems, tables.customers
    if problems is None or problems.empty or not {"segment"} <= {*values, *customers}:
        return pd.Series(dtype=float)
    segment_value = values.groupby(values["segment"].astype(str))["value"].mean()
    segment = customers.set_index(customers["customer_id"].astype(str))["segment"].astype(str)
    reports = pd.DataFrame(
        {
            "problem_type": problems["problem_type"].astype(str).to_numpy(),
            "value": segment.reindex(problems["customer_id"].astype(str))
            .map(segment_value)
            .to_numpy(float),
        }
    )
    return reports.groupby("problem_type")["value"].mean()


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
