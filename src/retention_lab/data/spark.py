"""The ``source: spark`` data source: the canonical tables read and aggregated by Spark.

The same configuration as for files and DuckDB (``columns:``, ``values:``,
``date_format``, ``as_of``) is applied inside a SparkSession to Parquet/CSV
files or folders (``path``) or to Spark SQL over catalogue tables (``query``).
Mapping errors (a missing column, an unmapped value, an unparseable date) are
counted in Spark and raised as one ``DataError`` naming the table, column and
customer ids. Only per-customer and per-event rows reach the driver:
transactions are summed per customer and day inside Spark (the finest grain
any stage reads) and, with ``spark.sample_customers``, every table keeps a
deterministic hash sample of customers. Each table's size on the driver is
logged.

The heavy aggregations of the stages also exist here as Spark DataFrame
functions (``customer_histories``, ``monthly_bills``, ``rfm_summary``,
``case_table``), equal to the pandas ones on the same data, for data that
cannot reach one machine; ``score_customers`` (in ``retention_lab.scoring``)
scores every customer inside Spark.

Spark's master and settings come from ``data.spark`` or the environment
(``SPARK_MASTER``, default ``local[*]``); under ``spark-submit`` or on a
managed platform the active session is reused as it is.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from retention_lab.errors import DataError, DataProblem
from retention_lab.units import DAYS_PER_MONTH

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession
    from pyspark.sql import DataFrame as SparkFrame

    from retention_lab.data.settings import DataSettings
    from retention_lab.data.sources import TableSource

log = logging.getLogger(__name__)

MAX_EXAMPLES = 5
# strftime directive -> Spark datetime pattern letters
_STRFTIME_TO_SPARK = {
    "%Y": "yyyy",
    "%y": "yy",
    "%m": "MM",
    "%d": "dd",
    "%H": "HH",
    "%M": "mm",
    "%S": "ss",
    "%b": "MMM",
    "%B": "MMMM",
    "%j": "DDD",
    "%f": "SSSSSS",
}


class SparkSettings(BaseModel):
    """How the ``spark`` source connects to Spark and how much of the data reaches the driver."""

    model_config = ConfigDict(extra="forbid")

    master: str | None = Field(
        None,
        description="Spark master URL (default: the environment's SPARK_MASTER, else local[*]); "
        "ignored when a session is already active (spark-submit, a managed platform)",
    )
    app_name: str = Field("retention-lab", description="Spark application name")
    conf: dict[str, str] = Field(
        default_factory=dict,
        description="Spark settings, e.g. spark.sql.shuffle.partitions: '64' (no credentials: "
        "pass those through the environment)",
    )
    sample_customers: int | None = Field(
        None,
        gt=0,
        description="Keep about this many customers (a deterministic hash sample by customer id) "
        "and their events for the driver; None = every customer",
    )


def spark_session(settings: SparkSettings | None = None) -> SparkSession:
    """The active SparkSession, or a new one from ``settings`` and the environment.

    The session runs in UTC so timestamps reach pandas as the dates they are;
    its Python workers use this interpreter unless ``PYSPARK_PYTHON`` says otherwise.
    """
    from pyspark.sql import SparkSession

    settings = settings or SparkSettings()
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    master = settings.master or os.environ.get("SPARK_MASTER") or "local[*]"
    # Python workers (scoring UDFs) run with this environment's packages unless told otherwise
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName(settings.app_name)
    conf = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        **settings.conf,
    }
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    log.info("spark: session on %s (%s)", session.sparkContext.master, session.version)
    return session


def to_driver(frame: SparkFrame, label: str) -> pd.DataFrame:
    """Collect a Spark DataFrame to pandas, logging how many rows reach the driver.

    Returns
    -------
    pandas.DataFrame
        The Spark frame's own columns (for a canonical table ``customer_id``,
        ``date``, ... as mapped by :func:`spark_frames`), one row per Spark row.
    """
    out = frame.toPandas()
    rows = f"{len(out):,}"
    log.info("spark: %s reaches the driver: %s rows x %s columns", label, rows, out.shape[1])
    return out


# ------------------------------------------------------------------ reading and mapping
def java_date_pattern(strftime: str) -> str:
    """Translate a strftime format (``%d.%m.%Y``) into a Spark datetime pattern (``dd.MM.yyyy``)."""
    parts, pos = [], 0
    for match in re.finditer(r"%.", strftime):
        parts.append(_quoted(strftime[pos : match.start()]))
        code = match.group(0)
        if code not in _STRFTIME_TO_SPARK:
            known = sorted(_STRFTIME_TO_SPARK)
            raise DataError(
                file="data.date_format",
                expected=f"strftime codes Spark reads ({known}), got {code}",
            )
        parts.append(_STRFTIME_TO_SPARK[code])
        pos = match.end()
    parts.append(_quoted(strftime[pos:]))
    return "".join(parts)


def _quoted(literal: str) -> str:
    """Literal text of a date pattern; letters are quoted so Spark does not read them as fields."""
    if not literal.strip(" -/:.,"):
        return literal
    return "'" + literal.replace("'", "''") + "'"


def _read_raw(spark: SparkSession, source: TableSource, table: str) -> tuple[SparkFrame, str]:
    from pyspark.errors import PySparkException

    from retention_lab.data.sources import expand_packages

    if source.query:
        label = f"{table} query (Spark SQL)"
        try:
            return spark.sql(expand_packages(source.query)), label
        except PySparkException as error:
            first = str(error).splitlines()[0]
            raise DataError(file=label, expected=f"a query Spark can run ({first})") from None
    path = expand_packages(source.path)
    label = path
    if "://" not in path and not os.path.exists(path):
        raise DataError(file=path, expected="the file or folder to exist (not found)")
    try:
        if path.lower().endswith(".csv"):
            options = {"header": "true", "inferSchema": "false", **source.read_options}
            return spark.read.options(**{k: str(v) for k, v in options.items()}).csv(path), label
        return spark.read.parquet(path), label
    except PySparkException as error:
        first = str(error).splitlines()[0]
        raise DataError(file=path, expected=f"readable Parquet or CSV ({first})") from None


def _examples(frame: SparkFrame, bad: Column, column: str) -> tuple[int, list[str], list[str]]:
    """Count the rows matching ``bad``; a few of their customer ids and values."""
    from pyspark.sql import functions as F

    hits = frame.where(bad)
    n = hits.count()
    if n == 0:
        return 0, [], []
    id_col = "customer_id" if "customer_id" in frame.columns else column
    rows = hits.select(F.col(id_col).cast("string"), F.col(column).cast("string")).limit(200)
    collected = rows.collect()
    ids = sorted({r[0] for r in collected})
    values = sorted({r[1] for r in collected})[:MAX_EXAMPLES]
    return n, ids, values


def map_spark_columns(
    frame: SparkFrame, table: str, source: TableSource, *, file: str
) -> SparkFrame:
    """Rename, map values and parse dates in Spark, as ``sources.map_columns`` does in pandas."""
    from pyspark.sql import functions as F

    from retention_lab.data.sources import DATE_COLUMNS, check_mapped_columns

    check_mapped_columns(frame.columns, source, file=file)
    renamed = {theirs: canonical for canonical, theirs in source.columns.items()}
    taken = set(renamed.values())
    frame = frame.select(
        *[
            F.col(f"`{c}`").alias(renamed.get(c, c))
            for c in frame.columns
            if c in renamed or c not in taken
        ]
    )
    problems = []
    for column, mapping in source.values.items():
        if column not in frame.columns:
            problems.append(DataProblem(file=file, column=column, expected="a column to map"))
            continue
        keys = {str(k): v for k, v in mapping.items()}
        text = F.col(column).cast("string")
        n, ids, seen = _examples(frame, F.col(column).isNotNull() & ~text.isin(list(keys)), column)
        if n:
            rows = ids if "customer_id" in frame.columns else [f"{n} rows"]
            problems.append(
                DataProblem(
                    file=file,
                    column=column,
                    rows=rows,
                    expected=f"one of the mapped values {sorted(keys)} (found {seen})",
                )
            )
            continue
        lookup = F.create_map(*[F.lit(x) for pair in keys.items() for x in pair])
        frame = frame.withColumn(column, lookup[text])
    pattern = java_date_pattern(source.date_format) if source.date_format else None
    for column in DATE_COLUMNS[table]:
        if column not in frame.columns:
            continue
        raw = F.col(column)
        kind = dict(frame.dtypes)[column]
        if kind in ("date", "timestamp", "timestamp_ntz"):
            parsed = raw.cast("timestamp")
        elif pattern:
            parsed = F.try_to_timestamp(raw.cast("string"), F.lit(pattern))
        else:
            parsed = F.try_to_timestamp(raw.cast("string"))
        blank = raw.isNull() | (F.trim(raw.cast("string")) == "")
        n, ids, seen = _examples(frame, parsed.isNull() & ~blank, column)
        if n:
            fmt = f" in format {source.date_format!r}" if source.date_format else ""
            problems.append(
                DataProblem(
                    file=file,
                    column=column,
                    rows=ids,
                    expected=f"a date{fmt} (unparseable values such as {seen[:3]})",
                )
            )
        frame = frame.withColumn(column, parsed)
    if problems:
        raise DataError(problems=problems)
    if "customer_id" in frame.columns:
        frame = frame.withColumn("customer_id", F.col("customer_id").cast("string"))
    return frame


def sample_filter(ids: Column, n_customers: int, total: int, *, seed: int = 0) -> Column:
    """A deterministic hash sample of about ``n_customers`` of ``total`` customers by id."""
    from pyspark.sql import functions as F

    share = min(1.0, n_customers / max(total, 1))
    return (F.abs(F.xxhash64(ids, F.lit(seed))) % 1_000_000) < int(round(share * 1_000_000))


def daily_transactions(transactions: SparkFrame) -> SparkFrame:
    """Transactions summed per customer and day: the finest grain any stage reads."""
    from pyspark.sql import functions as F

    day = F.to_timestamp(F.to_date("date")).alias("date")
    return transactions.groupBy("customer_id", day).agg(F.sum("amount").alias("amount"))


def spark_frames(config: DataSettings, spark: SparkSession) -> tuple[dict[str, SparkFrame], dict]:
    """The mapped canonical tables as Spark DataFrames (lazy) and their labels."""
    frames, files, problems = {}, {}, []
    for name, source in config.tables().items():
        try:
            raw, label = _read_raw(spark, source, name)
            files[name] = f"spark:{label}"
            frames[name] = map_spark_columns(raw, name, source, file=label)
        except DataError as error:
            problems += error.problems
    if problems:
        raise DataError(problems=problems)
    return frames, files


def read_tables_spark(config: DataSettings) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Read, map and aggregate every configured table in Spark; collect the driver's share.

    Returns
    -------
    frames : dict of str to pandas.DataFrame
        Each configured table by name in canonical column names (``customer_id``,
        ``signup_date``, ``date``, ``amount``, ...), as ``sources.read_tables_from``
        returns them for files and DuckDB.
    labels : dict of str to str
        The path or query each table came from, for messages.
    """
    from pyspark.sql import functions as F

    settings = config.spark
    spark = spark_session(settings)
    frames, files = spark_frames(config, spark)
    if "transactions" in frames:
        frames["transactions"] = daily_transactions(frames["transactions"])
    if "customers" not in frames:
        first = (
            frames["transactions"].groupBy("customer_id").agg(F.min("date").alias("signup_date"))
        )
        frames["customers"] = first.select(
            "customer_id",
            "signup_date",
            F.lit(None).cast("timestamp").alias("end_date"),
            F.lit("all").alias("segment"),
        )
        files["customers"] = f"customers derived from {files['transactions']}"
    if settings.sample_customers:
        total = frames["customers"].count()
        keep = sample_filter(F.col("customer_id"), settings.sample_customers, total)
        frames = {name: frame.where(keep) for name, frame in frames.items()}
        log.info(
            "spark: a hash sample of about %s of %s customers goes to the driver",
            f"{settings.sample_customers:,}",
            f"{total:,}",
        )
    out = {name: to_driver(frame, name) for name, frame in frames.items()}
    # aggregated tables come out of a shuffle in no fixed order: sort them, so equal data give
    # equal tables (and fingerprints) run after run
    if "transactions" in out:
        out["transactions"] = out["transactions"].sort_values(
            ["customer_id", "date"], ignore_index=True
        )
    if config.customers is None:
        out["customers"] = out["customers"].sort_values("customer_id", ignore_index=True)
    return out, files


# ------------------------------------------------------------------ aggregations in Spark
def monthly_bills(transactions: SparkFrame) -> SparkFrame:
    """One row per customer and calendar month: ``month`` (its first day), amount, n_payments."""
    from pyspark.sql import functions as F

    month = F.to_timestamp(F.trunc("date", "month")).alias("month")
    return transactions.groupBy("customer_id", month).agg(
        F.sum("amount").alias("amount"), F.count(F.lit(1)).alias("n_payments")
    )


def customer_histories(transactions: SparkFrame) -> SparkFrame:
    """Per customer: first and last payment, payments, total, months billed, mean monthly bill."""
    from pyspark.sql import functions as F

    bills = monthly_bills(transactions)
    return bills.groupBy("customer_id").agg(
        F.min("month").alias("first_month"),
        F.max("month").alias("last_month"),
        F.sum("n_payments").alias("n_payments"),
        F.sum("amount").alias("total_amount"),
        F.count(F.lit(1)).alias("months_billed"),
        F.avg("amount").alias("mean_monthly_bill"),
    )


def rfm_summary(
    transactions: SparkFrame, *, observation_end: Any, freq_multiplier: float = 1.0
) -> SparkFrame:
    """Recency, frequency, T and mean repeat spend per customer (daily periods), in Spark.

    The same quantities as ``clv.rfm_summary(..., freq="D")``: frequency is the
    number of purchase days after the first, recency and T are days from the
    first purchase day to the last and to ``observation_end`` (divided by
    ``freq_multiplier``), monetary_value the mean amount of the repeat days.
    """
    from pyspark.sql import functions as F

    end = F.to_date(F.lit(pd.Timestamp(observation_end).date().isoformat()))
    days = (
        transactions.where(F.to_date("date") <= end)
        .groupBy("customer_id", F.to_date("date").alias("day"))
        .agg(F.sum("amount").alias("amount"))
    )
    first = days.groupBy("customer_id").agg(
        F.min("day").alias("first"),
        F.max("day").alias("last"),
        F.count(F.lit(1)).alias("n_days"),
        F.sum("amount").alias("total"),
    )
    first_amount = days.join(first, "customer_id").where(F.col("day") == F.col("first"))
    first_amount = first_amount.select("customer_id", F.col("amount").alias("first_amount"))
    out = first.join(first_amount, "customer_id")
    frequency = (F.col("n_days") - 1).cast("double")
    unit = 1.0 / float(freq_multiplier)
    return out.select(
        "customer_id",
        frequency.alias("frequency"),
        (F.datediff("last", "first") * unit).cast("double").alias("recency"),
        (F.datediff(end, "first") * unit).cast("double").alias("T"),
        F.when(frequency > 0, (F.col("total") - F.col("first_amount")) / frequency)
        .otherwise(0.0)
        .alias("monetary_value"),
    )


def case_table(
    interventions: SparkFrame,
    customers: SparkFrame,
    transactions: SparkFrame | None,
    *,
    as_of: Any,
    horizon_days: int,
) -> SparkFrame:
    """The retention cases with their outcome, in Spark (as ``uplift.case_table``'s cases).

    Cases whose horizon ends after ``as_of`` are dropped; each kept case gets
    the customer's columns, ``tenure_months`` at the case date, ``retained``
    (1 when the customer's end date is empty or at least ``horizon_days``
    after the case) and, with transactions, ``revenue``: the amounts dated in
    ``[date, date + horizon_days)``.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    iv = interventions
    if "intervention_id" not in iv.columns:
        order = Window.orderBy(F.monotonically_increasing_id())
        iv = iv.withColumn("intervention_id", F.format_string("I%08d", F.row_number().over(order)))
    as_of_ts = F.lit(pd.Timestamp(as_of).isoformat()).cast("timestamp")
    iv = iv.where(F.date_add(F.col("date"), horizon_days) <= as_of_ts)
    drop = [c for c in customers.columns if c in iv.columns and c != "customer_id"]
    drop += [c for c in ("tenure_days", "tenure_months", "churned") if c in customers.columns]
    cases = iv.join(customers.drop(*drop), "customer_id", "left")
    horizon_end = F.date_add(F.col("date"), horizon_days).cast("timestamp")
    cases = cases.withColumn(
        "tenure_months", F.datediff("date", "signup_date") / F.lit(DAYS_PER_MONTH)
    ).withColumn(
        "retained",
        (F.col("end_date").isNull() | (F.col("end_date") >= horizon_end)).cast("int"),
    )
    if transactions is None:
        return cases
    tx = transactions.select(
        "customer_id", F.col("date").alias("tx_date"), F.col("amount").alias("tx_amount")
    )
    window = cases.select("intervention_id", "customer_id", "date").join(tx, "customer_id")
    window = window.where(
        (F.col("tx_date") >= F.col("date"))
        & (F.col("tx_date") < F.date_add(F.col("date"), horizon_days).cast("timestamp"))
    )
    revenue = window.groupBy("intervention_id").agg(F.sum("tx_amount").alias("revenue"))
    return cases.join(revenue, "intervention_id", "left").fillna(0.0, subset=["revenue"])
