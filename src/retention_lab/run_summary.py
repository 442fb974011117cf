"""The executive summary of a run: four answers read from the stages' results.

Each answer is built from what the stages wrote in the run folder
(``<stage>/results.json`` and, for the threat ranking, the tables the stages
saved). A stage that is absent, skipped or failed leaves its answer out with
a sentence saying so, never a guess. Numbers follow the house style
(``formatting``): money with the currency, rates as %, differences in pp.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from retention_lab import formatting as fmt
from retention_lab.labels import label
from retention_lab.stage import read_results

EFFECT_PREFIX = "effect.difference_in_means_randomised_retained_"
# the stage metrics the pipeline (parent) MLflow run carries, as ``<stage>.<metric>``
HEADLINE_METRICS = {
    "data": ["n_customers", "n_churned", "churn_rate"],
    "survival": [
        "median_tenure_months",
        "retention_12m",
        "concordance_held_out",
        "calibration_ici",
    ],
    "uplift": ["cases", "randomised_cases"],
    "clv": ["total_residual_value", "share_value_at_risk"],
    "plan": ["treated", "spent", "expected_net_value", "ope_dr_net_value", "true_net_value"],
    "monitoring": ["flags", "large_untested_changes"],
}


@dataclass(frozen=True)
class Answer:
    """One question of the summary, its answer in sentences, and the stage page behind it."""

    question: str
    lines: list[str] = field(default_factory=list)
    stage: str = ""
    link: str | None = None  # relative to the run folder


def _succeeded(run_dir: Path, stage: str) -> dict | None:
    results = read_results(run_dir, stage)
    return results if results and results.get("status", "succeeded") == "succeeded" else None


def _link(run_dir: Path, stage: str) -> str | None:
    page = Path(run_dir) / stage / f"{stage}.html"
    return f"{stage}/{stage}.html" if page.is_file() else None


def _interval(metrics: dict, key: str) -> tuple[float, float] | None:
    low, high = metrics.get(f"{key}_lower"), metrics.get(f"{key}_upper")
    return (low, high) if low is not None and high is not None else None


def _threats(run_dir: Path) -> pd.DataFrame | None:
    """Threats ranked by value lost (plan), else by churn they cause (survival)."""
    for stage in ("plan", "survival"):
        path = Path(run_dir) / stage / "threats.parquet"
        if path.is_file() and _succeeded(run_dir, stage):
            return pd.read_parquet(path)
    return None


def who_is_leaving(run_dir: Path, currency: str, labels: Mapping[str, str] | None = None) -> Answer:
    """Churn so far, retention ahead, and the threats ranked by what they cost."""
    answer = Answer("Who is leaving, and why?", stage="survival", link=_link(run_dir, "survival"))
    data, survival = _succeeded(run_dir, "data"), _succeeded(run_dir, "survival")
    if data and "churn_rate" in data["metrics"]:
        m = data["metrics"]
        answer.lines.append(
            f"{fmt.count(m['n_churned'])} of {fmt.count(m['n_customers'])} customers have "
            f"left ({fmt.percent(m['churn_rate'])})."
        )
    if survival and "retention_12m" in survival["metrics"]:
        m = survival["metrics"]
        answer.lines.append(
            "Share of customers still with us after 12 months: "
            f"{fmt.percent(m['retention_12m'], interval=_interval(m, 'retention_12m'))}."
        )
    threats = _threats(run_dir)
    if threats is not None and len(threats):
        if "value_lost" in threats.columns:
            top = threats.sort_values("value_lost", ascending=False).head(3)
            ranked = [
                f"{label(r.problem_type, labels)} ({fmt.money(r.value_lost, currency)})"
                for r in top.itertuples()
            ]
            answer.lines.append("Threats ranked by value lost: " + ", ".join(ranked) + ".")
        elif "attributable_churn" in threats.columns:
            top = threats.sort_values("attributable_churn", ascending=False)
            top = top[top["attributable_churn"] > 0].head(3)
            ranked = [
                f"{label(r.problem_type, labels)} (about {fmt.count(r.attributable_churn)} "
                f"departures, {fmt.percent(r.share_of_churn)} of all churn)"
                for r in top.itertuples()
            ]
            if ranked:
                answer.lines.append(
                    "Threats ranked by the churn they cause: " + ", ".join(ranked) + "."
                )
    if not answer.lines:
        answer.lines.append(
            "Not answered in this run: the survival stage did not run on this data."
        )
    return answer


def what_works(run_dir: Path, labels: Mapping[str, str] | None = None) -> Answer:
    """The instruments' measured effects on retention, best first, with their intervals."""
    answer = Answer("What works?", stage="uplift", link=_link(run_dir, "uplift"))
    uplift = _succeeded(run_dir, "uplift")
    if uplift:
        m = uplift["metrics"]
        effects = {
            k[len(EFFECT_PREFIX) :]: v
            for k, v in m.items()
            if k.startswith(EFFECT_PREFIX) and not k.endswith(("_lower", "_upper"))
        }
        ranked = sorted(effects.items(), key=lambda kv: kv[1], reverse=True)
        if ranked:
            parts = [
                f"{label(name, labels)} "
                f"{fmt.pp(value, interval=_interval(m, EFFECT_PREFIX + name))}"
                for name, value in ranked
            ]
            answer.lines.append(
                "Change in the share of customers kept, randomised cases against no action: "
                + "; ".join(parts)
                + "."
            )
            if not any(_interval(m, EFFECT_PREFIX + name) for name, _ in ranked):
                answer.lines.append("The 95% intervals of these effects are on the uplift page.")
    if not answer.lines:
        answer.lines.append(
            "Not answered in this run: the uplift stage did not run on this data "
            "(it needs recorded retention cases)."
        )
    return answer


def what_to_do(run_dir: Path, currency: str) -> Answer:
    """The plan: whom to treat, its budget, spend and expected net value against the status quo."""
    answer = Answer("What should we do?", stage="plan", link=_link(run_dir, "plan"))
    plan = _succeeded(run_dir, "plan")
    if plan:
        m = plan["metrics"]
        treated = m.get("treated", 0)
        if treated:
            answer.lines.append(
                f"Treat {fmt.count(treated)} of {fmt.count(m.get('candidates'))} customers with an "
                f"open problem, spending {fmt.money(m.get('spent'), currency)} of the "
                f"{fmt.money(m.get('budget'), currency)} budget."
            )
        else:
            answer.lines.append(
                f"Treat no one: none of the {fmt.count(m.get('candidates'))} customers with "
                "an open problem has an instrument likely enough to pay back (budget "
                f"{fmt.money(m.get('budget'), currency)})."
            )
        answer.lines.append(
            "Expected net value of the plan (saved value minus cost): "
            + fmt.money(m.get("expected_net_value"), currency)
            + (
                f"; the current practice (status quo) at the same budget: "
                f"{fmt.money(m['status_quo_expected_net_value'], currency)}."
                if "status_quo_expected_net_value" in m
                else "."
            )
        )
        if "ope_dr_net_value" in m:

            def tested(prefix: str) -> str:
                key = f"{prefix}_net_value"
                return fmt.money(m[key], currency, interval=_interval(m, key))

            line = "Tested on the randomised past cases (doubly robust), the plan's rule is worth "
            line += tested("ope_dr")
            if "status_quo_ope_dr_net_value" in m:
                line += ", the status quo " + tested("status_quo_ope_dr")
            answer.lines.append(line + ".")
    if not answer.lines:
        answer.lines.append("Not answered in this run: the plan stage did not run on this data.")
    return answer


def what_changed(run_dir: Path) -> Answer:
    """What the monitoring stage flagged against the previous runs."""
    answer = Answer(
        "What changed since the previous run?",
        stage="monitoring",
        link=_link(run_dir, "monitoring"),
    )
    monitoring = _succeeded(run_dir, "monitoring")
    if monitoring:
        m = monitoring["metrics"]
        if not m.get("previous_runs"):
            answer.lines.append(
                "This is the first run of its experiment: nothing to compare with yet."
            )
        else:
            answer.lines.append(
                f"Compared with {fmt.count(m['previous_runs'])} earlier run(s): "
                f"{fmt.count(m.get('flags', 0))} estimate(s) changed beyond chance, "
                f"{fmt.count(m.get('large_untested_changes', 0))} large change(s) "
                "could not be tested."
            )
    if not answer.lines:
        answer.lines.append("Not answered in this run: the monitoring stage did not run.")
    return answer


def headline_metrics(stage: str, metrics: dict[str, float]) -> dict[str, float]:
    """The headline metrics of a stage, named ``<stage>.<metric>`` for the pipeline run."""
    return {f"{stage}.{k}": metrics[k] for k in HEADLINE_METRICS.get(stage, []) if k in metrics}


def summarise(
    run_dir: str | Path, *, currency: str, labels: Mapping[str, str] | None = None
) -> list[Answer]:
    """The four answers of a run's executive summary, in reading order.

    Problems and instruments read as ``labels.label`` words them (``labels``:
    the configuration's ``report.labels``).
    """
    run_dir = Path(run_dir)
    return [
        who_is_leaving(run_dir, currency, labels),
        what_works(run_dir, labels),
        what_to_do(run_dir, currency),
        what_changed(run_dir),
    ]
