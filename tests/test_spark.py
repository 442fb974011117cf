"""The smoke market through Spark equals it through DuckDB; spark_udf scores equal in-process ones.

Spark runs in local mode (``local[2]``, two shuffle partitions) and needs Java
17: ``make test`` installs Debian's ``openjdk-17-jre-headless``; a machine
without Java skips these tests with that reason.
"""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from retention_lab import clv, scoring, survival, uplift
from retention_lab.config import load_config, parse_config
from retention_lab.data import fingerprint, load_tables
from retention_lab.data import spark as rs
from retention_lab.data.simulate import SimulatorSettings, simulate, write_simulation
from retention_lab.errors import DataError
from retention_lab.stage import StageContext
from retention_lab.uplift.cases import horizon_days_of
from retention_lab.uplift.learners import UpliftModel

pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(
        shutil.which("java") is None,
        reason="Spark needs Java 17 (Debian openjdk-17-jre-headless; `make test` installs it)",
    ),
]
pyspark = pytest.importorskip("pyspark", reason="pyspark is in the test extras (make install-test)")

SEED = 7
CSV_COLUMNS = {"customer_id": "Kunde", "signup_date": "Beginn", "end_date": "Ende"}
CONTRACTS = {"month-to-month": "Monatlich", "one-year": "12 Monate", "two-year": "24 Monate"}
HORIZON_MONTHS = 6


@pytest.fixture(scope="module")
def spark():
    settings = rs.SparkSettings(
        master="local[2]",
        conf={"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2"},
    )
    session = rs.spark_session(settings)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """The smoke market as a data lake: Parquet events, a German CSV export of the customers."""
    folder = tmp_path_factory.mktemp("lake")
    simulated = simulate(SimulatorSettings(n_customers=2000, months=36), random_state=SEED)
    write_simulation(simulated, folder / "sim")
    customers = simulated.customers.rename(columns=CSV_COLUMNS)
    customers["contract"] = customers["contract"].map(CONTRACTS)
    for column in ("Beginn", "Ende"):
        customers[column] = customers[column].dt.strftime("%d.%m.%Y")
    customers.to_csv(folder / "kunden.csv", index=False)
    return folder, simulated.as_of


def _config(source: str, folder: Path, as_of, **spark):
    customers = {
        "columns": CSV_COLUMNS,
        "values": {"contract": {v: k for k, v in CONTRACTS.items()}},
        "date_format": "%d.%m.%Y",
    }
    parquet = {n: str(folder / "sim" / f"{n}.parquet") for n in ("problems", "interventions")}
    transactions = str(folder / "sim" / "transactions.parquet")
    if source == "spark":
        tables = {name: {"path": path} for name, path in parquet.items()}
        tables["customers"] = {"path": str(folder / "kunden.csv"), **customers}
        tables["transactions"] = {"path": transactions}
    else:
        tables = {name: {"query": f"SELECT * FROM '{path}'"} for name, path in parquet.items()}
        csv = f"SELECT * FROM read_csv('{folder / 'kunden.csv'}', all_varchar = true)"
        tables["customers"] = {"query": csv, **customers}
        tables["transactions"] = {
            "query": "SELECT customer_id, date_trunc('day', date) AS date, sum(amount) AS amount "
            f"FROM '{transactions}' GROUP BY 1, 2 ORDER BY 1, 2"
        }
    data = {"source": source, "as_of": str(as_of), **tables}
    if spark:
        data["spark"] = spark
    return parse_config({"name": f"lake-{source}", "data": data}, file=f"{source}.yaml").data


@pytest.fixture(scope="module")
def both(spark, market):
    folder, as_of = market
    duck, _ = load_tables(_config("duckdb", folder, as_of), random_state=0)
    via_spark, _ = load_tables(_config("spark", folder, as_of), random_state=0)
    return duck, via_spark


def test_customer_tables_equal_through_spark_and_duckdb(both):
    duck, via_spark = both
    assert (
        via_spark.available()
        == duck.available()
        == [
            "customers",
            "problems",
            "interventions",
            "transactions",
        ]
    )
    for name in duck.available():
        pd.testing.assert_frame_equal(getattr(via_spark, name), getattr(duck, name), obj=name)
    assert fingerprint(via_spark) == fingerprint(duck)
    assert via_spark.files["customers"].startswith("spark:")
    # the mapping did its work: canonical contracts and parsed dates
    assert set(via_spark.customers["contract"]) == set(CONTRACTS)
    assert via_spark.customers["signup_date"].dtype.kind == "M"


def test_case_table_and_headline_estimates_equal(spark, market, both):
    folder, as_of = market
    duck, _ = both
    frames, _ = rs.spark_frames(_config("spark", folder, as_of), spark)
    cases_spark = rs.case_table(
        frames["interventions"],
        frames["customers"],
        frames["transactions"],
        as_of=as_of,
        horizon_days=horizon_days_of(HORIZON_MONTHS),
    )
    got = rs.to_driver(cases_spark, "cases").sort_values("intervention_id", ignore_index=True)
    want = uplift.case_table(duck, horizon_months=HORIZON_MONTHS).cases
    want = want.sort_values("intervention_id", ignore_index=True)
    assert len(got) == len(want) > 300
    for column in ("customer_id", "instrument", "assignment", "segment", "retained"):
        assert got[column].astype(str).tolist() == want[column].astype(str).tolist(), column
    for column in ("tenure_months", "revenue"):  # pandas sums revenue by cumulative differences
        np.testing.assert_allclose(got[column], want[column], rtol=1e-9, err_msg=column)
    # headline instrument effects (randomised difference in means by segment) agree
    effects = {
        name: uplift.effects.difference_in_means(
            frame[frame["assignment"] == "random"], by=["segment"]
        )
        for name, frame in (("spark", got), ("duckdb", want))
    }
    pd.testing.assert_frame_equal(effects["spark"], effects["duckdb"])
    assert effects["spark"]["effect"].notna().sum() >= 3


def test_survival_headlines_equal(both):
    duck, via_spark = both
    for table in (survival.descriptive.median_tenure, survival.descriptive.retention_at):
        kwargs = {"horizons": [6, 12, 24]} if table is survival.descriptive.retention_at else {}
        pd.testing.assert_frame_equal(
            table(via_spark.customers, by="segment", **kwargs),
            table(duck.customers, by="segment", **kwargs),
        )


def test_rfm_and_monthly_bills_in_spark_equal_pandas(spark, market, both):
    folder, as_of = market
    duck, _ = both
    frames, _ = rs.spark_frames(_config("spark", folder, as_of), spark)
    got = rs.to_driver(rs.rfm_summary(frames["transactions"], observation_end=as_of), "rfm")
    got = got.sort_values("customer_id", ignore_index=True)
    want = clv.rfm_summary(duck.transactions, observation_end=as_of)
    want = want.sort_values("customer_id", ignore_index=True)
    assert got["customer_id"].tolist() == want["customer_id"].astype(str).tolist()
    for column in ("frequency", "recency", "T", "monetary_value"):
        np.testing.assert_allclose(got[column], want[column], rtol=1e-9, err_msg=column)
    histories = rs.to_driver(rs.customer_histories(frames["transactions"]), "histories")
    totals = duck.transactions.groupby("customer_id")["amount"].sum()
    histories = histories.set_index("customer_id").loc[totals.index]
    np.testing.assert_allclose(histories["total_amount"], totals.to_numpy(), rtol=1e-9)
    months = duck.transactions["date"].dt.to_period("M")
    billed = months.groupby(duck.transactions["customer_id"]).nunique()
    assert histories["months_billed"].tolist() == billed.loc[totals.index].tolist()


def test_driver_sample_keeps_whole_customers(spark, market):
    folder, as_of = market
    raw, _ = rs.read_tables_spark(_config("spark", folder, as_of, sample_customers=500))
    n = len(raw["customers"])
    assert 350 < n < 650  # a hash sample of about 500 of 2,000 customers
    kept = set(raw["customers"]["customer_id"])
    for name in ("problems", "interventions", "transactions"):
        assert set(raw[name]["customer_id"]) <= kept, name


def test_unmapped_value_and_bad_date_name_file_column_and_customers(spark, market, tmp_path):
    folder, as_of = market
    customers = pd.read_csv(folder / "kunden.csv", dtype=str, keep_default_na=False)
    customers.loc[3, "contract"] = "Jahresvertrag"
    customers.loc[5, "Beginn"] = "2021-13-45"
    bad = tmp_path / "kunden.csv"
    customers.to_csv(bad, index=False)
    config = _config("spark", folder, as_of)
    config = config.model_copy(
        update={"customers": config.customers.model_copy(update={"path": str(bad)})}
    )
    with pytest.raises(DataError) as caught:
        rs.read_tables_spark(config)
    message = str(caught.value)
    assert f"{bad}: column 'contract': 1 row breaks" in message
    assert customers.loc[3, "Kunde"] in message and "Jahresvertrag" in message
    assert f"{bad}: column 'signup_date': 1 row breaks a date in format '%d.%m.%Y'" in message
    assert customers.loc[5, "Kunde"] in message


def test_java_date_pattern():
    assert rs.java_date_pattern("%d.%m.%Y") == "dd.MM.yyyy"
    assert rs.java_date_pattern("%Y-%m-%dT%H:%M:%S") == "yyyy-MM-ddTHH:mm:ss".replace("T", "'T'")
    with pytest.raises(DataError, match="%a"):
        rs.java_date_pattern("%a %d")


# ------------------------------------------------------------------ scoring inside Spark
@pytest.fixture(scope="module")
def scorers(both):
    duck, _ = both
    customers = duck.customers
    cox = survival.regression.fit_cox(
        customers, covariates=["segment", "plan", "channel"], strata=["contract"], random_state=1
    )
    tenure = clv.contractual.fit_tenure_model(
        customers, covariates=["segment", "plan"], strata=["contract"], random_state=1
    )
    data = uplift.case_table(duck, horizon_months=HORIZON_MONTHS)
    model = UpliftModel("t", control="none", folds=2, max_iter=20, random_state=1)
    model.fit(data.cases, features=["tenure_months", "segment", "problem_type"])
    active = uplift.cases.active_customers(duck)
    return {
        "scores": (scoring.SurvivalScorer(cox), customers[~customers["churned"]]),
        "values": (scoring.ValueScorer(tenure), customers[~customers["churned"]]),
        "effects": (scoring.UpliftScorer(model), active),
    }


@pytest.mark.parametrize("name", ["scores", "values", "effects"])
def test_spark_udf_scores_equal_in_process(spark, scorers, name, tmp_path):
    scorer, customers = scorers[name]
    customers = customers.reset_index(drop=True)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    from retention_lab import tracking

    run_id = tracking.start_run(uri, "spark-scoring", run_name=name)
    model_uri = scoring.log_scorer(uri, run_id, scorer, name, customers)
    frame = spark.createDataFrame(customers[scorer.input_columns])
    stage = StageContext(name="plan", config=parse_config({"name": "s"}), run_dir=tmp_path)
    producer = {"scores": "survival", "values": "clv", "effects": "uplift"}[name]
    path = tmp_path / producer / f"{name}.parquet"  # where the producing stage saves it
    scoring.score_in_spark(model_uri, frame, path, scorer=scorer, as_of="2023-01-01")
    assert (path / "as_of=2023-01-01").is_dir()
    keys = ["customer_id", "instrument"] if name == "effects" else ["customer_id"]
    got = stage.read_output(producer, name).sort_values(keys, ignore_index=True)
    want = scorer.in_process(customers[scorer.input_columns])
    want = want.sort_values(keys, ignore_index=True)
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want) >= len(customers) > 100
    numeric = want.select_dtypes("number").columns
    pd.testing.assert_frame_equal(got.drop(columns=numeric), want.drop(columns=numeric))
    np.testing.assert_allclose(got[numeric], want[numeric], rtol=1e-9)
    assert want[numeric].std().gt(0).sum() >= 2  # the scores differ between customers


def test_lake_urls_stay_as_written_and_local_paths_are_resolved(tmp_path):
    raw = {"name": "lake", "data": {"source": "spark", "as_of": "2023-01-01",
           "customers": {"path": "s3a://lake/crm/customers/"},
           "transactions": {"path": "billing/payments.parquet"}}}  # fmt: skip
    (tmp_path / "lake.yaml").write_text(yaml.safe_dump(raw))
    data = load_config(tmp_path / "lake.yaml").data
    assert data.customers.path == "s3a://lake/crm/customers/"
    assert data.transactions.path == str(tmp_path / "billing" / "payments.parquet")
