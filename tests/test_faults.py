"""Fault injection: the CLI through every fault of issue 14, as a scheduler would meet it.

Each test runs ``retention-lab`` in a subprocess with its own MLflow store and
reports folder, injects one fault, and checks the exit status, the one-line
message (no traceback on the terminal), ``run.json`` and the MLflow statuses:
no run is ever left RUNNING. The smoke configuration's data are used with the
stages cut down to the fixture notebooks (``answer`` succeeds in seconds,
``sleepy`` waits to be interrupted).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient

from retention_lab.report import read_run_record

from .conftest import CLI, FIXTURES, SMOKE_CONFIG, cli

NOTEBOOKS = FIXTURES / "notebooks"


def config_file(tmp_path: Path, *, stages=("answer",), name="fault", **overrides) -> Path:
    """The smoke configuration with other stages (fixture notebooks) and ``overrides``.

    The stages run one at a time (unless ``runner`` says otherwise), in the order given.
    """
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    runner = {"concurrency": 1, **overrides.pop("runner", {})}
    config.update(name=name, stages=list(stages), runner=runner, **overrides)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_cli(tmp_path: Path, config: Path, *extra: str) -> subprocess.CompletedProcess:
    return cli("run", "--config", str(config), "--reports-dir", str(tmp_path / "reports"),
               "--notebooks-dir", str(NOTEBOOKS), *extra, tmp_path=tmp_path)  # fmt: skip


def store(tmp_path: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")


def mlflow_runs(tmp_path: Path) -> list:
    """Every MLflow run in the test's store."""
    client = store(tmp_path)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def run_statuses(tmp_path: Path) -> dict[str, str]:
    """Every MLflow run in the test's store: run name -> status."""
    return {r.info.run_name: r.info.status for r in mlflow_runs(tmp_path)}


def records(tmp_path: Path) -> list[dict]:
    """The readable run records under the test's reports folder, oldest first."""
    found = [read_run_record(p.parent) for p in sorted((tmp_path / "reports").glob("*/run.json"))]
    return [record for record in found if record is not None]


def one_line_error(result: subprocess.CompletedProcess, exit_code: int) -> str:
    """The error line of a failed command, checked to be alone and without a traceback."""
    assert result.returncode == exit_code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("error:", "internal error:", "stopped:"))]
    assert len(errors) == 1, result.stderr
    return errors[0]


def nothing_running(tmp_path: Path) -> None:
    statuses = run_statuses(tmp_path) if (tmp_path / "mlruns" / "mlflow.db").exists() else {}
    assert "RUNNING" not in statuses.values(), statuses
    assert all(r["status"] != "running" for r in records(tmp_path))


# ------------------------------------------------------------------ errors the user can fix
def test_an_unknown_read_options_key_fails_the_run_with_exit_2(tmp_path):
    (tmp_path / "c.csv").write_text("customer_id,signup_date,end_date,segment\nC1,2020-01-01,,a\n")
    data = {"source": "files", "as_of": "2021-01-01",
            "customers": {"path": "c.csv", "read_options": {"sepp": ";"}}}  # fmt: skip
    result = run_cli(tmp_path, config_file(tmp_path, data=data))
    line = one_line_error(result, 2)
    assert "c.csv: read_options that pandas.read_csv knows (unknown: ['sepp'])" in line
    (record,) = records(tmp_path)
    assert record["status"] == "failed" and "the input data were rejected" in record["error"]
    assert run_statuses(tmp_path) == {record["folder"]: "FAILED"}


def test_an_unwritable_reports_index_fails_the_run_with_exit_2(tmp_path):
    (tmp_path / "reports" / "index.html").mkdir(parents=True)  # cannot be replaced by a file
    line = one_line_error(run_cli(tmp_path, config_file(tmp_path)), 2)
    assert f"{tmp_path / 'reports' / 'index.html'}: cannot be written (Is a directory)" in line
    (record,) = records(tmp_path)
    assert record["status"] == "failed" and "index.html: cannot be written" in record["error"]
    assert run_statuses(tmp_path) == {record["folder"]: "FAILED"}


def unwritable_folder(tmp_path: Path) -> Path:
    """A reports folder no run can write to (root ignores permissions, sysfs does not yield)."""
    if os.geteuid() == 0:
        return Path("/sys/retention-lab-reports")
    folder = tmp_path / "reports"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def test_a_read_only_reports_folder_exits_2_before_any_run(tmp_path):
    reports = unwritable_folder(tmp_path)
    result = cli("run", "--config", str(config_file(tmp_path)), "--reports-dir", str(reports),
                 "--notebooks-dir", str(NOTEBOOKS), tmp_path=tmp_path)  # fmt: skip
    line = one_line_error(result, 2)
    assert f"error: {reports}: cannot be written (" in line
    assert run_statuses(tmp_path) == {}  # no MLflow run was opened


@pytest.mark.parametrize("uri", ["nosuchscheme://store", "sqlite:////proc/no/such/mlflow.db"])
def test_a_bad_tracking_uri_exits_2_before_any_run(tmp_path, uri):
    config = config_file(tmp_path, tracking={"experiment": "x", "tracking_uri": uri})
    line = one_line_error(run_cli(tmp_path, config), 2)
    assert f"error: MLflow tracking store {uri}: cannot be opened (" in line
    assert "check tracking.tracking_uri in the configuration or MLFLOW_TRACKING_URI" in line
    assert not (tmp_path / "reports").exists()


def test_a_corrupt_mlflow_database_exits_2_before_any_run(tmp_path):
    database = tmp_path / "mlruns" / "mlflow.db"
    database.parent.mkdir()
    database.write_bytes(b"this is not an sqlite database" * 100)
    line = one_line_error(run_cli(tmp_path, config_file(tmp_path)), 2)
    assert f"MLflow tracking store sqlite:///{database}: cannot be opened (" in line
    assert "file is not a database" in line
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("kernel", ["retention-lab/../x", "retention-labb"])
def test_a_bad_kernel_name_exits_2_and_registers_nothing(tmp_path, kernel):
    from jupyter_client.kernelspec import KernelSpecManager

    before = set(KernelSpecManager().find_kernel_specs())
    config = config_file(tmp_path, runner={"kernel": kernel})
    line = one_line_error(run_cli(tmp_path, config), 2)
    assert f"configuration: runner.kernel: no Jupyter kernel '{kernel}' (installed: [" in line
    assert set(KernelSpecManager().find_kernel_specs()) == before
    assert not (tmp_path / "reports").exists()


# ------------------------------------------------------------------ what a run survives
def test_a_malformed_run_json_of_an_old_run_never_stops_a_new_one(tmp_path):
    malformed = {
        "old-1": "{not json",
        "old-2": "[1, 2]",
        "old-3": '{"stages": 3}',
        "old-4": '{"name": "x", "status": "running", "stages": ["?"]}',
    }
    for name, text in malformed.items():
        (tmp_path / "reports" / name).mkdir(parents=True)
        (tmp_path / "reports" / name / "run.json").write_text(text)
    result = run_cli(tmp_path, config_file(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    new = [r for r in records(tmp_path) if r.get("folder", "").endswith("fault")]
    assert [r["status"] for r in new] == ["succeeded"]
    assert "old-4" in (tmp_path / "reports" / "index.html").read_text()
    assert json.loads((tmp_path / "reports" / "old-4" / "run.json").read_text())["status"] == (
        "killed"  # a run record nobody holds the lock of is a dead run
    )
    assert set(run_statuses(tmp_path).values()) == {"FINISHED"}


def test_an_internal_error_is_one_line_exit_1_with_the_traceback_in_run_log(tmp_path):
    result = run_cli(tmp_path, config_file(tmp_path, stages=["answer", "odd"]))
    line = one_line_error(result, 1)
    (record,) = records(tmp_path)
    log_file = tmp_path / "reports" / record["folder"] / "run.log"
    assert line == (
        f"internal error: AttributeError: 'str' object has no attribute 'get' "
        f"(traceback in {log_file})"
    )
    assert "Traceback (most recent call last)" in log_file.read_text()
    assert record["status"] == "failed" and record["error"].startswith("internal error:")
    assert [s["status"] for s in record["stages"]] == ["succeeded", "failed"]
    assert run_statuses(tmp_path) == {record["folder"]: "FAILED", "answer": "FINISHED"}


def test_concurrent_runs_on_a_fresh_store_all_finish(tmp_path):
    config = config_file(tmp_path)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"}
    processes = [
        subprocess.Popen(
            [
                CLI,
                "run",
                "--config",
                str(config),
                "--reports-dir",
                str(tmp_path / "reports"),
                "--notebooks-dir",
                str(NOTEBOOKS),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(3)
    ]
    results = [p.communicate(timeout=900) for p in processes]
    for process, (_, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr[-3000:]
        assert "Traceback" not in stderr
    assert [r["status"] for r in records(tmp_path)] == ["succeeded"] * 3
    statuses = [r.info.status for r in mlflow_runs(tmp_path)]
    assert len(statuses) == 6 and set(statuses) == {"FINISHED"}  # 3 parents, 3 stages


def test_a_kernel_that_fails_to_start_is_replaced(tmp_path):
    kernels = tmp_path / "jupyter" / "kernels" / "flaky"
    kernels.mkdir(parents=True)
    starts = tmp_path / "starts"  # one line per start of a kernel
    launcher = tmp_path / "flaky.py"
    launcher.write_text(
        "import pathlib, runpy, sys\n"
        f"starts = pathlib.Path({str(starts)!r})\n"
        "with starts.open('a') as handle:\n"
        "    handle.write('start\\n')\n"
        "if len(starts.read_text().split()) <= 2:\n"
        "    sys.exit(1)  # as a kernel whose port was taken meanwhile\n"
        "sys.argv = ['ipykernel_launcher', *sys.argv[1:]]\n"
        "runpy.run_module('ipykernel_launcher', run_name='__main__')\n"
    )
    spec = {"argv": [sys.executable, str(launcher), "-f", "{connection_file}"],
            "display_name": "flaky", "language": "python"}  # fmt: skip
    (kernels / "kernel.json").write_text(json.dumps(spec))
    env = {**os.environ, "JUPYTER_PATH": str(tmp_path / "jupyter"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"}  # fmt: skip
    result = subprocess.run(
        [CLI, "run", "--config", str(config_file(tmp_path, runner={"kernel": "flaky"})),
         "--reports-dir", str(tmp_path / "reports"), "--notebooks-dir", str(NOTEBOOKS)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # the first two starts failed: the kernel warmed ahead of the stage, the stage's own
    assert len(starts.read_text().split()) == 3
    assert "a kernel did not start ahead of its stage" in result.stderr
    assert "stage answer: the kernel did not start" in result.stderr
    assert "Traceback" not in result.stderr
    assert [r["status"] for r in records(tmp_path)] == ["succeeded"]


# ------------------------------------------------------------------ signals
def _asleep(notebook: str) -> bool:
    """Whether a partial notebook shows its ``time.sleep`` cell executing."""
    return "time.sleep" in notebook and '"running"' in notebook


def start_sleepy_run(
    tmp_path: Path, stages=("answer", "sleepy"), concurrency: int = 1
) -> tuple[subprocess.Popen, list[Path]]:
    """A run of ``stages``; returns once each sleeping stage (sleepy, drowsy) is in its sleep."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"}
    config = config_file(tmp_path, stages=stages, runner={"concurrency": concurrency})
    sleeping = [stage for stage in stages if stage in ("sleepy", "drowsy")]
    process = subprocess.Popen(
        [CLI, "run", "--config", str(config), "--reports-dir", str(tmp_path / "reports"),
         "--notebooks-dir", str(NOTEBOOKS)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        partials = [next((tmp_path / "reports").glob(f"*/{s}/*_{s}.ipynb"), None) for s in sleeping]
        if all(p and _asleep(p.read_text()) for p in partials):
            return process, partials
        if process.poll() is not None:
            pytest.fail(f"the run ended early: {process.communicate()[1][-3000:]}")
        time.sleep(0.5)
    process.kill()
    pytest.fail("the sleeping stages never started")


@pytest.mark.parametrize(
    ("signum", "name"), [(signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")]
)
def test_sigint_and_sigterm_stop_the_kernel_and_end_the_run_killed(tmp_path, signum, name):
    process, (partial,) = start_sleepy_run(tmp_path)
    kernels = psutil.Process(process.pid).children(recursive=True)
    assert kernels  # the stage kernel
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    result = subprocess.CompletedProcess(process.args, process.returncode, "", stderr)
    line = one_line_error(result, 128 + signum)
    assert line == f"stopped: the run was stopped by {name}; it is recorded as killed"
    assert not [k for k in kernels if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]
    (record,) = records(tmp_path)
    assert record["status"] == "killed" and record["error"] == f"stopped by {name}"
    stages = {s["stage"]: s for s in record["stages"]}
    assert stages["answer"]["status"] == "succeeded" and stages["sleepy"]["status"] == "killed"
    assert stages["sleepy"]["notebook"] == "sleepy/05_sleepy.ipynb" and partial.is_file()
    assert run_statuses(tmp_path) == {
        record["folder"]: "KILLED",
        "answer": "FINISHED",
        "sleepy": "KILLED",
    }


def test_sigterm_stops_every_concurrent_stage_and_ends_the_run_killed(tmp_path):
    process, partials = start_sleepy_run(tmp_path, stages=["sleepy", "drowsy"], concurrency=2)
    kernels = psutil.Process(process.pid).children(recursive=True)
    assert len(kernels) >= 2  # both stages' kernels at once
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    result = subprocess.CompletedProcess(process.args, process.returncode, "", stderr)
    line = one_line_error(result, 128 + signal.SIGTERM)
    assert line == "stopped: the run was stopped by SIGTERM; it is recorded as killed"
    assert not [k for k in kernels if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]
    (record,) = records(tmp_path)
    assert record["status"] == "killed" and record["error"] == "stopped by SIGTERM"
    assert [(s["stage"], s["status"], s["error"], s["notebook"]) for s in record["stages"]] == [
        ("sleepy", "killed", "stopped by SIGTERM", "sleepy/05_sleepy.ipynb"),
        ("drowsy", "killed", "stopped by SIGTERM", "drowsy/09_drowsy.ipynb"),
    ]
    assert all(partial.is_file() for partial in partials)
    assert run_statuses(tmp_path) == {
        record["folder"]: "KILLED", "sleepy": "KILLED", "drowsy": "KILLED",
    }  # fmt: skip


@pytest.mark.slow
def test_sigkill_leaves_a_run_the_next_run_closes_as_killed(tmp_path):
    process, (partial,) = start_sleepy_run(tmp_path)
    kernels = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    for kernel in kernels:  # an orphaned kernel of the dead run (ipykernel also exits on its own)
        if kernel.is_running():
            kernel.kill()
    (dead,) = records(tmp_path)
    assert dead["status"] == "running"  # nobody could say otherwise
    assert run_statuses(tmp_path)[dead["folder"]] == "RUNNING"

    result = run_cli(tmp_path, config_file(tmp_path, name="next"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    dead = json.loads((tmp_path / "reports" / dead["folder"] / "run.json").read_text())
    assert dead["status"] == "killed" and "stopped without a word" in dead["error"]
    stages = {s["stage"]: s for s in dead["stages"]}
    assert stages["sleepy"]["status"] == "killed"
    assert stages["sleepy"]["notebook"] == "sleepy/05_sleepy.ipynb" and partial.is_file()
    statuses = run_statuses(tmp_path)
    assert statuses[dead["folder"]] == "KILLED" and statuses["sleepy"] == "KILLED"
    nothing_running(tmp_path)


def test_the_report_command_closes_a_dead_run(tmp_path):
    folder = tmp_path / "reports" / "20260101-000000-gone"
    (folder / "survival").mkdir(parents=True)
    (folder / "survival" / "01_survival.ipynb").write_text("{}")
    record = {"name": "gone", "status": "running", "folder": folder.name, "mlflow_run_id": "",
              "stages": [{"stage": "survival", "status": "running"}]}  # fmt: skip
    (folder / "run.json").write_text(json.dumps(record))
    result = cli("report", "--reports-dir", str(tmp_path / "reports"), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    closed = json.loads((folder / "run.json").read_text())
    assert closed["status"] == "killed"
    assert closed["stages"] == [
        {"stage": "survival", "status": "killed", "notebook": "survival/01_survival.ipynb"}
    ]
    assert "killed" in (tmp_path / "reports" / "index.html").read_text()
