"""Wall time per stage and peak memory of the whole pipeline, run through the CLI.

Run with ``.venv/bin/python benchmarks/bench_pipeline.py smoke demo [million]``;
``--render`` only rebuilds the README's performance table from the results file.

Each preset is a configuration run as a user runs it (``retention-lab run``, not
``--fast``): ``smoke`` is ``configs/smoke.yaml`` (2,000 customers), ``demo`` is
``configs/demo.yaml`` (50,000) and ``million`` is the demo configuration with
1,000,000 customers (about 13 minutes and 9.5 GB on two cores). The run goes into
a temporary reports folder and the project's MLflow store, so the monitoring
stage compares it with earlier runs as it would in use. While it runs, the
process tree (the ``retention-lab`` process and its stage kernels) is sampled
with psutil: the peak of their summed resident memory, of the runner alone and
of the largest kernel. The wall time per stage comes from the run's
``run.json`` (each stage's start and end, its notebook, HTML and MLflow work
included); "tables" is the time from the run's start to its first stage
(simulating or loading, validating and storing the tables).

Results are merged by preset into ``benchmarks/results/pipeline.json``, and
the table between the ``performance`` markers of ``README.md`` is rebuilt
from that file (:func:`render_table`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS_FILE = ROOT / "benchmarks" / "results" / "pipeline.json"
README = ROOT / "README.md"
TABLE_START, TABLE_END = "<!-- performance:start -->", "<!-- performance:end -->"
PRESETS = {  # name: (configuration file, customers or None for the file's own)
    "smoke": ("configs/smoke.yaml", None),
    "demo": ("configs/demo.yaml", None),
    "million": ("configs/demo.yaml", 1_000_000),
}
SAMPLE_SECONDS = 0.25
GB = 1024**3


class TreeSampler:
    """Sample the resident memory of a process and its descendants in a thread."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.peak_total = self.peak_root = self.peak_child = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _rss(self, process: psutil.Process) -> int:
        try:
            return process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return 0

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                children = self.root.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            root = self._rss(self.root)
            sizes = [self._rss(child) for child in children]
            self.peak_root = max(self.peak_root, root)
            self.peak_child = max([self.peak_child, *sizes])
            self.peak_total = max(self.peak_total, root + sum(sizes))
            self._stop.wait(SAMPLE_SECONDS)


def write_config(preset: str, folder: Path) -> tuple[Path, int]:
    """The preset's configuration written into ``folder``; return it and its customer count."""
    source, customers = PRESETS[preset]
    raw = yaml.safe_load((ROOT / source).read_text())
    simulator = raw["data"].setdefault("simulator", {})
    if customers is not None:
        simulator["n_customers"] = customers
        raw["name"] = f"{raw['name']}-{preset}"
    path = folder / f"{preset}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path, int(simulator["n_customers"])


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def stage_times(record: dict) -> dict[str, float | None]:
    """Wall seconds per stage from a ``run.json``, with ``tables`` before the first stage."""
    stages = record["stages"]
    starts = [s["started_at"] for s in stages if s.get("started_at")]
    times = {"tables": _seconds(record["started_at"], min(starts)) if starts else None}
    for stage in stages:  # records written before stages carried their times: the notebook's
        seconds = _seconds(stage.get("started_at"), stage.get("finished_at"))
        times[stage["stage"]] = seconds if seconds is not None else stage.get("seconds")
    return times


def machine() -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]  # fmt: skip
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cores": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / GB, 1),
        "python": platform.python_version(),
    }


def run_preset(preset: str, *, fast: bool, keep: bool) -> dict:
    """Run one preset through the CLI; return its figures."""
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{preset}-"))
    config, customers = write_config(preset, folder)
    reports = folder / "reports"
    command = [str(Path(sys.executable).parent / "retention-lab"), "run", "--config", str(config),
               "--reports-dir", str(reports), *(["--fast"] if fast else [])]  # fmt: skip
    load = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT)
    with TreeSampler(process.pid) as sampler:
        code = process.wait()
    wall = time.perf_counter() - started
    runs = sorted(p for p in reports.iterdir() if (p / "run.json").is_file())
    record = json.loads((runs[-1] / "run.json").read_text()) if runs else {}
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    if code != 0:
        raise SystemExit(f"{preset}: retention-lab run exited {code} ({record.get('error')})")
    return {
        "config": PRESETS[preset][0],
        "customers": customers,
        "fast": fast,
        "wall_s": round(wall, 1),
        "stages_s": {k: round(v, 1) for k, v in stage_times(record).items() if v is not None},
        "peak_total_gb": round(sampler.peak_total / GB, 2),
        "peak_runner_gb": round(sampler.peak_root / GB, 2),
        "peak_kernel_gb": round(sampler.peak_child / GB, 2),
        "load_average_at_start": round(load, 1),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": machine(),
    }


def _commit() -> str | None:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True, check=False)  # fmt: skip
    return result.stdout.strip() or None


def render_table(results: dict) -> str:
    """The README's performance table (Markdown) from the results file's content."""
    stages = ["tables", "data", "survival", "uplift", "clv", "plan", "monitoring"]
    header = ["configuration", "customers", "wall", *stages, "peak memory (run / largest kernel)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    machines = []
    for preset in (p for p in PRESETS if p in results):
        row = results[preset]
        name = f"`{row['config']}`" + (" `--fast`" if row["fast"] else "")
        cells = [name, f"{row['customers']:,}", f"{row['wall_s']:.0f} s"]
        cells += [f"{row['stages_s'][s]:.0f} s" if s in row["stages_s"] else "—" for s in stages]
        cells.append(f"{row['peak_total_gb']:.2f} GB / {row['peak_kernel_gb']:.2f} GB")
        lines.append("| " + " | ".join(cells) + " |")
        m = row["machine"]
        text = (f"{m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, Python {m['python']}, "
                f"load average {row['load_average_at_start']} at the start, "
                f"{row['measured_at'][:10]}, commit {row['commit']}")  # fmt: skip
        machines.append(f"- {preset}: {text}")
    note = ("Stages that do not depend on each other overlap, so the stage times add up to "
            "more than the wall time. Measured on:")  # fmt: skip
    return "\n".join([*lines, "", note, "", *machines])


def update_readme(results: dict, readme: Path = README) -> None:
    """Replace the text between the performance markers of the README with the table."""
    text = readme.read_text()
    head, found, rest = text.partition(TABLE_START)
    _, end, tail = rest.partition(TABLE_END)
    if not found or not end:
        raise SystemExit(f"{readme}: no {TABLE_START} ... {TABLE_END} markers")
    readme.write_text(f"{head}{TABLE_START}\n{render_table(results)}\n{TABLE_END}{tail}")


def main() -> None:
    """Run the presets asked for, merge their figures into the results file, rebuild the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", help=f"any of {', '.join(PRESETS)}")
    parser.add_argument("--fast", action="store_true", help="run with --fast (smoke tests)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary run folder")
    parser.add_argument("--render", action="store_true", help="only rebuild the README table")
    args = parser.parse_args()
    unknown = sorted(set(args.presets) - set(PRESETS))
    if unknown:
        parser.error(f"unknown presets {unknown} (known: {', '.join(PRESETS)})")
    results = json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.is_file() else {}
    for preset in [] if args.render else args.presets:
        results[preset] = run_preset(preset, fast=args.fast, keep=args.keep)
        print(json.dumps({preset: results[preset]}, indent=2))
        RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_FILE.write_text(json.dumps(results, indent=2) + "\n")
    update_readme(results)


if __name__ == "__main__":
    main()
