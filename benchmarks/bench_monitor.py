"""Time of the monitoring stage's library calls with a long history and a large book.

Run with ``.venv/bin/python benchmarks/bench_monitor.py [--customers N] [--runs R]``.

Not timed: a simulated market (``--customers``, 72 months) and ``--runs``
earlier pipeline runs logged to a fresh sqlite MLflow store, each with the
tables the monitor reads (survival hazard ratios and threats, the uplift
effect matrix and instrument hazard ratios, clv values of every active
customer, the input profile), estimates jittered from run to run. Timed, as the
notebook calls them: ``input_profile`` of the book, ``StageContext.earlier_runs``
(reading the history from MLflow) and ``analyse`` (comparison, flags, trends over
``--runs`` runs). Budget: one minute in all for 1,000,000 customers and 20 runs.

Measured (2 cores): 631,353 active customers, 20 earlier runs of 120 quantities,
123 tests: input profile 0.6 s, reading the history from MLflow 7.4 s, analyse
1.9 s; 9.9 s in all, 2.65 GB peak (the simulated market included).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from retention_lab import contract, monitor, tracking
from retention_lab.config import RunConfig
from retention_lab.data.loaders import Tables, derive_tenure
from retention_lab.data.simulate import SimulatorSettings, simulate
from retention_lab.monitor import MonitorSettings
from retention_lab.stage import RunOutputs, StageContext

BUDGET_S = 60.0
EXPERIMENT = "bench-monitor"


def stage_tables(
    rng: np.random.Generator, tables: Tables, profile: pd.DataFrame
) -> dict[str, dict[str, pd.DataFrame]]:
    """Tables of one earlier run in the shapes the stages save, estimates jittered."""
    problems = sorted(tables.problems["problem_type"].astype(str).unique())
    instruments = ["bonus", "discount", "personal_manager", "plan_upgrade", "technician_visit"]
    segments = ["mass", "business", "vip"]
    cells = pd.MultiIndex.from_product([instruments, problems, segments]).to_frame(index=False)
    cells.columns = ["instrument", "problem_type", "segment"]
    effect_matrix = cells.assign(
        effect=rng.normal(0.02, 0.01, len(cells)), std_error=0.01, lower=np.nan, upper=np.nan,
        status="estimated", n_treated=400, n_control=200,
    )  # fmt: skip
    hazard_cells = cells.drop(columns="segment").drop_duplicates()
    hazards = pd.concat(
        [
            hazard_cells.assign(
                period=period,
                log_hazard_ratio=rng.normal(-0.2, 0.1, len(hazard_cells)),
                se=0.1,
                n_treated=1000,
                n_control=500,
                churned_treated=150,
                churned_control=100,
            )
            for period in ("recent", "earlier", "all")
        ],
        ignore_index=True,
    )
    terms = ["segment[business]", "segment[vip]", "plan[premium]", "age", "data_usage_gb"]
    hazard_ratios = pd.DataFrame(
        {"term": terms, "covariate": terms, "kind": "covariate",
         "log_hazard_ratio": rng.normal(-0.3, 0.02, len(terms)), "se": 0.02}
    )  # fmt: skip
    active = tables.customers.loc[tables.customers["end_date"].isna()]
    values = pd.DataFrame(
        {
            "customer_id": active["customer_id"].astype(str),
            "segment": active["segment"].astype(str),
            "active": True,
            "value": active["monthly_fee"].to_numpy() * rng.normal(18, 0.5),
        }
    )
    saved = {
        "survival": {"hazard_ratios": hazard_ratios},
        "uplift": {"effect_matrix": effect_matrix, "instrument_hazard_ratios": hazards},
        "clv": {"values": values},
        "monitoring": {"input_profile": profile},
    }
    return {
        stage: {name: with_declared_columns(stage, name, table) for name, table in named.items()}
        for stage, named in saved.items()
    }


def with_declared_columns(stage: str, name: str, table: pd.DataFrame) -> pd.DataFrame:
    """The table with every column its contract declares; those the monitor ignores left empty."""
    missing = [c.name for c in contract.declared(stage, name).columns if c.name not in table]
    return table.assign(**dict.fromkeys(missing, np.nan))


def log_run(uri: str, config: RunConfig, as_of: str, tables: dict) -> str:
    """One finished pipeline run with a child run per stage; returns its monitoring run id."""
    parent = tracking.start_run(
        uri, EXPERIMENT, run_name=as_of,
        tags={"retention_lab.kind": "pipeline", "config_name": "bench", "data_as_of": as_of},
    )  # fmt: skip
    child = ""
    for stage, saved in tables.items():
        child = tracking.start_run(
            uri, EXPERIMENT, run_name=stage, parent_run_id=parent, tags={"stage": stage}
        )
        with tempfile.TemporaryDirectory() as tmp:
            context = StageContext(stage, config, Path(tmp), mlflow_run_id=child)
            for name, table in saved.items():
                context.save_table(table, name)
        tracking.end_run(uri, child, succeeded=True)
    tracking.end_run(uri, parent, succeeded=True)
    return child


def main() -> None:
    """Run the benchmark and print one JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    sim = simulate(
        SimulatorSettings(n_customers=args.customers, transactions=False), random_state=args.seed
    )
    tables = Tables(
        customers=derive_tenure(sim.customers, sim.as_of),
        as_of=sim.as_of,
        problems=sim.problems,
        interventions=sim.interventions,
    )
    store = Path(tempfile.mkdtemp(prefix="bench_monitor_"))
    uri = f"sqlite:///{store / 'mlflow.db'}"
    config = RunConfig(name="bench", tracking={"experiment": EXPERIMENT, "tracking_uri": uri})
    profile = monitor.input_profile(tables)
    for k in range(args.runs):
        log_run(
            uri, config, f"{2024 + k // 12}-{1 + k % 12:02d}-01", stage_tables(rng, tables, profile)
        )
    parent = tracking.start_run(
        uri, EXPERIMENT, run_name="current", tags={"retention_lab.kind": "pipeline"}
    )
    current_child = tracking.start_run(
        uri, EXPERIMENT, run_name="monitoring", parent_run_id=parent, tags={"stage": "monitoring"}
    )
    saved = stage_tables(rng, tables, profile)

    t0 = time.perf_counter()
    profile = monitor.input_profile(tables)
    t_profile = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as run_dir:  # the stage context the notebook gets
        stage = StageContext("monitoring", config, Path(run_dir), mlflow_run_id=current_child)
        earlier = stage.earlier_runs(max_runs=args.runs)
    t_history = time.perf_counter() - t0 - t_profile
    current = RunOutputs(
        run_id=current_child, started=pd.Timestamp.now(), as_of=str(tables.as_of),
        tables={(stage, name): table for stage, named in saved.items()
                for name, table in named.items()} | {("monitoring", "input_profile"): profile},
    )  # fmt: skip
    inputs = monitor.MonitorInputs(current, earlier)
    summary = monitor.analyse(None, inputs, MonitorSettings(n_runs=args.runs + 1))
    t_analyse = time.perf_counter() - t0 - t_profile - t_history
    total = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "customers": args.customers,
                "active_customers": int((~tables.customers["churned"]).sum()),
                "earlier_runs_read": len(earlier),
                "quantities_per_run": int(summary.to_metrics()["quantities"]),
                "tests": int(summary.to_metrics()["tests"]),
                "input_profile_s": round(t_profile, 1),
                "read_history_s": round(t_history, 1),
                "analyse_s": round(t_analyse, 1),
                "total_s": round(total, 1),
                "budget_s": BUDGET_S,
                "within_budget": total <= BUDGET_S,
                "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
