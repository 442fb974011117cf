"""Speed of the lifetime-value stage at scale.

1. The recency/frequency summary of a purchase log (default 10,000,000 purchases
   of 1,000,000 customers over three years, in random order):
   ``retention_lab.clv.rfm_summary`` against
   ``lifetimes.utils.summary_data_from_transaction_data``, same numbers required.
2. The whole stage (``clv.analyse`` with the default configuration, truth check
   included) on a simulated market of 1,000,000 customers (72 months).

Run with ``.venv/bin/python benchmarks/bench_clv.py [--transactions N]
[--customers N] [--skip-summary] [--skip-stage]``.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
import warnings

import numpy as np
import pandas as pd

from retention_lab import clv
from retention_lab.clv import ClvSettings
from retention_lab.data.loaders import validate_tables
from retention_lab.data.simulate import SimulatorSettings, simulate


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def purchase_log(n: int, customers: int, seed: int) -> pd.DataFrame:
    """Random purchases: ids like the simulator's (C0000001), dates over 1,000 days, cents."""
    rng = np.random.default_rng(seed)
    ids = np.char.add("C", np.char.zfill(rng.integers(1, customers + 1, n).astype("U7"), 7))
    return pd.DataFrame(
        {
            "customer_id": pd.array(ids, dtype="string[pyarrow]"),
            "date": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1000, n), "D"),
            "amount": rng.gamma(2.0, 20.0, n).round(2) + 0.01,
        }
    )


def bench_summary(n: int, customers: int, seed: int, repeats: int) -> list[str]:
    from lifetimes.utils import summary_data_from_transaction_data

    log = purchase_log(n, customers, seed)
    end = "2022-06-30"
    ours_times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ours = clv.rfm_summary(log, observation_end=end, freq="D", freq_multiplier=7)
        ours_times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = summary_data_from_transaction_data(
            log,
            "customer_id",
            "date",
            "amount",
            observation_period_end=end,
            freq="D",
            freq_multiplier=7,
        ).reset_index()
    lifetimes_s = time.perf_counter() - t0
    same_ids = (
        ours["customer_id"].astype(str).tolist() == theirs["customer_id"].astype(str).tolist()
    )
    diffs = {
        c: float(np.max(np.abs(ours[c].to_numpy() - theirs[c].to_numpy())))
        for c in ("frequency", "recency", "T", "monetary_value")
    }
    identical = same_ids and diffs["frequency"] == 0 and max(diffs.values()) < 1e-9
    best = min(ours_times)
    runs = ", ".join(f"{t:.2f}" for t in ours_times)
    return [
        f"{'purchases':<36}{n:>16,}",
        f"{'customers in the summary':<36}{len(ours):>16,}",
        f"{'lifetimes summary (s)':<36}{lifetimes_s:>16.2f}",
        f"{'retention_lab rfm_summary, best (s)':<36}{best:>16.2f}",
        f"{'retention_lab rfm_summary, runs (s)':<36}{runs:>16}",
        f"{'speed-up (lifetimes / ours)':<36}{lifetimes_s / best:>16.1f}",
        f"{'identical numbers':<36}{str(identical):>16}",
        f"{'largest difference (any column)':<36}{max(diffs.values()):>16.1e}",
    ]


def bench_stage(customers: int, seed: int) -> list[str]:
    t0 = time.perf_counter()
    sim = simulate(SimulatorSettings(n_customers=customers, months=72), random_state=seed)
    tables = validate_tables(
        {"customers": sim.customers, "transactions": sim.transactions}, as_of=sim.as_of
    )
    prep = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = clv.analyse(tables, None, ClvSettings(), truth=sim.truth, random_state=seed)
    stage = time.perf_counter() - t0
    m = summary.to_metrics()
    return [
        f"{'customers simulated':<36}{customers:>16,}",
        f"{'bills (transactions)':<36}{len(sim.transactions):>16,}",
        f"{'simulate + validate (s)':<36}{prep:>16.1f}",
        f"{'clv.analyse (s)':<36}{stage:>16.1f}",
        f"{'active customers valued':<36}{int(m['active_customers']):>16,}",
        f"{'truth value ratio (fitted/true)':<36}{m['truth_value_ratio']:>16.3f}",
        f"{'peak RSS (GB)':<36}{_peak_rss_gb():>16.2f}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transactions", type=int, default=10_000_000)
    parser.add_argument("--summary-customers", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-summary", action="store_true")
    parser.add_argument("--skip-stage", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    lines = [f"{'measure':<36}{'value':>16}"]
    if not args.skip_summary:
        lines += bench_summary(args.transactions, args.summary_customers, args.seed, args.repeats)
    if not args.skip_stage:
        lines += bench_stage(args.customers, args.seed)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
