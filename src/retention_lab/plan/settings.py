"""The plan stage's settings: the ``plan`` section of a run configuration."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from retention_lab.settings import Settings


class PlanSettings(Settings):
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


# the defaults of the stage's functions' keywords are these, written once above
DEFAULTS = PlanSettings()
