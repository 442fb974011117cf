"""Your own data: files, DuckDB, mapping, the two customer shapes, and every bad-input case."""

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from retention_lab.config import CONFIGS_DIR, load_config, parse_config
from retention_lab.data import load_tables
from retention_lab.errors import ConfigError, DataError

from .conftest import cli

CUSTOMERS = pd.DataFrame(
    {
        "Kundennummer": ["K1", "K2", "K3", "K4"],
        "Beginn": ["15.01.2020", "01.06.2021", "10.03.2022", "01.12.2022"],
        "Ende": ["", "01.06.2022", "", "31.12.2023"],
        "Tarif": ["Privat", "Premium", "Geschaeft", "Privat"],
    }
)
MAPPING = {
    "customer_id": "Kundennummer",
    "signup_date": "Beginn",
    "end_date": "Ende",
    "segment": "Tarif",
}
INTERVENTIONS = pd.DataFrame(
    {
        "customer_id": ["K1", "K2", "K3"],
        "date": ["02.01.2021", "02.01.2022", "01.01.2023"],
        "instrument": ["discount", "none", "bonus"],
        "assignment": ["random", "random", "rule"],
    }
)


def write_dataset(folder: Path, customers=CUSTOMERS, interventions=INTERVENTIONS, **overrides):
    """A CSV export and its configuration (mapping German column names and dates)."""
    folder.mkdir(exist_ok=True)
    customers.to_csv(folder / "kunden.csv", index=False)
    config = {
        "name": "own",
        "data": {
            "source": "files",
            "as_of": "2024-01-01",
            "customers": {
                "path": "kunden.csv",
                "columns": dict(MAPPING),
                "date_format": "%d.%m.%Y",
            },
        },
    }
    if interventions is not None:
        interventions.to_csv(folder / "aktionen.csv", index=False)
        config["data"]["interventions"] = {"path": "aktionen.csv", "date_format": "%d.%m.%Y"}
    for key, value in overrides.items():
        config["data"][key] = value
    path = folder / "own.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def load(path):
    config = load_config(path)
    return load_tables(config.data, random_state=0)[0]


def test_csv_export_with_column_and_date_mapping(tmp_path):
    tables = load(write_dataset(tmp_path))
    customers = tables.customers
    assert customers["customer_id"].tolist() == ["K1", "K2", "K3", "K4"]
    assert customers["churned"].tolist() == [False, True, False, True]
    assert customers.loc[1, "tenure_days"] == 365
    assert tables.interventions["date"].iloc[0] == pd.Timestamp("2021-01-02")


def test_relative_paths_are_taken_from_the_configuration_folder(tmp_path):
    config = load_config(write_dataset(tmp_path / "project"))
    assert config.data.customers.path == str(tmp_path / "project" / "kunden.csv")


def test_parquet_files_are_read_by_extension(tmp_path):
    frame = CUSTOMERS.assign(
        Beginn=pd.to_datetime(CUSTOMERS["Beginn"], format="%d.%m.%Y"),
        Ende=pd.to_datetime(CUSTOMERS["Ende"], format="%d.%m.%Y"),
    )
    frame.to_parquet(tmp_path / "kunden.parquet")
    config = parse_config(
        {
            "name": "p",
            "data": {
                "source": "files",
                "as_of": "2024-01-01",
                "customers": {"path": str(tmp_path / "kunden.parquet"), "columns": MAPPING},
            },
        }
    )
    assert load_tables(config.data, random_state=0)[0].customers["churned"].sum() == 2


def test_duckdb_queries_aggregate_inside_the_database(tmp_path):
    database = tmp_path / "crm.duckdb"
    bills = pd.DataFrame(
        {
            "kunde": ["K1"] * 3 + ["K3"] * 2,
            "tag": pd.to_datetime(
                ["2021-01-05", "2021-01-05", "2021-02-05", "2022-04-01", "2022-05-01"]
            ),
            "betrag": [10.0, 5.0, 15.0, 40.0, 40.0],
        }
    )
    bills.to_parquet(tmp_path / "bills.parquet")
    with duckdb.connect(str(database)) as connection:
        connection.sql("CREATE TABLE kunden AS SELECT * FROM CUSTOMERS")
    config = parse_config(
        {
            "name": "d",
            "data": {
                "source": "duckdb",
                "as_of": "2024-01-01",
                "database": str(database),
                "customers": {
                    "query": "SELECT * FROM kunden",
                    "columns": MAPPING,
                    "date_format": "%d.%m.%Y",
                },
                "transactions": {
                    "query": f"SELECT kunde AS customer_id, tag AS date, sum(betrag) AS "
                    f"amount FROM read_parquet('{tmp_path / 'bills.parquet'}') "
                    f"GROUP BY 1, 2 ORDER BY 1, 2"
                },
            },
        }
    )
    tables = load_tables(config.data, random_state=0)[0]
    assert tables.transactions["amount"].tolist() == [15.0, 15.0, 40.0, 40.0]


def test_aggregated_customers_with_tenure_and_a_yes_no_flag(tmp_path):
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "months": [1, 34, 2],
            "left": ["No", "No", "Yes"],
            "kind": ["DSL", "DSL", "Fiber"],
        }
    )
    frame.to_csv(tmp_path / "telco.csv", index=False)
    config = parse_config(
        {
            "name": "t",
            "data": {
                "source": "files",
                "as_of": "2018-01-01",
                "tenure_unit": "months",
                "customers": {
                    "path": str(tmp_path / "telco.csv"),
                    "columns": {
                        "customer_id": "id",
                        "tenure": "months",
                        "churned": "left",
                        "segment": "kind",
                    },
                    "values": {"churned": {"Yes": True, "No": False}},
                },
            },
        }
    )
    tables = load_tables(config.data, random_state=0)[0]
    assert not tables.has_dates
    assert tables.customers["churned"].tolist() == [False, False, True]
    assert tables.customers["tenure_months"].tolist() == [1.0, 34.0, 2.0]


def test_bundled_telco_example_loads_7043_customers():
    tables = load(CONFIGS_DIR / "telco.yaml")
    assert len(tables.customers) == 7043
    assert tables.customers["churned"].sum() == 1869  # the published churn count
    assert set(tables.customers["contract"]) == {"month-to-month", "one-year", "two-year"}


def test_bundled_cdnow_example_loads_the_2357_customer_cohort():
    tables = load(CONFIGS_DIR / "cdnow.yaml")
    assert len(tables.customers) == 2357
    assert tables.customers["signup_date"].max() < pd.Timestamp("1997-04-01")
    assert (tables.transactions["amount"] > 0).all()
    assert not tables.customers["churned"].any()


# ---- bad input: one test per case, each naming file, column and rows where there are any


def expect_error(path, pattern):
    with pytest.raises(DataError, match=pattern):
        load(path)


def test_missing_file(tmp_path):
    path = write_dataset(tmp_path)
    (tmp_path / "kunden.csv").unlink()
    expect_error(path, r"kunden.csv: the file to exist \(file not found\)")


def test_unreadable_file(tmp_path):
    path = write_dataset(tmp_path)
    (tmp_path / "kunden.csv").write_bytes(b"\xff\xfe\x00\x00garbage\x00" * 20)
    expect_error(path, r"kunden.csv: .*readable CSV or Parquet")


def test_misspelt_mapped_column(tmp_path):
    path = write_dataset(tmp_path, customers=CUSTOMERS.rename(columns={"Tarif": "Tariff"}))
    expect_error(path, r"kunden.csv: column 'Tarif'.*mapped to 'segment'.*Tariff")


def test_wrong_types(tmp_path):
    customers = CUSTOMERS.assign(fee=["10", "zehn", "30", "40"])
    path = write_dataset(tmp_path, customers=customers)
    config = yaml.safe_load(path.read_text())
    config["data"]["customers"]["columns"]["monthly_fee"] = "fee"
    path.write_text(yaml.safe_dump(config))
    expect_error(path, r"kunden.csv: column 'monthly_fee'.*type number.*'zehn'.*\(K2\)")


def test_unparseable_dates(tmp_path):
    customers = CUSTOMERS.assign(Beginn=["15.01.2020", "2021-06-01", "10.03.2022", "01.12.2022"])
    expect_error(
        write_dataset(tmp_path, customers=customers),
        r"kunden.csv: column 'signup_date'.*a date in format '%d.%m.%Y'.*'2021-06-01'.*\(K2\)",
    )


def test_end_before_signup(tmp_path):
    customers = CUSTOMERS.assign(Ende=["", "01.06.2020", "", "31.12.2023"])
    expect_error(
        write_dataset(tmp_path, customers=customers),
        r"kunden.csv: column 'end_date': 1 row breaks end_date >= signup_date \(K2\)",
    )


def aggregated_config(folder: Path, frame: pd.DataFrame):
    """A configuration reading an aggregated customers CSV (tenure and churned, no dates)."""
    frame.to_csv(folder / "agg.csv", index=False)
    return parse_config(
        {
            "name": "t",
            "data": {
                "source": "files",
                "as_of": "2020-01-01",
                "customers": {"path": str(folder / "agg.csv"), "columns": {"customer_id": "id"}},
            },
        }
    )


def test_negative_tenure(tmp_path):
    frame = pd.DataFrame({"id": [1, 2], "tenure": [3, -2], "churned": [0, 1], "segment": "a"})
    config = aggregated_config(tmp_path, frame)
    with pytest.raises(DataError, match=r"agg.csv: column 'tenure'.*negative tenure.*\(2\)"):
        load_tables(config.data, random_state=0)


def test_duplicate_customer_ids(tmp_path):
    customers = CUSTOMERS.assign(Kundennummer=["K1", "K2", "K2", "K4"])
    expect_error(
        write_dataset(tmp_path, customers=customers),
        r"kunden.csv: column 'customer_id'.*unique values.*\(K2\)",
    )


def test_unknown_customer_ids_in_an_event_table(tmp_path):
    interventions = INTERVENTIONS.assign(customer_id=["K1", "K9", "K3"])
    expect_error(
        write_dataset(tmp_path, interventions=interventions),
        r"aktionen.csv: column 'customer_id'.*present in the customers table \(K9\)",
    )


def test_events_after_as_of(tmp_path):
    interventions = INTERVENTIONS.assign(date=["02.01.2021", "02.01.2022", "01.02.2024"])
    expect_error(
        write_dataset(tmp_path, interventions=interventions),
        r"aktionen.csv: column 'date'.*date <= as_of \(2024-01-01\) \(K3\)",
    )


def test_an_empty_table(tmp_path):
    expect_error(
        write_dataset(tmp_path, interventions=INTERVENTIONS.iloc[0:0]),
        r"aktionen.csv: the table is empty",
    )


def test_a_single_treatment_arm(tmp_path):
    interventions = INTERVENTIONS.assign(instrument="none")
    expect_error(
        write_dataset(tmp_path, interventions=interventions),
        r"aktionen.csv: column 'instrument'.*single treatment arm",
    )


def test_no_churn_events_at_all(tmp_path):
    customers = CUSTOMERS.assign(Ende="")
    expect_error(
        write_dataset(tmp_path, customers=customers),
        r"kunden.csv: column 'end_date'.*no churn events at all",
    )


def test_a_flag_that_is_not_mapped(tmp_path):
    frame = pd.DataFrame({"id": [1, 2], "tenure": [3, 2], "churned": ["No", "Yes"], "segment": "a"})
    config = aggregated_config(tmp_path, frame)
    with pytest.raises(DataError, match=r"column 'churned'.*true/false.*Yes: true, No: false"):
        load_tables(config.data, random_state=0)


def test_a_configuration_key_that_does_not_exist(tmp_path):
    path = write_dataset(tmp_path)
    config = yaml.safe_load(path.read_text())
    config["data"]["customers"]["column"] = config["data"]["customers"].pop("columns")
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"own.yaml: data.customers.column: unknown key"):
        load_config(path)


def test_files_source_needs_as_of_and_customers():
    with pytest.raises(ConfigError, match=r"as_of is required for source files"):
        parse_config({"name": "x", "data": {"source": "files"}})


def test_bad_input_through_the_cli_exits_2_and_leaves_no_successful_report(tmp_path):
    customers = CUSTOMERS.assign(Ende=["", "01.06.2020", "", "31.12.2023"])
    path = write_dataset(tmp_path / "in", customers=customers)
    reports = tmp_path / "reports"
    result = cli("run", "--config", str(path), "--reports-dir", str(reports), tmp_path=tmp_path)
    assert result.returncode == 2
    assert "end_date >= signup_date (K2)" in result.stderr
    assert "Traceback" not in result.stderr
    records = [json.loads(p.read_text()) for p in reports.glob("*/run.json")]
    assert [r["status"] for r in records] == ["failed"]
    assert "input data were rejected" in records[0]["error"]
    assert all(s["status"] == "not run" for s in records[0]["stages"])
