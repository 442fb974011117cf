"""Canonical data model: schemas, loaders, summaries and the simulator."""

from retention_lab.data import example, summary
from retention_lab.data.loaders import (
    Tables,
    derive_tenure,
    fingerprint,
    load_tables,
    read_tables,
    validate_tables,
    write_tables,
)
from retention_lab.data.settings import DataSettings

__all__ = [
    "DataSettings",
    "Tables",
    "derive_tenure",
    "example",
    "summary",
    "fingerprint",
    "load_tables",
    "read_tables",
    "validate_tables",
    "write_tables",
]
