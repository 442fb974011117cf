"""Scoring every customer at scale: fitted models as MLflow pyfunc models, applied in Spark.

The survival, uplift and value stages fit their models on the driver (on all
customers or a stated sample). A *scorer* wraps one fitted model with the
function that scores a pandas frame of customers, one output row per input
row, the same function the stage calls in process:

- ``SurvivalScorer``: ``survival.score_active`` (churn risk within the horizon),
- ``UpliftScorer``: an uplift learner's effect of every instrument,
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

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkFrame

    from retention_lab.clv.contractual import LifelinesTenureModel
    from retention_lab.survival.regression import CoxResult
    from retention_lab.uplift.learners import UpliftModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SurvivalScorer:
    """Churn risk of active customers within ``horizon_months`` from a fitted Cox model."""

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
        return ["p_churn_horizon", "expected_remaining_months"]

    def score(self, customers: pd.DataFrame) -> pd.DataFrame:
        """One row of scores per customer (each scored as active at its tenure)."""
        active = customers.reset_index(drop=True).assign(churned=False)
        scores = score_active(self.cox, active, horizon_months=self.horizon_months)
        return scores[self.output_columns]


@dataclass(frozen=True)
class UpliftScorer:
    """Predicted effect of every instrument (mean and spread over the fold models)."""

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

    def score(self, customers: pd.DataFrame) -> pd.DataFrame:
        """One row of effects per customer."""
        folds = self.model.predict_folds(customers.reset_index(drop=True))
        mean, std = folds.mean(axis=0), folds.std(axis=0, ddof=1)
        return pd.DataFrame(np.hstack([mean, std]), columns=self.output_columns)


@dataclass(frozen=True)
class ValueScorer:
    """Discounted residual value of each customer given the tenure survived."""

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
        return ["monthly_margin", "residual_value", "expected_months", "p_churn_risk"]

    def score(self, customers: pd.DataFrame) -> pd.DataFrame:
        """One row of values per customer."""
        customers = customers.reset_index(drop=True)
        values = residual_values(
            customers,
            self.tenure_model,
            margin=monthly_margin(customers, margin=self.margin),
            discount_rate=self.discount_rate,
            horizon_months=self.horizon_months,
            risk_horizon_months=self.risk_horizon_months,
        )
        return values[self.output_columns]


Scorer = SurvivalScorer | UpliftScorer | ValueScorer


def score_frame(scorer: Scorer, customers: pd.DataFrame) -> pd.DataFrame:
    """In-process scores: ``customer_id`` and the scorer's columns, one row per customer."""
    scores = scorer.score(customers[scorer.input_columns])
    return pd.concat([customers[["customer_id"]].reset_index(drop=True), scores], axis=1)


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

    The scores (``customer_id`` and the scorer's columns) are written as
    Parquet under ``output/as_of=<as_of>/``, replacing that date's partition only.
    """
    from pyspark.sql import functions as F

    udf = tracking.spark_udf(customers.sparkSession, model_uri, result_type(scorer))
    columns = scorer.input_columns
    scored = customers.select(*columns).withColumn("scores", udf(*columns))
    out = scored.select(
        "customer_id",
        *[F.col("scores")[name].alias(name) for name in scorer.output_columns],
        F.lit(pd.Timestamp(as_of).date().isoformat()).alias("as_of"),
    )
    output = Path(output)
    (
        out.write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .partitionBy("as_of")
        .parquet(str(output))
    )
    log.info("spark: scored customers with %s into %s", model_uri, output)
    return output

