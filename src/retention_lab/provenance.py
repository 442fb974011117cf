"""Provenance of a run: how its numbers were made, recorded so they can be made again.

``collect`` gathers, when a run starts, the project's version and commit (with
the files changed since that commit when the tree is dirty), the Python and
package versions that the stage kernel sees (asked of the kernel's own
interpreter, which need not be the runner's), the kernel's name, the
configuration's hash, ``fast`` and the seed; ``with_data`` adds the data
fingerprint and ``as_of`` once the tables are loaded. The runner writes the
record into ``run.json``, sets ``tags`` on the MLflow parent run and passes it
to every report's footer; ``differences`` names what changed between two
records, one line each, for ``retention-lab rerun``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path

from retention_lab.config import PROJ_ROOT, RunConfig

log = logging.getLogger(__name__)

PACKAGE_TAG_PREFIX = "package."
MAX_TAG_LENGTH = 5000

# Run inside the kernel's interpreter (standard library only): the project's version, Python,
# the installed version of each direct requirement of the project (extras included when
# installed) and a hash of every installed distribution.
_KERNEL_SCRIPT = """
import hashlib, importlib.metadata as md, json, re, sys
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
names = [re.match(r"[A-Za-z0-9._-]+", r).group(0) for r in md.requires("retention_lab") or []]
packages = {n.lower(): version(n) for n in dict.fromkeys(names) if version(n)}
every = sorted({f"{d.metadata['Name'].lower()}=={d.version}" for d in md.distributions()})
print(json.dumps({
    "project_version": version("retention_lab"),
    "python": sys.version.split()[0],
    "executable": sys.executable,
    "packages": dict(sorted(packages.items())),
    "environment_hash": hashlib.sha256("\\n".join(every).encode()).hexdigest()[:16],
}))
"""


def config_hash(config: RunConfig) -> str:
    """A short SHA-256 of the resolved configuration, the tracking URI left out.

    Where a run is logged does not change what it computes, so two runs of one
    configuration logged to different stores share the hash.
    """
    raw = config.model_dump(mode="json")
    raw["tracking"].pop("tracking_uri", None)
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16]


def git_state(root: Path = PROJ_ROOT) -> dict:
    """The checked-out commit, whether the tree has changes, the changed files and their hash.

    Untracked files count (a new module not yet committed changes what runs);
    ignored ones (data, reports, MLflow store) do not. ``changes_hash`` digests
    the diff against the commit and the untracked files' contents, so that an
    edit between two runs of a dirty tree shows. Outside a git checkout the
    commit is ``unknown`` and ``dirty`` is ``None``.
    """

    def git(*args: str) -> bytes:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, check=True
        ).stdout

    try:
        commit = git("rev-parse", "HEAD").decode().strip()
        status = git("status", "--porcelain=v1", "--untracked-files=all").decode()
        digest = hashlib.sha256(git("diff", "HEAD", "--binary"))
        for path in git("ls-files", "--others", "--exclude-standard", "-z").split(b"\0"):
            if path and (Path(root) / path.decode()).is_file():
                digest.update(path + b"\0" + (Path(root) / path.decode()).read_bytes())
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None, "changed_files": [], "changes_hash": None}
    changed = sorted({line[3:].split(" -> ")[-1].strip('"') for line in status.splitlines()})
    return {
        "commit": commit,
        "dirty": bool(changed),
        "changed_files": changed,
        "changes_hash": digest.hexdigest()[:16] if changed else None,
    }


def kernel_environment(kernel: str) -> dict:
    """Python and package versions as the Jupyter kernel ``kernel`` sees them.

    The kernel's interpreter is the first word of its kernel spec; it is asked
    directly rather than assumed to be the runner's own.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    argv = KernelSpecManager().get_kernel_spec(kernel).argv
    executable = sys.executable if argv[0] in ("python", "python3") else argv[0]
    completed = subprocess.run(
        [executable, "-c", _KERNEL_SCRIPT], capture_output=True, text=True, check=True
    )
    return json.loads(completed.stdout)


def collect(config: RunConfig, *, fast: bool, root: Path = PROJ_ROOT) -> dict:
    """The provenance of a run about to start (the data fields follow from ``with_data``)."""
    kernel = config.runner.kernel
    return {
        **git_state(root),
        "kernel": kernel,
        **kernel_environment(kernel),
        "config_hash": config_hash(config),
        "seed": config.seed,
        "fast": fast,
        "data_fingerprint": None,
        "as_of": None,
    }


def with_data(provenance: dict, tables: dict) -> dict:
    """The provenance with the data fingerprint and ``as_of`` of the stored tables."""
    return {**provenance, "data_fingerprint": tables["fingerprint"], "as_of": tables["as_of"]}


def tags(provenance: dict) -> dict[str, str]:
    """MLflow tags of the parent run: one per field, one per package (``package.<name>``)."""
    commit = provenance["commit"]
    out = {
        "git_commit": f"{commit}-dirty" if provenance["dirty"] else commit,
        "git_dirty": str(provenance["dirty"]).lower(),
        "git_changed_files": ", ".join(provenance["changed_files"])[:MAX_TAG_LENGTH],
        "project_version": provenance["project_version"],
        "python_version": provenance["python"],
        "kernel": provenance["kernel"],
        "environment_hash": provenance["environment_hash"],
        "config_hash": provenance["config_hash"],
        "seed": provenance["seed"],
        "fast": str(provenance["fast"]).lower(),
        "data_fingerprint": provenance["data_fingerprint"],
        "data_as_of": provenance["as_of"],
    }
    out.update({f"{PACKAGE_TAG_PREFIX}{name}": v for name, v in provenance["packages"].items()})
    return {key: str(value) for key, value in out.items() if value is not None}


def differences(recorded: dict, current: dict) -> list[str]:
    """One line per difference that can change results: commit, tree, Python, packages, data.

    The lines read ``<what>: <recorded> then, <current> now``.
    """
    lines = []

    def compare(label: str, before, after) -> None:
        if before != after:
            lines.append(f"{label}: {before} then, {after} now")

    compare("commit", recorded.get("commit"), current.get("commit"))
    files_then, files_now = recorded.get("changed_files", []), current.get("changed_files", [])
    compare("uncommitted changes", ", ".join(files_then) or "none", ", ".join(files_now) or "none")
    if files_then == files_now:
        compare(
            f"uncommitted changes to {', '.join(files_now)} (hash)",
            recorded.get("changes_hash"),
            current.get("changes_hash"),
        )
    compare("Python", recorded.get("python"), current.get("python"))
    before, after = recorded.get("packages", {}), current.get("packages", {})
    for name in sorted(before.keys() | after.keys()):
        compare(f"package {name}", before.get(name, "absent"), after.get(name, "absent"))
    if before == after:
        compare(
            "other installed packages (environment hash)",
            recorded.get("environment_hash"),
            current.get("environment_hash"),
        )
    compare("configuration hash", recorded.get("config_hash"), current.get("config_hash"))
    compare("data fingerprint", recorded.get("data_fingerprint"), current.get("data_fingerprint"))
    return lines


def footer(provenance: dict | None) -> str:
    """One plain line for a report's footer; empty when the run recorded no provenance."""
    if not provenance:
        return ""
    commit = (provenance.get("commit") or "unknown")[:12]
    if provenance.get("dirty"):
        n = len(provenance["changed_files"])
        commit += f" with uncommitted changes in {n} file{'' if n == 1 else 's'}"
    parts = [
        f"retention_lab {provenance.get('project_version')}",
        f"commit {commit}",
        f"Python {provenance.get('python')} (kernel {provenance.get('kernel')})",
        f"{len(provenance.get('packages', {}))} package versions in run.json "
        f"(environment {provenance.get('environment_hash')})",
        f"configuration {provenance.get('config_hash')}",
    ]
    if provenance.get("data_fingerprint"):
        parts.append(f"data {provenance['data_fingerprint']} as of {provenance.get('as_of')}")
    parts.append(f"seed {provenance.get('seed')}" + (", fast" if provenance.get("fast") else ""))
    return " · ".join(parts)
