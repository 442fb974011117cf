"""The two install routes (pip: pyproject.toml, conda: environment.yml) name the same packages."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _normalise(requirement: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement)
    name, spec = match.group(1), match.group(2).replace(" ", "")
    return name.lower().replace("_", "-"), spec


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_normalise(r) for r in project["dependencies"]}
    for extra in ("examples", "test"):
        wanted |= {_normalise(r) for r in project["optional-dependencies"][extra]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    named = [d for d in env["dependencies"] if isinstance(d, str)]
    named += [d for d in pip_section if not d.startswith("-e")]
    listed = {_normalise(d) for d in named} - {("python", "=3.11"), ("pip", "")}
    assert listed == wanted
    assert "-e .[examples,test]" in pip_section
    assert "python=3.11" in env["dependencies"]
    assert env["channels"] == ["conda-forge"]


def test_console_script_points_at_the_cli():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["retention-lab"] == "retention_lab.cli:app"
