"""Load, validate and store the canonical tables.

``Tables`` is what every stage receives: the four canonical tables (only
``customers`` is mandatory), validated, with tenure and churn flags derived from
the snapshot date ``as_of``. Stages exchange tables as Parquet files in the run
folder (``write_tables`` / ``read_tables``), never through global state.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from retention_lab.data.schemas import (
    TABLES,
    check_interventions,
    check_known_customers,
    is_aggregated,
    validate_table,
)
from retention_lab.data.settings import DEFAULTS
from retention_lab.data.sources import read_tables_from
from retention_lab.errors import DataError
from retention_lab.units import DAYS_PER_MONTH, TENURE_UNIT_DAYS

if TYPE_CHECKING:
    from retention_lab.data.settings import DataSettings
    from retention_lab.data.simulate import GroundTruth, SimulatedData


@dataclass(frozen=True)
class Tables:
    """The canonical tables of one dataset at one snapshot date."""

    customers: pd.DataFrame | None  # None for a campaign-only configuration (source none)
    as_of: date
    problems: pd.DataFrame | None = None
    interventions: pd.DataFrame | None = None
    transactions: pd.DataFrame | None = None
    files: dict[str, str] = field(default_factory=dict)
    stored_fingerprint: str = ""  # set when read back from a run folder, see ``fingerprint``
    # the unit tenures are reported in: the declared data.tenure_unit for an aggregated
    # customers table (tenure and a churn flag, no dates), else months
    tenure_unit: str = "months"

    @property
    def has_dates(self) -> bool:
        """Whether customers carry signup and end dates (not only an aggregated tenure)."""
        return self.customers is not None and "signup_date" in self.customers.columns

    def available(self) -> list[str]:
        """Names of the tables present in this dataset."""
        return [name for name in TABLES if getattr(self, name) is not None]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={len(getattr(self, name)):,}" for name in self.available())
        return f"Tables(as_of={self.as_of}, {sizes or 'no tables'})"


def derive_tenure(
    customers: pd.DataFrame, as_of: date | pd.Timestamp, *, tenure_unit: str = DEFAULTS.tenure_unit
) -> pd.DataFrame:
    """Add tenure and churn flags observed at ``as_of``.

    An aggregated table (``tenure`` in ``tenure_unit`` and ``churned``, no dates)
    keeps its flag and converts its tenure.

    Returns
    -------
    pandas.DataFrame
        ``customers`` with ``churned`` (bool: ended on or before ``as_of``),
        ``tenure_days`` (float, signup to end or ``as_of``) and ``tenure_months``
        (``tenure_days / 30.4375``).
    """
    if is_aggregated(customers):
        tenure_days = customers["tenure"].astype(float) * TENURE_UNIT_DAYS[tenure_unit]
        return customers.assign(
            churned=customers["churned"].astype(bool).to_numpy(),
            tenure_days=tenure_days.to_numpy(),
            tenure_months=(tenure_days / DAYS_PER_MONTH).to_numpy(),
        )
    as_of = pd.Timestamp(as_of)
    churned = customers["end_date"].notna() & (customers["end_date"] <= as_of)
    end = customers["end_date"].where(churned, as_of)
    tenure_days = (end - customers["signup_date"]).dt.total_seconds() / 86_400.0
    return customers.assign(
        churned=churned.to_numpy(),
        tenure_days=tenure_days.to_numpy(),
        tenure_months=(tenure_days / DAYS_PER_MONTH).to_numpy(),
    )


def validate_tables(
    raw: dict[str, pd.DataFrame | None],
    *,
    as_of: date | pd.Timestamp,
    files: dict[str, str] | None = None,
    tenure_unit: str = DEFAULTS.tenure_unit,
    require_churn: bool = True,
) -> Tables:
    """Validate every table and the links between them; one ``DataError`` lists all problems.

    ``files`` maps a table name to the file it came from, for messages.
    ``require_churn`` rejects a customers table in which nobody churned (survival
    and value models cannot be fitted); non-contractual data, where churn is
    never observed, turns it off.
    """
    files = dict(files or {})
    as_of_ts = pd.Timestamp(as_of)
    if raw.get("customers") is None:
        raise DataError(
            file=files.get("customers", "customers"), expected="the customers table is required"
        )
    problems, valid = [], {}
    for name in TABLES:
        frame = raw.get(name)
        if frame is None:
            continue
        try:
            valid[name] = validate_table(frame, name, as_of=as_of_ts, file=files.get(name, name))
        except DataError as error:
            problems += error.problems
    if problems:
        raise DataError(problems=problems)
    problems = check_known_customers(valid, files=files)
    if "interventions" in valid:
        problems += check_interventions(
            valid["interventions"], file=files.get("interventions", "interventions")
        )
    if problems:
        raise DataError(problems=problems)
    valid["customers"] = derive_tenure(valid["customers"], as_of_ts, tenure_unit=tenure_unit)
    if require_churn and not valid["customers"]["churned"].any():
        raise DataError(
            file=files.get("customers", "customers"),
            column="end_date" if "end_date" in valid["customers"] else "churned",
            expected=f"at least one churned customer by as_of ({as_of_ts.date()}): there are "
            "no churn events at all, so no survival or value model can be fitted",
        )
    dated = "signup_date" in valid["customers"].columns
    return Tables(
        as_of=as_of_ts.date(),
        files=files,
        tenure_unit="months" if dated else tenure_unit,
        **valid,
    )


def snapshot(raw: dict[str, pd.DataFrame | None], as_of: date) -> dict[str, pd.DataFrame | None]:
    """The tables as they looked at an earlier date ``as_of``.

    Customers who signed up later are dropped, later events are dropped, and a
    churn after ``as_of`` is not yet known (end date and reason cleared). Used to
    observe one simulated market at several snapshot dates, as scheduled runs do.

    Returns
    -------
    dict of str to pandas.DataFrame or None
        The tables by name, each with its columns unchanged (customers:
        ``customer_id``, ``signup_date``, ``end_date``, ``segment``, ...; events:
        ``customer_id``, ``date``, ...), cut at ``as_of``.
    """
    cutoff = pd.Timestamp(as_of)
    customers = raw["customers"]
    customers = customers.loc[customers["signup_date"] <= cutoff].copy()
    unknown_yet = customers["end_date"] > cutoff
    customers.loc[unknown_yet, "end_date"] = pd.NaT
    if "churn_reason" in customers.columns:
        customers.loc[unknown_yet, "churn_reason"] = None
    # by a hash index: Series.isin on arrow strings tests each value in Python (25 times slower)
    known = pd.Index(customers["customer_id"].unique())
    cut = {"customers": customers}
    for name in ("problems", "interventions", "transactions"):
        frame = raw.get(name)
        if frame is not None:
            keep = (frame["date"] <= cutoff) & (known.get_indexer(frame["customer_id"]) >= 0)
            cut[name] = frame.loc[keep]
    return cut


def simulated_tables(simulated: SimulatedData, as_of: date | None = None) -> Tables:
    """The validated tables of a simulated market as observed on ``as_of`` (default: its end)."""
    as_of = as_of or simulated.as_of
    raw = snapshot({name: getattr(simulated, name) for name in TABLES}, as_of)
    # a market simulated without retention cases (or problems) has no such table
    raw = {name: frame for name, frame in raw.items() if frame is None or len(frame)}
    return validate_tables(raw, as_of=as_of)


def load_tables(
    data_config: DataSettings, *, random_state: int
) -> tuple[Tables, GroundTruth | None]:
    """Load the dataset a run configuration names, validated; ground truth when simulated."""
    if data_config.source == "simulator":
        from retention_lab.data.simulate import simulate

        simulated = simulate(data_config.simulator, random_state=random_state)
        return simulated_tables(simulated, data_config.as_of), simulated.truth
    if data_config.source == "none":  # a campaign export is the only data (uplift.campaign)
        return Tables(customers=None, as_of=data_config.as_of), None
    raw, files = read_tables_from(data_config)
    tables = validate_tables(
        raw,
        as_of=data_config.as_of,
        files=files,
        tenure_unit=data_config.tenure_unit,
        require_churn=data_config.contractual,
    )
    return tables, None


def write_tables(tables: Tables, directory: str | Path) -> None:
    """Store the tables as Parquet (one file per table) plus ``tables.json`` with ``as_of``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in tables.available():
        getattr(tables, name).to_parquet(directory / f"{name}.parquet", index=False)
    meta = {
        "as_of": tables.as_of.isoformat(),
        "tables": tables.available(),
        "has_dates": tables.has_dates,
        "fingerprint": fingerprint(tables),
        "files": tables.files,
        "tenure_unit": tables.tenure_unit,
    }
    (directory / "tables.json").write_text(json.dumps(meta, indent=2))


def read_tables(directory: str | Path) -> Tables:
    """Read tables written by ``write_tables`` (already validated, tenure derived)."""
    directory = Path(directory)
    meta = json.loads((directory / "tables.json").read_text())
    frames = {name: pd.read_parquet(directory / f"{name}.parquet") for name in meta["tables"]}
    frames.setdefault("customers", None)
    return Tables(
        as_of=date.fromisoformat(meta["as_of"]),
        files=meta.get("files", {}),
        stored_fingerprint=meta.get("fingerprint", ""),
        tenure_unit=meta.get("tenure_unit", "months"),
        **frames,
    )


def fingerprint(tables: Tables) -> str:
    """A short SHA-256 of the tables' contents and ``as_of``: equal data, equal fingerprint.

    Tables read back from a run folder keep the fingerprint computed when they
    were validated, so every stage of a run reports the same one without
    hashing the data again (Parquet may change the dtypes the hash sees).
    """
    if tables.stored_fingerprint:
        return tables.stored_fingerprint
    digest = hashlib.sha256(tables.as_of.isoformat().encode())
    for name in tables.available():
        frame = getattr(tables, name)
        digest.update(name.encode())
        digest.update(",".join(frame.columns).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]
