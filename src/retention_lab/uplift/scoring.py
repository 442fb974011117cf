"""Predicted effects for the plan stage: any frame of customers, from the chosen learners."""

from __future__ import annotations

import numpy as np
import pandas as pd

from retention_lab.uplift.cases import UpliftInput
from retention_lab.uplift.learners import PREDICTION_COLUMNS
from retention_lab.uplift.summary import UpliftSummary, _empty

EFFECT_TABLE_COLUMNS = [
    "customer_id",
    "instrument",
    *PREDICTION_COLUMNS,
    "problem_type",
    "segment",
    "cell_effect",
    "cell_revenue_effect",
    "cost",
]


def _cost_model(data: UpliftInput) -> dict[str, tuple[float, float]]:
    """Per instrument: cost = a + b * monthly_fee (least squares), or the mean cost."""
    out = {}
    if data.cost_col is None:
        return out
    c = data.cases
    for inst in data.instruments:
        g = c[c[data.treatment_col].astype(str) == inst]
        if "monthly_fee" in g.columns and len(g) > 2 and g["monthly_fee"].std() > 0:
            b, a = np.polyfit(g["monthly_fee"].to_numpy(float), g[data.cost_col].to_numpy(float), 1)
            out[inst] = (float(a), float(b))
        elif len(g):
            out[inst] = (float(g[data.cost_col].mean()), 0.0)
    return out


def predict_effects(
    summary: UpliftSummary,
    customers: pd.DataFrame,
    *,
    data: UpliftInput | None = None,
    id_col: str = "customer_id",
) -> pd.DataFrame:
    """Predicted effect of every instrument for every customer, from the chosen learner.

    ``customers`` needs the learners' features (e.g. :func:`active_customers`:
    each active customer with their most recent problem). Pass the training
    ``data`` to add the expected cost of each instrument for the customer.

    Returns
    -------
    pandas.DataFrame
        One row per (customer, instrument): customer_id, instrument, learner,
        effect (predicted change in the probability of being retained at the
        horizon), effect_std (spread over the fold models), effect_lower and
        effect_upper (effect +/- 1.96 effect_std), problem_type, segment (when
        present), cell_effect and cell_revenue_effect (the AIPW effect of the
        customer's problem x segment cell, NaN where not estimable), cost
        (expected cost of the instrument for this customer; NaN without costs).
    """
    if not summary.available or summary.chosen.empty or customers.empty:
        return _empty(EFFECT_TABLE_COLUMNS)
    parts = []
    for learner, chosen in summary.chosen.groupby("learner", sort=False):
        pred = summary.models[learner].predict_effects(customers, id_col=id_col)
        parts.append(pred[pred["instrument"].isin(chosen["instrument"])])
    out = pd.concat(parts, ignore_index=True).rename(columns={id_col: "customer_id"})
    out = out.sort_values(["customer_id", "instrument"], kind="stable", ignore_index=True)
    extra = [c for c in summary.strata if c in customers.columns]
    if extra:
        info = customers[[id_col, *extra]].rename(columns={id_col: "customer_id"})
        out = out.merge(info.drop_duplicates("customer_id"), on="customer_id", how="left")
        m = summary.matrix_table()
        if not m.empty:
            cell = m[[*extra, "instrument", "effect", "revenue_effect"]].rename(
                columns={"effect": "cell_effect", "revenue_effect": "cell_revenue_effect"}
            )
            out = out.merge(cell, on=[*extra, "instrument"], how="left")
    cost = np.full(len(out), np.nan)
    if data is not None:
        model = _cost_model(data)
        fee = None
        if "monthly_fee" in customers.columns:
            fee = out["customer_id"].map(
                customers.drop_duplicates(id_col).set_index(id_col)["monthly_fee"]
            )
        for inst, (a, b) in model.items():
            m = (out["instrument"] == inst).to_numpy()
            cost[m] = a + (b * fee[m].to_numpy(float) if fee is not None else 0.0)
    out["cost"] = np.round(cost, 2)
    for c in EFFECT_TABLE_COLUMNS:
        if c not in out.columns:
            out[c] = np.nan
    return out[EFFECT_TABLE_COLUMNS]


def plan_effects(summary: UpliftSummary, data: UpliftInput, tables=None) -> pd.DataFrame:
    """The table saved for the plan stage: active customers (canonical data) or the campaign rows.

    Returns
    -------
    pandas.DataFrame
        See :func:`predict_effects`.
    """
    from retention_lab.uplift.cases import active_customers

    if not summary.available:
        return _empty(EFFECT_TABLE_COLUMNS)
    if data.source == "campaign" or tables is None:
        customers = data.cases.drop_duplicates(data.id_col)
        return predict_effects(summary, customers, data=data, id_col=data.id_col)
    return predict_effects(summary, active_customers(tables), data=data)
