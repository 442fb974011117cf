"""Survival figures in the workbench style: ``plot_*(table, *, ax=None) -> Axes``.

They live beside the survival module (rather than in ``viz.py``) because they
draw survival result tables; they use ``viz``'s theme and argument checks, set a
title and labelled axes with units, and never call ``plt.show()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from retention_lab.labels import capitalised, label
from retention_lab.units import TenureUnit, tenure_unit
from retention_lab.viz import _no_data, _require_columns


def _axes(ax: Axes | None) -> Axes:
    return ax or plt.figure().gca()


def _one_grouping(
    table: pd.DataFrame, grouping: str, subject: str, title: str | None, ax: Axes | None
) -> tuple[Axes, str, pd.DataFrame]:
    """The axes, the title (default: ``subject``, "by" the grouping) and the grouping's rows."""
    title = title or (
        subject if grouping == "all" else f"{subject} by {grouping.replace('_', ' ')}"
    )
    return _axes(ax), title, table[table["grouping"] == grouping]


def plot_km(
    km: pd.DataFrame,
    *,
    grouping: str = "all",
    unit: TenureUnit | str = "months",
    at_risk_every: float | None = None,
    title: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Kaplan-Meier curves of one grouping with 95% bands and at-risk counts under the axis.

    Tenure (``time_months``) is drawn in ``unit``; ``at_risk_every`` is in ``unit``
    (default: every 12 months).
    """
    _require_columns(
        km, ["grouping", "group", "time_months", "survival", "lower", "upper", "at_risk"], "plot_km"
    )
    ax, title, data = _one_grouping(km, grouping, "Customers retained over tenure", title, ax)
    if data.empty:
        return _no_data(ax, title)
    unit = tenure_unit(unit)
    every = unit.from_months(12.0) if at_risk_every is None else at_risk_every
    ticks = np.arange(0.0, unit.from_months(data["time_months"].max()) + 1e-9, every)
    groups = list(dict.fromkeys(data["group"]))
    for i, (group, g) in enumerate(data.groupby("group", sort=False)):
        time = unit.from_months(g["time_months"])
        (line,) = ax.step(time, g["survival"], where="post", label=str(group))
        ax.fill_between(
            time, g["lower"], g["upper"], step="post", alpha=0.2, color=line.get_color()
        )
        counts = np.interp(ticks, time, g["at_risk"], right=0).astype(int)
        for t, n in zip(ticks, counts, strict=True):
            ax.annotate(
                f"{n:,}",
                (t, 0),
                xycoords=("data", "axes fraction"),
                xytext=(0, -44 - 11 * i),
                textcoords="offset points",
                ha="center",
                fontsize=7,
                color=line.get_color(),
            )
    ax.annotate(
        "at risk",
        (0, 0),
        xycoords="axes fraction",
        xytext=(-18, -44),
        textcoords="offset points",
        fontsize=7,
        ha="right",
    )
    ax.set(title=title, xlabel=f"Tenure ({unit.name})", ylabel="Share retained", ylim=(0, 1.02))
    if len(groups) > 1:
        ax.legend(title=grouping.replace("_", " "), fontsize=8)
    return ax


def plot_hazard(
    hazard: pd.DataFrame,
    *,
    grouping: str = "all",
    unit: TenureUnit | str = "months",
    title: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Smoothed churn hazard over tenure with 95% bands (renewal spikes, early-life risk).

    Tenure is drawn in ``unit`` and the hazard per customer-``unit``.
    """
    _require_columns(
        hazard, ["grouping", "group", "time_months", "hazard", "lower", "upper"], "plot_hazard"
    )
    ax, title, data = _one_grouping(hazard, grouping, "Churn hazard over tenure", title, ax)
    if data.empty:
        return _no_data(ax, title)
    unit = tenure_unit(unit)
    data = unit.table(data, tenures=["time_months"], rates=["hazard", "lower", "upper"])
    time = f"time_{unit.name}"
    for group, g in data.groupby("group", sort=False):
        (line,) = ax.plot(g[time], g["hazard"], label=str(group))
        ax.fill_between(g[time], g["lower"], g["upper"], alpha=0.2, color=line.get_color())
    ax.set(
        title=title,
        xlabel=f"Tenure ({unit.name})",
        ylabel=f"Churn hazard (per customer-{unit.singular})",
    )
    if data["group"].nunique() > 1:
        ax.legend(title=grouping.replace("_", " "), fontsize=8)
    return ax


def plot_cif(
    cif: pd.DataFrame,
    *,
    grouping: str = "all",
    group: str = "all",
    unit: TenureUnit | str = "months",
    title: str | None = None,
    reasons: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Cumulative incidence of churn by reason (competing risks), stacked to show the total.

    ``reasons`` fixes the stacking order and colours (default: largest first);
    tenure is drawn in ``unit``.
    """
    _require_columns(cif, ["grouping", "group", "churn_reason", "time_months", "cif"], "plot_cif")
    ax = _axes(ax)
    title = title or "Cumulative incidence of churn by reason"
    data = cif[(cif["grouping"] == grouping) & (cif["group"] == group)]
    if data.empty:
        return _no_data(ax, title)
    wide = (
        data.pivot_table(index="time_months", columns="churn_reason", values="cif")
        .ffill()
        .fillna(0.0)
    )
    order = list(reasons) if reasons else list(wide.iloc[-1].sort_values(ascending=False).index)
    wide = wide.reindex(columns=order, fill_value=0.0)
    unit = tenure_unit(unit)
    time = unit.from_months(wide.index.to_numpy(float))
    ax.stackplot(time, *[wide[c] for c in order], labels=order, alpha=0.8)
    ax.set(title=title, xlabel=f"Tenure ({unit.name})", ylabel="Share of customers churned")
    ax.legend(title="reason", fontsize=8, loc="upper left")
    return ax


def plot_cif_panels(
    cif: pd.DataFrame, *, grouping: str = "segment", unit: TenureUnit | str = "months"
) -> Figure:
    """One stacked cumulative-incidence panel per level of ``grouping`` (shared axes, ``unit``)."""
    _require_columns(
        cif, ["grouping", "group", "churn_reason", "time_months", "cif"], "plot_cif_panels"
    )
    groups = sorted(cif.loc[cif["grouping"] == grouping, "group"].unique())
    fig, axes = plt.subplots(
        1, max(len(groups), 1), figsize=(4 * max(len(groups), 1), 4), sharey=True, squeeze=False
    )
    if not groups:
        _no_data(axes[0, 0], f"Churn by reason and {grouping.replace('_', ' ')}")
        return fig
    reasons = (
        cif.sort_values("time_months")
        .groupby("churn_reason")["cif"]
        .last()
        .sort_values(ascending=False)
        .index.tolist()
    )
    for ax, group in zip(axes[0], groups, strict=True):
        plot_cif(
            cif,
            grouping=grouping,
            group=group,
            unit=unit,
            title=f"{grouping.replace('_', ' ')}: {group}",
            reasons=reasons,
            ax=ax,
        )
    for ax in axes[0, 1:]:
        ax.set_ylabel("")
        ax.get_legend().remove()
    fig.suptitle(
        f"Cumulative incidence of churn by reason and {grouping.replace('_', ' ')}",
        fontweight="bold",
    )
    fig.tight_layout()
    return fig


def _interval_rows(ax: Axes, table: pd.DataFrame, estimate: str, lower: str, upper: str, **style):
    """Each row's estimate with its interval, the first row at the top; the rows and positions."""
    data = table.iloc[::-1]
    y = np.arange(len(data))
    error = [data[estimate] - data[lower], data[upper] - data[estimate]]
    ax.errorbar(data[estimate], y, xerr=error, fmt="o", capsize=3, **style)
    return data, y


def plot_forest(
    hazard_ratios: pd.DataFrame,
    *,
    title: str = "Hazard ratios (95% CI)",
    labels: Mapping[str, str] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Forest plot of hazard ratios on a log axis; 1 = no effect.

    Terms read as ``retention_lab.labels.label`` words them (``labels``: ``report.labels``).
    """
    _require_columns(hazard_ratios, ["term", "hazard_ratio", "hr_lower", "hr_upper"], "plot_forest")
    ax = _axes(ax)
    if hazard_ratios.empty:
        return _no_data(ax, title)
    data, y = _interval_rows(ax, hazard_ratios, "hazard_ratio", "hr_lower", "hr_upper")
    ax.axvline(1.0, color="grey", ls="--", lw=1)
    ax.set_xscale("log")
    low, high = data["hr_lower"].min(), data["hr_upper"].max()
    ticks = [
        t for t in (0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10) if low / 1.2 <= t <= high * 1.2
    ]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(y, [capitalised(label(term, labels)) for term in data["term"]])
    ax.set(
        title=title, xlabel="Hazard ratio (log scale; per unit for numeric covariates)", ylabel=""
    )
    return ax


def plot_calibration(
    calibration: pd.DataFrame,
    *,
    horizon_months: float,
    title: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Smoothed observed vs predicted P(churn by the horizon); the diagonal is perfect."""
    _require_columns(calibration, ["predicted", "observed"], "plot_calibration")
    ax = _axes(ax)
    title = title or f"Calibration of the {horizon_months:g}-month churn probability (held-out)"
    if calibration.empty:
        return _no_data(ax, title)
    ax.plot(calibration["predicted"], calibration["observed"], label="smoothed calibration")
    top = float(max(calibration["predicted"].max(), calibration["observed"].max()))
    ax.plot([0, top], [0, top], color="grey", ls="--", lw=1, label="perfect")
    ax.set(
        title=title,
        xlabel=f"Predicted P(churn within {horizon_months:g} months)",
        ylabel=f"Observed P(churn within {horizon_months:g} months)",
    )
    ax.legend(fontsize=8)
    return ax


def plot_truth(
    truth: pd.DataFrame,
    *,
    title: str = "Estimated vs true log hazard ratios",
    ax: Axes | None = None,
) -> Axes:
    """Estimates with 95% CIs against the simulator's true values (crosses)."""
    _require_columns(truth, ["term", "true_log_hr", "estimate", "lower", "upper"], "plot_truth")
    ax = _axes(ax)
    if truth.empty:
        return _no_data(ax, title)
    data, y = _interval_rows(ax, truth, "estimate", "lower", "upper", label="estimate (95% CI)")
    ax.scatter(data["true_log_hr"], y, marker="x", color="black", zorder=3, label="truth")
    ax.axvline(0.0, color="grey", ls="--", lw=1)
    ax.set_yticks(y, [capitalised(label(term)) for term in data["term"]])
    ax.set(
        title=title, xlabel="Log hazard ratio (numeric covariates in the truth's unit)", ylabel=""
    )
    ax.legend(fontsize=8)
    return ax
