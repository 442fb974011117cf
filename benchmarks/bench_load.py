"""Load and validate a large dataset from Parquet: 1,000,000 customers and 20,000,000 transactions.

Target (issue 8): within 60 s and 8 GB on a 2-core machine. The data are made by
the simulator once (1M customers, bills as transactions, topped up or cut to the
wanted number of transactions) and written as Parquet; the measured part is what
a run does: read the files through a ``files`` source and validate every table.

    .venv/bin/python benchmarks/bench_load.py [--customers 1000000] [--transactions 20000000]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from retention_lab.config import parse_config
from retention_lab.data import load_tables
from retention_lab.data.simulate import SimulatorSettings, simulate


def make_files(folder: Path, customers: int, transactions: int) -> str:
    data = simulate(SimulatorSettings(n_customers=customers), random_state=1)
    bills = data.transactions
    if len(bills) >= transactions:
        bills = bills.iloc[:transactions]
    else:
        extra = bills.sample(transactions - len(bills), replace=True, random_state=2)
        bills = pd.concat([bills, extra], ignore_index=True)
    for name, frame in [
        ("customers", data.customers),
        ("problems", data.problems),
        ("interventions", data.interventions),
        ("transactions", bills),
    ]:
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    return data.as_of.isoformat()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--transactions", type=int, default=20_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        as_of = make_files(folder, args.customers, args.transactions)
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        config = parse_config(
            {
                "name": "bench",
                "data": {
                    "source": "files",
                    "as_of": as_of,
                    **{
                        name: {"path": str(folder / f"{name}.parquet")}
                        for name in ("customers", "problems", "interventions", "transactions")
                    },
                },
            }
        )
        started = time.perf_counter()
        tables, _ = load_tables(config.data, random_state=0)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"{'customers':<14}{len(tables.customers):>14,}")
    print(f"{'transactions':<14}{len(tables.transactions):>14,}")
    print(f"{'load+validate':<14}{seconds:>12.1f} s   (target 60 s)")
    print(f"{'peak memory':<14}{peak:>12.2f} GB  (target 8 GB; {baseline:.2f} GB before loading)")
    assert np.isfinite(seconds)


if __name__ == "__main__":
    main()
