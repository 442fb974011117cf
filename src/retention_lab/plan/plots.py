"""Figures of the plan stage: threats, playbook, budget curve, plan against baselines.

They live beside the plan module (rather than in ``viz.py``) because they
draw its result tables; they use ``viz``'s theme, palette and argument checks.
Functions look like ``plot_*(table, *, ax=None) -> Axes``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from retention_lab.labels import label
from retention_lab.viz import _no_data, _require_columns, money_axis


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
