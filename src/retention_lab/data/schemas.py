"""Pandera schemas of the four canonical tables and a validator that reports every problem.

Validation runs in two lazy passes so each message is about one thing: first
the types (a value that is not a date, not a number), then the values
(uniqueness, ranges, order of dates). Every failure becomes a ``DataProblem``
naming the file, the column, the offending rows (by ``customer_id`` where the
table has one) and what was expected; all of them are raised together as one
``DataError``.

pandera is imported by the functions that build or run schemas, not with this
module: the stage kernels read tables the runner already validated, and
importing pandera (which imports pyspark when it is installed) costs them about
a second each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from retention_lab.errors import DataError, DataProblem

if TYPE_CHECKING:
    import pandera.pandas as pa
    from pandera.errors import SchemaErrors

CONTROL_ARM = "none"
ASSIGNMENTS = ("random", "rule")
TABLES = ("customers", "problems", "interventions", "transactions")

DATE = "datetime64[ns]"

# column -> (dtype, nullable, required); optional columns are checked only when present
_EVENT = {"customer_id": (str, False, True), "date": (DATE, False, True)}  # whose, and when
COLUMN_TYPES: dict[str, dict[str, tuple[object, bool, bool]]] = {
    "customers": {
        "customer_id": (str, False, True),
        "signup_date": (DATE, False, True),
        "end_date": (DATE, True, True),
        "tenure": (float, False, False),
        "churned": (bool, False, False),
        "segment": (str, False, False),
        "churn_reason": (str, True, False),
        "plan": (str, True, False),
        "contract": (str, True, False),
        "monthly_fee": (float, True, False),
        "acquisition_cost": (float, True, False),
        "channel": (str, True, False),
        "region": (str, True, False),
    },
    "problems": {**_EVENT, "problem_type": (str, False, True), "severity": (float, True, False)},
    "interventions": {
        **_EVENT,
        "instrument": (str, False, True),
        "assignment": (str, False, True),
        "problem_type": (str, True, False),
        "cost": (float, True, False),
    },
    "transactions": {**_EVENT, "amount": (float, False, True)},
}


MAX_MONEY = 1e9  # one fee, cost or payment beyond a billion is a unit or parsing error
# canonical numeric column -> (low, high, low included): the stated range of its values
RANGES: dict[str, tuple[float, float, bool]] = {
    "monthly_fee": (0.0, 1e6, True),
    "acquisition_cost": (0.0, MAX_MONEY, True),
    "tenure": (0.0, 1e5, True),
    "severity": (0.0, 1e3, True),
    "cost": (0.0, MAX_MONEY, True),
    "amount": (0.0, MAX_MONEY, False),
}
MAX_MAGNITUDE = 1e12  # any other numeric column (a covariate such as age): |value| up to this


def _finite(column: str) -> pa.Check:
    import pandera.pandas as pa

    return pa.Check(
        lambda s: np.isfinite(s.astype(float)),
        error=f"-inf < {column} < inf (inf, or a number too large to store such as 1e400)",
    )


def _bound(column: str, bound: float, *, lower: bool, included: bool = True) -> pa.Check:
    """One side of a column's range; non-finite values are left to ``_finite``."""

    def check(series: pd.Series) -> pd.Series:
        values = series.astype(float)
        if lower:
            inside = values >= bound if included else values > bound
        else:
            inside = values <= bound
        return ~np.isfinite(values) | inside

    import pandera.pandas as pa

    sign = (">=" if included else ">") if lower else "<="
    note = " (negative tenure)" if lower and column == "tenure" else ""
    return pa.Check(check, error=f"{column} {sign} {bound:,.0f}{note}")


def _number_checks(column: str) -> list[pa.Check]:
    low, high, low_included = RANGES.get(column, (-MAX_MAGNITUDE, MAX_MAGNITUDE, True))
    return [
        _finite(column),
        _bound(column, low, lower=True, included=low_included),
        _bound(column, high, lower=False),
    ]


def _column_checks(table: str, as_of: pd.Timestamp) -> dict[str, list[pa.Check]]:
    import pandera.pandas as pa

    not_after_as_of = pa.Check.le(as_of, error=f"date <= as_of ({as_of.date()})")
    checks: dict[str, dict[str, list[pa.Check]]] = {
        "customers": {
            "signup_date": [pa.Check.le(as_of, error=f"signup_date <= as_of ({as_of.date()})")],
            "end_date": [pa.Check.le(as_of, error=f"end_date <= as_of ({as_of.date()})")],
        },
        "problems": {"date": [not_after_as_of]},
        "interventions": {
            "date": [not_after_as_of],
            "assignment": [pa.Check.isin(ASSIGNMENTS, error="assignment in {'random', 'rule'}")],
        },
        "transactions": {"date": [not_after_as_of]},
    }
    out = checks[table]
    for column, (dtype, _, _) in COLUMN_TYPES[table].items():
        if dtype is float:
            out[column] = _number_checks(column)
    out["customer_id"] = [
        pa.Check(lambda s: s.astype(str).str.strip() != "", error="a non-empty customer_id")
    ]
    return out


def _dataframe_checks(table: str) -> list[pa.Check]:
    import pandera.pandas as pa

    if table != "customers":
        return []
    return [
        pa.Check(
            lambda df: df["end_date"].isna() | (df["end_date"] >= df["signup_date"]),
            name="end_date >= signup_date",
        )
    ]


AGGREGATED_CUSTOMER_COLUMNS = ("tenure", "churned")
DATED_CUSTOMER_COLUMNS = ("signup_date", "end_date")


def _column_types(table: str, aggregated: bool) -> dict[str, tuple[object, bool, bool]]:
    """Column types of a table; aggregated customers carry tenure and churned instead of dates."""
    types = dict(COLUMN_TYPES[table])
    if table == "customers":
        required = AGGREGATED_CUSTOMER_COLUMNS if aggregated else DATED_CUSTOMER_COLUMNS
        optional = DATED_CUSTOMER_COLUMNS if aggregated else AGGREGATED_CUSTOMER_COLUMNS
        for name in required + optional:
            dtype, nullable, _ = types[name]
            types[name] = (dtype, nullable, name in required)
    return types


def type_schema(table: str, *, aggregated: bool = False) -> pa.DataFrameSchema:
    """Schema that coerces each known column to its canonical type."""
    import pandera.pandas as pa

    columns = {
        name: pa.Column(dtype, nullable=nullable, required=required, coerce=True)
        for name, (dtype, nullable, required) in _column_types(table, aggregated).items()
    }
    return pa.DataFrameSchema(columns, strict=False, name=table)


def value_schema(
    table: str, as_of: pd.Timestamp, *, aggregated: bool = False, other_numbers: list[str] = ()
) -> pa.DataFrameSchema:
    """Schema of value rules (uniqueness, ranges, date order) on already-typed data.

    Every canonical number must be finite and within its range (``RANGES``);
    ``other_numbers`` (the table's other numeric columns) must be finite and
    within ``MAX_MAGNITUDE``.
    """
    import pandera.pandas as pa

    checks = _column_checks(table, as_of)
    columns = {
        name: pa.Column(
            dtype,
            checks=checks.get(name, []),
            nullable=nullable,
            required=required,
            unique=(table == "customers" and name == "customer_id"),
        )
        for name, (dtype, nullable, required) in _column_types(table, aggregated).items()
    }
    for name in other_numbers:
        columns[name] = pa.Column(None, checks=_number_checks(name), nullable=True)
    checks = [] if aggregated else _dataframe_checks(table)
    return pa.DataFrameSchema(columns, checks=checks, strict=False, name=table)


_DATAFRAME_CHECK_COLUMN = {"end_date >= signup_date": "end_date"}


_BOUND_WORDS = {
    "in_range": "the range {} to {}",
    "greater_than_or_equal_to": "the minimum {}",
    "less_than_or_equal_to": "the maximum {}",
}


def _expected_text(check: str) -> str:
    name, _, bounds = check.partition("(")
    if name in _BOUND_WORDS:
        return _BOUND_WORDS[name].format(*bounds.rstrip(")").split(", "))
    return {
        "field_uniqueness": "unique values (duplicates found)",
        "not_nullable": "a value in every row (empty cells found)",
    }.get(check, check)


def _type_word(dtype: str) -> str:
    return {"datetime64[ns]": "date", "float64": "number", "str": "text"}.get(dtype, dtype)


def problems_from(
    errors: SchemaErrors, frame: pd.DataFrame, *, file: str, id_column: str
) -> list[DataProblem]:
    """One ``DataProblem`` per failing column and check, rows named by ``id_column`` if present."""
    cases = errors.failure_cases.copy()
    problems = []
    frame_level = cases["schema_context"] == "DataFrameSchema"
    cases.loc[frame_level, "column"] = None
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        column = None if pd.isna(column) else str(column)
        check = str(check)
        if check == "column_in_dataframe":
            missing = str(group["failure_case"].iloc[0])
            seen = ", ".join(map(str, frame.columns[:12]))
            problems.append(
                DataProblem(
                    file=file,
                    column=missing,
                    expected=f"required column is missing (columns seen: {seen})",
                )
            )
            continue
        if group["schema_context"].iloc[0] == "DataFrameSchema":
            column = _DATAFRAME_CHECK_COLUMN.get(check, column)
        index = pd.Index(group["index"].dropna().unique())
        empty_ids = column == id_column and check in ("not_nullable", "a non-empty customer_id")
        if id_column in frame.columns and len(index) and not empty_ids:
            rows = (
                frame.loc[frame.index.intersection(index), id_column].astype(str).unique().tolist()
            )
        else:
            rows = [f"row {i}" for i in index]
        if check.startswith(("coerce_dtype", "dtype")):
            wanted = _type_word(check[check.index("(") + 1 : check.rindex(")")].strip("'"))
            bad = ", ".join(repr(v) for v in group["failure_case"].head(3))
            expected = f"the type {wanted} (unreadable values such as {bad})"
        else:
            expected = _expected_text(check)
        problems.append(DataProblem(file=file, column=column, expected=expected, rows=rows))
    # one problem per (column, check); coercion failures repeat as dtype failures
    seen, unique = set(), []
    for p in problems:
        key = (p.column, p.expected.split(" (")[0])
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def validate_table(
    frame: pd.DataFrame, table: str, *, as_of: pd.Timestamp, file: str | None = None
) -> pd.DataFrame:
    """Coerce and validate one canonical table; raise ``DataError`` listing every problem.

    Row ids in messages are the ``customer_id`` values of the offending rows.

    Returns
    -------
    pandas.DataFrame
        The table with its columns in canonical dtypes: the required ones of the
        table (customers: ``customer_id``, ``signup_date``, ``end_date``, ``segment``;
        problems: ``customer_id``, ``date``, ``problem_type``; ...) and any others.
    """
    from pandera.errors import SchemaErrors

    file = file or table
    if frame.empty:
        raise DataError(file=file, column=None, expected="the table is empty (no rows)")
    aggregated = table == "customers" and is_aggregated(frame)
    if "churned" in frame.columns:
        _check_flag(frame, "churned", file=file)
    try:
        typed = type_schema(table, aggregated=aggregated).validate(frame, lazy=True)
    except SchemaErrors as errors:
        raise DataError(
            problems=problems_from(errors, frame, file=file, id_column="customer_id")
        ) from None
    known = _column_types(table, aggregated)
    other_numbers = [
        str(c)
        for c in typed.columns
        if c not in known
        and pd.api.types.is_numeric_dtype(typed[c])
        and not pd.api.types.is_bool_dtype(typed[c])
    ]
    schema = value_schema(table, as_of, aggregated=aggregated, other_numbers=other_numbers)
    try:
        return schema.validate(typed, lazy=True)
    except SchemaErrors as errors:
        raise DataError(
            problems=problems_from(errors, typed, file=file, id_column="customer_id")
        ) from None


def check_known_customers(
    tables: Mapping[str, pd.DataFrame | None], *, files: Mapping[str, str] | None = None
) -> list[DataProblem]:
    """Events whose customer is not in the customers table, or dated before signup / after end."""
    files = files or {}
    customers = tables["customers"].set_index("customer_id")
    problems = []
    for table in ("problems", "interventions", "transactions"):
        events = tables.get(table)
        if events is None:
            continue
        file = files.get(table, table)
        known = events["customer_id"].isin(customers.index)
        if not known.all():
            unknown = events.loc[~known, "customer_id"].astype(str).unique().tolist()
            problems.append(
                DataProblem(
                    file=file,
                    column="customer_id",
                    rows=unknown,
                    expected="customer_id present in the customers table",
                )
            )
        if "signup_date" not in customers.columns:
            continue  # aggregated customers carry no dates to compare with
        matched = events.loc[known]
        signup = customers["signup_date"].reindex(matched["customer_id"]).to_numpy()
        end = customers["end_date"].reindex(matched["customer_id"]).to_numpy()
        dates = matched["date"].to_numpy()
        before = dates < signup
        if before.any():
            problems.append(
                DataProblem(
                    file=file,
                    column="date",
                    rows=matched.loc[before, "customer_id"].astype(str).unique().tolist(),
                    expected="date >= the customer's signup_date",
                )
            )
        after_end = ~pd.isna(end) & (dates > end)
        if table != "transactions" and after_end.any():
            problems.append(
                DataProblem(
                    file=file,
                    column="date",
                    rows=matched.loc[after_end, "customer_id"].astype(str).unique().tolist(),
                    expected="date <= the customer's end_date",
                )
            )
    return problems


def check_interventions(
    interventions: pd.DataFrame, *, file: str = "interventions"
) -> list[DataProblem]:
    """Interventions need a control arm (``none``) and at least one instrument beside it."""
    arms = set(interventions["instrument"].unique())
    problems = []
    if CONTROL_ARM not in arms:
        problems.append(
            DataProblem(
                file=file,
                column="instrument",
                expected=f"a control arm labelled '{CONTROL_ARM}' (found only {sorted(arms)})",
            )
        )
    if len(arms - {CONTROL_ARM}) == 0:
        problems.append(
            DataProblem(
                file=file,
                column="instrument",
                expected="at least one retention instrument besides the "
                f"control '{CONTROL_ARM}' (a single treatment arm)",
            )
        )
    return problems


def is_aggregated(customers: pd.DataFrame) -> bool:
    """Whether a customers table carries tenure and a churn flag instead of dates."""
    return "signup_date" not in customers.columns and "tenure" in customers.columns


_FLAG_TEXT = {"true", "false", "0", "1", "0.0", "1.0"}


def _check_flag(frame: pd.DataFrame, column: str, *, file: str) -> None:
    """A true/false column must hold flags, not text such as 'Yes' that would coerce to True."""
    values = frame[column].dropna()
    bad = ~values.astype(str).str.lower().isin(_FLAG_TEXT)
    if bad.any():
        seen = sorted(values[bad].astype(str).unique())[:5]
        rows = (
            frame.loc[bad[bad].index, "customer_id"].astype(str).unique().tolist()
            if ("customer_id" in frame.columns)
            else []
        )
        raise DataError(
            file=file,
            column=column,
            rows=rows,
            expected=f"true/false flags (found {seen}; map them in the configuration, e.g. "
            f"values: {{{column}: {{Yes: true, No: false}}}})",
        )
