"""The data stage past one machine: DuckDB against Spark local mode on a simulated data lake.

Target (issue 20): a market of 10,000,000 customers and about 200,000,000
transactions. The lake is written once per size as Parquet folders (one file
per simulated chunk of at most 1,000,000 customers, ids prefixed per chunk,
bills topped up to ``--tx-per-customer``). Each engine then runs the data
stage's heavy aggregation in its own process and hands the driver only
per-customer and per-case rows:

- customers (mapped),
- customer histories from the monthly bills (first and last month, payments,
  total, months billed, mean monthly bill),
- RFM summaries (daily periods, as ``clv.rfm_summary``),
- the retention cases with their outcome and revenue over the horizon (as
  ``uplift.case_table``).

DuckDB runs SQL in process; Spark runs ``retention_lab.data.spark`` on
``local[*]``. Wall time and the peak resident memory of the engine's whole
process tree (the JVM included) are measured, and the two engines' results
are checked against each other (row counts, sums). By default the results are
written as Parquet beside the lake (the way past one machine: the driver holds
nothing); ``--collect`` brings them to pandas in the engine's process, as a
run with ``source: spark`` does.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 1000000,10000000] [--tx-per-customer 20]
        [--spark-memory 8g] [--engines duckdb,spark] [--collect]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from retention_lab.data.simulate import SimulatorSettings, simulate
from retention_lab.uplift.cases import horizon_days_of

CHUNK = 1_000_000
HORIZON_MONTHS = 6
TABLES = ("customers", "interventions", "transactions")


def make_lake(folder: Path, customers: int, tx_per_customer: float) -> str:
    """Simulate ``customers`` in chunks; one Parquet file per chunk and table. Returns as_of."""
    as_of = None
    for name in TABLES:
        (folder / name).mkdir(parents=True)
    for k, start in enumerate(range(0, customers, CHUNK)):
        n = min(CHUNK, customers - start)
        data = simulate(SimulatorSettings(n_customers=n), random_state=100 + k)
        as_of = data.as_of.isoformat()
        bills = data.transactions
        wanted = int(round(n * tx_per_customer))
        if len(bills) >= wanted:
            bills = bills.iloc[:wanted]
        else:
            extra = bills.sample(wanted - len(bills), replace=True, random_state=k)
            bills = pd.concat([bills, extra], ignore_index=True)
        for name, frame in (("customers", data.customers), ("interventions", data.interventions),
                            ("transactions", bills)):  # fmt: skip
            table = pa.Table.from_pandas(frame, preserve_index=False)
            for column in ("customer_id", "intervention_id", "problem_id"):
                if column in table.column_names:
                    i = table.column_names.index(column)
                    ids = table[column].cast(pa.string())
                    table = table.set_column(
                        i, column, pc.binary_join_element_wise(f"P{k:03d}", ids, "-")
                    )
            pq.write_table(table, folder / name / f"part-{k:03d}.parquet", coerce_timestamps="us")
        print(f"  lake: chunk {k + 1} ({start + n:,} customers, {len(bills):,} bills)", flush=True)
    return as_of


# ------------------------------------------------------------------ the engines (child processes)
def run_duckdb(
    lake: Path, as_of: str, memory: str, out_dir: Path | None
) -> dict[str, pd.DataFrame]:
    """The four results as DuckDB SQL; collected as pandas, or written to ``out_dir``."""
    import duckdb

    h = horizon_days_of(HORIZON_MONTHS)
    con = duckdb.connect()
    con.sql(f"SET memory_limit = '{memory.upper()}B'")  # the same limit as Spark's driver
    con.sql(f"SET temp_directory = '{lake / 'duckdb-spill'}'")  # spills stay with the lake
    for name in TABLES:
        con.sql(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{lake / name}/*.parquet')")
    out = {"customers": con.sql("SELECT * FROM customers")}
    out["histories"] = con.sql("""
        WITH bills AS (
            SELECT customer_id, date_trunc('month', date) AS month, sum(amount) AS amount,
                   count(*) AS n_payments
            FROM transactions GROUP BY 1, 2)
        SELECT customer_id, min(month) AS first_month, max(month) AS last_month,
               sum(n_payments) AS n_payments, sum(amount) AS total_amount,
               count(*) AS months_billed, avg(amount) AS mean_monthly_bill
        FROM bills GROUP BY 1""")
    out["rfm"] = con.sql(f"""
        WITH days AS (
            SELECT customer_id, CAST(date AS DATE) AS day, sum(amount) AS amount
            FROM transactions WHERE CAST(date AS DATE) <= DATE '{as_of}' GROUP BY 1, 2),
        c AS (
            SELECT customer_id, min(day) AS first, max(day) AS last, count(*) AS n,
                   sum(amount) AS total, arg_min(amount, day) AS first_amount
            FROM days GROUP BY 1)
        SELECT customer_id, CAST(n - 1 AS DOUBLE) AS frequency,
               CAST(last - first AS DOUBLE) AS recency,
               CAST(DATE '{as_of}' - first AS DOUBLE) AS T,
               CASE WHEN n > 1 THEN (total - first_amount) / (n - 1) ELSE 0 END AS monetary_value
        FROM c""")
    out["cases"] = con.sql(f"""
        WITH iv AS (
            SELECT * FROM interventions
            WHERE date + INTERVAL {h} DAY <= TIMESTAMP '{as_of}'),
        revenue AS (
            SELECT iv.intervention_id, sum(t.amount) AS revenue
            FROM iv JOIN transactions t
              ON t.customer_id = iv.customer_id AND t.date >= iv.date
             AND t.date < iv.date + INTERVAL {h} DAY
            GROUP BY 1)
        SELECT iv.*, c.* EXCLUDE (customer_id),
               datediff('day', c.signup_date, iv.date) / 30.4375 AS tenure_months,
               CAST(c.end_date IS NULL OR c.end_date >= iv.date + INTERVAL {h} DAY AS INTEGER)
                   AS retained,
               coalesce(r.revenue, 0) AS revenue
        FROM iv LEFT JOIN customers c USING (customer_id)
        LEFT JOIN revenue r USING (intervention_id)""")
    if out_dir is None:
        return {name: relation.df() for name, relation in out.items()}
    for name, relation in out.items():
        (out_dir / name).mkdir(parents=True)
        relation.write_parquet(str(out_dir / name / "part-0.parquet"))
    return {}


def run_spark(
    lake: Path, as_of: str, memory: str, out_dir: Path | None
) -> dict[str, pd.DataFrame]:
    """The four results with ``retention_lab.data.spark``; collected, or written to ``out_dir``."""
    from retention_lab.config import parse_config
    from retention_lab.data import spark as rs

    config = parse_config({"name": "bench", "data": {
        "source": "spark", "as_of": as_of,
        "spark": {"conf": {"spark.driver.memory": memory, "spark.sql.shuffle.partitions": "32"}},
        **{name: {"path": str(lake / name)} for name in TABLES}}}).data  # fmt: skip
    spark = rs.spark_session(config.spark)
    frames, _ = rs.spark_frames(config, spark)
    tx = frames["transactions"]
    cases = rs.case_table(frames["interventions"], frames["customers"], tx, as_of=as_of,
                          horizon_days=horizon_days_of(HORIZON_MONTHS))  # fmt: skip
    out = {
        "customers": frames["customers"],
        "histories": rs.customer_histories(tx),
        "rfm": rs.rfm_summary(tx, observation_end=as_of),
        "cases": cases,
    }
    if out_dir is None:
        return {name: rs.to_driver(frame, name) for name, frame in out.items()}
    for name, frame in out.items():
        frame.write.parquet(str(out_dir / name))
    return {}


CHECKS = {
    "customers": "SELECT count(*) FROM customers",
    "histories": "SELECT count(*) FROM histories",
    "total_amount": "SELECT sum(total_amount) FROM histories",
    "rfm_frequency": "SELECT sum(frequency) FROM rfm",
    "cases": "SELECT count(*) FROM cases",
    "retained": "SELECT sum(retained) FROM cases",
    "revenue": "SELECT sum(revenue) FROM cases",
}


def measure_child(engine: str, lake: Path, as_of: str, memory: str, collect: bool) -> None:
    import duckdb

    out_dir = None if collect else lake / f"out-{engine}"
    started = time.perf_counter()
    if engine == "duckdb":
        out = run_duckdb(lake, as_of, memory, out_dir)
    else:
        out = run_spark(lake, as_of, memory, out_dir)
    seconds = time.perf_counter() - started
    con = duckdb.connect()
    for name in ("customers", "histories", "rfm", "cases"):
        if collect:
            con.register(name, out[name])
        else:
            con.sql(f"CREATE VIEW {name} AS SELECT * FROM '{out_dir / name}/*.parquet'")
    checks = {key: float(con.sql(query).fetchall()[0][0]) for key, query in CHECKS.items()}
    print(json.dumps({"seconds": seconds, "checks": checks}))


def measure(engine: str, lake: Path, as_of: str, memory: str, collect: bool) -> dict:
    """Run one engine in a child process; wall time and peak RSS of its process tree."""
    cmd = [sys.executable, __file__, "--child", engine, "--lake", str(lake), "--as-of", as_of,
           "--spark-memory", memory, *(["--collect"] if collect else [])]  # fmt: skip
    started = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(child.pid)
        while not done.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = child.communicate()
    done.set()
    sampler.join()
    wall = time.perf_counter() - started
    if child.returncode != 0:
        raise RuntimeError(f"{engine} failed (exit {child.returncode})")
    result = json.loads(stdout.strip().splitlines()[-1])
    return {"engine": engine, "wall_s": wall, "stage_s": result["seconds"],
            "peak_gb": peak / 1024**3, **result["checks"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000000", help="customers, comma-separated")
    parser.add_argument("--tx-per-customer", type=float, default=20.0)
    parser.add_argument("--engines", default="duckdb,spark")
    parser.add_argument(
        "--spark-memory", default="8g", help="spark.driver.memory (local mode), DuckDB's limit too"
    )
    parser.add_argument(
        "--collect",
        action="store_true",
        help="bring the results to pandas in the engine's process (as source: spark does for "
        "a run); default: write them as Parquet next to the lake",
    )
    parser.add_argument("--tmp", default=None, help="folder for the lake (default: system temp)")
    parser.add_argument("--child", choices=["duckdb", "spark"], help=argparse.SUPPRESS)
    parser.add_argument("--lake", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--as-of", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure_child(args.child, args.lake, args.as_of, args.spark_memory, args.collect)
        return
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
            lake = Path(tmp)
            started = time.perf_counter()
            as_of = make_lake(lake, size, args.tx_per_customer)
            print(f"lake of {size:,} customers written in {time.perf_counter() - started:.0f} s")
            results = [
                measure(e, lake, as_of, args.spark_memory, args.collect)
                for e in args.engines.split(",")
            ]
        for r in results:
            r["customers_in_lake"] = size
            print(f"  {r['engine']:<7} {r['wall_s']:>8.1f} s (stage {r['stage_s']:.1f} s)  "
                  f"peak {r['peak_gb']:>6.2f} GB  customers {r['customers']:,.0f}  "
                  f"cases {r['cases']:,.0f}", flush=True)  # fmt: skip
        if len(results) == 2:
            a, b = results
            for key in ("customers", "histories", "cases", "retained"):
                assert a[key] == b[key], (key, a[key], b[key])
            for key in ("total_amount", "rfm_frequency", "revenue"):
                assert abs(a[key] - b[key]) <= 1e-6 * max(abs(a[key]), 1.0), (key, a[key], b[key])
        rows += results
    print("results to the driver (pandas)" if args.collect else "results written as Parquet")
    columns = ["customers_in_lake", "engine", "wall_s", "stage_s", "peak_gb", "cases"]
    table = pd.DataFrame(rows)[columns]
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))


if __name__ == "__main__":
    main()
