"""The data stage: what a reviewer needs to trust the input before any model.

``summarize`` computes row counts, date ranges, active vs churned customers,
churn reasons, problems and interventions per type, arms and assignment types,
missing values and the data fingerprint; ``findings`` turns them into
sentences for the top of the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from retention_lab.data.loaders import Tables, fingerprint

DATE_COLUMNS = {
    "customers": "signup_date",
    "problems": "date",
    "interventions": "date",
    "transactions": "date",
}


@dataclass(frozen=True)
class DataSummary:
    """Headline facts of a dataset.

    Tables: ``tables`` (table, rows, first_date, last_date), ``status``
    (status, customers, share), ``churn_reasons`` (churn_reason, customers, share),
    ``problem_types`` (problem_type, problems, customers), ``arms`` (instrument,
    assignment, interventions, share; both empty when the table is missing),
    ``missing`` (table, column, missing, share; only columns with missing values),
    ``signups`` (month, status, count).
    """

    as_of: pd.Timestamp
    fingerprint: str
    n_customers: int
    n_active: int
    n_churned: int
    tables: pd.DataFrame
    status: pd.DataFrame
    churn_reasons: pd.DataFrame
    problem_types: pd.DataFrame
    arms: pd.DataFrame
    missing: pd.DataFrame
    signups: pd.DataFrame

    @property
    def churn_rate(self) -> float:
        """Share of customers who churned by ``as_of``."""
        return self.n_churned / self.n_customers

    def to_metrics(self) -> dict[str, float]:
        """Headline numbers for MLflow."""
        metrics = {
            "n_customers": float(self.n_customers),
            "n_active": float(self.n_active),
            "n_churned": float(self.n_churned),
            "churn_rate": self.churn_rate,
        }
        for row in self.tables.itertuples():
            metrics[f"rows_{row.table}"] = float(row.rows)
        return metrics


def _table_overview(tables: Tables) -> pd.DataFrame:
    rows = []
    for name in tables.available():
        frame = getattr(tables, name)
        dates = frame.get(DATE_COLUMNS[name], pd.Series(dtype="datetime64[ns]"))
        rows.append(
            {"table": name, "rows": len(frame), "first_date": dates.min(), "last_date": dates.max()}
        )
    return pd.DataFrame(rows)


def _shares(counts: pd.Series, name: str) -> pd.DataFrame:
    frame = counts.rename(name).reset_index()
    frame["share"] = frame[name] / frame[name].sum()
    return frame


def _missing_values(tables: Tables) -> pd.DataFrame:
    rows = []
    for name in tables.available():
        frame = getattr(tables, name)
        for column, missing in frame.isna().sum().items():
            if column == "end_date" or column == "churn_reason" or missing == 0:
                continue  # an empty end date or reason means "still active", not missing
            rows.append(
                {
                    "table": name,
                    "column": column,
                    "missing": int(missing),
                    "share": missing / len(frame),
                }
            )
    return pd.DataFrame(rows, columns=["table", "column", "missing", "share"])


def summarize(tables: Tables) -> DataSummary:
    """Summarise a dataset for the data report."""
    customers = tables.customers
    status = customers["churned"].map({True: "churned", False: "active"})
    churned = customers.loc[customers["churned"]]
    reasons = churned.get("churn_reason", pd.Series(index=churned.index, dtype=object))
    reasons = reasons.fillna("unknown").rename("churn_reason")
    problem_types = pd.DataFrame(columns=["problem_type", "problems", "customers"])
    arms = pd.DataFrame(columns=["instrument", "assignment", "interventions", "share"])
    if tables.problems is not None:
        problem_types = (
            tables.problems.groupby("problem_type")
            .agg(problems=("customer_id", "size"), customers=("customer_id", "nunique"))
            .sort_values("problems", ascending=False)
            .reset_index()
        )
    if tables.interventions is not None:
        arms = _shares(
            tables.interventions.groupby(["instrument", "assignment"]).size(), "interventions"
        )
    signups = pd.DataFrame(columns=["month", "status", "count"])
    if tables.has_dates:
        month = customers["signup_date"].dt.to_period("M").dt.to_timestamp()
        signups = (
            customers.assign(month=month, status=status)
            .groupby(["month", "status"])
            .size()
            .rename("count")
            .reset_index()
        )
    return DataSummary(
        as_of=pd.Timestamp(tables.as_of),
        fingerprint=fingerprint(tables),
        n_customers=len(customers),
        n_active=int((~customers["churned"]).sum()),
        n_churned=int(customers["churned"].sum()),
        tables=_table_overview(tables),
        status=_shares(status.value_counts(), "customers").rename(columns={"churned": "status"}),
        churn_reasons=_shares(reasons.value_counts(), "customers"),
        problem_types=problem_types,
        arms=arms,
        missing=_missing_values(tables),
        signups=signups,
    )


def findings(summary: DataSummary) -> list[str]:
    """Plain-language sentences about the dataset, computed from ``summary``."""
    first = summary.tables.loc[summary.tables["table"] == "customers", "first_date"].iloc[0]
    signed_up = (
        f"signed up between {first:%d %b %Y} and the snapshot date {summary.as_of:%d %b %Y}"
        if pd.notna(first)
        else f"are in the data (no signup dates, only tenure) at {summary.as_of:%d %b %Y}"
    )
    lines = [
        f"{summary.n_customers:,} customers {signed_up}; {summary.n_active:,} are active and "
        f"{summary.n_churned:,} ({summary.churn_rate:.1%}) have churned.",
    ]
    if len(summary.churn_reasons):
        top = summary.churn_reasons.iloc[0]
        lines.append(
            f"The most common churn reason is '{top['churn_reason']}' "
            f"({top['share']:.0%} of churned customers)."
        )
    if len(summary.problem_types):
        top = summary.problem_types.iloc[0]
        lines.append(
            f"{int(summary.problem_types['problems'].sum()):,} problem events are "
            f"recorded; the most frequent type is '{top['problem_type']}' "
            f"({int(top['problems']):,} events)."
        )
    if len(summary.arms):
        by_assignment = summary.arms.groupby("assignment")["interventions"].sum()
        randomised = by_assignment.get("random", 0) / by_assignment.sum()
        n_arms = summary.arms["instrument"].nunique()
        lines.append(
            f"{int(by_assignment.sum()):,} retention cases over {n_arms} arms "
            f"(control included); {randomised:.0%} were randomised, the rest "
            f"assigned by rule."
        )
    missing_tables = [
        t
        for t in ("problems", "interventions", "transactions")
        if t not in summary.tables["table"].tolist()
    ]
    if missing_tables:
        lines.append(
            f"Not in this dataset: {', '.join(missing_tables)}; the stages that need "
            f"them report that they are not available."
        )
    if len(summary.missing):
        worst = summary.missing.sort_values("share", ascending=False).iloc[0]
        lines.append(
            f"{len(summary.missing)} columns have missing values; the worst is "
            f"{worst['table']}.{worst['column']} ({worst['share']:.1%} missing)."
        )
    else:
        lines.append("No column has missing values.")
    lines.append(f"Data fingerprint: {summary.fingerprint}.")
    return lines
