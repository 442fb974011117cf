"""Benchmark: the uplift stage's library calls on 500,000 interventions with four instruments.

Target (issue 5): within 5 minutes and 8 GB.

Run ``.venv/bin/python benchmarks/bench_uplift.py``. The first run simulates a
market and keeps the cases of the control and four instruments (plan upgrades
left out) in ``--data-dir`` (default ``/tmp/bench_uplift``); the timed part,
run in a fresh process, reads the tables and runs what the notebook runs:
``case_table``, ``analyse`` (default configuration), ``plan_effects``. Peak
memory is the maximum resident set size of that process.

Measured (2 cores, 2026-11-23): 419,443 cases with an observed outcome,
274.6 s in all (analyse 238.4 s, of which the instrument hazard ratios take
15.9 s), 4.14 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

N_INTERVENTIONS = 500_000
DROPPED = "plan_upgrade"


def prepare(directory: Path, n_customers: int, seed: int) -> None:
    from retention_lab.data.simulate import SimulatorSettings, simulate

    t0 = time.perf_counter()
    sim = simulate(SimulatorSettings(n_customers=n_customers), random_state=seed)
    iv = sim.interventions[sim.interventions["instrument"] != DROPPED]
    if len(iv) < N_INTERVENTIONS:
        raise SystemExit(f"only {len(iv):,} interventions; raise --customers")
    iv = iv.sample(N_INTERVENTIONS, random_state=seed).sort_values("date")
    directory.mkdir(parents=True, exist_ok=True)
    sim.customers.to_parquet(directory / "customers.parquet", index=False)
    sim.problems.to_parquet(directory / "problems.parquet", index=False)
    iv.to_parquet(directory / "interventions.parquet", index=False)
    sim.transactions.to_parquet(directory / "transactions.parquet", index=False)
    (directory / "as_of.txt").write_text(sim.as_of.isoformat())
    print(
        f"simulated {len(sim.customers):,} customers, kept {len(iv):,} interventions "
        f"({time.perf_counter() - t0:.0f} s)"
    )


def run(directory: Path, threads: int) -> dict:
    from datetime import date

    import pandas as pd

    import retention_lab.uplift as up
    from retention_lab.data.loaders import Tables, derive_tenure
    from retention_lab.uplift import UpliftSettings

    t0 = time.perf_counter()
    as_of = date.fromisoformat((directory / "as_of.txt").read_text())
    tables = Tables(
        customers=derive_tenure(pd.read_parquet(directory / "customers.parquet"), as_of),
        as_of=as_of,
        problems=pd.read_parquet(directory / "problems.parquet"),
        interventions=pd.read_parquet(directory / "interventions.parquet"),
        transactions=pd.read_parquet(directory / "transactions.parquet"),
    )
    t_read = time.perf_counter()
    config = UpliftSettings(threads=threads)
    data = up.case_table(tables, horizon_months=config.horizon_months)
    t_cases = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = up.analyse(tables, data, config, random_state=0)
    t_analyse = time.perf_counter()
    effects = up.plan_effects(summary, data, tables)
    t_plan = time.perf_counter()
    findings = up.findings(summary)
    return {
        "interventions": len(tables.interventions),
        "instruments": len(data.instruments),
        "cases_observed": len(data.cases),
        "active_customers_scored": int(effects["customer_id"].nunique()),
        "threads": threads,
        "seconds_read": round(t_read - t0, 1),
        "seconds_case_table": round(t_cases - t_read, 1),
        "seconds_analyse": round(t_analyse - t_cases, 1),
        "seconds_plan_effects": round(t_plan - t_analyse, 1),
        "seconds_total": round(t_plan - t0, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "first_finding": findings[1] if len(findings) > 1 else findings[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/bench_uplift"))
    parser.add_argument("--customers", type=int, default=850_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run(args.data_dir, args.threads)))
        return
    if not (args.data_dir / "interventions.parquet").is_file():
        prepare(args.data_dir, args.customers, args.seed)
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            "--data-dir",
            str(args.data_dir),
            "--threads",
            str(args.threads),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key, value in result.items():
        print(f"{key:>26}: {value}")
    ok = result["seconds_total"] <= 300 and result["peak_rss_gb"] <= 8
    print(f"{'target (5 min, 8 GB)':>26}: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
