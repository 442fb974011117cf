"""The data stage's summary and findings, checked against the tables they describe."""

import pandas as pd
import pytest

from retention_lab.data import load_tables, summary

from .conftest import make_config


@pytest.fixture(scope="module")
def tables():
    config = make_config()
    loaded, _ = load_tables(config.data, random_state=config.seed)
    return loaded


def test_counts_and_shares_match_the_tables(tables):
    result = summary.summarize(tables)
    customers = tables.customers
    assert result.n_customers == len(customers)
    assert result.n_churned == customers["churned"].sum()
    assert result.n_active + result.n_churned == result.n_customers
    assert result.churn_rate == pytest.approx(customers["churned"].mean())
    rows = dict(zip(result.tables["table"], result.tables["rows"], strict=True))
    assert rows == {name: len(getattr(tables, name)) for name in tables.available()}
    assert result.churn_reasons["customers"].sum() == result.n_churned
    assert result.arms["interventions"].sum() == len(tables.interventions)
    assert result.arms["share"].sum() == pytest.approx(1.0)
    assert result.signups["count"].sum() == result.n_customers
    assert result.to_metrics()["rows_problems"] == len(tables.problems)


def test_findings_state_the_computed_numbers(tables):
    result = summary.summarize(tables)
    text = " ".join(summary.findings(result))
    assert f"{result.n_customers:,} customers" in text
    assert f"({result.churn_rate:.1%}) have churned" in text
    assert result.fingerprint in text


def test_customers_only_dataset_is_summarised_and_says_what_is_missing(tables):
    only = type(tables)(customers=tables.customers, as_of=tables.as_of)
    result = summary.summarize(only)
    assert result.problem_types.empty and result.arms.empty
    assert any(
        "Not in this dataset: problems, interventions, transactions" in line
        for line in summary.findings(result)
    )


def test_missing_values_are_counted_but_an_open_end_date_is_not(tables):
    customers = tables.customers.copy()
    customers.loc[customers.index[:10], "plan"] = None
    result = summary.summarize(type(tables)(customers=customers, as_of=tables.as_of))
    assert result.missing.to_dict("records") == [
        {"table": "customers", "column": "plan", "missing": 10, "share": 10 / len(customers)}
    ]
    assert pd.isna(customers["end_date"]).any()


def test_an_earlier_snapshot_of_a_simulated_market_hides_what_happened_later(tables):
    from retention_lab.data.loaders import snapshot

    config = make_config()
    late, _ = load_tables(config.data, random_state=config.seed)
    early_date = pd.Timestamp(late.as_of) - pd.DateOffset(months=12)
    early_config = config.data.model_copy(update={"as_of": early_date.date()})
    early, _ = load_tables(early_config, random_state=config.seed)
    assert early.customers["signup_date"].max() <= early_date
    assert early.interventions["date"].max() <= early_date
    assert early.customers["churned"].sum() < late.customers["churned"].sum()
    # a customer who churned between the snapshots was active at the early one
    later_churn = late.customers.loc[late.customers["end_date"] > early_date, "customer_id"]
    still = early.customers.set_index("customer_id").loc[
        later_churn[later_churn.isin(early.customers["customer_id"])], "churned"
    ]
    assert len(still) > 0 and not still.any()
    assert snapshot({"customers": late.customers}, late.as_of)["customers"].shape[0] == len(
        late.customers
    )
