"""One plotting style for every stage, and the shared figure helpers.

Functions look like ``plot_*(data, *, ax=None) -> Axes``: they check their
arguments first, label the axes with units, give the figure a title, and never
call ``plt.show()``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

import matplotlib as mpl
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

from retention_lab.formatting import MONEY_UNIT, number, unit_text
from retention_lab.labels import label

PALETTE = "colorblind"


def set_theme() -> None:
    """Apply the workbench's plotting style (call once per notebook).

    Text is never parsed as mathtext: a segment named ``$x$`` or ``a$b`` is drawn as written.
    """
    sns.set_theme(style="whitegrid", context="notebook", palette=PALETTE)
    mpl.rcParams.update(
        {
            "figure.figsize": (8, 4.5),
            "figure.dpi": 100,
            "axes.titleweight": "bold",
            "text.parse_math": False,
        }
    )


def _require_columns(frame: pd.DataFrame, columns: list[str], function: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{function}: missing columns {missing}; got {list(frame.columns)}")


def _no_data(ax: Axes, title: str) -> Axes:
    ax.text(
        0.5, 0.5, "Not available for this dataset", ha="center", va="center", transform=ax.transAxes
    )
    ax.set(title=title, xticks=[], yticks=[])
    return ax


def plot_counts(
    counts: pd.DataFrame,
    *,
    category: str,
    value: str = "count",
    hue: str | None = None,
    title: str,
    xlabel: str = "Count",
    ylabel: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Horizontal bar chart of counts (or shares) by category, largest first."""
    _require_columns(counts, [category, value] + ([hue] if hue else []), "plot_counts")
    ax = ax or plt.figure().gca()
    if counts.empty:
        return _no_data(ax, title)
    order = counts.groupby(category)[value].sum().sort_values(ascending=False).index
    sns.barplot(data=counts, y=category, x=value, hue=hue, order=order, orient="h", ax=ax)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel or category.replace("_", " ").capitalize())
    return ax


def plot_monthly(
    monthly: pd.DataFrame,
    *,
    date: str = "month",
    value: str = "count",
    hue: str | None = None,
    title: str,
    ylabel: str,
    ax: Axes | None = None,
) -> Axes:
    """Line chart of a monthly series, optionally one line per group."""
    _require_columns(monthly, [date, value] + ([hue] if hue else []), "plot_monthly")
    ax = ax or plt.figure().gca()
    if monthly.empty:
        return _no_data(ax, title)
    sns.lineplot(data=monthly, x=date, y=value, hue=hue, ax=ax)
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set(title=title, xlabel="Month", ylabel=ylabel)
    return ax


def show_table(
    frame: pd.DataFrame,
    *,
    percent: list[str] = (),
    decimals: int | None = None,
    caption: str | None = None,
):
    """A table for a report: no index, thousands separators, shares as percentages.

    Floats get ``decimals`` places, or by default three significant digits
    (thousands without decimals, small numbers such as p-values readable).
    Returns a pandas ``Styler`` (renders as HTML in notebooks and reports).
    Every cell, column and index label and the caption is HTML-escaped: data
    strings (segments, ids, problem types) are text, never markup.
    """
    missing = [c for c in percent if c not in frame.columns]
    if missing:
        raise ValueError(f"show_table: no columns {missing} to format as percentages")
    formats = {}
    for column in frame.columns:
        if column in percent:
            formats[column] = "{:.1%}"
        elif pd.api.types.is_integer_dtype(frame[column]):
            formats[column] = "{:,}"
        elif pd.api.types.is_float_dtype(frame[column]):
            formats[column] = number if decimals is None else f"{{:,.{decimals}f}}"
        elif pd.api.types.is_datetime64_any_dtype(frame[column]):
            formats[column] = "{:%Y-%m-%d}"
    styler = (
        frame.style.hide(axis="index")
        .format(formats, na_rep="—", escape="html")
        .format_index(escape="html", axis="index")
        .format_index(escape="html", axis="columns")
    )
    return styler.set_caption(html.escape(caption)) if caption else styler


def show_findings(findings: list[str]):
    """Findings as a bulleted list for a report (HTML, every string escaped)."""
    from html import escape

    from IPython.display import HTML

    items = "".join(f"<li>{escape(str(line))}</li>" for line in findings)
    return HTML(f'<ul class="rl-findings">{items}</ul>')


# ------------------------------------------------------------ lifetime value
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


# ------------------------------------------------------------------ monitoring
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


# ------------------------------------------------------------ retention plan
def money_axis(axis) -> None:
    """Tick labels of a money axis with thousands separators, never an offset or ``1e7``."""
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))


def plot_budget_curve(
    curve: pd.DataFrame,
    *,
    currency: str,
    budget: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Net and gross saved value of the optimal plan against the budget, in ``currency``."""
    title = "What each budget buys: optimal plan value"
    ax = ax or plt.figure().gca()
    if curve.empty:
        return _no_data(ax, title)
    _require_columns(curve, ["budget", "net_value", "saved_value"], "plot_budget_curve")
    ax.plot(curve["budget"], curve["saved_value"], marker="o", label="saved value")
    ax.plot(curve["budget"], curve["net_value"], marker="s", label="net value (saved − cost)")
    if budget is not None:
        ax.axvline(budget, color="0.3", linestyle="--", linewidth=1, label="configured budget")
    ax.legend()
    ax.set(title=title, xlabel=f"Budget ({currency})", ylabel=f"Expected value ({currency})")
    money_axis(ax.xaxis)
    money_axis(ax.yaxis)
    return ax


def plot_policy_comparison(
    comparison: pd.DataFrame,
    off_policy: pd.DataFrame | None = None,
    *,
    currency: str,
    ax: Axes | None = None,
) -> Axes:
    """Net value (in ``currency``) of the plan and each baseline at the same budget, by source."""
    title = "Plan against baselines at the same budget"
    ax = ax or plt.figure().gca()
    if comparison.empty:
        return _no_data(ax, title)
    _require_columns(
        comparison, ["policy", "label", "expected_net_value"], "plot_policy_comparison"
    )
    measures = {"expected_net_value": "expected (effect estimates)"}
    if "true_net_value" in comparison.columns:
        measures["true_net_value"] = "true (simulator)"
    long = comparison.melt(
        id_vars=["policy", "label"], value_vars=list(measures), var_name="source"
    )
    long["source"] = long["source"].map(measures)
    if off_policy is not None and len(off_policy):
        dr = off_policy[off_policy["estimator"] == "DR"]
        labels = comparison.set_index("policy")["label"]
        extra = pd.DataFrame(
            {
                "policy": dr["policy"],
                "label": dr["policy"].map(labels),
                "source": "off-policy DR (past cases)",
                "value": dr["net_value"],
            }
        )
        long = pd.concat([long, extra], ignore_index=True)
    sns.barplot(data=long, y="label", x="value", hue="source", orient="h", ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), title="Estimate")
    ax.axvline(0.0, color="0.3", linewidth=1)
    ax.set(title=title, xlabel=f"Net value: saved value − cost ({currency})", ylabel="Policy")
    money_axis(ax.xaxis)
    return ax


def plot_threats(threats: pd.DataFrame, *, currency: str, ax: Axes | None = None) -> Axes:
    """Value destroyed (in ``currency``) by the excess churn of each problem type, with 95% CIs."""
    title = "Threat criticality: value lost to the churn each problem causes"
    ax = ax or plt.figure().gca()
    if threats.empty:
        return _no_data(ax, title)
    _require_columns(
        threats, ["problem_type", "value_lost", "value_lower", "value_upper"], "plot_threats"
    )
    t = threats.sort_values("value_lost")
    err = [t["value_lost"] - t["value_lower"], t["value_upper"] - t["value_lost"]]
    names = t["problem_type"].map(label)
    ax.barh(names, t["value_lost"], xerr=err, color=sns.color_palette()[3], capsize=3)
    ax.set(title=title, xlabel=f"Value lost ({currency})", ylabel="Problem type")
    money_axis(ax.xaxis)
    return ax


def plot_playbook(book: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Heatmap of the best instrument's net value per problem type x segment, labelled."""
    title = "Playbook: best instrument per problem and segment"
    ax = ax or plt.figure().gca()
    if book.empty:
        return _no_data(ax, title)
    _require_columns(book, ["problem_type", "segment", "best", "best_net_value"], "plot_playbook")
    values = book.pivot(index="problem_type", columns="segment", values="best_net_value")
    names = book.pivot(index="problem_type", columns="segment", values="best").reindex_like(values)
    labels = names.astype(str) + "\n" + values.map(lambda v: f"{v:,.0f}")
    sns.heatmap(
        values,
        annot=labels.to_numpy(),
        fmt="",
        cmap="Greens",
        ax=ax,
        cbar_kws={"label": "net value"},
    )
    ax.set(title=title, xlabel="Segment", ylabel="Problem type")
    return ax
