"""The lifetime-value stage's settings: the ``clv`` section of a run configuration."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from retention_lab.data.sources import ExportSource
from retention_lab.settings import Settings
from retention_lab.survival.settings import DEFAULTS as SURVIVAL

RENEWAL_COLUMNS = ("cohort", "period", "customers")


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


class ClvSettings(Settings):
    """Customer lifetime value (stage 03_clv): ``clv.analyse``'s settings."""

    FAST: ClassVar[dict[str, Any]] = {
        "max_survival_customers": 20_000,
        "max_transaction_customers": 20_000,
    }

    def fast(self) -> ClvSettings:
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
        list(SURVIVAL.covariates),  # the survival stage's defaults
        description="Customer columns of the survival model (those missing are left out)",
    )
    strata: list[str] = Field(
        list(SURVIVAL.strata),
        description="Columns with their own baseline hazard in the Cox model",
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


# the defaults of the stage's functions' keywords are these, written once above
DEFAULTS = ClvSettings()
