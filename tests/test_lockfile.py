"""The locked environment: uv.lock agrees with pyproject.toml, environment.yml with the lock."""

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from uv import find_uv_bin

from retention_lab.lockfile import (
    ENVIRONMENT_FILE,
    LOCK_FILE,
    PYPROJECT_FILE,
    environment_yml,
    locked_versions,
)

ROOT = PYPROJECT_FILE.parent


def lock_check(project: Path) -> subprocess.CompletedProcess:
    """``uv lock --check`` without the network: does the lock satisfy pyproject.toml?"""
    return subprocess.run(
        [find_uv_bin(), "lock", "--check", "--offline", "--project", str(project)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_lock_file_agrees_with_pyproject():
    result = lock_check(ROOT)
    assert result.returncode == 0, (
        "pyproject.toml and uv.lock disagree: run `make lock` and commit uv.lock and "
        f"environment.yml\n{result.stderr}"
    )


@pytest.fixture
def project_copy(tmp_path) -> Path:
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_lock_check_fails_when_pyproject_gains_a_dependency(project_copy):
    assert lock_check(project_copy).returncode == 0  # the copy agrees, as the repository does
    pyproject = project_copy / "pyproject.toml"
    text = pyproject.read_text()
    # a package the lock holds only as a dependency of a dependency
    pyproject.write_text(text.replace('    "typer>=0.12",\n', '    "typer>=0.12",\n    "tqdm",\n'))
    assert pyproject.read_text() != text
    assert lock_check(project_copy).returncode != 0


def test_environment_yml_is_pinned_to_the_lock():
    assert ENVIRONMENT_FILE.read_text() == environment_yml(), (
        "environment.yml does not match uv.lock: run `make lock` (or "
        "`python -m retention_lab.lockfile environment.yml`) and commit it"
    )


def test_environment_yml_pins_every_direct_requirement_to_its_locked_version():
    text = environment_yml()
    versions = locked_versions()
    for name in ("pandas", "lifelines", "causalml", "mlflow", "pymc-marketing", "lifetimes"):
        assert f"  - {name}=={versions[name]}\n" in text
    # not on conda-forge: through pip, pinned too
    assert f"      - playwright=={versions['playwright']}\n" in text
    extras = ",".join(tomllib.loads(PYPROJECT_FILE.read_text())["project"]["optional-dependencies"])
    assert text.rstrip().endswith(f"- -e .[{extras}]")
    assert text.count("lifetimes==") == 1  # in two extras, listed once


SMALL_LOCK = """
version = 1
requires-python = ">=3.11, <3.13"

[[package]]
name = "numpy"
version = "2.4.6"
resolution-markers = ["python_full_version < '3.12'"]

[[package]]
name = "numpy"
version = "2.5.5"
resolution-markers = ["python_full_version >= '3.12'"]

[[package]]
name = "Typing_Extensions"
version = "4.15.0"
"""


@pytest.mark.parametrize(("python", "expected"), [("3.11.7", "2.4.6"), ("3.12.3", "2.5.5")])
def test_locked_versions_takes_the_fork_for_the_interpreter(tmp_path, python, expected):
    lock = tmp_path / "uv.lock"
    lock.write_text(SMALL_LOCK)
    environment = {"python_full_version": python, "python_version": python[:4]}
    versions = locked_versions(lock, environment=environment)
    assert versions == {"numpy": expected, "typing-extensions": "4.15.0"}


def test_lock_is_the_one_committed_in_the_repository():
    assert LOCK_FILE == ROOT / "uv.lock" and LOCK_FILE.is_file()
    makefile = (ROOT / "Makefile").read_text()
    # installs come from the lock without resolving; `make lock` is the one way to change it
    assert "uv sync --frozen" in makefile and "uv pip install" not in makefile
    assert "$(BIN)/uv lock" in makefile
