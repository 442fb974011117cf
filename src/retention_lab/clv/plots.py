"""Figures of the clv stage: value by segment, value at risk, payback, holdout, renewals.

They live beside the clv module (rather than in ``viz.py``) because they
draw its result tables; they use ``viz``'s theme, palette and argument checks.
Functions look like ``plot_*(table, *, ax=None) -> Axes``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from retention_lab.viz import PALETTE, _no_data, _require_columns


def plot_value_distribution(
    values: pd.DataFrame,
    *,
    value: str = "residual_value",
    by: str = "segment",
    ax: Axes | None = None,
) -> Axes:
    """Box plot of customer value by group (log scale, one box per group)."""
    title = "Residual value of active customers by segment"
    _require_columns(values, [value, by] if not values.empty else [], "plot_value_distribution")
    ax = ax or plt.figure().gca()
    if values.empty:
        return _no_data(ax, title)
    data = values[values[value] > 0]
    sns.boxplot(data=data, x=value, y=by, orient="h", log_scale=True, showfliers=False, ax=ax)
    ax.set(
        title=title,
        xlabel="Discounted expected margin over the horizon (currency units, log scale)",
        ylabel=by.replace("_", " ").capitalize(),
    )
    return ax


def plot_payback(curves: pd.DataFrame, *, hue: str = "channel", ax: Axes | None = None) -> Axes:
    """Cumulative discounted margin of a new customer minus acquisition cost, by month.

    Data without an acquisition channel are drawn by segment instead, and data
    with neither as one curve (column ``all``).
    """
    if hue not in curves.columns:
        hue = next((c for c in ("segment", "all") if c in curves.columns), hue)
    title = f"Payback of acquisition cost by {hue}"
    _require_columns(curves, ["month", "net", hue] if not curves.empty else [], "plot_payback")
    ax = ax or plt.figure().gca()
    if curves.empty:
        return _no_data(ax, title)
    sns.lineplot(data=curves, x="month", y="net", hue=hue, ax=ax)
    ax.axhline(0.0, color="0.3", linewidth=1, linestyle="--")
    ax.set(
        title=title,
        xlabel="Months since signup",
        ylabel="Cum. margin − acquisition cost\n(discounted, currency units)",
    )
    return ax


def plot_value_at_risk(by_segment: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Bars of residual value and the part of it at risk, by segment."""
    title = "Residual value and value at risk by segment"
    cols = ["segment", "total_value", "value_at_risk"]
    _require_columns(by_segment, cols if not by_segment.empty else [], "plot_value_at_risk")
    ax = ax or plt.figure().gca()
    if by_segment.empty:
        return _no_data(ax, title)
    long = by_segment.melt(id_vars="segment", value_vars=cols[1:], var_name="measure")
    long["measure"] = long["measure"].map({"total_value": "value", "value_at_risk": "at risk"})
    sns.barplot(data=long, y="segment", x="value", hue="measure", orient="h", ax=ax)
    ax.set(title=title, xlabel="Discounted margin (currency units)", ylabel="Segment")
    return ax


def plot_holdout(holdout: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Mean holdout repeat purchases, actual against predicted, by calibration frequency."""
    title = "Holdout check: repeat purchases by calibration frequency"
    ax = ax or plt.figure().gca()
    if holdout.empty:
        return _no_data(ax, title)
    _require_columns(holdout, ["frequency", "actual", "predicted", "model"], "plot_holdout")
    data = holdout[holdout["frequency"] != "all"]
    order = list(dict.fromkeys(data["frequency"]))
    actual = data.drop_duplicates("frequency")
    ax.plot(order, actual["actual"], marker="o", color="black", label="actual")
    for model, g in data.groupby("model", sort=False):
        ax.plot(
            g["frequency"], g["predicted"], marker="s", linestyle="--", label=f"{model} predicted"
        )
    ax.legend()
    ax.set(
        title=title,
        xlabel="Repeat purchases in the calibration period",
        ylabel="Mean repeat purchases in the holdout (per customer)",
    )
    return ax


def plot_truth_check(check: pd.DataFrame | None, *, ax: Axes | None = None) -> Axes:
    """Mean residual value from the fitted model against the simulator's true model, by group."""
    title = "Residual value: fitted model against the true parameters"
    ax = ax or plt.figure().gca()
    if check is None or check.empty:
        return _no_data(ax, title)
    _require_columns(check, ["group", "fitted", "true"], "plot_truth_check")
    long = check.melt(id_vars="group", value_vars=["fitted", "true"], var_name="model")
    sns.barplot(data=long, y="group", x="value", hue="model", orient="h", ax=ax)
    ax.set(title=title, xlabel="Mean residual value per customer (currency units)", ylabel="Group")
    return ax


def plot_renewal_curves(
    curves: pd.DataFrame, *, unit: str = "years", ax: Axes | None = None
) -> Axes:
    """Share of each renewal cohort still active: observed (dots) and the sBG curve (95 % band).

    ``curves`` are ``RenewalValue.curves`` (cohort, period, survival, lower,
    upper, observed); ``unit`` names the renewal period on the x axis. The
    title gives each cohort's projected share at the last period drawn (up to
    three cohorts).
    """
    title = "Share of each cohort still active: observed and sBG projection"
    cols = ["cohort", "period", "survival", "lower", "upper", "observed"]
    _require_columns(curves, cols if not curves.empty else [], "plot_renewal_curves")
    ax = ax or plt.figure().gca()
    if curves.empty:
        return _no_data(ax, title)
    cohorts = list(dict.fromkeys(curves["cohort"]))
    colours = sns.color_palette(PALETTE, n_colors=len(cohorts))
    for cohort, colour in zip(cohorts, colours, strict=True):
        g = curves[curves["cohort"] == cohort]
        ax.plot(g["period"], g["survival"], color=colour, label=str(cohort))
        ax.fill_between(g["period"], g["lower"], g["upper"], color=colour, alpha=0.2, lw=0)
        ax.scatter(g["period"], g["observed"], color=colour, s=22, zorder=3)
    last = curves[curves["period"] == curves["period"].max()]
    if len(cohorts) <= 3:
        shares = ", ".join(f"{r.cohort} {r.survival:.0%}" for r in last.itertuples())
        title = f"Projected share still active after {last['period'].iloc[0]} {unit}: {shares}"
    ax.set(
        title=title,
        xlabel=f"Renewal period ({unit} since the start)",
        ylabel="Share of the cohort still active",
        ylim=(0, 1.02),
    )
    ax.legend(title="cohort (dots: observed)")
    return ax
