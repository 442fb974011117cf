"""Validation of the canonical tables: each bad input gets its own clear message."""

import pandas as pd
import pytest

from retention_lab.data import derive_tenure, validate_tables
from retention_lab.errors import DataError

AS_OF = pd.Timestamp("2024-01-01")


@pytest.fixture
def raw():
    customers = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3", "C4"],
            "signup_date": ["2020-01-15", "2021-06-01", "2022-03-10", "2023-12-01"],
            "end_date": [None, "2022-06-01", None, "2023-12-31"],
            "segment": ["mass", "vip", "business", "mass"],
            "monthly_fee": [20.0, 80.0, 45.5, 20.0],
        }
    )
    problems = pd.DataFrame(
        {
            "customer_id": ["C1", "C2"],
            "date": ["2021-01-01", "2022-01-01"],
            "problem_type": ["network", "price"],
        }
    )
    interventions = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3"],
            "date": ["2021-01-02", "2022-01-02", "2023-01-01"],
            "instrument": ["discount", "none", "bonus"],
            "assignment": ["random", "random", "rule"],
            "cost": [12.0, 0.0, 15.0],
        }
    )
    transactions = pd.DataFrame(
        {
            "customer_id": ["C1", "C1", "C3"],
            "date": ["2020-02-15", "2020-03-15", "2022-04-10"],
            "amount": [20.0, 20.0, 45.5],
        }
    )
    return {
        "customers": customers,
        "problems": problems,
        "interventions": interventions,
        "transactions": transactions,
    }


def validate(raw, **kwargs):
    files = {name: f"{name}.csv" for name in raw}
    return validate_tables(raw, as_of=AS_OF, files=files, **kwargs)


def test_valid_tables_get_canonical_types_and_tenure(raw):
    tables = validate(raw)
    customers = tables.customers
    assert str(customers["signup_date"].dtype) == "datetime64[ns]"
    assert customers["churned"].tolist() == [False, True, False, True]
    # C2: 2021-06-01 -> 2022-06-01 is 365 days; C1 is censored at as_of
    assert customers.loc[1, "tenure_days"] == 365
    assert customers.loc[0, "tenure_days"] == (AS_OF - pd.Timestamp("2020-01-15")).days
    assert customers.loc[1, "tenure_months"] == pytest.approx(365 / 30.4375)
    assert tables.available() == ["customers", "problems", "interventions", "transactions"]


def test_end_date_after_as_of_is_rejected_but_derive_tenure_censors_it():
    customers = pd.DataFrame(
        {"signup_date": pd.to_datetime(["2020-01-01"]), "end_date": pd.to_datetime(["2025-01-01"])}
    )
    derived = derive_tenure(customers, AS_OF)
    assert not derived["churned"].iloc[0]
    assert derived["tenure_days"].iloc[0] == (AS_OF - pd.Timestamp("2020-01-01")).days


def test_end_before_signup_names_file_column_and_customer(raw):
    raw["customers"].loc[1, "end_date"] = "2020-01-01"
    with pytest.raises(
        DataError,
        match=r"customers.csv: column 'end_date': 1 row breaks "
        r"end_date >= signup_date \(C2\)",
    ):
        validate(raw)


def test_unparseable_dates_are_named_with_the_bad_value(raw):
    raw["customers"].loc[2, "signup_date"] = "31/31/2022"
    with pytest.raises(DataError, match=r"column 'signup_date'.*type date.*'31/31/2022'.*\(C3\)"):
        validate(raw)


def test_wrong_type_in_a_numeric_column(raw):
    raw["transactions"]["amount"] = ["20", "twenty", "45.5"]
    with pytest.raises(
        DataError, match=r"transactions.csv: column 'amount'.*type number.*'twenty'"
    ):
        validate(raw)


def test_duplicate_customer_ids(raw):
    raw["customers"].loc[3, "customer_id"] = "C1"
    with pytest.raises(DataError, match=r"column 'customer_id'.*unique values.*\(C1\)"):
        validate(raw)


def test_missing_required_column(raw):
    raw["problems"] = raw["problems"].drop(columns="problem_type")
    with pytest.raises(
        DataError, match=r"problems.csv: column 'problem_type': required column is missing"
    ):
        validate(raw)


def test_segment_is_optional(raw):
    raw["customers"] = raw["customers"].drop(columns="segment")
    assert "segment" not in validate(raw).customers.columns


def test_unknown_customer_in_an_event_table(raw):
    raw["problems"].loc[1, "customer_id"] = "C99"
    with pytest.raises(
        DataError,
        match=r"problems.csv: column 'customer_id'.*customer_id present "
        r"in the customers table \(C99\)",
    ):
        validate(raw)


def test_events_after_as_of(raw):
    raw["problems"].loc[0, "date"] = "2024-06-01"
    with pytest.raises(
        DataError, match=r"problems.csv: column 'date'.*date <= as_of \(2024-01-01\)"
    ):
        validate(raw)


def test_event_before_signup(raw):
    raw["interventions"].loc[2, "date"] = "2021-01-01"
    with pytest.raises(DataError, match=r"interventions.csv: column 'date'.*signup_date \(C3\)"):
        validate(raw)


def test_negative_amount_and_fee(raw):
    raw["transactions"].loc[0, "amount"] = -5.0
    raw["customers"].loc[0, "monthly_fee"] = -1.0
    with pytest.raises(DataError) as info:
        validate(raw)
    text = str(info.value)
    assert "transactions.csv: column 'amount': 1 row breaks amount > 0 (C1)" in text
    assert "customers.csv: column 'monthly_fee': 1 row breaks monthly_fee >= 0 (C1)" in text


def test_empty_table(raw):
    raw["problems"] = raw["problems"].iloc[0:0]
    with pytest.raises(DataError, match=r"problems.csv: the table is empty"):
        validate(raw)


def test_unknown_assignment_value(raw):
    raw["interventions"].loc[0, "assignment"] = "manager"
    with pytest.raises(DataError, match=r"column 'assignment'.*assignment in \{'random', 'rule'\}"):
        validate(raw)


def test_control_arm_missing_and_single_arm(raw):
    raw["interventions"]["instrument"] = "discount"
    with pytest.raises(DataError, match=r"a control arm labelled 'none'"):
        validate(raw)
    raw["interventions"]["instrument"] = "none"
    with pytest.raises(DataError, match=r"a single treatment arm"):
        validate(raw)


def test_all_problems_of_all_tables_are_reported_together(raw):
    raw["customers"].loc[1, "end_date"] = "2020-01-01"
    raw["transactions"].loc[0, "amount"] = 0.0
    raw["problems"] = raw["problems"].drop(columns="problem_type")
    with pytest.raises(DataError) as info:
        validate(raw)
    assert len(info.value.problems) == 3
    assert str(info.value).startswith("3 problems in the input data:")


def test_only_customers_is_mandatory(raw):
    tables = validate({"customers": raw["customers"]})
    assert tables.available() == ["customers"]
    with pytest.raises(DataError, match="customers table is required"):
        validate({"problems": raw["problems"]})


def test_many_offending_rows_are_shortened(raw):
    customers = pd.concat([raw["customers"]] * 3, ignore_index=True)
    customers["customer_id"] = [f"C{i}" for i in range(len(customers))]
    customers["monthly_fee"] = -1.0
    with pytest.raises(
        DataError,
        match=r"12 rows break monthly_fee >= 0 \(C0, C1, C2, C3, C4, "
        r"\.\.\. and 7 more\)",
    ):
        validate({"customers": customers})
