"""Time and peak memory of the survival stage on 1,000,000 simulated customers (tenure in months).

Run with ``.venv/bin/python benchmarks/bench_survival.py [--customers N] [--months M] [--full]``.

The tables are simulated once and stored as Parquet under ``data/bench/`` (not
timed); a fresh child process then loads them and runs ``survival.analyse`` with
the stage's default settings, so its peak RSS is the stage's own (plus the loaded
tables). The models use the stated random samples (``max_*`` in ``SurvivalSettings``);
descriptive statistics and the scores use every customer. Budget: 5 minutes, 8 GB.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

from retention_lab.config import DATA_DIR
from retention_lab.survival import SurvivalSettings

BUDGET_S, BUDGET_GB = 300.0, 8.0


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kB on Linux


def _prepare(folder: Path, customers: int, months: int, seed: int) -> None:
    if (folder / "customers.parquet").is_file():
        return
    from retention_lab.data.simulate import SimulatorSettings, simulate

    folder.mkdir(parents=True, exist_ok=True)
    settings = SimulatorSettings(n_customers=customers, months=months, transactions=False)
    data = simulate(settings, random_state=seed)
    data.customers.to_parquet(folder / "customers.parquet", index=False)
    data.problems.to_parquet(folder / "problems.parquet", index=False)
    data.interventions.to_parquet(folder / "interventions.parquet", index=False)
    (folder / "as_of.txt").write_text(data.as_of.isoformat())


def _run_stage(folder: Path, seed: int, full: bool) -> dict:
    import pandas as pd

    import retention_lab.survival as sv
    from retention_lab.data.loaders import Tables, derive_tenure

    rss_start = _peak_rss_gb()
    customers = pd.read_parquet(folder / "customers.parquet")
    as_of = pd.Timestamp((folder / "as_of.txt").read_text())
    customers = derive_tenure(customers, as_of)
    problems = pd.read_parquet(folder / "problems.parquet")
    interventions = pd.read_parquet(folder / "interventions.parquet")
    rss_loaded = _peak_rss_gb()
    settings = SurvivalSettings()
    if full:  # the Cox models and the validation on every customer; AFT and PH test keep samples
        settings = settings.model_copy(
            update={
                "max_cox_customers": None,
                "max_problem_customers": None,
                "max_validation_customers": None,
            }
        )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tables = Tables(
            customers=customers, problems=problems, interventions=interventions, as_of=as_of
        )
        result = sv.analyse(tables, None, settings, random_state=seed)
    wall = time.perf_counter() - t0
    return {
        "customers": len(customers),
        "problems": len(problems),
        "churned": result.n_churned,
        "active_scored": len(result.scores),
        "wall_s": wall,
        "peak_rss_gb": _peak_rss_gb(),
        "rss_after_imports_gb": rss_start,
        "rss_after_loading_gb": rss_loaded,
        "cox_customers": result.cox.n_customers,
        "problem_cox_customers": result.problem_cox.n_customers,
        "aft_customers": result.aft.n_customers,
        "validation_train_test": f"{result.validation.n_train}/{result.validation.n_test}",
        "timings": result.timings,
        "concordance": result.validation.concordance,
        "truth_note": "see tests for the ground-truth checks",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=72)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--full",
        action="store_true",
        help="fit the Cox models and the validation on every customer",
    )
    parser.add_argument("--stage-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.stage_only:
        sys.stdout.write(json.dumps(_run_stage(args.stage_only, args.seed, args.full)) + "\n")
        return 0
    folder = DATA_DIR / "bench" / f"survival-{args.customers}-{args.months}-{args.seed}"
    t0 = time.perf_counter()
    _prepare(folder, args.customers, args.months, args.seed)
    prep = time.perf_counter() - t0
    child = subprocess.run(
        [sys.executable, __file__, "--stage-only", str(folder), "--seed", str(args.seed)]
        + (["--full"] if args.full else []),
        capture_output=True,
        text=True,
        check=True,
    )
    r = json.loads(child.stdout.strip().splitlines()[-1])
    lines = [
        f"{'measure':<34}{'value':>18}",
        f"{'customers':<34}{r['customers']:>18,}",
        f"{'problems':<34}{r['problems']:>18,}",
        f"{'churned':<34}{r['churned']:>18,}",
        f"{'active customers scored':<34}{r['active_scored']:>18,}",
        f"{'simulation or cache (s, untimed)':<34}{prep:>18.1f}",
        f"{'stage wall time (s)':<34}{r['wall_s']:>18.1f}",
        f"{'peak RSS (GB)':<34}{r['peak_rss_gb']:>18.2f}",
        f"{'RSS after loading tables (GB)':<34}{r['rss_after_loading_gb']:>18.2f}",
        f"{'Cox fitted on':<34}{r['cox_customers']:>18,}",
        f"{'problem Cox fitted on':<34}{r['problem_cox_customers']:>18,}",
        f"{'AFT models fitted on':<34}{r['aft_customers']:>18,}",
        f"{'validation train/test':<34}{r['validation_train_test']:>18}",
        f"{'held-out concordance':<34}{r['concordance']:>18.3f}",
    ]
    lines += [f"{'  step: ' + k + ' (s)':<34}{v:>18.1f}" for k, v in r["timings"].items()]
    ok = r["wall_s"] <= BUDGET_S and r["peak_rss_gb"] <= BUDGET_GB
    lines.append(f"{'within 5 min and 8 GB':<34}{str(ok):>18}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
