"""Figures of the uplift stage, in the workbench style of :mod:`retention_lab.viz`.

Single-panel functions look like ``plot_*(table, *, ax=None) -> Axes``;
multi-panel ones (one panel per instrument) return a ``Figure``. Every figure
has a title and labelled axes with units, and shows "Not available for this
dataset" when its table is empty.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from retention_lab.viz import _no_data, _require_columns

HAZARD_TICKS = [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
ESTIMATOR_LABELS = {
    ("difference_in_means", "randomised"): "Randomised: difference in means",
    ("naive", "rule"): "Rule-assigned: naive difference",
    ("aipw", "rule"): "Rule-assigned: doubly robust (AIPW)",
    ("aipw", "all"): "All cases: doubly robust (AIPW)",
}


def _panels(n: int, *, width: float = 5.2, height: float = 4.0):
    cols = min(max(n, 1), 3)
    rows = (max(n, 1) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in list(axes.flat)[max(n, 1) :]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _label(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    """Panel title and axis labels in a size that fits a grid of panels."""
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel(xlabel, fontsize="small")
    ax.set_ylabel(ylabel, fontsize="small")
    ax.tick_params(labelsize="small")


def plot_average_effects(ate: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Average effect on retention per instrument and estimator, with 95 % CIs (and the truth)."""
    title = "Average effect of each instrument on retention at the horizon"
    ax = ax or plt.figure(figsize=(8, 5)).gca()
    if ate is None or ate.empty:
        return _no_data(ax, title)
    _require_columns(
        ate,
        ["instrument", "estimator", "population", "effect", "lower", "upper"],
        "plot_average_effects",
    )
    data = ate.assign(
        label=[
            ESTIMATOR_LABELS.get((e, p), f"{e} ({p})")
            for e, p in zip(ate["estimator"], ate["population"], strict=True)
        ]
    ).dropna(subset=["effect"])
    instruments = sorted(data["instrument"].unique())
    labels = [v for v in ESTIMATOR_LABELS.values() if v in set(data["label"])]
    colours = dict(zip(labels, sns.color_palette(n_colors=len(labels)), strict=True))
    step = 0.8 / max(len(labels), 1)
    for j, label in enumerate(labels):
        d = data[data["label"] == label].set_index("instrument").reindex(instruments)
        y = np.arange(len(instruments)) + (j - (len(labels) - 1) / 2) * step
        ax.errorbar(
            100 * d["effect"],
            y,
            xerr=[100 * (d["effect"] - d["lower"]), 100 * (d["upper"] - d["effect"])],
            fmt="o",
            color=colours[label],
            label=label,
            capsize=3,
        )
        if "true_effect" in d.columns and d["true_effect"].notna().any():
            ax.scatter(
                100 * d["true_effect"],
                y,
                marker="x",
                color="black",
                zorder=3,
                label="Truth (simulator)" if j == 0 else None,
            )
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(np.arange(len(instruments)), instruments)
    ax.set(title=title, xlabel="Change in share retained (percentage points)", ylabel="Instrument")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


def plot_effect_matrix(
    matrix: pd.DataFrame, *, strata: list[str], effect_col: str = "effect", ax: Axes | None = None
) -> Axes:
    """Heat map of the retention effect per instrument and stratum cell (blank: not estimable).

    With an ``lfsr`` column (the pooled table), a star marks cells whose sign is
    right with posterior probability of at least 95 %; otherwise cells whose 95 %
    interval excludes 0.
    """
    title = "Retention effect by instrument and cell"
    ax = ax or plt.figure(figsize=(12, 4.5)).gca()
    if matrix is None or matrix.empty or not strata:
        return _no_data(ax, title)
    _require_columns(
        matrix, [*strata, "instrument", effect_col, "lower", "upper"], "plot_effect_matrix"
    )
    data = matrix.assign(cell=matrix[strata].astype(str).agg("\n".join, axis=1))
    wide = (
        data.pivot_table(
            index="instrument", columns="cell", values=effect_col, aggfunc="first", dropna=False
        )
        * 100
    )
    pooled = "lfsr" in data.columns
    sure = data["lfsr"] < 0.05 if pooled else (data["lower"] > 0) | (data["upper"] < 0)
    star = "P(sign) >= 95%" if pooled else "95% CI excludes 0"
    sig = data.assign(sig=sure).pivot_table(
        index="instrument", columns="cell", values="sig", aggfunc="first", dropna=False
    )
    notes = wide.map(lambda v: "" if pd.isna(v) else f"{v:+.0f}")
    notes = notes.where(~sig.reindex_like(wide).fillna(False).astype(bool), notes + "*")
    lim = np.nanpercentile(np.abs(wide.to_numpy()), 95) if np.isfinite(wide.to_numpy()).any() else 1
    sns.heatmap(
        wide,
        annot=notes,
        fmt="",
        cmap="RdBu",
        center=0,
        vmin=-lim,
        vmax=lim,
        cbar_kws={"label": "Change in share retained (pp)"},
        ax=ax,
        annot_kws={"fontsize": 7},
    )
    ax.set(
        title=title,
        xlabel=" / ".join(s.replace("_", " ") for s in strata)
        + f"  (* = {star}; blank = not estimable)",
        ylabel="Instrument",
    )
    ax.grid(False)
    ax.tick_params(axis="x", labelsize=7)
    return ax


def plot_overlap(overlap: pd.DataFrame) -> Figure:
    """Propensity of each instrument (vs the control) among rule-assigned cases, by arm received."""
    title = "Common support: propensity of the instrument among rule-assigned cases"
    instruments = sorted(overlap["instrument"].unique()) if overlap is not None else []
    fig, axes = _panels(len(instruments))
    if not instruments:
        _no_data(axes[0], title)
        return fig
    _require_columns(overlap, ["instrument", "received", "propensity"], "plot_overlap")
    for ax, inst in zip(axes, instruments, strict=False):
        d = overlap[overlap["instrument"] == inst]
        sns.histplot(
            data=d,
            x="propensity",
            hue="received",
            stat="density",
            common_norm=False,
            bins=30,
            binrange=(0, 1),
            element="step",
            ax=ax,
        )
        _label(ax, inst, "P(instrument | case; vs control)", "Density")
    fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    return fig


def plot_balance(balance: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Largest absolute standardised mean difference per feature (over instruments)."""
    title = "Covariate balance against the control (largest |SMD| over instruments)"
    ax = ax or plt.figure(figsize=(8, 6)).gca()
    if balance is None or balance.empty:
        return _no_data(ax, title)
    cols = {
        "smd_random": "Randomised",
        "smd_rule": "Rule-assigned",
        "smd_rule_weighted": "Rule-assigned, weighted",
    }
    _require_columns(balance, ["feature", *cols], "plot_balance")
    worst = (
        balance.assign(**{c: balance[c].abs() for c in cols}).groupby("feature")[list(cols)].max()
    )
    worst = worst.sort_values("smd_rule", ascending=False).head(20)
    long = worst.reset_index().melt(id_vars="feature", var_name="cases", value_name="smd")
    long["cases"] = long["cases"].map(cols)
    sns.scatterplot(data=long, x="smd", y="feature", hue="cases", style="cases", s=50, ax=ax)
    ax.axvline(0.1, color="grey", ls="--", lw=1)
    ax.set(
        title=title,
        xlabel="|Standardised mean difference| (SD units; 0.1 = dashed)",
        ylabel="Feature",
    )
    return ax


def plot_qini(curves: pd.DataFrame, *, kind: str = "qini", currency: str = "") -> Figure:
    """Qini or uplift curves per instrument (one line per learner) on held-out randomised cases.

    ``kind="qini"``: extra customers retained per 100 treated when the top share
    is targeted (dashed: random targeting). ``kind="uplift"``: the observed
    effect within the top share (dashed: the average effect). ``kind="money"``:
    ``curves`` are the money curves (``UpliftSummary.chosen_money_curves``), the
    extra net revenue (revenue kept minus the instrument's cost) per treated
    case in ``currency``, with the bootstrap 95 % band.
    """
    if kind not in ("qini", "uplift", "money"):
        raise ValueError(f"kind must be 'qini', 'uplift' or 'money', got {kind!r}")
    title = {
        "qini": "Qini curves on held-out randomised cases",
        "uplift": "Uplift curves on held-out randomised cases",
        "money": "Net revenue of targeting on held-out randomised cases",
    }[kind]
    instruments = sorted(curves["instrument"].unique()) if curves is not None else []
    fig, axes = _panels(len(instruments))
    if not instruments:
        _no_data(axes[0], title)
        return fig
    column = "uplift" if kind == "uplift" else "qini"
    _require_columns(curves, ["instrument", "learner", "share", column, "random"], "plot_qini")
    ylabel = {
        "qini": "Extra retained / 100 treated",
        "uplift": "Effect in top share (pp)",
        "money": "Net revenue / treated case" + (f" ({currency})" if currency else ""),
    }[kind]
    scale = 1.0 if kind == "money" else 100.0
    for ax, inst in zip(axes, instruments, strict=False):
        d = curves[curves["instrument"] == inst]
        for learner, g in d.groupby("learner"):
            line = ax.plot(100 * g["share"], scale * g[column], label=f"{learner.upper()}-learner")
            if kind == "money":
                ax.fill_between(
                    100 * g["share"],
                    g["qini_lower"],
                    g["qini_upper"],
                    color=line[0].get_color(),
                    alpha=0.2,
                    label="95% band",
                )
        g = d[d["learner"] == d["learner"].iloc[0]]
        base = g["random"] if kind != "uplift" else np.full(len(g), g["random"].iloc[-1])
        ax.plot(
            100 * g["share"],
            scale * base,
            color="grey",
            ls="--",
            label="Average effect" if kind == "uplift" else "Random",
        )
        if kind == "money":
            ax.axhline(0, color="black", lw=0.8)
        _label(ax, inst, "Cases targeted, best first (%)", ylabel)
    axes[0].legend(fontsize="small")
    fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    return fig


def plot_calibration(calibration: pd.DataFrame, chosen: pd.DataFrame) -> Figure:
    """Observed against predicted uplift by decile for the chosen learner of each instrument."""
    title = "Calibration of the chosen learners (held-out randomised cases, 95% CI)"
    instruments = sorted(chosen["instrument"]) if chosen is not None and len(chosen) else []
    fig, axes = _panels(len(instruments))
    if not instruments or calibration is None or calibration.empty:
        _no_data(axes[0], title)
        return fig
    _require_columns(
        calibration,
        ["instrument", "learner", "predicted", "observed", "lower", "upper"],
        "plot_calibration",
    )
    pick = calibration.merge(chosen[["instrument", "learner"]])
    for ax, inst in zip(axes, instruments, strict=False):
        d = pick[pick["instrument"] == inst]
        if d.empty:
            _no_data(ax, inst)
            continue
        ax.errorbar(
            100 * d["predicted"],
            100 * d["observed"],
            yerr=[100 * (d["observed"] - d["lower"]), 100 * (d["upper"] - d["observed"])],
            fmt="o",
            capsize=3,
        )
        lo = 100 * min(d["predicted"].min(), 0)
        hi = 100 * max(d["predicted"].max(), 0)
        ax.plot([lo, hi], [lo, hi], color="grey", ls="--")
        ax.axhline(0, color="grey", lw=0.8)
        learner = d["learner"].iloc[0].upper()
        _label(ax, f"{inst} ({learner}-learner)", "Predicted uplift (pp)", "Observed uplift (pp)")
    fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    return fig


def plot_hazard_ratios(hazard: pd.DataFrame) -> Figure:
    """Hazard ratio of each instrument per problem type, earlier and recent cases, log scale."""
    title = "Hazard ratio of churn after the case, treated against untreated"
    estimated = hazard.dropna(subset=["hazard_ratio"]) if hazard is not None else hazard
    instruments = sorted(estimated["instrument"].unique()) if estimated is not None else []
    fig, axes = _panels(len(instruments))
    if not instruments:
        _no_data(axes[0], title)
        return fig
    _require_columns(
        hazard, ["period", "problem_type", "instrument", "hazard_ratio", "lower", "upper"],
        "plot_hazard_ratios",
    )  # fmt: skip
    problems = sorted(estimated["problem_type"].unique())
    periods = [p for p in ("earlier", "recent") if (estimated["period"] == p).any()]
    colours = dict(zip(periods, sns.color_palette(n_colors=len(periods)), strict=True))
    for ax, inst in zip(axes, instruments, strict=False):
        for j, period in enumerate(periods):
            d = estimated[(estimated["instrument"] == inst) & (estimated["period"] == period)]
            d = d.set_index("problem_type").reindex(problems)
            y = np.arange(len(problems)) + (j - (len(periods) - 1) / 2) * 0.3
            ax.errorbar(
                d["hazard_ratio"], y,
                xerr=[d["hazard_ratio"] - d["lower"], d["upper"] - d["hazard_ratio"]],
                fmt="o", color=colours[period], capsize=3, label=f"{period} cases",
            )  # fmt: skip
            if "true_log_hazard_ratio" in d and d["true_log_hazard_ratio"].notna().any():
                ax.scatter(
                    np.exp(d["true_log_hazard_ratio"]), y, marker="x", color="black", zorder=3,
                    label="Truth (simulator)" if j == len(periods) - 1 else None,
                )  # fmt: skip
        ax.axvline(1, color="grey", lw=1)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(HAZARD_TICKS))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yticks(np.arange(len(problems)), problems)
        _label(ax, inst, "Hazard ratio (log scale; < 1 = fewer churn)", "Problem type")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize="small")
    fig.suptitle(title, fontweight="bold")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig
