"""A run's life from its folder to its end: lock, signals, crashes, and runs that died.

Once a run folder exists, the run must end as ``failed`` or ``killed`` whatever
happens: ``guarded`` holds the folder's lock for the run's lifetime and, on any
exception, calls the runner's ``abort`` (which closes the MLflow runs and writes
``run.json``) before re-raising. SIGINT and SIGTERM (what a terminal, cron and
Airflow send) become ``RunInterrupted`` while ``interruptible`` is active: the
stage kernel is stopped and the run ends ``killed``. A bug ends the run
``failed`` with its traceback in the run folder's ``run.log`` and is re-raised
as ``RunCrashed`` carrying one line for the terminal.

SIGKILL and power loss cannot be caught. The lock is an ``flock`` the kernel
drops when the process dies, so ``close_dead_runs`` recognises a run whose
``run.json`` still says ``running`` but whose lock nobody holds, and marks it
``killed`` (its partial notebook is kept).
"""

from __future__ import annotations

import fcntl
import logging
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from retention_lab import report, tracking
from retention_lab.errors import RetentionLabError

log = logging.getLogger(__name__)

LOCK_FILE = ".run.lock"
LOG_FILE = "run.log"
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
CHILD_STOP_SECONDS = 5.0


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached a running pipeline.

    A ``KeyboardInterrupt`` so that asyncio (under papermill) lets it through.
    """

    def __init__(self, signum: int):
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


class RunCrashed(Exception):
    """A bug ended a run; the run is recorded as failed and the traceback is in ``log_file``."""

    def __init__(self, *, run_dir: Path, cause: BaseException, log_file: Path):
        self.run_dir, self.cause, self.log_file = run_dir, cause, log_file
        super().__init__(f"{describe(cause)} (traceback in {log_file})")


def describe(error: BaseException) -> str:
    """``Type: message`` on one line."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn the first SIGINT or SIGTERM into ``RunInterrupted``; later ones wait for cleanup.

    Outside the main thread signals cannot be handled, and nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum, frame):
        if received:
            log.warning("%s received: the run is already stopping", signal.Signals(signum).name)
            return
        received.append(signum)
        raise RunInterrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in HANDLED_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def stop_children() -> None:
    """Stop this process's children (the stage kernel): SIGTERM, then SIGKILL after a wait."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(children, timeout=CHILD_STOP_SECONDS)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            continue


def _lock(run_dir: Path, *, blocking: bool):
    handle = open(run_dir / LOCK_FILE, "a")  # noqa: SIM115 - held for the run's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        handle.close()
        return None
    return handle


def is_alive(run_dir: Path) -> bool:
    """Whether a process still holds the run's lock (a folder without a lock file is dead)."""
    if not (run_dir / LOCK_FILE).is_file():
        return False
    handle = _lock(run_dir, blocking=False)
    if handle is None:
        return True
    handle.close()
    return False


def write_traceback(run_dir: Path, error: BaseException) -> Path:
    """Append ``error``'s traceback to the run's ``run.log``; return the log's path."""
    path = run_dir / LOG_FILE
    text = "".join(traceback.format_exception(error))
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"{report.timestamp()} the run failed:\n{text}\n")
    return path


def best_effort(action: Callable[[], object], what: str) -> None:
    """Run a cleanup step; a failure is logged and does not hide the run's own error."""
    try:
        action()
    except Exception as error:  # cleanup must go on whatever broke
        log.warning("could not %s: %s", what, describe(error))


Abort = Callable[[str, str], None]


@contextmanager
def guarded(run_dir: Path, abort: Abort) -> Iterator[None]:
    """Hold the run's lock; on any exception call ``abort(status, one_line_cause)`` and re-raise.

    ``status`` is ``killed`` after a signal and ``failed`` otherwise. Errors the
    user can fix (``RetentionLabError``) are re-raised unchanged, a signal as
    ``RunInterrupted``, anything else as ``RunCrashed`` once its traceback is in
    ``run.log``.
    """
    lock = _lock(run_dir, blocking=True)
    try:
        yield
    except RunInterrupted as interrupt:
        best_effort(stop_children, "stop the stage kernel")
        abort("killed", f"stopped by {interrupt.signal_name}")
        raise
    except RetentionLabError as error:
        abort("failed", str(error))
        raise
    except Exception as error:
        log_file = run_dir / LOG_FILE
        crash = error
        best_effort(lambda: write_traceback(run_dir, crash), "write run.log")
        abort("failed", f"internal error: {describe(error)} (traceback in {log_file})")
        raise RunCrashed(run_dir=run_dir, cause=error, log_file=log_file) from error
    finally:
        lock.close()


KILLED_WITHOUT_A_WORD = (
    "the run stopped without a word (SIGKILL, out of memory or power loss); "
    "found by a later command at {found}"
)


def _close_dead_run(run_dir: Path, record: dict) -> None:
    found = report.timestamp()
    stages = []
    for stage in record.get("stages") or []:
        if isinstance(stage, dict) and stage.get("status") == "running":
            partial = sorted((run_dir / str(stage.get("stage"))).glob("*.ipynb"))
            notebook = str(partial[0].relative_to(run_dir)) if partial else None
            stage = {**stage, "status": "killed", "notebook": notebook}
        stages.append(stage)
    error = KILLED_WITHOUT_A_WORD.format(found=found)
    report.write_run_record(
        run_dir, {**record, "status": "killed", "stages": stages, "error": error}
    )
    best_effort(lambda: report.render_run_index(run_dir), f"render {run_dir / 'index.html'}")
    run_id, uri = record.get("mlflow_run_id"), _tracking_uri_of(run_dir)
    if run_id and uri:
        best_effort(
            lambda: tracking.close_run_tree(uri, run_id, status="KILLED"),
            f"mark MLflow run {run_id} KILLED",
        )
    log.warning("run %s had died; marked killed", run_dir.name)


def _tracking_uri_of(run_dir: Path) -> str | None:
    import yaml

    from retention_lab.runner import RUN_CONFIG_FILE

    path = run_dir / RUN_CONFIG_FILE
    try:
        config = yaml.safe_load(path.read_text())
        return config["tracking"]["tracking_uri"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None


def close_dead_runs(reports_dir: Path) -> list[Path]:
    """Mark ``killed`` every run under ``reports_dir`` recorded as running whose process is gone.

    Returns the run folders closed. Unreadable records are left alone.
    """
    closed = []
    folders = sorted(p for p in reports_dir.iterdir() if p.is_dir()) if reports_dir.is_dir() else []
    for folder in folders:
        record = report.read_run_record(folder)
        if record is None or record.get("status") != "running" or is_alive(folder):
            continue
        try:
            _close_dead_run(folder, record)
        except OSError as error:
            log.warning("could not close the dead run %s: %s", folder.name, describe(error))
            continue
        closed.append(folder)
    return closed
