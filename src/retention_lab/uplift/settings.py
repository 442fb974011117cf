"""The uplift stage's settings: the ``uplift`` section of a run configuration."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from retention_lab.data.sources import ExportSource
from retention_lab.settings import Settings

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


class UpliftSettings(Settings):
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


# the defaults of the stage's functions' keywords are these, written once above
DEFAULTS = UpliftSettings()
