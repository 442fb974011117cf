"""Shared fixtures: a private MLflow store and reports folder per test, configurations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retention_lab.config import RunConfig, parse_config

FIXTURES = Path(__file__).parent / "fixtures"


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


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The smoke configuration run once through the CLI with ``--fast``: every stage notebook."""
    import os
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("smoke")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"}
    cli = Path(sys.executable).parent / "retention-lab"
    result = subprocess.run(
        [
            str(cli),
            "run",
            "--config",
            str(SMOKE_CONFIG),
            "--reports-dir",
            str(root / "reports"),
            "--fast",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    return {
        "result": result,
        "reports_dir": root / "reports",
        "tracking_uri": env["MLFLOW_TRACKING_URI"],
    }
