"""Time and peak memory of ``simulate`` at scale (default: 1,000,000 customers, 72 months).

Run with ``.venv/bin/python benchmarks/bench_simulate.py [--customers N] [--months M]``.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time

from retention_lab.data.simulate import SimulatorSettings, simulate


def _peak_rss_gb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return kb / 1024**2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=72)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-transactions", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    settings = SimulatorSettings(
        n_customers=args.customers, months=args.months, transactions=not args.no_transactions
    )
    rss_before = _peak_rss_gb()
    t0 = time.perf_counter()
    data = simulate(settings, random_state=args.seed)
    wall = time.perf_counter() - t0
    rows = {
        "customers": len(data.customers),
        "problems": len(data.problems),
        "interventions": len(data.interventions),
        "transactions": 0 if data.transactions is None else len(data.transactions),
        "intervention_outcomes": len(data.truth.intervention_outcomes),
    }
    mem = (
        sum(
            getattr(data, n).memory_usage(deep=True).sum()
            for n in ("customers", "problems", "interventions", "transactions")
            if getattr(data, n) is not None
        )
        + data.truth.intervention_outcomes.memory_usage(deep=True).sum()
    )
    lines = [
        f"{'measure':<28}{'value':>16}",
        f"{'customers simulated':<28}{args.customers:>16,}",
        f"{'months':<28}{args.months:>16}",
        f"{'wall time (s)':<28}{wall:>16.1f}",
        f"{'peak RSS (GB)':<28}{_peak_rss_gb():>16.2f}",
        f"{'RSS after imports (GB)':<28}{rss_before:>16.2f}",
        f"{'tables in memory (GB)':<28}{mem / 1024**3:>16.2f}",
    ]
    lines += [f"{'rows: ' + k:<28}{v:>16,}" for k, v in rows.items()]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
