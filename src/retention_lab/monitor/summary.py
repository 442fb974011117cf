"""The monitoring stage in one call: ``analyse`` -> ``MonitorSummary``; ``findings`` words it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from retention_lab import formatting as fmt
from retention_lab.labels import capitalised, label
from retention_lab.monitor.compare import (
    ci_overlap,
    compare_distributions,
    compare_quantities,
    flag_changes,
    group_keys,
    rank_flags,
    trends,
)
from retention_lab.monitor.profile import PROFILE_COLUMNS, input_profile
from retention_lab.monitor.quantities import (
    MONEY,
    QUANTITY_COLUMNS,
    RunOutputs,
    run_quantities,
)

PROFILE_KEY = ("monitoring", "input_profile")
# which stages hold estimates that a change in a family of quantities makes stale
RERUN = {
    "survival": ("survival", "clv", "plan"),
    "hazard ratio": ("survival", "clv", "plan"),
    "problem hazard ratio": ("survival", "plan"),
    "instrument effect": ("uplift", "plan"),
    "instrument hazard ratio": ("uplift", "plan"),
    "value": ("clv", "plan"),
    "problem rate": ("survival", "uplift", "plan"),
    "churn reason": ("survival", "plan"),
    "input distribution": ("survival", "clv", "plan"),
}
# the families the report plots across runs, in this order
HEADLINE_FAMILIES = [
    "survival",
    "problem rate",
    "churn reason",
    "instrument hazard ratio",
    "instrument effect",
    "problem hazard ratio",
    "value",
]


@dataclass(frozen=True)
class MonitorSummary:
    """What changed since the previous runs.

    ``history`` stacks every run's quantities (``quantities.QUANTITY_COLUMNS``
    plus run_id, run_label, run_order with 0 the oldest, current); ``comparison``
    is current against previous with the flag rule applied (see
    ``compare.flag_changes``); ``flags`` the flagged rows ranked by ``impact``;
    ``trends`` the slope over the last runs; ``missing`` what could not be
    monitored and why.
    """

    current_label: str
    previous_label: str | None
    n_previous: int
    alpha: float
    psi_threshold: float
    max_untested_change: float
    history: pd.DataFrame
    comparison: pd.DataFrame
    flags: pd.DataFrame
    trends: pd.DataFrame
    stages: tuple[str, ...] = ()
    missing: list[str] = field(default_factory=list)
    # this run's input profile, saved for the next run to compare with
    input_profile: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=PROFILE_COLUMNS)
    )

    @property
    def has_history(self) -> bool:
        """Whether there was an earlier run to compare with."""
        return self.n_previous > 0

    @property
    def stale_stages(self) -> list[str]:
        """Stages to rerun with fresh data, in pipeline order."""
        wanted = {s for fam in self.flags.get("family", []) for s in RERUN.get(fam, ())}
        order = list(self.stages) or sorted(wanted)
        return [s for s in order if s in wanted]

    @property
    def large_untested(self) -> pd.DataFrame:
        """Quantities that moved a lot but have no CI to test the move.

        Returns
        -------
        pandas.DataFrame
            Rows of ``comparison`` with ``large_untested`` true; the columns of
            :func:`~retention_lab.monitor.flag_changes`.
        """
        if self.comparison.empty:
            return self.comparison
        return self.comparison.loc[self.comparison["large_untested"]]

    @property
    def flag_table(self) -> pd.DataFrame:
        """The flags for a reviewer: rank, what moved, from and to, z, adjusted p, impact.

        Returns
        -------
        pandas.DataFrame
            rank, family, quantity, group, previous, current, z, p_holm, impact,
            impact_unit, impact_basis, stage.
        """
        columns = ["rank", "family", "quantity", "group", "previous", "current", "z", "p_holm",
                   "impact", "impact_unit", "impact_basis", "stage"]  # fmt: skip
        if self.flags.empty:
            return pd.DataFrame(columns=columns)
        return self.flags[[c for c in columns if c in self.flags.columns]]

    @property
    def comparison_table(self) -> pd.DataFrame:
        """Every compared quantity for a reviewer, flagged first, then by adjusted p-value.

        Returns
        -------
        pandas.DataFrame
            family, quantity, group, previous, current, relative_change, z, p_value,
            p_holm, ci_overlap, tested, flagged, large_untested.
        """
        columns = ["family", "quantity", "group", "previous", "current", "relative_change", "z",
                   "p_value", "p_holm", "ci_overlap", "tested", "flagged",
                   "large_untested"]  # fmt: skip
        if self.comparison.empty:
            return pd.DataFrame(columns=columns)
        c = self.comparison.sort_values(["flagged", "p_holm"], ascending=[False, True])
        return c[[col for col in columns if col in c.columns]].reset_index(drop=True)

    def to_metrics(self) -> dict[str, float]:
        """Headline numbers for MLflow and ``results.json``."""
        c = self.comparison
        m = {
            "previous_runs": float(self.n_previous),
            "quantities": float(len(self.history.loc[self.history["current"]])),
            "tests": float(c["tested"].sum()) if len(c) else 0.0,
            "flags": float(len(self.flags)),
            "large_untested_changes": float(len(self.large_untested)),
            "drifting_trends": float(self.trends["drifting"].sum()) if len(self.trends) else 0.0,
        }
        if len(c) and "psi" in c:
            m["max_psi"] = float(c["psi"].max())
        return {k: v for k, v in m.items() if np.isfinite(v)}


def _stack(runs: list[RunOutputs]) -> pd.DataFrame:
    """Quantities of the runs (oldest first), with the run columns."""
    parts = []
    for order, run in enumerate(runs):
        q = run_quantities(run)
        parts.append(
            q.assign(
                run_id=run.run_id or "",
                run_label=run.label,
                run_order=order,
                current=order == len(runs) - 1,
            )
        )
    columns = [*QUANTITY_COLUMNS, "run_id", "run_label", "run_order", "current"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def _value_base(current: RunOutputs) -> tuple[pd.Series, str]:
    values = current.table("clv", "values")
    if values is not None and {"value", "segment"} <= set(values.columns):
        active = values.loc[values["active"].astype(bool)] if "active" in values else values
        base = active.groupby("segment")["value"].sum()
        base["all"] = active["value"].sum()
        return base, MONEY
    profile = current.table("monitoring", "input_profile")
    if profile is not None:
        seg = profile.loc[(profile["section"] == "categorical") & (profile["feature"] == "segment")]
        if len(seg):
            base = seg.set_index("level")["value"]
            base["all"] = float(seg["n"].iloc[0])
            return base, "active customers"
    return pd.Series({"all": 1.0}), "share of the book"


def _missing(current: RunOutputs, quantities: pd.DataFrame, stages: Sequence[str]) -> list[str]:
    families = set(quantities["family"])
    out = []
    if "survival" in stages:
        if "hazard ratio" not in families:
            out.append(
                "hazard ratios of the customer covariates: the survival stage saves no "
                "hazard_ratios table (save_table(result.hazard_ratios, 'hazard_ratios'))"
            )
        if "problem hazard ratio" not in families:
            out.append(
                "hazard ratios of the problem types: the survival stage saves no "
                "threats or hazard_ratios table"
            )
        untested = quantities.loc[(quantities["family"] == "survival") & quantities["se"].isna()]
        if len(untested):
            out.append(
                f"a confidence interval for {', '.join(untested['quantity'])}: the survival "
                "stage logged no bounds, so those changes are shown, not tested"
            )
    if "uplift" not in stages or "instrument effect" not in families:
        out.append(
            "instrument effects per problem type and segment: no uplift stage saved an "
            "effects table with standard errors in this run"
        )
    if "value" in families:
        out.append(
            "a confidence interval for value totals: the clv stage gives point values only, "
            "so value changes are shown, not tested"
        )
    elif "clv" in stages:
        out.append("value totals by segment: the clv stage saved no values table")
    actions = current.table("plan", "actions")
    if "plan" not in stages or actions is None or actions.empty:
        out.append(
            "the plan's expected value per instrument: the plan treats nobody in this run "
            "(or did not run), so every flag is ranked by the value of the customers concerned"
        )
    return out


@dataclass(frozen=True)
class MonitorInputs:
    """The runs the monitor compares: this one and earlier ones, newest first.

    ``stages`` are the stages this run was configured to run (a stage that did
    not run is said to be missing, not stale).
    """

    current: RunOutputs
    previous: Sequence[RunOutputs] = ()
    stages: Sequence[str] = ()


def read_inputs(stage, *, as_of) -> MonitorInputs:
    """Read this run's finished stages and the experiment's earlier runs from the stage context.

    ``as_of`` is the data's snapshot date; ``stage.settings.n_runs`` bounds the earlier runs read.
    """
    return MonitorInputs(
        current=stage.this_run(as_of=str(as_of)),
        previous=stage.earlier_runs(max_runs=stage.settings.n_runs),
        stages=tuple(stage.config.stages),
    )


def analyse(tables, inputs, settings, *, truth=None, random_state=None) -> MonitorSummary:
    """Compare the current run with the previous one and the trend of the last ``n_runs``.

    Flag rule: see ``retention_lab.monitor.compare``.

    Parameters
    ----------
    tables
        This run's canonical tables: their input profile (``input_profile`` with
        ``settings.features`` and ``settings.recent_months``) joins the current
        run's outputs; None compares the runs' saved outputs only.
    inputs : MonitorInputs
        The current run and earlier ones, newest first (``read_inputs``).
    settings : MonitorSettings
        The configuration's ``monitor`` section (``n_runs``, ``alpha``,
        ``psi_threshold``, ``max_untested_change``).
    truth, random_state
        Unused: the comparison is deterministic and needs no ground truth; kept
        so that every stage's ``analyse`` has the same shape.
    """
    current, previous, stages = inputs.current, list(inputs.previous), inputs.stages
    profile = pd.DataFrame(columns=PROFILE_COLUMNS)
    if tables is not None and tables.customers is not None:
        profile = input_profile(
            tables, features=settings.features, recent_months=settings.recent_months
        )
        current = replace(current, tables={**current.tables, PROFILE_KEY: profile})
    n_runs, alpha = settings.n_runs, settings.alpha
    psi_threshold, max_untested_change = settings.psi_threshold, settings.max_untested_change
    runs = [*reversed(list(previous)[: max(n_runs - 1, 1)]), current]
    history = _stack(runs)
    cur_q = history.loc[history["current"]]
    if previous:
        prev_q = history.loc[history["run_order"] == len(runs) - 2]
        comparison = compare_quantities(cur_q, prev_q)
        cur_profile = current.table("monitoring", "input_profile")
        prev_profile = previous[0].table("monitoring", "input_profile")
        if cur_profile is not None and prev_profile is not None:
            comparison = pd.concat(
                [comparison, compare_distributions(cur_profile, prev_profile)], ignore_index=True
            )
        comparison = flag_changes(
            comparison,
            alpha=alpha,
            psi_threshold=psi_threshold,
            max_untested_change=max_untested_change,
        )
        comparison["ci_overlap"] = ci_overlap(comparison)
        base, unit = _value_base(current)
        flags = rank_flags(
            comparison.loc[comparison["flagged"]],
            base,
            unit=unit,
            plan_actions=current.table("plan", "actions"),
        )
        trend = trends(history, alpha=alpha)
    else:
        comparison = flags = pd.DataFrame()
        trend = trends(history.iloc[:0], alpha=alpha)
    return MonitorSummary(
        current_label=current.label,
        previous_label=previous[0].label if previous else None,
        n_previous=len(previous),
        alpha=alpha,
        psi_threshold=psi_threshold,
        max_untested_change=max_untested_change,
        history=history,
        comparison=comparison,
        flags=flags,
        trends=trend,
        stages=tuple(stages),
        missing=_missing(current, cur_q, stages),
        input_profile=profile,
    )


def describe(row, labels: Mapping[str, str] | None = None) -> str:
    """A quantity in words, e.g. 'share of recent churn (Churn reason: price)'."""
    group = str(row["group"])
    return f"{row['quantity']}" + ("" if group == "all" else f" ({label(group, labels)})")


def _number(value: float, unit: str, currency: str) -> str:
    if unit == "share":
        return fmt.percent(value)
    if unit == MONEY:
        return fmt.money(value, currency)
    return fmt.number(value)


def findings(
    summary: MonitorSummary, *, currency: str = "USD", labels: Mapping[str, str] | None = None
) -> list[str]:
    """Plain-language sentences for the report, most important first.

    Money reads in ``currency``; groups as ``retention_lab.labels.label`` words
    them (``labels``: the configuration's ``report.labels``).
    """
    if not summary.has_history:
        return [
            "There is nothing to compare yet: this is the first finished run of the "
            "experiment that the monitor can read (or the notebook runs without MLflow). "
            f"This run's {len(summary.history)} monitored quantities are stored for the next run."
        ]
    c = summary.comparison
    out = [
        f"Compared with the previous run ({summary.previous_label}) and the trend over the "
        f"last {summary.n_previous + 1} runs: {int(c['tested'].sum())} changes tested, "
        f"{len(summary.flags)} flagged (Holm-corrected, at most {summary.alpha:.0%} chance of a "
        "false flag per run; input distributions also need a PSI of at least "
        f"{summary.psi_threshold:g})."
    ]
    if summary.flags.empty:
        out.append(
            "No statistically meaningful change: the estimates the retention plan rests on "
            "are still current."
        )
    for row in summary.flags.head(5).to_dict("records"):
        if row["family"] == "input distribution":
            what = (
                f"The distribution of {group_keys(row['group'])['feature']} among active customers "
                f"shifted (PSI {row['current']:.2f})"
            )
        else:
            what = (
                f"{capitalised(describe(row, labels))} moved from "
                f"{_number(row['previous'], row['unit'], currency)} "
                f"to {_number(row['current'], row['unit'], currency)} (z = {row['z']:.1f})"
            )
        stages = [
            s for s in RERUN.get(row["family"], ()) if not summary.stages or s in summary.stages
        ]
        impact = ""
        if np.isfinite(row["impact"]):
            basis = (
                "of the saved value the plan expects from it"
                if row.get("impact_basis") == "plan"
                else "of the customers' value concerned"
            )
            amount = (
                fmt.money(row["impact"], currency)
                if row["impact_unit"] == MONEY
                else f"{fmt.count(row['impact'])} {row['impact_unit']}"
            )
            impact = f"; it bears on about {amount} {basis}"
        out.append(
            f"Stale: {what}; the estimates of {', '.join(stages) or 'the stages'} that pool "
            f"data from before the change no longer hold{impact}."
        )
    if summary.stale_stages:
        out.append(
            f"Rerun with fresh data (since {summary.previous_label}): "
            f"{', '.join(summary.stale_stages)}."
        )
    untested = summary.large_untested
    if len(untested):
        names = ", ".join(describe(r, labels) for r in untested.head(4).to_dict("records"))
        out.append(
            f"{len(untested)} quantities moved by more than {summary.max_untested_change:.0%} "
            f"but have no confidence interval to test the move: {names}."
        )
    drifting = summary.trends.loc[summary.trends["drifting"]] if len(summary.trends) else []
    if len(drifting):
        names = ", ".join(describe(r, labels) for r in drifting.head(4).to_dict("records"))
        out.append(f"Drifting over the last runs (a significant trend): {names}.")
    if summary.missing:
        out.append("Not monitored yet: " + "; ".join(summary.missing) + ".")
    return out
