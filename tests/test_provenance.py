"""Provenance: commit and changed files, the kernel's package versions, hashes, differences."""

import subprocess
import sys
from importlib.metadata import version

import pytest

from retention_lab import provenance
from retention_lab.config import KERNEL_NAME
from retention_lab.runner import ensure_kernel

from .conftest import make_config


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@example.org")
    git(tmp_path, "config", "user.name", "t")
    (tmp_path / ".gitignore").write_text("reports/\n")
    (tmp_path / "model.py").write_text("x = 1\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_git_state_of_a_clean_tree(repo):
    state = provenance.git_state(repo)
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert state == {"commit": head, "dirty": False, "changed_files": [], "changes_hash": None}


def test_git_state_lists_changed_and_new_files_but_not_ignored_ones(repo):
    (repo / "model.py").write_text("x = 2\n")
    (repo / "new_module.py").write_text("y = 1\n")
    (repo / "reports").mkdir()
    (repo / "reports" / "run.json").write_text("{}")
    state = provenance.git_state(repo)
    assert state["dirty"] is True
    assert state["changed_files"] == ["model.py", "new_module.py"]
    (repo / "model.py").write_text("x = 3\n")  # edited again: same files, other changes
    again = provenance.git_state(repo)
    assert again["changed_files"] == state["changed_files"]
    assert again["changes_hash"] != state["changes_hash"]
    assert provenance.differences(state, again) == [
        f"uncommitted changes to model.py, new_module.py (hash): "
        f"{state['changes_hash']} then, {again['changes_hash']} now"
    ]


def test_git_state_outside_a_checkout(tmp_path):
    assert provenance.git_state(tmp_path / "nowhere") == {
        "commit": "unknown",
        "dirty": None,
        "changed_files": [],
        "changes_hash": None,
    }


def test_config_hash_follows_what_is_computed_not_where_it_is_logged():
    base = make_config()
    elsewhere = make_config(tracking={"experiment": "retention-lab-test", "tracking_uri": "x"})
    assert provenance.config_hash(base) == provenance.config_hash(elsewhere)
    assert provenance.config_hash(base) != provenance.config_hash(make_config(seed=4))


def test_kernel_environment_is_read_from_the_kernels_interpreter():
    ensure_kernel(KERNEL_NAME)
    seen = provenance.kernel_environment(KERNEL_NAME)
    assert seen["python"] == sys.version.split()[0]
    assert seen["project_version"] == version("retention_lab")
    for name in ("pandas", "lifelines", "scikit-learn", "mlflow"):
        assert seen["packages"][name] == version(name)
    assert len(seen["environment_hash"]) == 16


RECORDED = {
    "commit": "a" * 40,
    "dirty": False,
    "changed_files": [],
    "python": "3.11.7",
    "packages": {"pandas": "2.2.3", "lifelines": "0.30.0"},
    "environment_hash": "e1",
    "config_hash": "c1",
    "data_fingerprint": "f1",
    "as_of": "2024-01-01",
    "project_version": "0.1.0",
    "kernel": "retention-lab",
    "seed": 7,
    "fast": True,
}


def test_differences_are_empty_for_the_same_provenance():
    assert provenance.differences(RECORDED, dict(RECORDED)) == []


def test_differences_name_commit_packages_and_data_one_line_each():
    current = {
        **RECORDED,
        "commit": "b" * 40,
        "dirty": True,
        "changed_files": ["src/retention_lab/plan/policy.py"],
        "packages": {"pandas": "2.3.3", "lifelines": "0.30.0", "econml": "0.17.0"},
        "environment_hash": "e2",
        "data_fingerprint": "f2",
    }
    assert provenance.differences(RECORDED, current) == [
        f"commit: {'a' * 40} then, {'b' * 40} now",
        "uncommitted changes: none then, src/retention_lab/plan/policy.py now",
        "package econml: absent then, 0.17.0 now",
        "package pandas: 2.2.3 then, 2.3.3 now",
        "data fingerprint: f1 then, f2 now",
    ]


def test_differences_name_other_installed_packages_by_the_environment_hash():
    current = {**RECORDED, "environment_hash": "e2"}
    assert provenance.differences(RECORDED, current) == [
        "other installed packages (environment hash): e1 then, e2 now"
    ]


def test_tags_carry_every_field_and_package():
    tags = provenance.tags({**RECORDED, "dirty": True, "changed_files": ["a.py", "b.py"]})
    assert tags["git_commit"] == "a" * 40 + "-dirty"
    assert tags["git_changed_files"] == "a.py, b.py"
    assert tags["package.pandas"] == "2.2.3" and tags["package.lifelines"] == "0.30.0"
    assert tags["data_fingerprint"] == "f1" and tags["data_as_of"] == "2024-01-01"
    assert tags["seed"] == "7" and tags["config_hash"] == "c1"
    assert all(isinstance(v, str) for v in tags.values())


def test_footer_is_one_line_with_commit_data_and_seed():
    line = provenance.footer({**RECORDED, "dirty": True, "changed_files": ["a.py"]})
    assert "\n" not in line
    assert "commit aaaaaaaaaaaa with uncommitted changes in 1 file" in line
    assert "data f1 as of 2024-01-01" in line and "seed 7, fast" in line
    assert "Python 3.11.7 (kernel retention-lab)" in line
    assert provenance.footer(None) == ""
