"""Hostile and careless input: every bad value is refused with one message naming where it is.

Each test writes a small export beside its configuration and loads it as a run
would (``load_config`` then ``load_tables``); the CLI tests check the exit
status and that messages are printed as text, never as markup.
"""

import logging
import os
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from retention_lab.config import load_config
from retention_lab.data import load_tables
from retention_lab.errors import DataError

from .conftest import FIXTURES, SMOKE_CONFIG, cli

AS_OF = "2024-01-01"
CUSTOMERS = pd.DataFrame(
    {
        "customer_id": ["C1", "C2", "C3", "C4"],
        "signup_date": ["2020-01-15", "2021-06-01", "2022-03-10", "2022-12-01"],
        "end_date": ["", "2022-06-01", "", "2023-12-31"],
        "segment": ["consumer", "premium", "business", "consumer"],
        "monthly_fee": [20.0, 35.5, 50.0, 20.0],
    }
)


def write(
    folder: Path, customers: pd.DataFrame | str = CUSTOMERS, table: dict | None = None, **data
) -> Path:
    """``customers.csv`` (a frame, or raw text) and ``own.yaml`` reading it.

    ``table`` holds more keys of the customers source, ``data`` more keys of ``data``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(customers, str):
        (folder / "customers.csv").write_text(customers)
    else:
        customers.to_csv(folder / "customers.csv", index=False)
    table = {"path": "customers.csv", **(table or {})}
    config = {"name": "own", "data": {"source": "files", "as_of": AS_OF, "customers": table}}
    config["data"].update(data)
    path = folder / "own.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def rejected(path: Path) -> str:
    """The message of the ``DataError`` loading ``path`` raises."""
    with pytest.raises(DataError) as error:
        load_tables(load_config(path).data, random_state=0)
    return str(error.value)


def loaded(path: Path):
    return load_tables(load_config(path).data, random_state=0)[0]


# ------------------------------------------------------------------ numbers
@pytest.mark.parametrize(
    ("value", "column", "expected"),
    [
        ("inf", "monthly_fee", "-inf < monthly_fee < inf"),
        ("1e400", "monthly_fee", "-inf < monthly_fee < inf"),  # read as inf
        ("-inf", "monthly_fee", "-inf < monthly_fee < inf"),
        ("1e300", "monthly_fee", "monthly_fee <= 1,000,000"),
        ("-5", "monthly_fee", "monthly_fee >= 0"),
        ("1e13", "age", "age <= 1,000,000,000,000"),
        ("inf", "age", "-inf < age < inf"),
    ],
)
def test_infinite_and_absurd_numbers_are_refused_naming_the_customer(
    tmp_path, value, column, expected
):
    customers = CUSTOMERS.assign(age=[30, 40, 50, 60])
    customers[column] = customers[column].astype(object)
    customers.loc[2, column] = value
    message = rejected(write(tmp_path, customers))
    assert f"customers.csv: column '{column}': 1 row breaks {expected}" in message
    assert message.endswith("(C3)")


def test_absurd_amounts_costs_and_a_negative_severity_are_refused(tmp_path):
    pd.DataFrame(
        {"customer_id": ["C1", "C2"], "date": ["2021-01-01", "2022-01-01"],
         "problem_type": ["network", "billing"], "severity": [-1, 2]}
    ).to_csv(tmp_path / "problems.csv", index=False)  # fmt: skip
    pd.DataFrame(
        {"customer_id": ["C1", "C3", "C4"], "date": ["2021-01-01"] * 3,
         "amount": ["1e400", "12.5", "5e12"]}
    ).to_csv(tmp_path / "payments.csv", index=False)  # fmt: skip
    message = rejected(
        write(
            tmp_path,
            problems={"path": "problems.csv"},
            transactions={"path": "payments.csv"},
        )
    )
    assert "problems.csv: column 'severity': 1 row breaks severity >= 0 (C1)" in message
    assert "payments.csv: column 'amount': 1 row breaks -inf < amount < inf" in message
    assert "payments.csv: column 'amount': 1 row breaks amount <= 1,000,000,000 (C4)" in message


def test_a_clean_export_still_loads(tmp_path):
    tables = loaded(write(tmp_path))
    assert tables.customers["customer_id"].tolist() == ["C1", "C2", "C3", "C4"]
    assert tables.customers["monthly_fee"].tolist() == [20.0, 35.5, 50.0, 20.0]


# ------------------------------------------------------------------ ids and headers
def test_an_empty_customer_id_is_refused_not_read_as_nan(tmp_path):
    text = CUSTOMERS.to_csv(index=False).replace("\nC3,", "\n,")
    message = rejected(write(tmp_path, text))
    assert "customers.csv: column 'customer_id': 1 row breaks a value in every row" in message
    assert "(row 2)" in message and "nan" not in message.lower()


def test_a_blank_customer_id_is_refused(tmp_path):
    message = rejected(write(tmp_path, CUSTOMERS.assign(customer_id=["C1", "C2", "  ", "C4"])))
    assert "column 'customer_id': 1 row breaks a non-empty customer_id (row 2)" in message


def test_a_mapping_onto_a_column_the_file_already_has_is_ambiguous(tmp_path):
    customers = CUSTOMERS.assign(plan=["basic", "pro", "pro", "basic"])
    message = rejected(write(tmp_path, customers, table={"columns": {"segment": "plan"}}))
    assert (
        "customers.csv: column 'segment': one column named 'segment': columns maps 'plan' to it "
        "and the file has a column 'segment' too" in message
    )


def test_one_column_mapped_to_two_names_is_ambiguous(tmp_path):
    customers = CUSTOMERS.rename(columns={"segment": "tier"})
    path = write(tmp_path, customers, table={"columns": {"segment": "tier", "plan": "tier"}})
    expected = "one canonical name per column ('tier' is mapped to ['plan', 'segment'])"
    assert f"column 'tier': {expected}" in rejected(path)


def test_repeated_header_names_are_named_not_renamed(tmp_path):
    text = "customer_id,signup_date,end_date,segment,segment\nC1,2020-01-01,2020-05-01,a,b\n"
    assert "customers.csv: one column per header name (repeated: ['segment'])" in rejected(
        write(tmp_path, text)
    )


def test_a_semicolon_delimited_file_gets_a_hint(tmp_path):
    message = rejected(write(tmp_path, CUSTOMERS.to_csv(index=False, sep=";")))
    assert "one column was seen: 'customer_id;signup_date;end_date;segment;monthly_fee'" in message
    assert "delimited by ';': set read_options: {sep: ';'}" in message
    tables = loaded(write(tmp_path, CUSTOMERS.to_csv(index=False, sep=";"),
                          table={"read_options": {"sep": ";"}}))  # fmt: skip
    assert len(tables.customers) == 4  # and the hint works


def test_an_unknown_read_option_is_named(tmp_path):
    path = write(tmp_path, table={"read_options": {"seperator": ";"}})
    assert "read_options that pandas.read_csv knows (unknown: ['seperator'])" in rejected(path)


# ------------------------------------------------------------------ dates
def test_time_zone_aware_dates_keep_their_local_date_and_time(tmp_path, caplog):
    customers = CUSTOMERS.assign(
        signup_date=["2020-01-15 23:30:00+02:00", "2021-06-01 12:00:00", "2022-03-10 08:00:00Z",
                     "2022-12-01 00:30:00-0500"]
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="retention_lab.data.sources"):
        tables = loaded(write(tmp_path, customers))
    assert tables.customers["signup_date"].tolist() == [
        pd.Timestamp("2020-01-15 23:30"),  # not 21:30 UTC
        pd.Timestamp("2021-06-01 12:00"),
        pd.Timestamp("2022-03-10 08:00"),
        pd.Timestamp("2022-12-01 00:30"),  # not 05:30 UTC
    ]
    expected = "3 dates carry a time zone; their local date and time are kept"
    assert f"column 'signup_date': {expected}" in caplog.text


def test_a_far_future_still_active_date_gets_a_hint_that_works(tmp_path):
    customers = CUSTOMERS.assign(end_date=["9999-12-31", "2022-06-01", "9999-12-31", "2023-12-31"])
    message = rejected(write(tmp_path, customers))
    assert "column 'end_date': 2 rows break a date (unparseable values such as '9999-12-31'" in (
        message
    )
    assert "if a date such as 9999-12-31 means 'still active', read it as empty" in message
    hinted = write(
        tmp_path, customers, table={"read_options": {"na_values": {"end_date": ["9999-12-31"]}}}
    )
    assert loaded(hinted).customers["churned"].tolist() == [False, True, False, True]


# ------------------------------------------------------------------ DuckDB and paths
def test_duckdb_reads_relative_paths_from_the_configuration_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    write(folder)
    config = {
        "name": "q",
        "data": {
            "source": "duckdb",
            "as_of": AS_OF,
            "customers": {"query": "SELECT * FROM read_csv('customers.csv', all_varchar=true)"},
        },
    }
    path = folder / "q.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)  # not the configuration's folder
    assert len(loaded(path).customers) == 4


@pytest.mark.parametrize(
    ("query", "kind"),
    [
        ("COPY (SELECT 1 AS x) TO 'written.csv'", "COPY"),
        ("ATTACH 'new.duckdb' AS other", "ATTACH"),
        ("SELECT * FROM read_csv('customers.csv'); SELECT 1", "SELECT, SELECT"),
    ],
)
def test_duckdb_queries_cannot_write_files(tmp_path, query, kind):
    write(tmp_path)
    config = {"name": "q", "data": {"source": "duckdb", "as_of": AS_OF,
                                    "customers": {"query": query}}}  # fmt: skip
    path = tmp_path / "q.yaml"
    path.write_text(yaml.safe_dump(config))
    assert f"customers query: one SELECT statement (found {kind})" in rejected(path)
    assert not (tmp_path / "written.csv").exists() and not (tmp_path / "new.duckdb").exists()
    assert "written.csv" not in os.listdir(Path.cwd())


def test_duckdb_database_file_is_read_only(tmp_path):
    database = tmp_path / "w.duckdb"
    with duckdb.connect(str(database)) as connection:
        connection.execute("CREATE TABLE t AS SELECT 1 AS x")
    config = {"name": "q", "data": {"source": "duckdb", "as_of": AS_OF, "database": "w.duckdb",
                                    "customers": {"query": "SELECT * FROM t"}}}  # fmt: skip
    path = tmp_path / "q.yaml"
    path.write_text(yaml.safe_dump(config))
    assert "required column is missing (columns seen: x)" in rejected(path)


# ------------------------------------------------------------------ through the CLI
def smoke_with(tmp_path: Path, **overrides) -> Path:
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    config.update(overrides)
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_validate_refuses_unknown_stage_names(tmp_path):
    path = smoke_with(tmp_path, stages=["data", "survivl"])
    result = cli("validate", "--config", str(path), tmp_path=tmp_path)
    assert result.returncode == 2
    assert "configuration: stages: no notebook for stage 'survivl'" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_checks_the_campaign_export(tmp_path):
    pd.DataFrame({"customer_id": [1, 2], "arm": ["a", "control"], "outcome": [1, 0]}).to_csv(
        tmp_path / "campaign.csv", index=False
    )
    path = smoke_with(
        tmp_path, stages=["data", "uplift"], uplift={"campaign_file": "campaign.csv"}
    )  # relative to the configuration's folder
    result = cli("validate", "--config", str(path), tmp_path=tmp_path)
    assert result.returncode == 2
    assert "campaign.csv: column 'treatment': present (got ['customer_id', 'arm', 'outcome'])" in (
        result.stderr
    )


def test_a_data_error_inside_a_stage_exits_2(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: c\nstages: [baddata]\ndata:\n  simulator: {n_customers: 300}\n")
    result = cli("run", "--config", str(path), "--reports-dir", str(tmp_path / "r"),
                 "--notebooks-dir", str(FIXTURES / "notebooks"), tmp_path=tmp_path)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "stage 'baddata' failed in cell" in result.stderr
    assert "DataError: extract.csv: column 'plan': 2 rows break a known plan (P[/red]1, [vip])" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["[/red]", "[/link]", "[vip]", "[bold]x[/bold]"])
def test_markup_in_paths_and_ids_is_printed_as_text(tmp_path, name):
    folder = tmp_path / name
    customers = CUSTOMERS.assign(customer_id=["C1", f"{name}id", "C3", "C4"])
    customers.loc[1, "monthly_fee"] = -1
    path = write(folder, customers)
    result = cli("validate", "--config", str(path), tmp_path=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "MarkupError" not in result.stderr
    expected = f"{folder / 'customers.csv'}: column 'monthly_fee': 1 row breaks monthly_fee >= 0"
    assert expected in " ".join(result.stderr.split())
    assert f"({name}id)" in result.stderr
