"""Project paths and the validated run configuration.

Paths have one owner: every folder the workbench reads or writes is named
here. The run configuration is a tree of pydantic models with
``extra="forbid"``; ``load_config`` turns YAML and validation failures into a
``ConfigError`` that names the file and the key path.

``RunConfig`` composes the settings model each stage package owns
(``data.DataSettings``, ``survival.SurvivalSettings``, ``uplift.UpliftSettings``,
``clv.ClvSettings``, ``plan.PlanSettings``, ``monitor.MonitorSettings``),
where each default is written once; the sections of the frame (tracking,
runner, report) are defined here. No stage package imports this module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import Field, ValidationError, model_validator

from retention_lab.clv.settings import ClvSettings
from retention_lab.data.settings import DataSettings
from retention_lab.data.sources import TableSource
from retention_lab.errors import ConfigError
from retention_lab.monitor.settings import MonitorSettings
from retention_lab.plan.settings import PlanSettings
from retention_lab.settings import Settings
from retention_lab.survival.settings import SurvivalSettings
from retention_lab.uplift.settings import UpliftSettings

PROJ_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = PROJ_ROOT / "notebooks"
CONFIGS_DIR = PROJ_ROOT / "configs"
DATA_DIR = PROJ_ROOT / "data"
REPORTS_DIR = PROJ_ROOT / "reports"
MLRUNS_DIR = PROJ_ROOT / "mlruns"
DEFAULT_CONFIG = CONFIGS_DIR / "demo.yaml"
KERNEL_NAME = "retention-lab"


def resolve_path(path: str | Path) -> Path:
    """Resolve a path a user typed.

    Absolute as given; relative from the working directory if it exists there,
    else from the project root (notebooks run in ``notebooks/`` or a run folder).
    """
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate.resolve()
    return PROJ_ROOT / candidate


SQLITE = "sqlite:///"  # the prefix of a local store's URI: sqlite:///<path of the file>


def default_tracking_uri() -> str:
    """Return ``MLFLOW_TRACKING_URI`` if set, else the project's local sqlite store."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        check_no_password(uri, file="MLFLOW_TRACKING_URI", key="")
    return uri or f"{SQLITE}{MLRUNS_DIR / 'mlflow.db'}"


def check_no_password(uri: str, *, file: str, key: str) -> None:
    """Refuse a tracking URI that carries a password (it would reach parameters and run files).

    The message names where the URI came from, never the URI itself.
    """
    if urlsplit(uri).password:
        raise ConfigError(
            file=file,
            problems=[
                (
                    key,
                    "the tracking URI carries a password: pass it through the environment "
                    "instead (PGPASSWORD or a file named by PGPASSFILE for PostgreSQL, "
                    "MLFLOW_TRACKING_PASSWORD for a server that asks for one)",
                )
            ],
        )


def artifact_root_for(tracking_uri: str) -> str | None:
    """Artifact location for new experiments: ``mlruns/artifacts`` beside a local sqlite store.

    A remote tracking server chooses its own artifact store, so ``None`` is returned there.
    """
    if not tracking_uri.startswith(SQLITE):
        return None
    db_path = Path(tracking_uri[len(SQLITE) :])
    return (db_path.parent / "artifacts").resolve().as_uri()


class TrackingConfig(Settings):
    """MLflow experiment of the run."""

    experiment: str = Field("retention-lab", description="MLflow experiment the runs are logged to")
    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI; default MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db",
    )


class RunnerConfig(Settings):
    """How the stage notebooks are executed."""

    cell_timeout_s: int = Field(1800, gt=0, description="Time limit of one notebook cell, seconds")
    kernel: str = Field(KERNEL_NAME, description="Jupyter kernel that runs the stage notebooks")
    concurrency: int | None = Field(
        None,
        ge=1,
        description=(
            "Stages run at once when neither reads the other's outputs "
            "(each in its own kernel); default: the number of cores, at most 2"
        ),
    )


class ReportConfig(Settings):
    """How the HTML reports present the run."""

    currency: str = Field(
        "USD",
        min_length=1,
        description="Currency of the money in the data, shown with every amount",
    )
    mlflow_ui_url: str = Field(
        "http://127.0.0.1:5000",
        description="Address of the MLflow UI (`make ui`) the reports link their runs to",
    )
    max_table_rows: int = Field(
        12, ge=1, description="Rows of a table shown in a report; the full table is a CSV download"
    )
    max_table_columns: int = Field(
        8, ge=1, description="Columns of a table shown in a report; the rest are in the CSV"
    )
    labels: dict[str, str] = Field(
        {},
        description="Words for model terms, covariates and data values in the reports' "
        "sentences (e.g. `segment[vip]: VIP customers`, `plan: Tariff`); others are read "
        "as `Segment: VIP`",
    )

    def wording(self) -> dict:
        """The ``currency`` and ``labels`` keywords of the stages' ``findings``."""
        return {"currency": self.currency, "labels": self.labels}


class RunConfig(Settings):
    """A whole pipeline run: data, stages, tracking and every stage's settings."""

    name: str = Field(
        ..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Short name used in folder names"
    )
    description: str = Field("", description="One sentence shown in the reports index")
    seed: int = Field(0, ge=0, description="Seed of every random choice in the run")
    stages: list[str] = Field(
        ["data"],
        min_length=1,
        description="Stages to run in order, by notebook name (00_data -> data)",
    )
    data: DataSettings = Field(default_factory=DataSettings, description="Data source")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="MLflow tracking")
    runner: RunnerConfig = Field(default_factory=RunnerConfig, description="Notebook execution")
    survival: SurvivalSettings = Field(
        default_factory=SurvivalSettings, description="Survival analysis of customer tenure"
    )
    clv: ClvSettings = Field(default_factory=ClvSettings, description="Customer lifetime value")
    plan: PlanSettings = Field(
        default_factory=PlanSettings, description="Retention plan: threats, instruments, budget"
    )
    uplift: UpliftSettings = Field(
        default_factory=UpliftSettings, description="Uplift modelling of retention instruments"
    )
    monitor: MonitorSettings = Field(
        default_factory=MonitorSettings, description="Run-over-run monitoring of the estimates"
    )
    report: ReportConfig = Field(
        default_factory=ReportConfig, description="Presentation of the HTML reports"
    )

    @model_validator(mode="after")
    def _source_none_has_an_export(self) -> RunConfig:
        if self.data.source == "none" and not self.exports():
            raise ValueError(
                "data.source none needs a campaign export (uplift.campaign) or a renewal "
                "table (clv.renewals)"
            )
        return self

    def exports(self) -> dict[str, TableSource]:
        """The tables a stage reads itself, by key path: ``uplift.campaign``, ``clv.renewals``."""
        found = {"uplift.campaign": self.uplift.campaign, "clv.renewals": self.clv.renewals}
        return {key: source for key, source in found.items() if source is not None}

    def stage_settings(self, stage: str, *, fast: bool = False) -> Settings:
        """A stage's section (``monitoring`` reads ``monitor``), shrunk when ``fast``."""
        section = getattr(self, "monitor" if stage == "monitoring" else stage)
        return section.fast() if fast else section

    def resolved_tracking_uri(self) -> str:
        """The tracking URI this run logs to; a local sqlite store by its absolute path.

        papermill runs each stage in its own folder by changing the working
        directory of the whole process, so a relative path would name another
        file while a stage runs.
        """
        uri = self.tracking.tracking_uri or default_tracking_uri()
        if uri.startswith(SQLITE) and not uri.startswith(f"{SQLITE}/"):
            return f"{SQLITE}{Path(uri[len(SQLITE) :]).resolve()}"
        return uri


def _key_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def parse_config(raw: dict[str, Any], *, file: str = "<configuration>") -> RunConfig:
    """Validate a configuration mapping; errors name ``file`` and each key path."""
    if not isinstance(raw, dict):
        raise ConfigError(file=file, problems=[("", "expected a mapping of keys at the top level")])
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            message = message.removeprefix("Value error, ")
            scalar = not isinstance(err.get("input"), dict | list)
            if err["type"] not in ("extra_forbidden", "missing") and scalar:
                message += f" (got {err.get('input')!r})"
            problems.append((_key_path(err["loc"]), message))
        raise ConfigError(file=file, problems=problems) from None
    if config.tracking.tracking_uri:
        check_no_password(config.tracking.tracking_uri, file=file, key="tracking.tracking_uri")
    return config


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML run configuration."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(file=str(path), problems=[("", "configuration file not found")])
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(file=str(path), problems=[("", f"not valid YAML: {exc}")]) from None
    config = parse_config(raw or {}, file=str(path))
    # every relative path is taken from the configuration file's folder
    folder = path.resolve().parent
    update: dict[str, Any] = {"data": config.data.resolve_paths(folder)}
    for key, source in config.exports().items():
        section, name = key.split(".")
        path = config.data.resolve_path(source.path, folder)
        resolved = update.get(section, getattr(config, section))
        update[section] = resolved.model_copy(
            update={name: source.model_copy(update={"path": path})}
        )
    return config.model_copy(update=update)


def with_as_of(config: RunConfig, as_of: str, *, file: str) -> RunConfig:
    """The same configuration observing its data at another snapshot date (``run --as-of``).

    A scheduler passes its run date, a backfill an earlier one; the result is
    validated like the file (a simulated market's window must contain the date).
    """
    raw = config.model_dump(mode="json")
    raw["data"]["as_of"] = as_of
    return parse_config(raw, file=f"{file} (--as-of)")


def dump_config(config: RunConfig, path: str | Path) -> None:
    """Write the fully resolved configuration (defaults included) as YAML."""
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


def flatten(config: RunConfig) -> dict[str, str]:
    """The configuration as flat ``a.b.c -> value`` strings, for MLflow parameters."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else key, sub)
        else:
            flat[prefix] = str(value)

    walk("", config.model_dump(mode="json"))
    return flat
