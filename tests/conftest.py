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
