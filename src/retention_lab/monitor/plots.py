"""Figures of the monitoring stage: quantities across runs and the flagged changes.

They live beside the monitor module (rather than in ``viz.py``) because they
draw its result tables; they use ``viz``'s theme, palette and argument checks.
Functions look like ``plot_*(table, *, ax=None) -> Axes``.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from retention_lab.formatting import MONEY_UNIT, unit_text
from retention_lab.labels import label
from retention_lab.viz import PALETTE, _no_data, _require_columns, money_axis

MONITOR_FAMILY_LABELS = {
    "hazard ratio": "Hazard ratio",
    "problem hazard ratio": "Hazard ratio of an active problem",
    "instrument effect": "Instrument effect",
    "instrument hazard ratio": "Hazard ratio of an instrument (recent cases)",
    "value": "Total value of active customers ({currency})",
    "problem rate": "Problems per 1,000 customer-months",
    "churn reason": "Share of recent churn",
}


def plot_run_history(
    history: pd.DataFrame,
    *,
    family: str,
    currency: str,
    quantity: str | None = None,
    max_lines: int = 8,
    ax: Axes | None = None,
) -> Axes:
    """One monitored quantity family across runs: a line per group with its 95% CI band.

    Money is labelled in ``currency``; groups read as ``labels.label`` words them.

    ``history`` is ``MonitorSummary.history`` (run_label, run_order, family,
    quantity, group, estimate, se, scale, unit, lower, upper). ``quantity`` picks one
    quantity of the family (default: the first); at most ``max_lines`` groups
    are drawn, those that moved most against their standard error first.
    """
    _require_columns(
        history,
        [
            "run_label",
            "run_order",
            "family",
            "quantity",
            "group",
            "estimate",
            "se",
            "scale",
            "unit",
            "lower",
            "upper",
        ],
        "plot_run_history",
    )
    data = history.loc[history["family"] == family]
    if quantity is None and len(data):
        quantity = str(data["quantity"].iloc[0])
    data = data.loc[data["quantity"] == quantity]
    title = f"{(quantity or family).capitalize()} across runs"
    ax = ax or plt.figure().gca()
    if data.empty:
        return _no_data(ax, title)
    # the groups that moved most against their own uncertainty (on the comparison scale)
    on_scale = np.where(data["scale"] == "log", np.log(data["estimate"]), data["estimate"])
    moved = (
        data.assign(_y=on_scale)
        .groupby("group")
        .agg(spread=("_y", lambda s: s.max() - s.min()), se=("se", "mean"))
    )
    moved = moved["spread"] / moved["se"].where(moved["se"] > 0).fillna(1.0)
    groups = moved.sort_values(ascending=False).index[:max_lines]
    labels = data.drop_duplicates("run_order").sort_values("run_order")
    colors = sns.color_palette(PALETTE, len(groups))
    for color, group in zip(colors, groups, strict=False):
        g = data.loc[data["group"] == group].sort_values("run_order")
        ax.plot(g["run_order"], g["estimate"], marker="o", color=color, label=label(group))
        if g["lower"].notna().any():
            ax.fill_between(g["run_order"], g["lower"], g["upper"], color=color, alpha=0.15)
    ax.set_xticks(labels["run_order"], labels["run_label"], rotation=30, ha="right")
    ax.legend(fontsize="small", loc="best")
    ax.set(
        title=title,
        xlabel="Run (snapshot date, oldest left)",
        ylabel=f"{str(quantity).capitalize()} ({unit_text(data['unit'].iloc[0], currency)})"
        if family == "survival"
        else MONITOR_FAMILY_LABELS.get(family, quantity or family).format(currency=currency),
    )
    return ax


def plot_monitor_panels(history: pd.DataFrame, *, families: list[str], currency: str):
    """The headline quantities across runs, one panel per family present (a ``Figure``)."""
    present = [f for f in families if f in set(history.get("family", []))]
    n = max(len(present), 1)
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 4 * rows), squeeze=False)
    for ax, family in zip(axes.flat, present, strict=False):
        plot_run_history(history, family=family, currency=currency, ax=ax)
    if not present:
        _no_data(axes.flat[0], "Monitored quantities across runs")
    for ax in list(axes.flat)[len(present) or 1 :]:
        ax.set_visible(False)
    fig.suptitle("Headline estimates across runs (95% CI bands)", fontweight="bold")
    fig.tight_layout()
    return fig


def plot_flags(
    flags: pd.DataFrame,
    *,
    currency: str,
    labels: Mapping[str, str] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Flagged changes ranked by how much of the plan's value they bear on (``impact``).

    Money is labelled in ``currency``; groups read as ``labels.label`` words them.
    """
    title = "Flagged changes by impact on the plan"
    ax = ax or plt.figure().gca()
    if flags is None or flags.empty:
        return _no_data(ax, title)
    _require_columns(flags, ["quantity", "group", "impact", "impact_unit"], "plot_flags")
    groups = [label(group, labels) for group in flags["group"]]
    data = flags.assign(label=flags["quantity"] + "\n" + pd.Series(groups, index=flags.index))
    sns.barplot(data=data, y="label", x="impact", orient="h", ax=ax, color=sns.color_palette()[3])
    unit = str(flags["impact_unit"].iloc[0])
    ax.set(title=title, xlabel=f"Impact ({unit_text(unit, currency)})", ylabel="Quantity")
    if unit == MONEY_UNIT:
        money_axis(ax.xaxis)
    return ax
