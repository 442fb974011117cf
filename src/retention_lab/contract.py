"""The declared contract between stages: every table a stage saves for another.

Each ``StageOutput`` names a table, the stage that produces it, what it holds,
and its columns: a type, whether the value may be missing, and the range its
values keep. The contract is used on both sides of the seam:

- ``StageContext.save_table`` refuses a name the contract does not list; the
  table is checked against its schema (pandera) before a later stage can read
  it: at once in a notebook run interactively, and by the runner as soon as
  the stage ends in a pipeline run (the stage kernels do not import pandera,
  which costs each about a second). A table that breaks its schema fails the
  stage with an ``OutputContractError`` naming the stage, table, column and rows.
- ``read_output`` refuses a name the contract does not list, and a missing
  table's error says what it is and which stage makes it.
- the monitor compares across runs exactly the tables declared ``monitored``.

Columns a stage adds beyond its contract (a simulated run's ``true_effect``)
are kept; declared optional columns are checked only when present. An empty
table's columns take their declared types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd

from retention_lab.errors import OutputContractError

if TYPE_CHECKING:
    import pandera.pandas as pa

Kind = Literal["text", "number", "count", "flag", "date"]
_DTYPES = {"text": str, "number": float, "count": "int64", "flag": bool, "date": "datetime64[ns]"}


@dataclass(frozen=True)
class Column:
    """One column of a stage output: its kind, and the range its values keep."""

    name: str
    kind: Kind = "number"
    required: bool = True
    nullable: bool = True
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class StageOutput:
    """A table one stage saves for later stages (and for later runs, when ``monitored``)."""

    stage: str
    name: str
    description: str
    columns: tuple[Column, ...]
    # "history": the monitor compares it across runs; "current": the monitor reads this run's only
    monitored: Literal["history", "current"] | None = None

    @property
    def file(self) -> str:
        """Where it is stored in a run folder."""
        return f"{self.stage}/{self.name}.parquet"

    def schema(self) -> pa.DataFrameSchema:
        """The pandera schema of the table: types coerced, value ranges checked."""
        import pandera.pandas as pa

        columns = {}
        for column in self.columns:
            if column.low is not None and column.high is not None:
                checks = [pa.Check.in_range(column.low, column.high)]
            elif column.low is not None:
                checks = [pa.Check.ge(column.low)]
            else:
                checks = [pa.Check.le(column.high)] if column.high is not None else []
            columns[column.name] = pa.Column(
                _DTYPES[column.kind],
                checks=checks,
                nullable=column.nullable,
                required=column.required,
                coerce=True,
            )
        return pa.DataFrameSchema(columns, strict=False, name=self.file)


def _text(name: str, **kwargs) -> Column:
    return Column(name, "text", **kwargs)


def _texts(*names: str, **kwargs) -> tuple[Column, ...]:
    return tuple(_text(name, **kwargs) for name in names)


def _id(name: str = "customer_id") -> Column:
    return Column(name, "text", nullable=False)


def _share(name: str, **kwargs) -> Column:
    """A probability or a share, in [0, 1]."""
    return Column(name, "number", low=0.0, high=1.0, **kwargs)


def _count(name: str, **kwargs) -> Column:
    return Column(name, "count", nullable=False, low=0, **kwargs)


def _counts(*names: str) -> tuple[Column, ...]:
    return tuple(_count(name) for name in names)


def _positive(name: str, **kwargs) -> Column:
    return Column(name, "number", low=0.0, **kwargs)


def _positives(*names: str) -> tuple[Column, ...]:
    return tuple(_positive(name) for name in names)


def _numbers(*names: str, **kwargs) -> tuple[Column, ...]:
    return tuple(Column(name, "number", **kwargs) for name in names)


def _interval(prefix: str = "", estimate: str = "effect") -> tuple[Column, ...]:
    return _numbers(estimate, f"{prefix}lower", f"{prefix}upper")


# columns several outputs share
_HAZARD_RATIO = _positives("hazard_ratio", "hr_lower", "hr_upper")
_ARM_COUNTS = _counts("n_treated", "n_control")
_CELL = _texts("problem_type", "segment", required=False)  # the cell of an effect, when split
_ATTRIBUTABLE = _numbers("attributable_churn", "attributable_lower", "attributable_upper")


OUTPUTS: tuple[StageOutput, ...] = (
    StageOutput(
        "survival",
        "scores",
        "each active customer's churn probability within the horizon and expected remaining "
        "tenure (the plan, value and monitoring stages read it)",
        (
            _id(),
            _positive("tenure_months"),
            _positive("horizon_months", nullable=False),
            _share("p_churn_horizon", nullable=False),
            _positive("expected_remaining_months"),
        ),
    ),
    StageOutput(
        "survival",
        "hazard_ratios",
        "the Cox model's hazard ratio of every term with its 95% interval",
        (
            _text("term", nullable=False),
            *_texts("covariate", "level", "reference", "kind"),
            *_numbers("log_hazard_ratio", "log_hr_lower", "log_hr_upper"),
            _positive("se"),
            *_HAZARD_RATIO,
            _share("p_value"),
        ),
        monitored="history",
    ),
    StageOutput(
        "survival",
        "threats",
        "problem types ranked by the churn they cause (hazard ratio and attributable churn)",
        (
            _text("problem_type", nullable=False),
            *_HAZARD_RATIO,
            _positive("hazard_ratio_treated", required=False),
            _count("churned_while_active"),
            *_ATTRIBUTABLE,
            _share("share_of_churn"),
            _count("rank"),
        ),
        monitored="history",
    ),
    StageOutput(
        "uplift",
        "effects",
        "each case's estimated effect of each instrument on retention, with its cell's effect "
        "and the instrument's cost (the plan reads it)",
        (
            _id(),
            _text("instrument", nullable=False),
            _text("learner"),
            *_interval("effect_"),
            _positive("effect_std"),
            *_CELL,
            *_numbers("cell_effect", "cell_revenue_effect"),
            _positive("cost"),
        ),
    ),
    StageOutput(
        "uplift",
        "pooled_effects",
        "each instrument's effect per problem type and segment, raw and partially pooled, on "
        "retention and on the log hazard (the plan decides on it)",
        (
            *_texts("instrument", "scale", nullable=False),
            *_texts("problem_type", "segment"),
            *_numbers("raw", "raw_lower", "raw_upper", "pooled", "lower", "upper"),
            *_positives("raw_se", "pooled_sd"),
            *_ARM_COUNTS,
            *(_share(name) for name in ("shrinkage", "prob_benefit", "lfsr")),
        ),
    ),
    StageOutput(
        "uplift",
        "effect_matrix",
        "the randomised effect of each instrument per problem type and segment",
        (
            _text("instrument", nullable=False),
            *_CELL,
            *_interval(),
            *_ARM_COUNTS,
            *_numbers("revenue_effect", "cost_per_saved"),
            _text("status"),
        ),
        monitored="history",
    ),
    StageOutput(
        "uplift",
        "instrument_hazard_ratios",
        "each instrument's hazard ratio per problem type, over all cases and in the recent window",
        (
            _text("period", nullable=False),
            Column("window_start", "date"),
            Column("window_end", "date"),
            _text("problem_type"),
            _text("instrument", nullable=False),
            Column("log_hazard_ratio"),
            _positive("se"),
            *_positives("hazard_ratio", "lower", "upper"),
            *_ARM_COUNTS,
            *_counts("churned_treated", "churned_control"),
            _text("status"),
        ),
        monitored="history",
    ),
    StageOutput(
        "clv",
        "values",
        "each customer's value: residual contractual value, value at risk and, with "
        "transactions, the transactional value (the plan reads it)",
        (
            _id(),
            _text("segment", required=False),
            Column("active", "flag"),
            _positive("tenure_months"),
            *_numbers("monthly_margin", "residual_value", "value_at_risk", "value"),
            _positive("expected_months"),
            _share("p_churn"),
            _text("churn_source"),
            _share("p_alive", required=False),
            _positive("expected_purchases", required=False),
            Column("expected_spend", required=False),
            Column("transactional_value", required=False),
        ),
        monitored="history",
    ),
    StageOutput(
        "plan",
        "actions",
        "the retention plan: who gets which instrument, at what cost, for what expected value",
        (
            _id(),
            _text("instrument", nullable=False),
            *_texts("problem_type", "segment"),
            *_numbers("expected_saved_value", "expected_net_value", "value"),
            _positive("cost"),
            *_numbers("retention_gain", "gain_lower", "gain_upper"),
            _share("p_churn"),
            _text("reason"),
        ),
        monitored="current",
    ),
    StageOutput(
        "plan",
        "threats",
        "the survival stage's threats valued in money and ranked by the value their churn destroys",
        (
            _text("problem_type", nullable=False),
            *_HAZARD_RATIO,
            *_ATTRIBUTABLE,
            _share("share_of_churn"),
            *_numbers("value_per_churn", "value_lost", "value_lower", "value_upper"),
            _count("rank"),
        ),
    ),
    StageOutput(
        "monitoring",
        "input_profile",
        "this run's input profile: feature distributions, problem rates and churn by reason",
        (
            _text("section", nullable=False),
            _text("feature"),
            _text("level"),
            Column("value"),
            _positive("n"),
        ),
        monitored="history",
    ),
    StageOutput(
        "monitoring",
        "comparison",
        "every monitored quantity against earlier runs, with its test and flag",
        (
            _text("family"),
            _text("quantity", nullable=False),
            _text("group"),
            *_numbers("previous", "current", "relative_change", "z"),
            _share("p_value"),
            _share("p_holm"),
            *(
                Column(flag, "flag")
                for flag in ("ci_overlap", "tested", "flagged", "large_untested")
            ),
        ),
    ),
)

_BY_KEY: dict[tuple[str, str], StageOutput] = {(o.stage, o.name): o for o in OUTPUTS}


def declared(stage: str, name: str) -> StageOutput:
    """The contract of ``stage``'s table ``name``; an error lists what the stage may save."""
    try:
        return _BY_KEY[(stage, name)]
    except KeyError:
        known = ", ".join(o.name for o in OUTPUTS if o.stage == stage) or "no table"
        raise OutputContractError(
            stage=stage,
            table=name,
            problems=[f"no such output is declared (the {stage} stage saves: {known})"],
        ) from None


def monitored_tables(*kinds: Literal["history", "current"]) -> dict[str, tuple[str, ...]]:
    """The tables the monitor reads, by stage: across runs (``history``) or this run's only."""
    tables: dict[str, tuple[str, ...]] = {}
    for output in OUTPUTS:
        if output.monitored in kinds:
            tables[output.stage] = (*tables.get(output.stage, ()), output.name)
    return tables


def check_output(stage: str, name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its declared types, or an ``OutputContractError`` listing every breach."""
    from pandera.errors import SchemaErrors

    from retention_lab.data.schemas import problems_from

    output = declared(stage, name)
    frame = frame.reset_index(drop=True)  # rows are named by position or customer_id
    try:
        return output.schema().validate(frame, lazy=True)
    except SchemaErrors as errors:
        id_column = "customer_id" if "customer_id" in frame.columns else ""
        problems = problems_from(errors, frame, file=output.file, id_column=id_column)
        raise OutputContractError(stage=stage, table=name, problems=problems) from None


def check_saved(run_dir: str | Path, stage: str, names: Sequence[str]) -> None:
    """Check the tables ``stage`` saved in a run folder; store any whose types were coerced.

    A partitioned table (scores Spark wrote as a folder, possibly larger than
    memory) is not read back: Spark wrote it from a checked scorer.
    """
    for name in names:
        path = Path(run_dir) / stage / f"{name}.parquet"
        if path.is_dir():
            continue
        frame = pd.read_parquet(path)
        checked = check_output(stage, name, frame)
        if not checked.dtypes.equals(frame.dtypes):
            checked.to_parquet(path, index=False)
