"""Project paths and the validated run configuration.

Paths have one owner: every folder the workbench reads or writes is named
here. The run configuration is a tree of pydantic models with
``extra="forbid"``; ``load_config`` turns YAML and validation failures into a
``ConfigError`` that names the file and the key path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from retention_lab.data.sources import DataConfig, TableSource
from retention_lab.errors import ConfigError

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


def default_tracking_uri() -> str:
    """Return ``MLFLOW_TRACKING_URI`` if set, else the project's local sqlite store."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        check_no_password(uri, file="MLFLOW_TRACKING_URI", key="")
    return uri or f"sqlite:///{MLRUNS_DIR / 'mlflow.db'}"


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
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    db_path = Path(tracking_uri[len(prefix) :])
    return (db_path.parent / "artifacts").resolve().as_uri()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # what a smoke run (``retention-lab run --fast``) shrinks: field -> its value there
    FAST: ClassVar[dict[str, Any]] = {}

    def fast(self):
        """These settings as a smoke run uses them: ``FAST`` over the configured values."""
        return self.model_copy(update=self.FAST)


class TrackingConfig(_Section):
    """MLflow experiment of the run."""

    experiment: str = Field("retention-lab", description="MLflow experiment the runs are logged to")
    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI; default MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db",
    )


class RunnerConfig(_Section):
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


class SurvivalConfig(_Section):
    """Survival analysis of customer tenure (stage 01_survival): ``survival.analyse``'s settings."""

    # a smoke run caps every model sample at a few thousand customers
    FAST: ClassVar[dict[str, Any]] = dict.fromkeys(
        (
            "max_cox_customers",
            "max_problem_customers",
            "max_aft_customers",
            "max_ph_customers",
            "max_validation_customers",
        ),
        5_000,
    )

    def fast(self) -> SurvivalConfig:
        """A smoke run's settings: each model sample capped at ``FAST`` (a smaller cap stays)."""
        return self.model_copy(
            update={key: min(getattr(self, key) or cap, cap) for key, cap in self.FAST.items()}
        )

    covariates: list[str] = Field(
        ["segment", "plan", "channel", "age", "data_usage_gb"],
        description="Customer columns in the Cox and AFT models (categorical or numeric)",
    )
    strata: list[str] = Field(
        ["contract"], description="Columns that get their own baseline hazard (non-proportional)"
    )
    groups: list[str] = Field(
        ["segment", "contract", "signup_cohort"],
        description="Columns for Kaplan-Meier curves, log-rank tests, RMST (signup_cohort = year)",
    )
    horizons_months: list[float] = Field(
        [3, 6, 12, 24], description="Tenures at which retention and the Brier score are reported"
    )
    horizons: list[float] | None = Field(
        None,
        description="The same tenures in the declared data.tenure_unit (e.g. [30, 90, 365] for "
        "days); replaces horizons_months when given",
    )
    score_horizon_months: float = Field(
        12.0, gt=0, description="Planning horizon of the churn scores of active customers, months"
    )
    rmst_months: float = Field(
        24.0, gt=0, description="Horizon of the restricted mean tenure, months"
    )
    problem_window_days: float = Field(
        91.0, gt=0, description="Days a problem event raises the churn hazard after its date"
    )
    hazard_bandwidth_months: float = Field(
        1.0, gt=0, description="Kernel bandwidth of the smoothed hazard over tenure, months"
    )
    test_share: float = Field(
        0.3, gt=0, lt=1, description="Share of customers held out for validation"
    )
    max_cox_customers: int | None = Field(
        200_000, gt=0, description="Random sample size for the Cox model (None = all customers)"
    )
    max_problem_customers: int | None = Field(
        300_000, gt=0, description="Random sample size for the time-varying problem model"
    )
    max_aft_customers: int | None = Field(
        30_000, gt=0, description="Random sample size for the parametric AFT models"
    )
    max_ph_customers: int | None = Field(
        20_000, gt=0, description="Random sample size for the proportional-hazards test"
    )
    max_validation_customers: int | None = Field(
        200_000, gt=0, description="Customers drawn for the train/test validation"
    )


RENEWAL_COLUMNS = ("cohort", "period", "customers")


class ExportSource(TableSource):
    """A table a stage reads itself (a campaign export, renewal counts), mapped by ``columns``."""

    canonical: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _known_columns(self) -> ExportSource:
        unknown = sorted(set(self.columns) - set(self.canonical))
        if unknown:
            raise ValueError(
                f"columns: unknown canonical name {unknown[0]!r} (use {list(self.canonical)})"
            )
        return self


class RenewalSource(ExportSource):
    """A table of customers alive at the start of each renewal period, one or more cohorts.

    ``columns`` maps the canonical names ``cohort``, ``period`` (0, 1, 2, ...)
    and ``customers`` (alive at the period's start) to the table's columns and
    ``values`` maps its labels, exactly as for the customers table.
    """

    canonical: ClassVar[tuple[str, ...]] = RENEWAL_COLUMNS
    period_months: float = Field(
        12.0,
        gt=0,
        description="Length of one renewal period in months (12: yearly contracts); the "
        "annual discount rate is converted to it and DERL is in periods",
    )


class ClvConfig(_Section):
    """Customer lifetime value (stage 03_clv): ``clv.analyse``'s settings."""

    FAST: ClassVar[dict[str, Any]] = {
        "max_survival_customers": 20_000,
        "max_transaction_customers": 20_000,
    }

    def fast(self) -> ClvConfig:
        """A smoke run's settings: smaller samples and only the first repeat-purchase model."""
        return super().fast().model_copy(update={"transaction_models": self.transaction_models[:1]})

    discount_rate: float = Field(
        0.10, ge=0, lt=1, description="Annual discount rate of future margins, in [0, 1)"
    )
    horizon_months: int = Field(
        60, gt=0, le=240, description="Months ahead summed in every lifetime value"
    )
    margin: float = Field(
        0.60, gt=0, le=1, description="Gross margin: share of a fee or purchase amount kept"
    )
    survival_model: Literal["cox", "weibull_aft"] = Field(
        "cox",
        description="Model of tenure behind the contractual value when fitted here "
        "(cox: Cox model with a baseline per stratum; weibull_aft: Weibull AFT)",
    )
    covariates: list[str] = Field(
        ["segment", "plan", "channel", "age", "data_usage_gb"],
        description="Customer columns of the survival model (those missing are left out)",
    )
    strata: list[str] = Field(
        ["contract"], description="Columns with their own baseline hazard in the Cox model"
    )
    risk_horizon_months: float = Field(
        12.0, gt=0, description="Horizon of the churn probability behind the value at risk, months"
    )
    use_survival_scores: bool = Field(
        True,
        description="Take the churn probability from the survival stage's scores when present",
    )
    max_survival_customers: int | None = Field(
        200_000, gt=0, description="Random sample size for fitting the survival model"
    )
    non_contractual: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Fit the repeat-purchase models to the transactions: auto = only when the "
        "customers carry no subscription (no monthly fee), always, or never",
    )
    transaction_models: list[Literal["bg_nbd", "pareto_nbd"]] = Field(
        ["bg_nbd", "pareto_nbd"],
        description="Repeat-purchase models fitted when transactions exist (first = headline)",
    )
    priors: Literal["flat", "default"] = Field(
        "flat",
        description="Priors of the probabilistic models: flat (MAP = maximum likelihood) "
        "or pymc-marketing's defaults",
    )
    time_unit_days: float = Field(
        7.0, gt=0, description="Length of the time unit of recency, T and purchase rates, days"
    )
    holdout_months: int = Field(
        6, ge=1, description="Months at the end of the transaction log held out for the check"
    )
    max_transaction_customers: int | None = Field(
        200_000, gt=0, description="Random sample size for fitting the repeat-purchase models"
    )
    renewals: RenewalSource | None = Field(
        None,
        description="A table of customers alive per renewal period (cohort, period, customers) "
        "fitted with the shifted-beta-geometric model instead of the customers' one-year "
        "contracts; its path is taken from the configuration's folder",
    )


class MonitorConfig(_Section):
    """Run-over-run monitoring (stage 05_monitoring): ``monitor.analyse``'s settings."""

    n_runs: int = Field(
        6, ge=2, le=50, description="Runs in the trend, the current one included (at least 2)"
    )
    alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="Family-wise false-alarm rate per run: Holm-corrected significance level",
    )
    psi_threshold: float = Field(
        0.1,
        ge=0,
        description="Population stability index an input distribution needs to be flagged",
    )
    max_untested_change: float = Field(
        0.25,
        gt=0,
        description="Relative change above which a quantity without a CI is listed (not flagged)",
    )
    recent_months: float = Field(
        6.0,
        gt=0,
        description="Window before as_of for problem rates and the churn-reason mix, months",
    )
    features: list[str] = Field(
        ["segment", "plan", "contract", "channel", "monthly_fee", "age", "data_usage_gb"],
        description="Customer columns whose distribution (active customers) is compared by PSI",
    )


CAMPAIGN_COLUMNS = ("customer_id", "treatment", "outcome", "assignment")


class CampaignSource(ExportSource):
    """A campaign export: where it is, how its columns and values map, what kind of data it is.

    ``columns`` maps the canonical names ``customer_id``, ``treatment``,
    ``outcome`` and ``assignment`` to the export's columns and ``values`` maps
    the export's values, exactly as for the customers table.
    """

    canonical: ClassVar[tuple[str, ...]] = CAMPAIGN_COLUMNS
    control: str | int | float | bool = Field(
        "control",
        description="Label of the control arm (after values:), compared by value: 0 finds 0.0",
    )
    outcome_type: Literal["binary", "continuous"] = Field(
        "binary",
        description="binary (0/1, true/false: kept or not) or continuous (revenue, spend...): "
        "effects are in the outcome's unit",
    )
    assignment: Literal["randomised", "observational", "mixed"] = Field(
        "randomised",
        description="How arms were given: randomised (every row), observational (chosen by "
        "staff or a rule: adjusted estimates), mixed (an assignment column says random or rule)",
    )
    features: list[str] | None = Field(
        None, description="Covariate columns (None = every column not mapped above)"
    )

    @model_validator(mode="after")
    def _mixed_has_a_column(self) -> CampaignSource:
        if self.assignment == "mixed" and "assignment" not in self.columns:
            raise ValueError(
                "assignment mixed needs columns: {assignment: <your column>} (random or rule)"
            )
        return self


class UpliftConfig(_Section):
    """Uplift modelling of instruments (stage 02_uplift): ``uplift.analyse``'s settings."""

    FAST: ClassVar[dict[str, Any]] = {
        "max_iter": 40,
        "learning_rate": 0.15,
        "folds": 2,
        "n_bootstrap": 40,
        "max_train_cases": 20_000,
    }

    horizon_months: int = Field(
        6,
        ge=1,
        le=24,
        description="Outcome horizon: retained = still a customer this many months "
        "after the case (the simulator's outcome_horizon_months)",
    )
    features: list[str] | None = Field(
        None,
        description="Covariates of the learners and the propensity model (None = tenure at the "
        "case, customer covariates, problem_type, severity; those present)",
    )
    learners: list[Literal["s", "t", "x", "dr"]] = Field(
        ["s", "t", "x", "dr"], min_length=1, description="Meta-learners fitted (causalml)"
    )
    max_iter: int = Field(100, gt=0, description="Boosting rounds of the gradient-boosted models")
    learning_rate: float = Field(0.05, gt=0, le=1, description="Learning rate of the base models")
    max_leaf_nodes: int = Field(8, ge=2, description="Leaves per tree of the base models")
    min_samples_leaf: int = Field(200, ge=1, description="Fewest cases per leaf of the base models")
    l2_regularization: float = Field(1.0, ge=0, description="L2 penalty of the base models")
    folds: int = Field(
        3, ge=2, le=10, description="Cross-fitting folds (nuisance models and learner bagging)"
    )
    test_share: float = Field(
        0.5, gt=0, lt=1, description="Share of the randomised cases held out to evaluate learners"
    )
    n_bootstrap: int = Field(200, ge=10, description="Bootstrap replicates of the Qini/AUUC bands")
    trim_bounds: tuple[float, float] = Field(
        (0.01, 0.99),
        description="Common support: rule-assigned cases with a propensity outside these bounds "
        "for any arm are trimmed; the rest are clipped to them",
    )
    min_cell_cases: int = Field(
        20, ge=2, description="Fewest cases of an instrument (and the control) per effect cell"
    )
    hazard_window_months: float = Field(
        3.0,
        gt=0,
        description="Follow-up after a case for the instrument hazard ratios: the months in "
        "which an instrument acts",
    )
    recent_months: float = Field(
        6.0,
        gt=0,
        description="Recent cases for the instrument hazard ratios: the last months of cases "
        "whose outcome is observed (compared with the earlier cases and by the monitor)",
    )
    max_train_cases: int | None = Field(
        200_000, gt=0, description="Random sample size for fitting the learners (None = all)"
    )
    threads: int = Field(
        1, ge=1, description="OpenMP threads per model fit (1 avoids oversubscribing busy hosts)"
    )
    campaign: CampaignSource | None = Field(
        None,
        description="A campaign export (one row per customer: treatment, outcome, covariates) "
        "analysed instead of the interventions table; its path is taken from the "
        "configuration's folder",
    )

    @model_validator(mode="before")
    @classmethod
    def _flat_campaign_keys(cls, raw: Any) -> Any:
        """Read the earlier flat ``campaign_*`` keys into the ``campaign`` section."""
        if not isinstance(raw, dict) or not any(k in raw for k in _FLAT_CAMPAIGN_KEYS):
            return raw
        raw = dict(raw)
        if raw.get("campaign") is not None:
            raise ValueError("give the campaign export either as campaign: or as campaign_* keys")
        flat = {k: raw.pop(k) for k in _FLAT_CAMPAIGN_KEYS if k in raw}
        if flat.get("campaign_file") is None:
            return raw
        columns = {
            canonical: flat[key]
            for key, canonical in _FLAT_CAMPAIGN_KEYS.items()
            if canonical in CAMPAIGN_COLUMNS and flat.get(key) is not None
        }
        campaign: dict[str, Any] = {"path": flat["campaign_file"], "columns": columns}
        for key in ("control", "features"):
            if flat.get(f"campaign_{key}") is not None:
                campaign[key] = flat[f"campaign_{key}"]
        if flat.get("campaign_assignment_col") is not None:
            campaign["assignment"] = "mixed"
        raw["campaign"] = campaign
        return raw


# the flat keys of earlier configurations -> canonical campaign columns (or section keys)
_FLAT_CAMPAIGN_KEYS = {
    "campaign_file": "path",
    "campaign_treatment_col": "treatment",
    "campaign_outcome_col": "outcome",
    "campaign_control": "control",
    "campaign_id_col": "customer_id",
    "campaign_features": "features",
    "campaign_assignment_col": "assignment",
}


class PlanConfig(_Section):
    """Retention plan (stage 04_plan): ``plan.analyse``'s settings."""

    FAST: ClassVar[dict[str, Any]] = {"bootstrap": 30, "budget_curve_points": 6}

    budget: float = Field(
        20_000.0, ge=0, description="Total retention budget for the plan, in currency units"
    )
    capacities: dict[str, int] = Field(
        {},
        description="Most customers an instrument may be given to (e.g. personal_manager: 200); "
        "instruments not listed are unlimited",
    )
    costs: dict[str, float] = Field(
        {},
        description="Cost per customer of an instrument, overriding the cost estimated from the "
        "interventions table (fixed part + multiple of the monthly fee)",
    )
    horizon_months: int = Field(
        6, ge=1, le=24, description="Horizon of the retention outcome the instruments are judged on"
    )
    open_problem_days: float = Field(
        91.0,
        gt=0,
        description="A customer whose latest problem is at most this many days old has an open "
        "problem and is a candidate for an instrument",
    )
    value_basis: Literal["value", "residual_value"] = Field(
        "value",
        description="Column of the clv stage's values table worth saving: a retained customer "
        "keeps this value",
    )
    effects_source: Literal["auto", "uplift", "model"] = Field(
        "auto",
        description="Where the effect of each instrument on each customer comes from: uplift = "
        "the uplift stage's effects table (error if missing), model = the plan's own model fitted "
        "on the randomised cases, auto = uplift when present, else model",
    )
    effect_model_c: float = Field(
        1.0, gt=0, description="Inverse L2 penalty of the plan's logistic effect model"
    )
    min_probability: float = Field(
        0.95,
        ge=0,
        lt=1,
        description="The plan's risk rule: give an instrument only where the probability that "
        "its net value (retention gain x customer value - cost) is positive is at least this",
    )
    baselines: list[Literal["status_quo", "highest_risk", "best_single", "random", "nothing"]] = (
        Field(
            ["status_quo", "highest_risk", "best_single", "random", "nothing"],
            description="Targeting rules the plan is compared with at the same budget (and, on "
            "simulated data, the oracle that knows the true effects)",
        )
    )
    bootstrap: int = Field(
        200, ge=10, description="Bootstrap resamples behind the confidence intervals"
    )
    randomised_arm_probability: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Known probability of each arm in the randomised cases "
        "(default 1 / number of arms seen there)",
    )
    exact_max_customers: int = Field(
        20_000,
        ge=0,
        description="Solve the allocation exactly (integer program) up to this many candidates; "
        "above, the linear relaxation is rounded and the gap to its bound is reported",
    )
    budget_curve_points: int = Field(
        12, ge=2, le=100, description="Budgets on the budget curve, from zero to twice the budget"
    )


class ReportConfig(_Section):
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


class RunConfig(_Section):
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
    data: DataConfig = Field(default_factory=DataConfig, description="Data source")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="MLflow tracking")
    runner: RunnerConfig = Field(default_factory=RunnerConfig, description="Notebook execution")
    survival: SurvivalConfig = Field(
        default_factory=SurvivalConfig, description="Survival analysis of customer tenure"
    )
    clv: ClvConfig = Field(default_factory=ClvConfig, description="Customer lifetime value")
    plan: PlanConfig = Field(
        default_factory=PlanConfig, description="Retention plan: threats, instruments, budget"
    )
    uplift: UpliftConfig = Field(
        default_factory=UpliftConfig, description="Uplift modelling of retention instruments"
    )
    monitor: MonitorConfig = Field(
        default_factory=MonitorConfig, description="Run-over-run monitoring of the estimates"
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

    def stage_settings(self, stage: str, *, fast: bool = False) -> _Section:
        """A stage's section (``monitoring`` reads ``monitor``), shrunk when ``fast``."""
        section = getattr(self, "monitor" if stage == "monitoring" else stage)
        return section.fast() if fast else section

    def resolved_tracking_uri(self) -> str:
        """The tracking URI this run logs to."""
        return self.tracking.tracking_uri or default_tracking_uri()


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
