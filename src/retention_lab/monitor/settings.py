"""The monitoring stage's settings: the ``monitor`` section of a run configuration."""

from __future__ import annotations

from pydantic import Field

from retention_lab.settings import Settings


class MonitorSettings(Settings):
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


# the defaults of the stage's functions' keywords are these, written once above
DEFAULTS = MonitorSettings()
