"""Scoring every customer at scale: fitted models as MLflow pyfunc models, applied in Spark.

The survival, uplift and value stages fit their models on the driver (on all
customers or a stated sample). A *scorer* wraps one fitted model with the
function that scores a pandas frame of customers (``score``: one output row
per input row, as ``spark_udf`` needs) and knows the table the stage builds
with it in process (``in_process``), which the Spark output reproduces:

- ``SurvivalScorer``: ``survival.score_active`` (churn risk within the horizon),
- ``UpliftScorer``: ``UpliftModel.predict_effects`` (every instrument's effect),
- ``ValueScorer``: ``clv.residual_values`` (discounted residual value).

``log_scorer`` logs a scorer as an MLflow pyfunc model (this module is its
loader); ``score_in_spark`` loads it with ``mlflow.pyfunc.spark_udf`` and scores every
row of a Spark DataFrame inside the executors, writing the scores as Parquet
partitioned by snapshot date (``<output>/as_of=YYYY-MM-DD/``) under the name
the plan stage reads (``survival/scores.parquet``, ``clv/values.parquet``,
``uplift/effects.parquet``; ``StageContext.read_output`` reads such a folder).
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from retention_lab import tracking
from retention_lab.clv.contractual import monthly_margin, residual_values
from retention_lab.survival.scores import score_active
from retention_lab.units import Z95

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkFrame

    from retention_lab.clv.contractual import LifelinesTenureModel
    from retention_lab.survival.regression import CoxResult
    from retention_lab.uplift.learners import UpliftModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SurvivalScorer:
    """Churn risk of active customers within ``horizon_months`` from a fitted Cox model.

    In process: ``survival.score_active`` (the survival stage's ``scores`` table).
    """

    cox: CoxResult
    horizon_months: float = 12.0

    @property
    def input_columns(self) -> list[str]:
        """Customer columns the scorer reads."""
        covariates = list(dict.fromkeys(self.cox.design.terms["covariate"]))
        return ["customer_id", "tenure_months", *covariates, *self.cox.strata]

    @property
    def output_columns(self) -> list[str]:
        """Score columns, in order (all floating point)."""
        return ["tenure_months", "horizon_months", "p_churn_horizon", "expected_remaining_months"]

    def in_process(self, customers: pd.DataFrame) -> pd.DataFrame:
        """The scores table, each customer scored as active at its tenure."""
        active = customers.reset_index(drop=True).assign(churned=False)
        return score_active(self.cox, active, horizon_months=self.horizon_months)

    def score(self, customers: pd.DataFrame) -> pd.DataFrame:
        """One row of scores per customer."""
        return self.in_process(customers)[self.output_columns]

    def table(self, scored: SparkFrame) -> SparkFrame:
        """The Spark rows of the scores table (``customer_id`` and the score columns)."""
        return scored


@dataclass(frozen=True)
class ValueScorer:
    """Discounted residual value of each customer given the tenure survived.

    In process: ``clv.residual_values`` with the margin from the monthly fee.
    """

    tenure_model: LifelinesTenureModel
    margin: float = 0.6
    discount_rate: float = 0.10
    horizon_months: int = 60
    risk_horizon_months: float = 12.0

    @property
    def input_columns(self) -> list[str]:
        """Customer columns the scorer reads."""
        model = self.tenure_model
        return ["customer_id", "tenure_months", "monthly_fee", *model.covariates, *model.strata]

    @property
    def output_columns(self) -> list[str]:
        """Score columns, in order (all floating point)."""
        return ["tenure_months", "monthly_margin", "residual_value", "expected_months",
                "p_churn_risk"]  # fmt: skip

    def in_process(self, customers: pd.DataFrame) -> pd.DataFrame:
        """The residual values table."""
        customers = customers.reset_index(drop=True)
        return residual_values(
            customers,
            self.tenure_model,
            margin=monthly_margin(customers, margin=self.margin),
            discount_rate=self.discount_rate,
            horizon_months=self.horizon_months,
            risk_horizon_months=self.risk_horizon_months,
        )

    def score(self, customers: pd.DataFrame) -> pd.DataFrame:
        """One row of values per customer."""
        return self.in_process(customers)[self.output_columns]

    def table(self, scored: SparkFrame) -> SparkFrame:
        """The Spark rows of the values table."""
        return scored


@dataclass(frozen=True)
class UpliftScorer:
    """Predicted effect of every instrument, with its spread over the fold models.

    In process: ``UpliftModel.predict_effects``, one row per customer and
    instrument, the long table the plan stage reads as the uplift effects.
    """

    model: UpliftModel

    @property
    def input_columns(self) -> list[str]:
        """Customer columns the scorer reads."""
        return ["customer_id", *self.model.features_]

    @property
    def output_columns(self) -> list[str]:
        """``effect_<instrument>`` then ``effect_std_<instrument>`` per instrument."""
        names = self.model.instruments_
        return [f"effect_{i}" for i in names] + [f"effect_std_{i}" for i in names]

    def in_process(self, customers: pd.DataFrame) -> pd.DataFrame:
        """The long effects table."""
        return self.model.predict_effects(customers.reset_index(drop=True))

    def score(self, customers: pd.DataFrame) -> pd.DataFrame:
        """One row per customer: every instrument's effect and spread, side by side."""
        folds = self.model.predict_folds(customers.reset_index(drop=True))
        mean, std = folds.mean(axis=0), folds.std(axis=0, ddof=1)
        return pd.DataFrame(np.hstack([mean, std]), columns=self.output_columns)

    def table(self, scored: SparkFrame) -> SparkFrame:
        """The wide Spark rows made long: one row per customer and instrument."""
        from pyspark.sql import functions as F

        arms = [
            F.struct(
                F.lit(name).alias("instrument"),
                F.col(f"effect_{name}").alias("effect"),
                F.col(f"effect_std_{name}").alias("effect_std"),
            )
            for name in self.model.instruments_
        ]
        long = scored.select("customer_id", F.explode(F.array(*arms)).alias("arm"))
        return long.select(
            "customer_id",
            "arm.instrument",
            F.lit(self.model.learner).alias("learner"),
            "arm.effect",
            "arm.effect_std",
            (F.col("arm.effect") - Z95 * F.col("arm.effect_std")).alias("effect_lower"),
            (F.col("arm.effect") + Z95 * F.col("arm.effect_std")).alias("effect_upper"),
        )


Scorer = SurvivalScorer | UpliftScorer | ValueScorer


def result_type(scorer: Scorer) -> str:
    """The Spark struct type of a scorer's output (DDL), for ``spark_udf``."""
    return ", ".join(f"`{name}` double" for name in scorer.output_columns)


@dataclass(frozen=True)
class _PyfuncScorer:
    """What MLflow's pyfunc loader returns: ``predict(frame)`` gives the scorer's columns."""

    scorer: Scorer

    def predict(self, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return self.scorer.score(model_input)


def _load_pyfunc(data_path: str) -> _PyfuncScorer:
    """MLflow's loader hook for models logged by ``log_scorer``."""
    return _PyfuncScorer(pickle.loads(Path(data_path).read_bytes()))


def log_scorer(
    tracking_uri: str, run_id: str, scorer: Scorer, name: str, example: pd.DataFrame
) -> str:
    """Log ``scorer`` as an MLflow pyfunc model ``models/<name>`` of the run; return its URI.

    ``example`` (a few customers) fixes the model's input and output signature.
    """
    example = example[scorer.input_columns].head(20).reset_index(drop=True)
    return tracking.log_pyfunc(
        tracking_uri,
        run_id,
        pickle.dumps(scorer),
        name,
        loader_module=__name__,
        input_example=example,
        output_example=scorer.score(example),
    )


def score_in_spark(
    model_uri: str,
    customers: SparkFrame,
    output: str | Path,
    *,
    scorer: Scorer,
    as_of: Any,
) -> Path:
    """Score every row of ``customers`` inside Spark with the pyfunc model at ``model_uri``.

    The scores, with the columns of the scorer's in-process table, are written
    as Parquet under ``output/as_of=<as_of>/``, replacing that date's partition only.
    """
    from pyspark.sql import functions as F

    udf = tracking.spark_udf(customers.sparkSession, model_uri, result_type(scorer))
    columns = scorer.input_columns
    scored = customers.select(*columns).withColumn("scores", udf(*columns))
    scored = scored.select(
        "customer_id", *[F.col("scores")[name].alias(name) for name in scorer.output_columns]
    )
    date = pd.Timestamp(as_of).date().isoformat()
    out = scorer.table(scored).withColumn("as_of", F.lit(date))
    output = Path(output)
    (
        out.write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .partitionBy("as_of")
        .parquet(str(output))
    )
    log.info("spark: scored customers with %s into %s", model_uri, output)
    return output

