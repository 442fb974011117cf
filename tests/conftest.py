"""Shared fixtures: a private MLflow store and reports folder per test, configurations."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from filelock import FileLock

from retention_lab.config import RunConfig, parse_config

FIXTURES = Path(__file__).parent / "fixtures"
CLI = str(Path(sys.executable).parent / "retention-lab")


# The modules that take longest, longest first (their time in a `make test` on two cores,
# 2026-11-30: test_reports 188 s down to test_tutorial 19 s). `make test` gives xdist whole
# files in collection order (--dist loadfile --no-loadscope-reorder), each to the first free
# worker: longest first keeps the two workers' shares within a module's time of each other,
# instead of a long module starting last and running alone. Modules not listed take a few
# seconds each and fill in behind.
SLOWEST_FIRST = (
    "test_reports.py",
    "test_monitor_shock.py",
    "test_faults.py",
    "test_rerun.py",
    "test_monitor_no_shock.py",
    "test_plan.py",
    "test_monitor.py",
    "test_runner.py",
    "test_tracking_server.py",
    "test_cli.py",
    "test_uplift.py",
    "test_spark.py",
    "test_hostile_reports.py",
    "test_campaign.py",
    "test_docs.py",
    "test_survival.py",
    "test_tenure_units.py",
    "test_renewals.py",
    "test_clv.py",
    "test_bad_input.py",
    "test_tutorial.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: others keep order


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261123)


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def reports_dir(tmp_path) -> Path:
    path = tmp_path / "reports"
    path.mkdir()
    return path


def make_config(**overrides) -> RunConfig:
    raw = {
        "name": "test",
        "seed": 3,
        "stages": ["data"],
        "data": {"source": "simulator", "simulator": {"n_customers": 1500, "months": 36}},
        "tracking": {"experiment": "retention-lab-test"},
    }
    raw.update(overrides)
    return parse_config(raw, file="test.yaml")


SMOKE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"


def cli(*args, tmp_path: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the ``retention-lab`` command with an MLflow store under ``tmp_path``."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"}
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=timeout)


def validate_and_run(config: Path, tmp_path: Path) -> tuple[str, Path, dict]:
    """``retention-lab validate``, then ``run --fast`` of a configuration; both must exit 0.

    Returns
    -------
    tuple
        validate's output, the run folder (under ``tmp_path / "reports"``) and its ``run.json``.
    """
    result = cli("validate", "--config", str(config), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    reports = tmp_path / "reports"
    ran = cli("run", "--config", str(config), "--reports-dir", str(reports), "--fast",
              tmp_path=tmp_path)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    run_dir = next(reports.glob("*/run.json")).parent
    return result.stdout, run_dir, json.loads((run_dir / "run.json").read_text())


def built_once(tmp_path_factory, name: str, build: Callable[[Path], dict]) -> tuple[Path, dict]:
    """``build(root)`` run once per test session, by whichever xdist worker asks first.

    Workers are separate processes, so a session fixture alone would build its
    run once per worker. The first worker to ask builds into a folder shared by
    all of them (under a file lock) and records ``build``'s JSON result; the
    others wait on the lock and read that record. Returns the folder and the record.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    root = base / f"shared-{name}"
    record = root / "built.json"
    with FileLock(f"{root}.lock"):
        if not record.is_file():
            root.mkdir(exist_ok=True)
            record.write_text(json.dumps(build(root)))
    return root, json.loads(record.read_text())


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> dict:
    """The smoke configuration run once through the CLI with ``--fast``: every stage notebook.

    Shared by every test that reads this run (``test_pipeline``, ``test_rerun``,
    ``test_reports``), on whichever worker; they must not write into its reports
    folder (a rerun of it goes to a folder of its own). Its MLflow store is
    ``tracking_uri``; ``root`` holds both.
    """

    def build(root: Path) -> dict:
        ran = cli("run", "--config", str(SMOKE_CONFIG), "--reports-dir", str(root / "reports"),
                  "--fast", tmp_path=root, timeout=1800)  # fmt: skip
        return {"returncode": ran.returncode, "stdout": ran.stdout, "stderr": ran.stderr}

    root, built = built_once(tmp_path_factory, "smoke", build)
    return {
        "result": subprocess.CompletedProcess(SMOKE_CONFIG.name, **built),
        "root": root,
        "reports_dir": root / "reports",
        "tracking_uri": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
    }


SHARED_MARKET = {"n_customers": 60_000, "seed": 11}


@pytest.fixture(scope="session")
def market_data(tmp_path_factory):
    """The simulated market the statistical tests share: 60,000 customers over the default
    72 months, fixed seed; simulated once per test run (whichever worker asks first) and
    read back by the others. Tests must not change it.
    """
    from retention_lab.data.simulate import SimulatorSettings, simulate

    def build(root: Path) -> dict:
        settings = SimulatorSettings(n_customers=SHARED_MARKET["n_customers"])
        data = simulate(settings, random_state=SHARED_MARKET["seed"])
        (root / "market.pickle").write_bytes(pickle.dumps(data))
        return {"file": "market.pickle"}

    root, built = built_once(tmp_path_factory, "market", build)
    return pickle.loads((root / built["file"]).read_bytes())


# What a competitor entry changes in the simulated market, as the monitor names it: the
# competitor-offer rate by design; the other problem types' observed rates, which fall
# because a customer in an open retention case raises no new problem for 26 weeks and
# competitor cases now take more of that time; the churn-reason mix; the discount's
# effect wherever it had one; the book's survival ("all": median tenure, retention at
# the horizons), since more customers churn. Everything else (covariate and problem
# hazard ratios, the other instruments) is left unchanged by the shock.
CHANGED_BY_A_COMPETITOR_ENTRY = {
    "all",
    *(f"problem_type={problem}" for problem in
      ("competitor_offer", "network", "billing", "price", "service")),
    # shares of churn sum to one: when competitor churn grows every other reason's share falls
    *(f"churn_reason={reason}" for reason in
      ("competitor", "price", "network", "billing", "service", "relocation", "other")),
    *(f"instrument=discount|problem_type={problem}" for problem in
      ("competitor_offer", "price", "billing")),
}  # fmt: skip
SCHEDULED_SNAPSHOTS = ("2022-01-01", "2023-01-01")
SHOCK_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "shock.yaml"


def scheduled_runs(root: Path, *, shock: bool, n_customers: int | None = None) -> list[Path]:
    """Two scheduled runs of ``configs/shock.yaml`` through the CLI, a year apart.

    The market (300,000 customers unless ``n_customers`` says otherwise,
    2020-2022) is observed with ``--as-of`` on 2022-01-01 and a year later: the
    later run's recent retention cases (January to June 2022) come after the
    competitor entry at month 24. Without ``shock`` the market is simulated
    without the entry. Both runs log to one MLflow experiment, so the later
    run's monitoring stage compares with the earlier one. Returns the run
    folders, oldest first.
    """
    config = yaml.safe_load(SHOCK_CONFIG.read_text())
    # the monitor's comparisons read the survival and uplift stages; the lifetime values
    # (about a minute per run on this market) take no part in what these tests check
    config["stages"] = [stage for stage in config["stages"] if stage != "clv"]
    if not shock:
        del config["data"]["simulator"]["shock"]
    if n_customers:
        config["data"]["simulator"]["n_customers"] = n_customers
    path = root / "scheduled.yaml"
    path.write_text(yaml.safe_dump(config))
    reports = root / "reports"
    run_dirs: list[Path] = []
    for as_of in SCHEDULED_SNAPSHOTS:
        before = set(reports.glob("*/run.json"))
        result = cli("run", "--config", str(path), "--as-of", as_of, "--reports-dir",
                     str(reports), "--fast", tmp_path=root, timeout=1800)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        (record,) = set(reports.glob("*/run.json")) - before
        run_dirs.append(record.parent)
    return run_dirs


def kernel_processes() -> list:
    """The live Jupyter kernels this test process started (not, say, Spark's JVM, which a
    Spark test of the same worker leaves running)."""
    import psutil

    def is_kernel(process) -> bool:
        try:
            alive = process.is_running() and process.status() != psutil.STATUS_ZOMBIE
            return alive and any("ipykernel" in part for part in process.cmdline())
        except psutil.NoSuchProcess:
            return False

    return [p for p in psutil.Process().children(recursive=True) if is_kernel(p)]


# ------------------------------------------------------------------ headless Chromium
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture
def browser(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run `make browser` (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS
        )
        yield browser
        browser.close()
