"""Packaging: the console script and package data (environment.yml: see test_lockfile)."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_console_script_points_at_the_cli():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["retention-lab"] == "retention_lab.cli:app"
