"""MLflow helpers: the only module that imports mlflow.

Everything goes through ``MlflowClient`` with explicit run ids, so no global
"active run" state leaks between the runner and the stage notebooks (which run
in their own kernels). The local default store is sqlite under ``mlruns/``
with artifacts in ``mlruns/artifacts``; ``MLFLOW_TRACKING_URI`` points a team at
a shared server instead.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import re
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from retention_lab.config import SQLITE, artifact_root_for
from retention_lab.errors import TrackingError

log = logging.getLogger(__name__)
# MLflow's advice when a model is logged, printed on every run's terminal: an input example
# (the logged models carry a signature, which fixes their input) and integer columns (the
# scorers' integer inputs are counts, never missing). Only warnings with these two texts.
for _advice in (".*input example was not provided", ".*schema contains integer column"):
    warnings.filterwarnings("ignore", message=_advice, category=UserWarning)

PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_LENGTH = 6000
MAX_NAME_LENGTH = 250
_NAME_OUTSIDE_MLFLOW = re.compile(r"[^\w.\- :/]|\.{2,}|^/+|/{2,}|/$")


def name_for_mlflow(name: str) -> str:
    """A metric, parameter or tag name MLflow accepts: other characters become ``_``.

    Names built from data (an instrument called ``<b>discount</b>``) must not
    fail a stage; the same name always maps to the same key.
    """
    return _NAME_OUTSIDE_MLFLOW.sub("_", str(name))[:MAX_NAME_LENGTH]


MAX_REASON_LENGTH = 300


@contextmanager
def _store_lock(tracking_uri: str) -> Iterator[None]:
    """Serialise the opening of a local sqlite store between processes.

    MLflow creates and migrates its tables when a process first opens a store;
    runs started at once on a fresh store would otherwise race ("duplicate
    column name"). A remote store needs no lock.
    """
    if not tracking_uri.startswith(SQLITE):
        yield
        return
    database = Path(tracking_uri[len(SQLITE) :])
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# MLflow 3's UI opens an experiment on the page its kind asks for; a model-development
# experiment opens on its runs table (without the tag the UI guesses, and may show the
# GenAI overview)
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def _client(tracking_uri: str):
    import mlflow
    from mlflow.tracking import MlflowClient

    logging.getLogger("alembic").setLevel(logging.WARNING)
    # stage tables are small: a progress bar per download only clutters the notebooks
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(tracking_uri)
    with _store_lock(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri)
        client.search_experiments(max_results=1)  # opens (and on first use creates) the store
    return client


def open_store(tracking_uri: str) -> None:
    """Open the tracking store once, turning any failure into a ``TrackingError``."""
    try:
        _client(tracking_uri)
    except Exception as error:  # a bad URI, an unreachable server, a corrupt database
        reason = " ".join(str(error).split())[:MAX_REASON_LENGTH] or type(error).__name__
        raise TrackingError(uri=tracking_uri, reason=reason) from None


def ensure_experiment(name: str, tracking_uri: str) -> str:
    """Return the id of experiment ``name``, creating it (with the project's artifact root).

    Two runs may create the same experiment at once; the loser reads the winner's.
    """
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(
                name, artifact_location=artifact_root_for(tracking_uri), tags=EXPERIMENT_TAGS
            )
        except MlflowException:  # created meanwhile by a run started at the same time
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    for key, value in EXPERIMENT_TAGS.items():
        if experiment.tags.get(key) != value:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def start_run(
    tracking_uri: str,
    experiment: str,
    *,
    run_name: str,
    tags: Mapping[str, str] | None = None,
    parent_run_id: str | None = None,
) -> str:
    """Create a run (a child run when ``parent_run_id`` is given) and return its id."""
    client = _client(tracking_uri)
    experiment_id = ensure_experiment(experiment, tracking_uri)
    all_tags = dict(tags or {})
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    return run.info.run_id


def end_run(tracking_uri: str, run_id: str, *, succeeded: bool) -> None:
    """Mark a run FINISHED or FAILED."""
    _client(tracking_uri).set_terminated(run_id, status="FINISHED" if succeeded else "FAILED")


def close_run_tree(tracking_uri: str, run_id: str, *, status: str) -> None:
    """End a run and every child still RUNNING with ``status`` (FAILED or KILLED)."""
    client = _client(tracking_uri)
    for child in child_runs(tracking_uri, run_id):
        if child.info.status == "RUNNING":
            client.set_terminated(child.info.run_id, status=status)
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, status=status)


def log_params(tracking_uri: str, run_id: str, params: Mapping[str, object]) -> None:
    """Log parameters (values cut to MLflow's length limit)."""
    from mlflow.entities import Param

    batch = [Param(name_for_mlflow(k), str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()]
    _client(tracking_uri).log_batch(run_id, params=batch)


def log_metrics(tracking_uri: str, run_id: str, metrics: Mapping[str, float]) -> None:
    """Log finite numeric metrics; NaN and infinite values are skipped with a log line."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = []
    for key, value in metrics.items():
        value = float(value)
        if math.isfinite(value):
            batch.append(Metric(name_for_mlflow(key), value, now, 0))
        else:
            log.info("metric %s is %s and is not logged", key, value)
    _client(tracking_uri).log_batch(run_id, metrics=batch)


def set_tags(tracking_uri: str, run_id: str, tags: Mapping[str, str]) -> None:
    """Set tags on a run."""
    client = _client(tracking_uri)
    for key, value in tags.items():
        client.set_tag(run_id, name_for_mlflow(key), str(value))


def log_artifact(
    tracking_uri: str, run_id: str, path: str | Path, artifact_path: str | None = None
) -> None:
    """Upload a file or a folder as an artifact."""
    client = _client(tracking_uri)
    path = Path(path)
    if path.is_dir():
        client.log_artifacts(run_id, str(path), artifact_path)
    else:
        client.log_artifact(run_id, str(path), artifact_path)


def log_figure(tracking_uri: str, run_id: str, figure, name: str) -> None:
    """Log a matplotlib figure as ``figures/<name>``."""
    _client(tracking_uri).log_figure(run_id, figure, f"figures/{name}")


def log_pyfunc(
    tracking_uri: str,
    run_id: str,
    data: bytes,
    name: str,
    *,
    loader_module: str,
    input_example,
    output_example,
) -> str:
    """Log ``data`` as a pyfunc model ``models/<name>`` loaded by ``loader_module``; return its URI.

    ``loader_module._load_pyfunc(path)`` turns the stored bytes back into a model
    with ``predict(frame)``. The model is saved locally and uploaded as artifacts
    (no active MLflow run is opened).
    """
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    client = _client(tracking_uri)
    signature = infer_signature(input_example, output_example)
    with tempfile.TemporaryDirectory() as tmp:
        data_path = Path(tmp) / "model.pkl"
        data_path.write_bytes(data)
        model_dir = Path(tmp) / name
        mlflow.pyfunc.save_model(
            str(model_dir),
            loader_module=loader_module,
            data_path=str(data_path),
            signature=signature,
            pip_requirements=["retention_lab"],
        )
        client.log_artifacts(run_id, str(model_dir), f"models/{name}")
    return f"runs:/{run_id}/models/{name}"


def spark_udf(spark, model_uri: str, result_type: str):
    """``mlflow.pyfunc.spark_udf`` of a model, run in the executors' own Python environment."""
    import mlflow.pyfunc

    return mlflow.pyfunc.spark_udf(spark, model_uri, result_type=result_type, env_manager="local")


def run_status(tracking_uri: str, run_id: str) -> str:
    """The status of a run (RUNNING, FINISHED, FAILED)."""
    return _client(tracking_uri).get_run(run_id).info.status


def child_runs(tracking_uri: str, parent_run_id: str) -> list:
    """The child runs of a parent run."""
    client = _client(tracking_uri)
    parent = client.get_run(parent_run_id)
    return client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'"
    )


# ------------------------------------------------------------------ reading history
PIPELINE_KIND_TAG = "retention_lab.kind"
# a rerun (kind "rerun") names the run it repeats: it sees that run's history, and is no
# part of any later run's history
RERUN_OF_TAG = "retention_lab.rerun_of"


def parent_of(tracking_uri: str, run_id: str) -> str | None:
    """The parent run id of a (stage) run, or ``None`` for a top-level run."""
    return _client(tracking_uri).get_run(run_id).data.tags.get(PARENT_TAG)


def run_summary(tracking_uri: str, run_id: str) -> dict:
    """One run as a dict: run_id, experiment_id, status, start_time (ms), tags, metrics, params."""
    run = _client(tracking_uri).get_run(run_id)
    return _as_dict(run)


def _as_dict(run) -> dict:
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "status": run.info.status,
        "start_time": run.info.start_time,
        "tags": dict(run.data.tags),
        "metrics": dict(run.data.metrics),
        "params": dict(run.data.params),
    }


def earlier_pipeline_runs(
    tracking_uri: str, run_id: str, *, max_runs: int = 10, status: str = "FINISHED"
) -> list[dict]:
    """Finished pipeline runs of ``run_id``'s experiment that started before it, newest first.

    ``run_id`` is a pipeline (parent) run; only runs tagged
    ``retention_lab.kind=pipeline`` with ``status`` count. A rerun sees the runs
    that started before the run it repeats. Each run is a dict as in ``run_summary``.
    """
    client = _client(tracking_uri)
    current = client.get_run(run_id)
    before = _start_of_original(client, current)
    runs = client.search_runs(
        [current.info.experiment_id],
        filter_string=(
            f"tags.`{PIPELINE_KIND_TAG}` = 'pipeline' and attributes.status = '{status}' "
            f"and attributes.start_time < {before}"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=max_runs,
    )
    return [_as_dict(run) for run in runs if run.info.run_id != run_id]


def _start_of_original(client, run) -> int:
    """When the run that ``run`` repeats started (``run``'s own start if it is no rerun).

    A rerun of a run from another store (its id unknown here) starts its own history.
    """
    from mlflow.exceptions import MlflowException

    rerun_of = run.data.tags.get(RERUN_OF_TAG)
    if rerun_of:
        try:
            return client.get_run(rerun_of).info.start_time
        except MlflowException:
            log.warning(
                "run %s repeats run %s, which this store does not hold", run.info.run_id, rerun_of
            )
    return run.info.start_time


def stage_runs(tracking_uri: str, parent_run_id: str) -> dict[str, dict]:
    """The stage (child) runs of a pipeline run by stage name, each as in ``run_summary``."""
    out = {}
    for run in child_runs(tracking_uri, parent_run_id):
        stage = run.data.tags.get("stage")
        if stage:
            out[stage] = _as_dict(run)
    return out


def read_table(tracking_uri: str, run_id: str, name: str):
    """The table a stage saved (artifact ``tables/<name>.parquet``), or ``None`` if absent."""
    import pandas as pd
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        present = {a.path for a in client.list_artifacts(run_id, "tables")}
    except MlflowException:
        return None
    if f"tables/{name}.parquet" not in present:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, f"tables/{name}.parquet", tmp)
        return pd.read_parquet(path)
