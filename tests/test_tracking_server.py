"""A shared tracking server: a real PostgreSQL, `make tracking-server`, two pipeline runs.

PostgreSQL (Debian's ``postgresql``, installed by ``make test``) is started in a
temporary folder on a free loopback port with password authentication for TCP
connections. The MLflow server gets the password only through ``PGPASSFILE``;
the pipeline runs never see it. Its server refuses to run as root, so as root
the cluster runs as the ``postgres`` user.
"""

import getpass
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from retention_lab.config import PROJ_ROOT, parse_config
from retention_lab.errors import ConfigError
from retention_lab.stage import read_results

from .conftest import SMOKE_CONFIG

PG_BIN = next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)), None)
CLI = str(Path(sys.executable).parent / "retention-lab")
PASSWORD = "Qx7-tracking-secret-9Lm2"  # a test password, unlike any word a report could contain
ROOT = os.geteuid() == 0

no_postgres = pytest.mark.skipif(
    PG_BIN is None,
    reason="PostgreSQL is not installed (Debian postgresql; `make test` installs it)",
)


def needs_postgres(test):
    """Mark a test that starts PostgreSQL (and skip it where PostgreSQL is missing)."""
    return pytest.mark.postgres(pytest.mark.slow(no_postgres(test)))


def _without_pg(env: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in env.items() if not key.startswith("PG")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a PostgreSQL program as the cluster's owner (``postgres`` when we are root)."""
    prefix = ["runuser", "-u", "postgres", "--"] if ROOT else []
    done = subprocess.run(prefix + args, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{args[0]} failed: {done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL cluster on a loopback port: superuser over a socket, ``mlflow`` by password."""
    folder = Path(tempfile.mkdtemp(prefix="retention-lab-pg-"))
    folder.chmod(0o755)
    data, sockets = folder / "data", folder / "sockets"
    for path in (data, sockets):
        path.mkdir(mode=0o700)
        if ROOT:
            shutil.chown(path, "postgres")
    port = _free_port()
    owner = "postgres" if ROOT else getpass.getuser()
    _as_owner([f"{PG_BIN}/initdb", "-D", str(data), "-U", owner, "--auth-local=trust",
               "--auth-host=scram-sha-256", "-E", "UTF8"])  # fmt: skip
    _as_owner([f"{PG_BIN}/pg_ctl", "-D", str(data), "-l", str(data / "postgres.log"), "-w", "start",
               "-o", f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"])  # fmt: skip
    try:
        psql = [f"{PG_BIN}/psql", "-h", str(sockets), "-p", str(port), "-U", owner,
                "-v", "ON_ERROR_STOP=1"]  # fmt: skip
        role = f"CREATE ROLE mlflow LOGIN PASSWORD '{PASSWORD}'"
        _as_owner([*psql, "-d", "postgres", "-c", role])
        _as_owner([*psql, "-d", "postgres", "-c", "CREATE DATABASE mlflow OWNER mlflow"])
        yield {"port": port, "folder": folder, "psql": psql}
    finally:
        _as_owner([f"{PG_BIN}/pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    """``make tracking-server`` on PostgreSQL, the password in a file named by PGPASSFILE."""
    root = tmp_path_factory.mktemp("server")
    passfile = root / "pgpass"
    passfile.write_text(f"127.0.0.1:{postgres['port']}:mlflow:mlflow:{PASSWORD}\n")
    passfile.chmod(0o600)
    port = _free_port()
    env = _without_pg(os.environ)
    env.update(PGPASSFILE=str(passfile), PGPORT=str(postgres["port"]), PGHOST="127.0.0.1")
    log_file = root / "server.log"
    with log_file.open("w") as log:
        process = subprocess.Popen(
            ["make", "-s", "-C", str(PROJ_ROOT), "tracking-server", f"MLFLOW_PORT={port}",
             f"ARTIFACT_ROOT={root / 'artifacts'}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the tracking server did not start:\n{log_file.read_text()}")
            time.sleep(1)
        yield {"uri": uri, "root": root, "log": log_file}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


@pytest.fixture(scope="module")
def two_runs(server, tmp_path_factory):
    """The smoke market's data, survival and monitoring stages run twice against the server.

    Those stages are enough to log tables, a model, reports and metrics through the
    server and to let the second run's monitor read the first one's outputs from it.
    """
    root = tmp_path_factory.mktemp("runs")
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    config["stages"] = ["data", "survival", "monitoring"]
    config_file = root / "tracked.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = _without_pg(os.environ)
    env["MLFLOW_TRACKING_URI"] = server["uri"]
    command = [CLI, "run", "--config", str(config_file), "--reports-dir", str(root / "reports"),
               "--fast"]  # fmt: skip
    results = [
        subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
        for _ in range(2)
    ]
    return {"results": results, "reports": root / "reports"}


@pytest.mark.parametrize(
    "uri", ["postgresql://mlflow:hunter2@db:5432/mlflow", "http://analyst:hunter2@mlflow:5000"]
)
def test_a_tracking_uri_with_a_password_is_refused_without_echoing_it(uri, monkeypatch):
    with pytest.raises(ConfigError) as caught:
        parse_config({"name": "x", "tracking": {"tracking_uri": uri}}, file="team.yaml")
    assert str(caught.value).startswith("team.yaml: tracking.tracking_uri: the tracking URI")
    assert "hunter2" not in str(caught.value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(ConfigError, match="^MLFLOW_TRACKING_URI: the tracking URI") as caught:
        parse_config({"name": "x"}).resolved_tracking_uri()
    assert "hunter2" not in str(caught.value)


@needs_postgres
def test_password_authentication_is_required(postgres):
    psql = [f"{PG_BIN}/psql", "-h", "127.0.0.1", "-p", str(postgres["port"]), "-U", "mlflow",
            "-d", "mlflow", "-w", "-At", "-c", "SELECT 1"]  # fmt: skip
    env = _without_pg(os.environ)
    denied = subprocess.run(psql, capture_output=True, text=True, env=env)
    assert denied.returncode != 0 and "password" in denied.stderr
    env["PGPASSWORD"] = PASSWORD
    allowed = subprocess.run(psql, capture_output=True, text=True, env=env)
    assert allowed.stdout.strip() == "1", allowed.stderr


@needs_postgres
def test_two_runs_tracked_on_postgres_and_compared_by_the_monitor(two_runs, postgres):
    for result in two_runs["results"]:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    first, second = sorted(p for p in two_runs["reports"].iterdir() if p.is_dir())
    assert read_results(first, "monitoring")["metrics"]["previous_runs"] == 0
    monitoring = read_results(second, "monitoring")
    assert monitoring["metrics"]["previous_runs"] == 1
    assert monitoring["metrics"]["tests"] > 0
    # the runs are in PostgreSQL: the server's database holds both pipeline runs
    count = _as_owner([*postgres["psql"], "-d", "mlflow", "-At", "-c",
                       "SELECT count(*) FROM tags WHERE key = 'retention_lab.kind' "
                       "AND value = 'pipeline'"])  # fmt: skip
    assert count.stdout.strip() == "2"


@needs_postgres
def test_password_appears_nowhere_in_runs_logs_or_store(server, two_runs, postgres):
    found = [
        str(path)
        for place in (two_runs["reports"], server["root"])
        for path in Path(place).rglob("*")
        if path.is_file() and PASSWORD.encode() in path.read_bytes()
    ]
    # the only file holding it is the one PGPASSFILE names (the server log and artifacts are clean)
    assert found == [str(server["root"] / "pgpass")]
    assert server["log"].stat().st_size > 0 and any((server["root"] / "artifacts").rglob("*.html"))
    for result in two_runs["results"]:
        assert PASSWORD not in result.stdout + result.stderr
    dump = _as_owner([f"{PG_BIN}/pg_dump", *postgres["psql"][1:7], "mlflow"])
    assert "CREATE TABLE public.runs" in dump.stdout  # the MLflow store itself was dumped
    assert PASSWORD not in dump.stdout
