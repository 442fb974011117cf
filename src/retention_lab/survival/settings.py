"""The survival stage's settings: the ``survival`` section of a run configuration."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from retention_lab.settings import Settings


class SurvivalSettings(Settings):
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

    def fast(self) -> SurvivalSettings:
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


# the defaults of the stage's functions' keywords are these, written once above
DEFAULTS = SurvivalSettings()
