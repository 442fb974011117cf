"""The tutorial's small CSV export: a simulated market written as a CRM would export it.

The export uses its own column names for the key columns and day-first dates,
so that reading it needs the ``columns`` and ``date_format`` mapping of a run
configuration, as a real export does (``notebooks/tutorials/crm_export.yaml``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from retention_lab.data.simulate import SimulatorSettings, simulate

EXAMPLE_MONTHS = 36  # the window 2020-01-01 to 2023-01-01: the export's as_of is 2023-01-01
EXPORT_DATE_FORMAT = "%d/%m/%Y"
EXPORT_COLUMNS = {
    "customers": {
        "customer_id": "Customer ID",
        "signup_date": "Start",
        "end_date": "Cancelled",
        "segment": "Tier",
    },
    "problems": {"customer_id": "Customer ID", "date": "Date", "problem_type": "Reason"},
    "interventions": {
        "customer_id": "Customer ID",
        "date": "Date",
        "instrument": "Action",
        "assignment": "Assignment",
    },
}


def write_example_export(
    folder: str | Path, *, n_customers: int = 3000, random_state: int = 0
) -> pd.DataFrame:
    """Simulate a small market and write its customers, problems and retention cases as CSV.

    The market covers ``EXAMPLE_MONTHS`` months from 2020-01-01; bills are not
    exported (the tutorial values customers by their monthly fee).

    Returns
    -------
    pandas.DataFrame
        One row per file written: ``table`` (canonical name), ``file`` (path),
        ``rows`` and ``columns`` (the export's column names, comma-separated).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    settings = SimulatorSettings(
        n_customers=n_customers, months=EXAMPLE_MONTHS, transactions=False
    )
    market = simulate(settings, random_state=random_state)
    written = []
    for table, mapping in EXPORT_COLUMNS.items():
        frame = getattr(market, table).rename(columns=mapping)
        path = folder / f"{table}.csv"
        frame.to_csv(path, index=False, date_format=EXPORT_DATE_FORMAT)
        written.append(
            {"table": table, "file": str(path), "rows": len(frame), "columns": ", ".join(frame)}
        )
    return pd.DataFrame(written)
